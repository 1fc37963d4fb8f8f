// GEMM: C = alpha * op(A) * op(B) + beta * C on row-major float32 matrices.
// Dimension legend: op(A) is (M, K), op(B) is (K, N), C is (M, N).
//
// Layout of the optimised path (Goto/BLIS packing; loop orders detailed at `gemmBlocked`):
//   for each NC-wide column block of C
//     op(B) packed into NR-wide panels (or taken from a `PackedMatrix` packed once)
//     for each MC-tall row block of C x each KC-deep slice of K (order chosen by shape)
//       op(A) block packed into MR-tall panels (or read in place when N is small); the
//       last 7-9 rows of a block as two panels of 3-5 rows (`gemmPanelRows`)
//       for each NR panel, each MR panel: the MR x NR register-blocked micro-kernel
// Threads (when the product is big enough) split C into row or column stripes, each with
// its own packing buffers.
// MR = 6 rows x NR = 16 columns: 12 accumulators of SIMD8 (6 SIMD16) + 2 B vectors +
// 1 broadcast = 15 of the 16 ymm registers of AVX2. The kernels themselves live in
// KernelGemm.swift.
import Dispatch

/// The scalar reference GEMM every optimised kernel is tested against.
public func gemmReference(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum: Float = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                sum += av * bv
            }
            let old = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * sum + old
        }
    }
}

/// Blocking parameters of the optimised GEMM (in elements).
public enum GemmBlocking {
    /// Rows of the register tile.
    public static let mr = 6
    /// Columns of the register tile (one SIMD16, two AVX2 registers).
    public static let nr = 16
    /// Depth of one packed slice of K (B panel of 16 KiB stays in L1).
    public static let kc = 256
    /// Rows of one packed A block (MC x KC = 144 KiB stays in L2).
    public static let mc = 144
    /// Columns of one packed B block at most.
    public static let nc = 4096
    /// Floats of op(B) packed at once by an unpacked product (4 MiB, L3-resident): NC is
    /// lowered to budget / K for deep products.
    public static let packedBBudget = 1 << 20
    /// Largest K slice of packed op(B) (KC x NC floats, 512 KiB: half of L2) for which a
    /// packed-A block runs row panels outside (B slice streamed from L2, C rows walked
    /// sequentially). GEMM bench (c4) dW 2048x512x6400 tA: 90-99 GFLOP/s column panels
    /// outside, 102-106 row panels outside, same run.
    public static let rowsOuterMaxSlice = 1 << 17
}

/// op(B) of a product packed once into the GEMM's panel layout, to be reused by many
/// `GemmEngine.multiply(transA:m:alpha:a:lda:packedB:beta:c:ldc:)` calls: the RNN recurrent
/// product `h (B, H) x W_hh^T` runs T times per forward pass with the same weights.
///
/// Layout: for each KC-deep slice of K (depth `kc_s`), all ceil(N / 16) panels of that slice,
/// each panel `kc_s x 16` floats (row p of the panel = op(B)[p, 16 j ..< 16 j + 16]), columns
/// past N zero. Storage is 64-byte aligned and reused by `pack` when large enough.
///
/// Not thread-safe while being packed; many engines may read it at the same time otherwise.
///
/// Typical RNN use (weights change once per optimizer step, so pack once per step):
/// ```
/// // forward: gates_t (B, G*H) += h_{t-1} (B, H) x weight_hh^T, weight_hh is (G*H, H)
/// whhT.pack(transB: true, k: H, n: G * H, b: weightHH, ldb: H)
/// for t in 0..<T {
///     engine.multiply(transA: false, m: B, a: hPrev, lda: H, packedB: whhT,
///                     beta: 1, c: gates + t * B * G * H, ldc: G * H)
/// }
/// // backward: dh (B, H) += dGates_t (B, G*H) x weight_hh (G*H, H)
/// whh.pack(transB: false, k: G * H, n: H, b: weightHH, ldb: H)
/// ```
public final class PackedMatrix: @unchecked Sendable {
    /// Rows of op(B) (the K of the products it serves).
    public private(set) var k: Int = 0
    /// Columns of op(B) (the N of the products it serves).
    public private(set) var n: Int = 0
    @usableFromInline var storage: UnsafeMutablePointer<Float>
    @usableFromInline var capacity: Int

    /// An empty packed matrix (k = n = 0); call `pack` to fill it.
    public init() {
        capacity = 0
        storage = gemmAllocate(0)
    }

    /// Packs op(B) (K, N): `transB == false` reads B as (K, N) row-major with leading
    /// dimension `ldb`; `transB == true` reads B as (N, K), e.g. a PyTorch weight matrix
    /// `weight_hh (G*H, H)` for the product `h x weight_hh^T` (k = H, n = G*H, ldb = H).
    public convenience init(transB: Bool, k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int) {
        self.init()
        pack(transB: transB, k: k, n: n, b: b, ldb: ldb)
    }

    deinit { storage.deallocate() }

    /// Bytes of packed storage currently held (grows only, never shrinks).
    public var capacityBytes: Int { capacity * MemoryLayout<Float>.stride }

    /// Floats needed to pack a (k, n) op(B).
    public static func packedCount(k: Int, n: Int) -> Int {
        k * ((n + GemmBlocking.nr - 1) / GemmBlocking.nr) * GemmBlocking.nr
    }

    /// Re-packs (e.g. after an optimizer step); allocates only when the new size is larger
    /// than any packed before.
    public func pack(transB: Bool, k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int) {
        precondition(k >= 0 && n >= 0, "PackedMatrix.pack: negative size k=\(k) n=\(n)")
        precondition(ldb >= max(1, transB ? k : n), "PackedMatrix.pack: ldb=\(ldb) too small for \(transB ? "transposed " : "")B with k=\(k) n=\(n)")
        let need = PackedMatrix.packedCount(k: k, n: n)
        if need > capacity {
            storage.deallocate()
            storage = gemmAllocate(need)
            capacity = need
        }
        self.k = k
        self.n = n
        let panels = (n + GemmBlocking.nr - 1) / GemmBlocking.nr
        var pc = 0
        while pc < k {
            let kc = min(GemmBlocking.kc, k - pc)
            gemmPackB(transB: transB, kc: kc, nc: n, b: gemmOffsetB(b, transB: transB, ldb: ldb, p: pc, j: 0),
                      ldb: ldb, dst: storage + pc * panels * GemmBlocking.nr)
            pc += kc
        }
    }
}

/// Packing buffers of one thread of a `GemmEngine`.
final class GemmWorkspace {
    var a: UnsafeMutablePointer<Float>
    var aCapacity = 0
    var b: UnsafeMutablePointer<Float>
    var bCapacity = 0
    /// alpha, beta of the current K slice, handed to the micro-kernel through memory.
    let scale = UnsafeMutablePointer<Float>.allocate(capacity: 2)

    init() {
        a = gemmAllocate(0)
        b = gemmAllocate(0)
    }

    deinit {
        a.deallocate()
        b.deallocate()
        scale.deallocate()
    }

    func reserve(a countA: Int, b countB: Int) {
        if countA > aCapacity {
            a.deallocate()
            a = gemmAllocate(countA)
            aCapacity = countA
        }
        if countB > bCapacity {
            b.deallocate()
            b = gemmAllocate(countB)
            bCapacity = countB
        }
    }
}

/// 64-byte aligned float storage (avoids the 4 KiB-aliasing memcpy trap of PLATFORM.md and
/// keeps panels on cache-line boundaries).
@usableFromInline
func gemmAllocate(_ count: Int) -> UnsafeMutablePointer<Float> {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 16) * MemoryLayout<Float>.stride, alignment: 64)
    return raw.bindMemory(to: Float.self, capacity: max(count, 16))
}

/// An optimised GEMM with reusable packing buffers (no allocation once warmed up) and a
/// thread count for splitting large products across cores.
/// Not thread-safe: one engine per thread of control.
public final class GemmEngine {
    /// Threads a single large product may be split across (1 = the calling thread only).
    public var threads: Int {
        didSet { precondition(threads >= 1, "GemmEngine needs at least one thread") }
    }
    /// A product is split only when every thread gets at least this many flops
    /// (2 * M * N * K / threads). The default, 24 MFLOP, is about 0.3 ms of one core:
    /// below that the ~25 µs of a Dispatch fork/join eats the gain (PLATFORM.md).
    public var minFlopsPerThread: Int = 24_000_000

    /// Products with op(A) = A (not transposed) and at most this many columns read A in
    /// place instead of packing it: packing costs about as much as the arithmetic it feeds
    /// when few column panels reuse each packed A panel.
    public var directAMaxColumns: Int = 256
    /// Rows of op(A) packed per block (MC, a multiple of 6; default `GemmBlocking.mc`).
    public var rowBlock: Int = GemmBlocking.mc {
        didSet { precondition(rowBlock >= GemmBlocking.mr && rowBlock % GemmBlocking.mr == 0, "GemmEngine.rowBlock must be a positive multiple of \(GemmBlocking.mr), found \(rowBlock)") }
    }
    /// Columns of op(B) packed per block (NC, a multiple of 16; default `GemmBlocking.nc`).
    public var columnBlock: Int = GemmBlocking.nc {
        didSet { precondition(columnBlock >= GemmBlocking.nr && columnBlock % GemmBlocking.nr == 0, "GemmEngine.columnBlock must be a positive multiple of \(GemmBlocking.nr), found \(columnBlock)") }
    }

    /// Floats of op(B) an unpacked product may pack at once in the C-resident loop order
    /// (default `GemmBlocking.packedBBudget`); NC is lowered to budget / K to respect it.
    public var packedBBudget: Int = GemmBlocking.packedBBudget {
        didSet { precondition(packedBBudget >= 1, "GemmEngine.packedBBudget must be positive, found \(packedBBudget)") }
    }

    /// Products with packed op(A) whose K slice of packed op(B) holds at most this many
    /// floats (default `GemmBlocking.rowsOuterMaxSlice`) run the row panels of A outside the
    /// column panels of B (`gemmMacroKernelRowsOuter`); 0 turns that order off.
    public var rowsOuterMaxSlice: Int = GemmBlocking.rowsOuterMaxSlice {
        didSet { precondition(rowsOuterMaxSlice >= 0, "GemmEngine.rowsOuterMaxSlice must not be negative, found \(rowsOuterMaxSlice)") }
    }

    /// Products with op(B) = B (not transposed), whole 16-column panels and at most this many
    /// rows (capped at MR = 6) read B in place instead of packing it; 0 turns that off.
    var directBMaxRows: Int = GemmBlocking.mr

    private var workspaces: [GemmWorkspace] = []
    private let job = GemmJob()

    public init(threads: Int = 1) {
        precondition(threads >= 1, "GemmEngine needs at least one thread")
        self.threads = threads
    }

    /// C (M, N) = alpha * op(A) * op(B) + beta * C. `beta == 0` ignores C's old contents
    /// (NaN included), as BLAS does. Row-major: op(A) = A (M, K) with leading dimension
    /// `lda`, or A^T when `transA` (A stored (K, M)); likewise B (K, N) or B^T (B stored
    /// (N, K), e.g. a PyTorch weight). C must not overlap A or B.
    public func multiply(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "GemmEngine.multiply: negative size m=\(m) n=\(n) k=\(k)")
        precondition(lda >= max(1, transA ? m : k), "GemmEngine.multiply: lda=\(lda) too small for \(transA ? "transposed " : "")A with m=\(m) k=\(k)")
        precondition(ldb >= max(1, transB ? k : n), "GemmEngine.multiply: ldb=\(ldb) too small for \(transB ? "transposed " : "")B with k=\(k) n=\(n)")
        precondition(ldc >= max(1, n), "GemmEngine.multiply: ldc=\(ldc) smaller than n=\(n)")
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 {
            gemmScale(m: m, n: n, beta: beta, c: c, ldc: ldc)
            return
        }
        run(transA: transA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
            b: .raw(b, ldb: ldb, transB: transB), beta: beta, c: c, ldc: ldc)
    }

    /// C (M, N) = alpha * op(A) * B + beta * C with op(B) (K, N) packed beforehand;
    /// K and N are the packed matrix's. Same semantics as the unpacked `multiply`.
    public func multiply(
        transA: Bool, m: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, packedB: PackedMatrix,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let n = packedB.n, k = packedB.k
        precondition(m >= 0, "GemmEngine.multiply: negative size m=\(m)")
        precondition(lda >= max(1, transA ? m : k), "GemmEngine.multiply: lda=\(lda) too small for \(transA ? "transposed " : "")A with m=\(m) k=\(k)")
        precondition(ldc >= max(1, n), "GemmEngine.multiply: ldc=\(ldc) smaller than n=\(n)")
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 {
            gemmScale(m: m, n: n, beta: beta, c: c, ldc: ldc)
            return
        }
        let panels = (n + GemmBlocking.nr - 1) / GemmBlocking.nr
        run(transA: transA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
            b: .packed(UnsafePointer(packedB.storage), panels: panels, panelOffset: 0),
            beta: beta, c: c, ldc: ldc)
    }

    /// C1 = alpha * op(A) * op(B1) + beta * C1 and C2 = alpha * op(A) * op(B2) + beta * C2
    /// for one op(A) (M, K): bit for bit the results of two `multiply` calls, but when those
    /// would pack op(A) (transposed A, M <= K, one thread) each packed block of it feeds both
    /// products, so op(A) is packed once instead of twice. The LSTM's and RNN's weight
    /// gradients dW_ih and dW_hh share A = dGates^T this way. Neither C may overlap A, B1, B2
    /// or the other C.
    public func multiply(
        transA: Bool, m: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        _ first: GemmRightOperand, _ second: GemmRightOperand, beta: Float
    ) {
        guard sharesPackedA(transA: transA, m: m, k: k, alpha: alpha, first.n, second.n) else {
            multiply(transA: transA, transB: first.transB, m: m, n: first.n, k: k, alpha: alpha, a: a, lda: lda,
                     b: first.b, ldb: first.ldb, beta: beta, c: first.c, ldc: first.ldc)
            multiply(transA: transA, transB: second.transB, m: m, n: second.n, k: k, alpha: alpha, a: a, lda: lda,
                     b: second.b, ldb: second.ldb, beta: beta, c: second.c, ldc: second.ldc)
            return
        }
        precondition(lda >= m, "GemmEngine.multiply: lda=\(lda) too small for transposed A with m=\(m)")
        precondition(first.ldb >= (first.transB ? k : first.n) && second.ldb >= (second.transB ? k : second.n),
                     "GemmEngine.multiply: ldb too small: first \(first.ldb) (n=\(first.n)), second \(second.ldb) (n=\(second.n)), k=\(k)")
        precondition(first.ldc >= first.n && second.ldc >= second.n,
                     "GemmEngine.multiply: ldc smaller than n: first \(first.ldc) < \(first.n) or second \(second.ldc) < \(second.n)")
        gemmBlockedSharedA(ws: workspace(0), transA: transA, m: m, k: k, alpha: alpha, a: a, lda: lda,
                           first, second, beta: beta, mcBlock: rowBlock, rowsOuterSlice: rowsOuterMaxSlice)
    }

    /// Whether two products of one op(A) would each run `gemmBlocked` in the B-slice-resident
    /// order with packed op(A), one column block and one thread, so that sharing the packed
    /// blocks of op(A) gives their exact results.
    func sharesPackedA(transA: Bool, m: Int, k: Int, alpha: Float, _ n1: Int, _ n2: Int) -> Bool {
        transA && m > GemmBlocking.mr && m <= k && alpha != 0
            && n1 > 0 && n2 > 0 && n1 <= columnBlock && n2 <= columnBlock
            && threadCount(m: m, n: n1, k: k) == 1 && threadCount(m: m, n: n2, k: k) == 1
    }

    /// How many threads a product gets: as many as its flops deserve (`minFlopsPerThread`
    /// each), at most `threads` and one per row panel (M >= N) or column panel (M < N).
    private func threadCount(m: Int, n: Int, k: Int) -> Int {
        min(threads, max(1, 2 * m * n * k / max(1, minFlopsPerThread)), Self.splitUnits(m: m, n: n))
    }

    /// The pieces a split product is cut into: row panels when M >= N, else column panels.
    private static func splitUnits(m: Int, n: Int) -> Int {
        m >= n ? (m + GemmBlocking.mr - 1) / GemmBlocking.mr : (n + GemmBlocking.nr - 1) / GemmBlocking.nr
    }

    /// Bytes held by the packing buffers of all threads (they grow to the largest product
    /// seen and are reused afterwards).
    public var packingBufferBytes: Int {
        workspaces.reduce(0) { $0 + ($1.aCapacity + $1.bCapacity) * MemoryLayout<Float>.stride }
    }

    private func workspace(_ i: Int) -> GemmWorkspace {
        while workspaces.count <= i { workspaces.append(GemmWorkspace()) }
        return workspaces[i]
    }

    private func run(
        transA: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: GemmBSource,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let t = threadCount(m: m, n: n, k: k)
        let splitM = m >= n
        let units = Self.splitUnits(m: m, n: n)
        if t <= 1 {
            let ws = workspace(0)
            gemmBlocked(ws: ws, transA: transA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                        b: b, beta: beta, c: c, ldc: ldc, directA: !transA && n <= directAMaxColumns,
                        mcBlock: rowBlock, ncBlock: columnBlock, bBudget: packedBBudget,
                        rowsOuterSlice: rowsOuterMaxSlice, directBMaxRows: directBMaxRows)
            return
        }
        // The job object and its parts array are reused: no allocation once warmed up.
        job.parts.removeAll(keepingCapacity: true)
        for i in 0..<t {
            let u0 = units * i / t, u1 = units * (i + 1) / t
            if splitM {
                let i0 = u0 * GemmBlocking.mr, i1 = min(m, u1 * GemmBlocking.mr)
                let aOff = transA ? a + i0 : a + i0 * lda
                job.parts.append(GemmPart(ws: workspace(i), m: i1 - i0, n: n,
                                      a: aOff, b: b, c: c + i0 * ldc))
            } else {
                let j0 = u0 * GemmBlocking.nr, j1 = min(n, u1 * GemmBlocking.nr)
                job.parts.append(GemmPart(ws: workspace(i), m: m, n: j1 - j0,
                                      a: a, b: b.offsetColumns(j0), c: c + j0))
            }
        }
        job.transA = transA
        job.k = k
        job.alpha = alpha
        job.lda = lda
        job.beta = beta
        job.ldc = ldc
        job.directAMaxColumns = directAMaxColumns
        job.mcBlock = rowBlock
        job.ncBlock = columnBlock
        job.bBudget = packedBBudget
        job.rowsOuterSlice = rowsOuterMaxSlice
        job.directBMaxRows = directBMaxRows
        team.run(job)
    }

    /// The threads split products run on (and RNNNetwork's split recurrent steps): `threads`
    /// members, the caller first; rebuilt when `threads` changes.
    var team: ThreadTeam {
        if let existing = teamStorage, existing.size == threads { return existing }
        let made = ThreadTeam(size: threads)
        teamStorage = made
        return made
    }
    private var teamStorage: ThreadTeam?
}

/// One of the two products of `GemmEngine.multiply(transA:m:k:alpha:a:lda:_:_:beta:)`:
/// op(B) (K, N) from B (K, N), or B^T when `transB` (B stored (N, K)), into C (M, N).
public struct GemmRightOperand {
    public var n: Int
    public var b: UnsafePointer<Float>
    public var ldb: Int
    public var transB: Bool
    public var c: UnsafeMutablePointer<Float>
    public var ldc: Int

    public init(n: Int, b: UnsafePointer<Float>, ldb: Int, transB: Bool = false, c: UnsafeMutablePointer<Float>, ldc: Int) {
        self.n = n
        self.b = b
        self.ldb = ldb
        self.transB = transB
        self.c = c
        self.ldc = ldc
    }
}

/// Where the blocked loop gets op(B)'s panels from.
enum GemmBSource {
    /// B in memory, packed slice by slice into the workspace.
    case raw(UnsafePointer<Float>, ldb: Int, transB: Bool)
    /// Already packed (a `PackedMatrix`): `panels` per K slice, starting at `panelOffset`.
    case packed(UnsafePointer<Float>, panels: Int, panelOffset: Int)

    func offsetColumns(_ j: Int) -> GemmBSource {
        switch self {
        case let .raw(b, ldb, transB):
            return .raw(transB ? b + j * ldb : b + j, ldb: ldb, transB: transB)
        case let .packed(p, panels, offset):
            assert(j % GemmBlocking.nr == 0)
            return .packed(p, panels: panels, panelOffset: offset + j / GemmBlocking.nr)
        }
    }
}

/// One thread's share of a split product.
struct GemmPart {
    let ws: GemmWorkspace
    let m: Int
    let n: Int
    let a: UnsafePointer<Float>
    let b: GemmBSource
    let c: UnsafeMutablePointer<Float>
}

/// A split product handed to the engine's `ThreadTeam` (one per engine, reused). Each part writes
/// a disjoint block of C and owns its workspace, so sharing it across the fork/join is race free.
final class GemmJob: TeamTask, @unchecked Sendable {
    var parts: [GemmPart] = []
    var transA = false, k = 0, alpha: Float = 1, lda = 1, beta: Float = 0, ldc = 1, directAMaxColumns = 0
    var mcBlock = GemmBlocking.mc, ncBlock = GemmBlocking.nc, bBudget = GemmBlocking.packedBBudget
    var rowsOuterSlice = GemmBlocking.rowsOuterMaxSlice
    var directBMaxRows = GemmBlocking.mr

    func run(member: Int) {
        if member < parts.count { run(member) }
    }

    func run(_ i: Int) {
        let p = parts[i]
        gemmBlocked(ws: p.ws, transA: transA, m: p.m, n: p.n, k: k, alpha: alpha, a: p.a, lda: lda,
                    b: p.b, beta: beta, c: p.c, ldc: ldc, directA: !transA && p.n <= directAMaxColumns,
                    mcBlock: mcBlock, ncBlock: ncBlock, bBudget: bBudget, rowsOuterSlice: rowsOuterSlice,
                    directBMaxRows: directBMaxRows)
    }
}

/// C = beta * C (beta == 0 writes zeros, ignoring NaN).
func gemmScale(m: Int, n: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if beta == 1 { return }
    for i in 0..<m {
        let row = c + i * ldc
        if beta == 0 {
            row.update(repeating: 0, count: n)
        } else {
            for j in 0..<n { row[j] *= beta }
        }
    }
}

@inline(__always)
func gemmOffsetB(_ b: UnsafePointer<Float>, transB: Bool, ldb: Int, p: Int, j: Int) -> UnsafePointer<Float> {
    transB ? b + j * ldb + p : b + p * ldb + j
}

@inline(__always)
func gemmOffsetA(_ a: UnsafePointer<Float>, transA: Bool, lda: Int, i: Int, p: Int) -> UnsafePointer<Float> {
    transA ? a + p * lda + i : a + i * lda + p
}

/// The single-threaded blocked loop nest over one (sub-)product.
///
/// Two loop orders inside each NC column block; both move about the same number of bytes
/// (C once per K slice vs packed op(B) once per MC row block: ratio 2 MC / KC), but from
/// different places:
/// - C-resident (when M > K, e.g. dX = dGates x W with k = G*H): op(B) for the whole K of the
///   column block is packed once (or taken from the `PackedMatrix`), then each MC row block
///   of C runs through all K slices while it stays in L2, and the packed B streams from L3.
///   NC shrinks so that the packed column block holds at most `bBudget` floats.
/// - B-slice-resident (otherwise, e.g. dW with k = B*T): K slices outside, the packed
///   KC x NC slice of op(B) stays in L2 while all row blocks of C stream past it.
func gemmBlocked(
    ws: GemmWorkspace, transA: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: GemmBSource,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, directA: Bool,
    mcBlock: Int = GemmBlocking.mc, ncBlock: Int = GemmBlocking.nc, bBudget: Int = GemmBlocking.packedBBudget,
    rowsOuterSlice: Int = GemmBlocking.rowsOuterMaxSlice, directBMaxRows: Int = GemmBlocking.mr
) {
    assert(!directA || !transA)
    let mr = GemmBlocking.mr, nr = GemmBlocking.nr, kcBlock = GemmBlocking.kc
    let kcMax = min(kcBlock, k)
    let mcMax = min(mcBlock, (m + mr - 1) / mr * mr)
    let cResident = m > k
    var ncStep = ncBlock
    if case .raw = b, cResident {
        ncStep = min(ncBlock, max(nr, bBudget / k / nr * nr))
    }
    let ncMax = min(ncStep, (n + nr - 1) / nr * nr)
    // In-place B: with at most `directBMaxRows` (<= MR) rows, C is one row of register tiles,
    // so every element of B feeds exactly one tile and packing would copy B only to read it
    // once (seed-small's dW_ih^T, 5 x 64 x 320: the 80 KB copy cost about as much as the
    // product). Needs B untransposed and whole 16-column panels; same arithmetic, same bits.
    var directB = false
    var directLDB = 0
    if case let .raw(_, ldb, transB) = b, !transB, !cResident, m <= min(directBMaxRows, mr), n % nr == 0 {
        directB = true
        directLDB = ldb
    }
    if case .raw = b, !directB {
        ws.reserve(a: directA ? 0 : mcMax * kcMax, b: (cResident ? k : kcMax) * ncMax)
    } else {
        ws.reserve(a: directA ? 0 : mcMax * kcMax, b: 0)
    }
    let bufA = ws.a, bufB = ws.b
    let scale = UnsafePointer(ws.scale)
    ws.scale[0] = alpha

    /// The register tiles of C[ic ..< ic + mc, jc ..< jc + nc] for K slice [pc, pc + kc).
    @inline(__always)
    func block(ic: Int, mc: Int, jc: Int, nc: Int, pc: Int, kc: Int, sliceB: UnsafePointer<Float>) {
        ws.scale[1] = pc == 0 ? beta : 1
        let cBlock = c + ic * ldc + jc
        if directA {
            let aBlock = a + ic * lda + pc
            if directB {
                // sliceB is B itself at row pc, column jc.
                gemmMacroKernel(GemmDirectA.self, GemmDirectB.self, mc: mc, nc: nc, kc: kc, a: aBlock, lda: lda,
                                b: sliceB, ldb: directLDB, scale: scale, c: cBlock, ldc: ldc)
            } else {
                gemmMacroKernel(GemmDirectA.self, GemmPackedB.self, mc: mc, nc: nc, kc: kc, a: aBlock, lda: lda,
                                b: sliceB, scale: scale, c: cBlock, ldc: ldc)
            }
            return
        }
        gemmPackA(transA: transA, mc: mc, kc: kc,
                  a: gemmOffsetA(a, transA: transA, lda: lda, i: ic, p: pc), lda: lda, dst: bufA)
        if directB {
            gemmMacroKernel(GemmPackedA.self, GemmDirectB.self, mc: mc, nc: nc, kc: kc, a: UnsafePointer(bufA), lda: lda,
                            b: sliceB, ldb: directLDB, scale: scale, c: cBlock, ldc: ldc)
        } else {
            gemmPackedMacroKernel(mc: mc, nc: nc, kc: kc, a: UnsafePointer(bufA), b: sliceB, scale: scale,
                                  c: cBlock, ldc: ldc, rowsOuterSlice: rowsOuterSlice)
        }
    }

    var jc = 0
    while jc < n {
        let nc = min(ncStep, n - jc)
        if cResident {
            // Packed op(B)[:, jc ..< jc + nc]: slice pc starts at blockB + pc * panelsHere * 16.
            let panelsHere: Int, panelOffset: Int, blockB: UnsafePointer<Float>
            switch b {
            case let .raw(bp, ldb, transB):
                panelsHere = (nc + nr - 1) / nr
                panelOffset = 0
                var pc = 0
                while pc < k {
                    let kc = min(kcBlock, k - pc)
                    gemmPackB(transB: transB, kc: kc, nc: nc,
                              b: gemmOffsetB(bp, transB: transB, ldb: ldb, p: pc, j: jc), ldb: ldb,
                              dst: bufB + pc * panelsHere * nr)
                    pc += kc
                }
                blockB = UnsafePointer(bufB)
            case let .packed(bp, panels, offset):
                panelsHere = panels
                panelOffset = offset + jc / nr
                blockB = bp
            }
            var ic = 0
            while ic < m {
                let mc = gemmRowBlockRows(m - ic, mcBlock: mcBlock)
                var pc = 0
                while pc < k {
                    let kc = min(kcBlock, k - pc)
                    block(ic: ic, mc: mc, jc: jc, nc: nc, pc: pc, kc: kc,
                          sliceB: blockB + pc * panelsHere * nr + panelOffset * kc * nr)
                    pc += kc
                }
                ic += mc
            }
        } else {
            var pc = 0
            while pc < k {
                let kc = min(kcBlock, k - pc)
                let sliceB: UnsafePointer<Float>
                switch b {
                case let .raw(bp, ldb, transB):
                    if directB {
                        sliceB = gemmOffsetB(bp, transB: false, ldb: ldb, p: pc, j: jc)
                    } else {
                        gemmPackB(transB: transB, kc: kc, nc: nc,
                                  b: gemmOffsetB(bp, transB: transB, ldb: ldb, p: pc, j: jc), ldb: ldb, dst: bufB)
                        sliceB = UnsafePointer(bufB)
                    }
                case let .packed(bp, panels, offset):
                    sliceB = bp + pc * panels * nr + (offset + jc / nr) * kc * nr
                }
                var ic = 0
                while ic < m {
                    let mc = gemmRowBlockRows(m - ic, mcBlock: mcBlock)
                    block(ic: ic, mc: mc, jc: jc, nc: nc, pc: pc, kc: kc, sliceB: sliceB)
                    ic += mc
                }
                pc += kc
            }
        }
        jc += nc
    }
}

/// Two products that share op(A) (M, K), in the B-slice-resident order of `gemmBlocked`:
/// for each K slice both op(B) slices are packed, and each packed block of op(A) feeds both
/// products before the next is packed. Every element gets the operations, in the order, of
/// `gemmBlocked` run on each product alone (the caller checks that that run would take this
/// order: M <= K, more than MR rows, one column block each, one thread).
func gemmBlockedSharedA(
    ws: GemmWorkspace, transA: Bool, m: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    _ first: GemmRightOperand, _ second: GemmRightOperand, beta: Float,
    mcBlock: Int = GemmBlocking.mc, rowsOuterSlice: Int = GemmBlocking.rowsOuterMaxSlice
) {
    let mr = GemmBlocking.mr, nr = GemmBlocking.nr, kcBlock = GemmBlocking.kc
    let kcMax = min(kcBlock, k)
    let mcMax = min(mcBlock, (m + mr - 1) / mr * mr)
    let panelsFirst = (first.n + nr - 1) / nr, panelsSecond = (second.n + nr - 1) / nr
    ws.reserve(a: mcMax * kcMax, b: kcMax * (panelsFirst + panelsSecond) * nr)
    let bufA = ws.a, bufFirst = ws.b, bufSecond = ws.b + kcMax * panelsFirst * nr
    let scale = UnsafePointer(ws.scale)
    ws.scale[0] = alpha
    var pc = 0
    while pc < k {
        let kc = min(kcBlock, k - pc)
        gemmPackB(transB: first.transB, kc: kc, nc: first.n,
                  b: gemmOffsetB(first.b, transB: first.transB, ldb: first.ldb, p: pc, j: 0), ldb: first.ldb, dst: bufFirst)
        gemmPackB(transB: second.transB, kc: kc, nc: second.n,
                  b: gemmOffsetB(second.b, transB: second.transB, ldb: second.ldb, p: pc, j: 0), ldb: second.ldb, dst: bufSecond)
        ws.scale[1] = pc == 0 ? beta : 1
        var ic = 0
        while ic < m {
            let mc = gemmRowBlockRows(m - ic, mcBlock: mcBlock)
            gemmPackA(transA: transA, mc: mc, kc: kc,
                      a: gemmOffsetA(a, transA: transA, lda: lda, i: ic, p: pc), lda: lda, dst: bufA)
            gemmPackedMacroKernel(mc: mc, nc: first.n, kc: kc, a: UnsafePointer(bufA), b: UnsafePointer(bufFirst),
                                  scale: scale, c: first.c + ic * first.ldc, ldc: first.ldc, rowsOuterSlice: rowsOuterSlice)
            gemmPackedMacroKernel(mc: mc, nc: second.n, kc: kc, a: UnsafePointer(bufA), b: UnsafePointer(bufSecond),
                                  scale: scale, c: second.c + ic * second.ldc, ldc: second.ldc, rowsOuterSlice: rowsOuterSlice)
            ic += mc
        }
        pc += kc
    }
}

/// The register tiles of one (MC, NC) block of C from packed A and packed B: row panels
/// outside when the K slice of B is small enough (`rowsOuterSlice`), column panels outside
/// otherwise.
@inline(__always)
func gemmPackedMacroKernel(
    mc: Int, nc: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, scale: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, rowsOuterSlice: Int
) {
    if kc * nc <= rowsOuterSlice {
        gemmMacroKernelRowsOuter(mc: mc, nc: nc, kc: kc, a: a, b: b, scale: scale, c: c, ldc: ldc)
    } else {
        gemmMacroKernel(GemmPackedA.self, GemmPackedB.self, mc: mc, nc: nc, kc: kc, a: a, lda: 0,
                        b: b, scale: scale, c: c, ldc: ldc)
    }
}

/// All register tiles of one (MC, NC) block of C from A (packed MR panels or in place) and B
/// (packed NR panels, both `kc` deep, or in place with leading dimension `ldb`).
@inline(__always)
func gemmMacroKernel<L: GemmALayout, BL: GemmBLayout>(
    _ layout: L.Type, _ bLayout: BL.Type, mc: Int, nc: Int, kc: Int, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int = 0, scale: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let mr = GemmBlocking.mr, nr = GemmBlocking.nr
    var jr = 0
    while jr < nc {
        let nEdge = min(nr, nc - jr)
        let bp = BL.packed ? b + jr * kc : b + jr
        var ir = 0
        var ap = a
        while ir < mc {
            let mEdge = gemmPanelRows(mc - ir)
            gemmMicroKernel(L.self, BL.self, rows: mEdge, cols: nEdge, kc: kc, a: ap, lda: lda,
                            b: bp, ldb: ldb, scale: scale, c: c + ir * ldc + jr, ldc: ldc)
            ir += mEdge
            // A packed panel takes kc * 6 floats whatever its height (see gemmPackA).
            ap += L.packed ? kc * mr : mEdge * lda
        }
        jr += nr
    }
}

/// Like `gemmMacroKernel` for packed A, with the row panels outside: each MR panel of A stays
/// in L1 while the K slice of packed B (L2-resident) streams past it in order, and every
/// register tile of one row panel walks along the same six rows of C, which the hardware
/// prefetcher follows as six sequential streams.
@inline(__always)
func gemmMacroKernelRowsOuter(
    mc: Int, nc: Int, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let mr = GemmBlocking.mr, nr = GemmBlocking.nr
    var ir = 0
    var ap = a
    while ir < mc {
        let mEdge = gemmPanelRows(mc - ir)
        var jr = 0
        while jr < nc {
            gemmMicroKernel(GemmPackedA.self, GemmPackedB.self, rows: mEdge, cols: min(nr, nc - jr), kc: kc, a: ap, lda: 0,
                            b: b + jr * kc, ldb: 0, scale: scale, c: c + ir * ldc + jr, ldc: ldc)
            jr += nr
        }
        ir += mEdge
        ap += kc * mr
    }
}

/// Rows of the next register tile (and packed A panel) when `rest` rows of a row block are
/// left: 6, except that the last 7, 8, 9 rows run as 4+3, 4+4, 5+4 rather than 6+1, 6+2,
/// 6+3, and the last 13 as 5+4+4 rather than 6+4+3. A tile of 1-3 rows has at most 6
/// accumulator chains, too few to cover the FMA latency, so it runs latency-bound and costs
/// far more than its share of the flops. GEMM bench, 1024 x 256 packed B, same runs:
/// 32 rows 104-105 GFLOP/s as 5 x 6 + 2, 109-111 as 4 x 6 + 4 + 4; 25 rows 106-107 as
/// 3 x 6 + 4 + 3, 109-110 as 2 x 6 + 5 + 4 + 4; 13 rows 101-102 as 6 + 4 + 3, 105-106 as
/// 5 + 4 + 4. The number of panels stays ceil(rows / 6) either way.
@inline(__always)
func gemmPanelRows(_ rest: Int) -> Int {
    let mr = GemmBlocking.mr
    if rest == 2 * mr + 1 { return 5 } // 13 = 5+4+4 rather than 6+4+3
    return rest > mr && rest < mr + 4 ? (rest + 1) / 2 : min(mr, rest)
}

/// Rows of the next MC row block when `rest` rows are left: `mcBlock`, or 6 fewer when the
/// block after it would hold only 1-3 rows (that last block then holds 7-9 rows, which
/// `gemmPanelRows` splits into two tiles of at least 4 rows).
@inline(__always)
func gemmRowBlockRows(_ rest: Int, mcBlock: Int) -> Int {
    let left = rest - mcBlock
    return left > 0 && left < 4 && mcBlock > GemmBlocking.mr ? mcBlock - GemmBlocking.mr : min(mcBlock, rest)
}
