// GEMM throughput of RNNCore's GemmEngine on square and RNN-shaped products.
// scripts/bench_gemm_numpy.py runs the same shapes through OpenBLAS; scripts/bench_gemm.sh
// prints both side by side.
import ArgumentParser
import RNNCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One benchmarked product. Shapes of the RNN cases come from the lstm-large baseline
/// (B=64, T=100, I=128, H=512, G=4) and the tutorial's SimpleRNN (B=32, T=10, I=5, H=64).
struct GemmShape {
    let name: String
    let transA: Bool
    let transB: Bool
    let m: Int, n: Int, k: Int
    let beta: Float
    /// Multiply through a `PackedMatrix` packed once outside the timed loop.
    let packedB: Bool
}

let gemmBenchmarkShapes: [GemmShape] = [
    GemmShape(name: "square 256^3", transA: false, transB: false, m: 256, n: 256, k: 256, beta: 0, packedB: false),
    GemmShape(name: "square 512^3", transA: false, transB: false, m: 512, n: 512, k: 512, beta: 0, packedB: false),
    GemmShape(name: "recurrent-like 64x1024x512 tB", transA: false, transB: true, m: 64, n: 1024, k: 512, beta: 0, packedB: false),
    GemmShape(name: "recurrent-like 64x2048x512 tB", transA: false, transB: true, m: 64, n: 2048, k: 512, beta: 0, packedB: false),
    GemmShape(name: "(a) input proj 6400x2048x128 tB", transA: false, transB: true, m: 6400, n: 2048, k: 128, beta: 0, packedB: false),
    GemmShape(name: "(b) recurrent 64x2048x512 packed", transA: false, transB: true, m: 64, n: 2048, k: 512, beta: 0, packedB: true),
    GemmShape(name: "(c) dW 2048x128x6400 tA b=1", transA: true, transB: false, m: 2048, n: 128, k: 6400, beta: 1, packedB: false),
    GemmShape(name: "(c2) dW_hh 2048x512x6336 tA b=1", transA: true, transB: false, m: 2048, n: 512, k: 6336, beta: 1, packedB: false),
    GemmShape(name: "(d) dX 6400x128x2048", transA: false, transB: false, m: 6400, n: 128, k: 2048, beta: 0, packedB: false),
    GemmShape(name: "(e) dh step 64x512x2048 packed", transA: false, transB: false, m: 64, n: 512, k: 2048, beta: 1, packedB: true),
    GemmShape(name: "lstm-med recurrent 64x1024x256 pk", transA: false, transB: true, m: 64, n: 1024, k: 256, beta: 1, packedB: true),
    GemmShape(name: "lstm-med recurrent 32x1024x256 pk", transA: false, transB: true, m: 32, n: 1024, k: 256, beta: 1, packedB: true),
    GemmShape(name: "lstm-med W_hh h^T 1024x64x256", transA: false, transB: true, m: 1024, n: 64, k: 256, beta: 0, packedB: false),
    GemmShape(name: "tiny recurrent 32x64x64 packed", transA: false, transB: true, m: 32, n: 64, k: 64, beta: 0, packedB: true),
    GemmShape(name: "tiny input proj 320x64x5 tB", transA: false, transB: true, m: 320, n: 64, k: 5, beta: 0, packedB: false),
]

/// `rnn-bench gemm [--threads N]`, plus tuning flags for experiments:
/// `--only NAME-PART`, `--direct-a MAX-COLUMNS`, `--mc ROWS`, `--nc COLUMNS`,
/// `--rows-outer MAX-SLICE-FLOATS` (0: column panels outside always).
struct GemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GFLOP/s of RNNCore's GemmEngine on square and RNN-shaped products, packing and the recurrent loop.")

    @Option(parsing: .unconditional, help: "GemmEngine threads (1: timed in thread CPU time, else wall time).") var threads = 1
    @Option(help: ArgumentHelp("Only the shapes whose name contains this (and no packing or recurrent-sequence tables).", valueName: "name-part"))
    var only: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Tuning: the engine's in-place-A threshold.", valueName: "max-columns")) var directA: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Tuning: the engine's row block.", valueName: "rows")) var mc: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Tuning: the engine's column block.", valueName: "columns")) var nc: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Tuning: products whose packed B slice holds at most this many floats run row panels outside (0: never).", valueName: "max-slice-floats"))
    var rowsOuter: Int?

    func validate() throws {
        try requireAtLeast(1, "--threads", threads)
        try requireAtLeast(1, "--direct-a", directA)
        try requireAtLeast(1, "--mc", mc)
        try requireAtLeast(1, "--nc", nc)
        try requireAtLeast(0, "--rows-outer", rowsOuter)
    }

    func run() {
        runGemmBenchmark(threads: threads, directAMaxColumns: directA, rowBlock: mc, columnBlock: nc, rowsOuterMaxSlice: rowsOuter,
                         only: only)
        if only == nil {
            runPackBenchmark(threads: threads)
            runRecurrentSequenceBenchmark(threads: threads)
        }
    }
}

/// Prints one line per shape: median GFLOP/s over repetitions of >= 20 ms each, after warm-up.
///
/// Tuning knobs (not needed for the comparison): `directAMaxColumns` overrides the engine's
/// in-place-A threshold, `only` keeps the shapes whose name contains it.
func runGemmBenchmark(threads: Int, directAMaxColumns: Int? = nil, rowBlock: Int? = nil, columnBlock: Int? = nil,
                      rowsOuterMaxSlice: Int? = nil, only: String? = nil) {
    let clockName = threads == 1 ? "thread CPU time" : "wall time"
    print("GemmEngine, threads=\(threads) (\(clockName), median of 7 timed repetitions, each >= 20 ms)")
    print(pad("shape", 34) + pad("GFLOP/s", 10, left: true) + pad("µs/call", 12, left: true))
    let engine = GemmEngine(threads: threads)
    if let d = directAMaxColumns { engine.directAMaxColumns = d }
    if let mc = rowBlock { engine.rowBlock = mc }
    if let nc = columnBlock { engine.columnBlock = nc }
    if let r = rowsOuterMaxSlice { engine.rowsOuterMaxSlice = r }
    var generator = SplitMix(seed: 42)
    for shape in gemmBenchmarkShapes where only.map({ shape.name.contains($0) }) ?? true {
        let rowsA = shape.transA ? shape.k : shape.m, colsA = shape.transA ? shape.m : shape.k
        let rowsB = shape.transB ? shape.n : shape.k, colsB = shape.transB ? shape.k : shape.n
        var a = [Float](repeating: 0, count: rowsA * colsA)
        var b = [Float](repeating: 0, count: rowsB * colsB)
        var c = [Float](repeating: 0, count: shape.m * shape.n)
        for i in a.indices { a[i] = generator.nextUniform() }
        for i in b.indices { b[i] = generator.nextUniform() }
        for i in c.indices { c[i] = generator.nextUniform() * 0.01 }
        let packed = PackedMatrix()
        let seconds: Double = a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    if shape.packedB {
                        packed.pack(transB: shape.transB, k: shape.k, n: shape.n, b: bp.baseAddress!, ldb: colsB)
                    }
                    let call = {
                        if shape.packedB {
                            engine.multiply(transA: shape.transA, m: shape.m, a: ap.baseAddress!, lda: colsA,
                                            packedB: packed, beta: shape.beta, c: cp.baseAddress!, ldc: shape.n)
                        } else {
                            engine.multiply(transA: shape.transA, transB: shape.transB, m: shape.m, n: shape.n, k: shape.k,
                                            a: ap.baseAddress!, lda: colsA, b: bp.baseAddress!, ldb: colsB,
                                            beta: shape.beta, c: cp.baseAddress!, ldc: shape.n)
                        }
                    }
                    return medianSecondsPerCall(threadCPU: threads == 1, call)
                }
            }
        }
        let gflops = 2 * Double(shape.m) * Double(shape.n) * Double(shape.k) / seconds / 1e9
        print(pad(shape.name, 34) + pad(format(gflops, 1), 10, left: true) + pad(format(seconds * 1e6, 1), 12, left: true))
    }
}

/// Time to (re-)pack a weight matrix into a `PackedMatrix` (done once per optimizer step).
func runPackBenchmark(threads: Int) {
    print("\nPackedMatrix.pack (once per optimizer step per weight matrix)")
    print(pad("weight", 38) + pad("GB/s", 6, left: true) + pad("µs/call", 12, left: true))
    var generator = SplitMix(seed: 7)
    for (rows, cols, transB) in [(2048, 512, true), (2048, 512, false), (1024, 256, true), (256, 64, true)] {
        let w = (0..<(rows * cols)).map { _ in generator.nextUniform() }
        let packed = PackedMatrix()
        let seconds = w.withUnsafeBufferPointer { wp in
            medianSecondsPerCall(threadCPU: threads == 1) {
                if transB {
                    packed.pack(transB: true, k: cols, n: rows, b: wp.baseAddress!, ldb: cols)
                } else {
                    packed.pack(transB: false, k: rows, n: cols, b: wp.baseAddress!, ldb: cols)
                }
            }
        }
        let name = "W (\(rows), \(cols)) as " + (transB ? "W^T (k=\(cols), n=\(rows))" : "W (k=\(rows), n=\(cols))")
        let gbs = Double(rows * cols * 8) / seconds / 1e9
        print(pad(name, 38) + pad(format(gbs, 1), 6, left: true) + pad(format(seconds * 1e6, 1), 12, left: true))
    }
}

/// Seconds on the wall clock, or of CPU time of the calling thread. Single-threaded runs use
/// thread CPU time: the machine is shared, and time slices lost to other processes would
/// otherwise count against the kernel (the numpy baseline measures the same way).
func benchmarkSeconds(threadCPU: Bool) -> Double {
    var ts = timespec()
    clock_gettime(threadCPU ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Median over 7 repetitions of the mean time per call; each repetition runs enough calls
/// for >= 20 ms. Warm-up: 0.1 s of calls first (first touch, packing buffers, caches).
func medianSecondsPerCall(threadCPU: Bool, _ call: () -> Void) -> Double {
    let now = { benchmarkSeconds(threadCPU: threadCPU) }
    var calls = 1
    let warmStart = now()
    while now() - warmStart < 0.1 { call() }
    while true {
        let t = now()
        for _ in 0..<calls { call() }
        if now() - t >= 0.02 { break }
        calls *= 2
    }
    var samples: [Double] = []
    for _ in 0..<7 {
        let t = now()
        for _ in 0..<calls { call() }
        samples.append((now() - t) / Double(calls))
    }
    samples.sort()
    return samples[samples.count / 2]
}

/// Deterministic uniform(-1, 1) numbers for the benchmark operands.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func nextUniform() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 24) * 2 - 1
    }
}

func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? fill + s : s + fill
}

func format(_ x: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let r = (x * scale).rounded() / scale
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let have = s.distance(from: dot, to: s.endIndex) - 1
        if have < decimals { s += String(repeating: "0", count: decimals - have) }
    }
    return s
}

/// The recurrent loop as a network runs it: T steps, each adding h_{t-1} W_hh^T into that
/// step's slice of a (T, B, G*H) gates buffer precomputed earlier (cold in cache), comparing
/// ways of forming the product. Prints GFLOP/s of the recurrent products per form.
func runRecurrentSequenceBenchmark(threads: Int) {
    print("\nRecurrent sequence (T steps into a cold (T, B, G*H) gates buffer)")
    print(pad("form", 52) + pad("GFLOP/s", 10, left: true) + pad("µs/step", 10, left: true))
    let engine = GemmEngine(threads: threads)
    var generator = SplitMix(seed: 9)
    for (B, H, G, T) in [(64, 256, 4, 50), (64, 512, 4, 50), (32, 64, 1, 10)] {
        let GH = G * H
        let w = (0..<(GH * H)).map { _ in generator.nextUniform() }
        let h = (0..<(B * H)).map { _ in generator.nextUniform() * 0.1 }
        var gates = [Float](repeating: 0.01, count: T * B * GH)
        var temp = [Float](repeating: 0, count: B * GH)
        let packed = PackedMatrix()
        w.withUnsafeBufferPointer { packed.pack(transB: true, k: H, n: GH, b: $0.baseAddress!, ldb: H) }
        // A large buffer written between passes pushes the gates out of the caches.
        var evict = [Float](repeating: 0, count: 8 << 20)
        for form in 0..<3 {
            let seconds: Double = w.withUnsafeBufferPointer { wp in
                h.withUnsafeBufferPointer { hp in
                    gates.withUnsafeMutableBufferPointer { gp in
                        temp.withUnsafeMutableBufferPointer { tp in
                            evict.withUnsafeMutableBufferPointer { ep in
                                var best = Double.infinity
                                for _ in 0..<5 {
                                    for i in stride(from: 0, to: ep.count, by: 16) { ep[i] += 1 }
                                    let t0 = benchmarkSeconds(threadCPU: threads == 1)
                                    for t in 0..<T {
                                        let g = gp.baseAddress! + t * B * GH
                                        switch form {
                                        case 0:
                                            engine.multiply(transA: false, m: B, a: hp.baseAddress!, lda: H, packedB: packed,
                                                            beta: 1, c: g, ldc: GH)
                                        case 1:
                                            engine.multiply(transA: false, m: B, a: hp.baseAddress!, lda: H, packedB: packed,
                                                            beta: 0, c: tp.baseAddress!, ldc: GH)
                                            for i in 0..<(B * GH) { g[i] += tp[i] }
                                        default:
                                            engine.multiply(transA: false, transB: true, m: GH, n: B, k: H,
                                                            a: wp.baseAddress!, lda: H, b: hp.baseAddress!, ldb: H,
                                                            beta: 0, c: tp.baseAddress!, ldc: B)
                                            for r in 0..<B {
                                                for j in 0..<GH { g[r * GH + j] += tp[j * B + r] }
                                            }
                                        }
                                    }
                                    best = min(best, benchmarkSeconds(threadCPU: threads == 1) - t0)
                                }
                                return best / Double(T)
                            }
                        }
                    }
                }
            }
            let names = ["h x packed(W^T), beta 1 into gates", "h x packed(W^T) -> temp, add", "W x h^T -> temp, add transp."]
            let gflops = 2 * Double(B * GH * H) / seconds / 1e9
            print(pad("B=\(B) H=\(H) G=\(G): " + names[form], 52) + pad(format(gflops, 1), 10, left: true)
                  + pad(format(seconds * 1e6, 1), 10, left: true))
        }
    }
}
