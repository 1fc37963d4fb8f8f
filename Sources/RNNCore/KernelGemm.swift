// Packing routines and the register-blocked micro-kernel of the GEMM (see Gemm.swift).
// Packed A panel: `kc` steps of MR = 6 floats (column p of up to six rows of op(A)), slots
// past the panel's rows zero. Packed B panel: `kc` steps of NR = 16 floats (row p of 16
// columns of op(B)), columns past N zero.

/// Packs op(A)[0 ..< mc, 0 ..< kc] into ceil(mc / 6) panels of `kc * 6` floats at `dst`,
/// panel heights as `gemmPanelRows` walks them (6 each, the last 7-9 rows as 4+3, 4+4, 5+4,
/// the last 13 as 5+4+4);
/// a panel of h < 6 rows fills slots h..<6 of each step with zeros.
/// `a` points at op(A)[0, 0]: A[i, p] = a[i * lda + p], or a[p * lda + i] when transposed.
func gemmPackA(transA: Bool, mc: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, dst: UnsafeMutablePointer<Float>) {
    let mr = GemmBlocking.mr
    var i = 0
    var d = dst
    if transA {
        // op(A) column p of rows i..<i+6 is contiguous in memory: whole panels are moved
        // 8 K rows at a time, as vectors (see gemmPackATransposedPanels). GEMM bench (c)
        // dW 2048x128x6400: 76 GFLOP/s with scalar panel-by-panel copies, 96 with this
        // (a variant packing the whole K slice for all M rows at once measured 86-90).
        var fullPanels = 0 // the leading 6-row panels (gemmPanelRows shortens the last ones)
        while gemmPanelRows(mc - fullPanels * mr) == mr { fullPanels += 1 }
        if fullPanels > 0 && kc > 1 {
            gemmPackATransposedPanels(panels: fullPanels, kc: kc, a: a, lda: lda, dst: dst)
        } else if fullPanels > 0 {
            for q in 0..<fullPanels {
                for r in 0..<mr { dst[q * mr + r] = a[q * mr + r] }
            }
        }
        i = fullPanels * mr
        d = dst + fullPanels * kc * mr
    }
    while i < mc {
        let rows = gemmPanelRows(mc - i)
        if transA {
            // The edge panels (rows < 6).
            var src = a + i
            for _ in 0..<kc {
                for r in 0..<mr { d[r] = r < rows ? src[r] : 0 }
                d += mr
                src += lda
            }
        } else {
            switch rows {
            case 6: gemmPackARowsPanel(rows: 6, kc: kc, a: a + i * lda, lda: lda, dst: d)
            case 5: gemmPackARowsPanel(rows: 5, kc: kc, a: a + i * lda, lda: lda, dst: d)
            case 4: gemmPackARowsPanel(rows: 4, kc: kc, a: a + i * lda, lda: lda, dst: d)
            default:
                var t = d
                for p in 0..<kc {
                    for r in 0..<mr { t[r] = r < rows ? a[(i + r) * lda + p] : 0 }
                    t += mr
                }
            }
            d += kc * mr
        }
        i += rows
    }
}

/// One panel of `rows` (4...6, a constant after inlining) rows of a row-major op(A) (row r at
/// a + r * lda): 8 columns at a time as contiguous vector loads and strided scalar stores,
/// slots rows..<6 of each step zero.
@inline(__always)
func gemmPackARowsPanel(rows: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, dst: UnsafeMutablePointer<Float>) {
    let mr = GemmBlocking.mr
    let r0 = a, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda
    // Rows past `rows` are never read (their pointers are only formed).
    let r4 = rows > 4 ? r3 + lda : r3, r5 = rows > 5 ? r4 + lda : r4
    var d = dst
    var p = 0
    while p + 8 <= kc {
        let v0 = UnsafeRawPointer(r0 + p).loadUnaligned(as: SIMD8<Float>.self)
        let v1 = UnsafeRawPointer(r1 + p).loadUnaligned(as: SIMD8<Float>.self)
        let v2 = UnsafeRawPointer(r2 + p).loadUnaligned(as: SIMD8<Float>.self)
        let v3 = UnsafeRawPointer(r3 + p).loadUnaligned(as: SIMD8<Float>.self)
        let v4 = rows > 4 ? UnsafeRawPointer(r4 + p).loadUnaligned(as: SIMD8<Float>.self) : SIMD8()
        let v5 = rows > 5 ? UnsafeRawPointer(r5 + p).loadUnaligned(as: SIMD8<Float>.self) : SIMD8()
        for q in 0..<8 {
            d[0] = v0[q]; d[1] = v1[q]; d[2] = v2[q]
            d[3] = v3[q]; d[4] = v4[q]; d[5] = v5[q]
            d += mr
        }
        p += 8
    }
    while p < kc {
        d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]
        d[3] = r3[p]; d[4] = rows > 4 ? r4[p] : 0; d[5] = rows > 5 ? r5[p] : 0
        d += mr
        p += 1
    }
}

/// The full 6-row panels of a transposed op(A): panel q, step p gets A[p, 6q ..< 6q + 6]
/// (A stored (K, M), row p at a + p * lda). Each 6-float group is moved as one 8-float vector;
/// the 2 extra floats land in the next step's slot, which the next step overwrites. The last
/// step of each panel (whose overflow would reach the next panel) is copied by scalars, so
/// nothing is read past the K rows in memory or written past the panels. Needs kc >= 2.
@inline(never)
func gemmPackATransposedPanels(panels: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, dst: UnsafeMutablePointer<Float>) {
    let mr = GemmBlocking.mr
    let panelSize = kc * mr
    // Blocks of 8 K rows: 8 sequential read streams, and 8 consecutive steps (192 bytes)
    // written to each panel in turn. Within a panel, steps are written in increasing order,
    // so each step's 2 overflow floats are overwritten by the following step.
    var p0 = 0
    while p0 < kc - 1 {
        let rowsHere = min(8, kc - 1 - p0)
        // Reads row[6q ..< 6q + 8]: at worst 2 floats past the row's M values, still inside
        // row p + 1 of the K rows (p < kc - 1).
        var src = UnsafeRawPointer(a + p0 * lda)
        var d = UnsafeMutableRawPointer(dst + p0 * mr)
        for _ in 0..<panels {
            var s = src, t = d
            for _ in 0..<rowsHere {
                t.storeBytes(of: s.loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
                s += lda * MemoryLayout<Float>.stride
                t += mr * MemoryLayout<Float>.stride
            }
            src += mr * MemoryLayout<Float>.stride
            d += panelSize * MemoryLayout<Float>.stride
        }
        p0 += rowsHere
    }
    let src = a + (kc - 1) * lda
    let d = dst + (kc - 1) * mr
    for q in 0..<panels {
        for r in 0..<mr { d[q * panelSize + r] = src[q * mr + r] }
    }
}

/// Packs op(B)[0 ..< kc, 0 ..< nc] into ceil(nc / 16) panels of `kc * 16` floats at `dst`.
/// `b` points at op(B)[0, 0]: B[p, j] = b[p * ldb + j], or b[j * ldb + p] when transposed.
func gemmPackB(transB: Bool, kc: Int, nc: Int, b: UnsafePointer<Float>, ldb: Int, dst: UnsafeMutablePointer<Float>) {
    let nr = GemmBlocking.nr
    var j = 0
    var d = dst
    while j < nc {
        let cols = min(nr, nc - j)
        if !transB {
            var src = b + j
            if cols == nr {
                for _ in 0..<kc {
                    let v = UnsafeRawPointer(src).loadUnaligned(as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(d).storeBytes(of: v, as: SIMD16<Float>.self)
                    d += nr
                    src += ldb
                }
            } else {
                for _ in 0..<kc {
                    for q in 0..<nr { d[q] = q < cols ? src[q] : 0 }
                    d += nr
                    src += ldb
                }
            }
        } else if cols == nr {
            // Column j+q of op(B) is row j+q of B: transpose 8 x 8 blocks through registers
            // (rows j..<j+8 give lanes 0..<8 of eight panel rows, rows j+8..<j+16 lanes 8..<16).
            let src = b + j * ldb
            var p = 0
            while p + 8 <= kc {
                gemmTranspose8x8(src + p, ld: ldb, to: d, ldd: nr)
                gemmTranspose8x8(src + 8 * ldb + p, ld: ldb, to: d + 8, ldd: nr)
                d += 8 * nr
                p += 8
            }
            while p < kc {
                for q in 0..<nr { d[q] = src[q * ldb + p] }
                d += nr
                p += 1
            }
        } else {
            let src = b + j * ldb
            for p in 0..<kc {
                for q in 0..<nr { d[q] = q < cols ? src[q * ldb + p] : 0 }
                d += nr
            }
        }
        j += nr
    }
}

/// How the micro-kernel reads op(A): from a packed MR panel (element (r, p) at a[p * 6 + r])
/// or in place from row-major A (element (r, p) at a[r * lda + p]). A type parameter rather
/// than a runtime flag so each kernel is compiled with constant strides.
protocol GemmALayout { static var packed: Bool { get } }
enum GemmPackedA: GemmALayout { static var packed: Bool { true } }
enum GemmDirectA: GemmALayout { static var packed: Bool { false } }

/// How the micro-kernel reads op(B): from a packed NR panel (row p at b[p * 16]) or in place
/// from row-major B (row p at b[p * ldb], 16 consecutive columns). A type parameter for the
/// same reason as `GemmALayout`: the packed kernels keep their constant stride.
protocol GemmBLayout { static var packed: Bool { get } }
enum GemmPackedB: GemmBLayout { static var packed: Bool { true } }
enum GemmDirectB: GemmBLayout { static var packed: Bool { false } }

/// Rows of a register tile as a type, so that every row count (the full 6 and the 1...5 of
/// edge tiles) gets its own specialised kernel. (With a plain Int argument LLVM merges the
/// six inlined copies back into one loop with run-time row tests.)
protocol GemmRowCount { static var rows: Int { get } }
enum GemmRows1: GemmRowCount { static var rows: Int { 1 } }
enum GemmRows2: GemmRowCount { static var rows: Int { 2 } }
enum GemmRows3: GemmRowCount { static var rows: Int { 3 } }
enum GemmRows4: GemmRowCount { static var rows: Int { 4 } }
enum GemmRows5: GemmRowCount { static var rows: Int { 5 } }
enum GemmRows6: GemmRowCount { static var rows: Int { 6 } }

/// dst[i * ldd + r] = src[r * ld + i] for r, i in 0..<8: three rounds of shuffles, which LLVM
/// lowers to vshufps / vblendps / vinsertf128.
@inline(__always)
func gemmTranspose8x8(_ src: UnsafePointer<Float>, ld: Int, to dst: UnsafeMutablePointer<Float>, ldd: Int) {
    @inline(__always) func row(_ r: Int) -> SIMD8<Float> {
        UnsafeRawPointer(src + r * ld).loadUnaligned(as: SIMD8<Float>.self)
    }
    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3)
    let r4 = row(4), r5 = row(5), r6 = row(6), r7 = row(7)
    // Interleave pairs of rows (within 128-bit halves).
    let t0 = SIMD8(r0[0], r1[0], r0[1], r1[1], r0[4], r1[4], r0[5], r1[5])
    let t1 = SIMD8(r0[2], r1[2], r0[3], r1[3], r0[6], r1[6], r0[7], r1[7])
    let t2 = SIMD8(r2[0], r3[0], r2[1], r3[1], r2[4], r3[4], r2[5], r3[5])
    let t3 = SIMD8(r2[2], r3[2], r2[3], r3[3], r2[6], r3[6], r2[7], r3[7])
    let t4 = SIMD8(r4[0], r5[0], r4[1], r5[1], r4[4], r5[4], r4[5], r5[5])
    let t5 = SIMD8(r4[2], r5[2], r4[3], r5[3], r4[6], r5[6], r4[7], r5[7])
    let t6 = SIMD8(r6[0], r7[0], r6[1], r7[1], r6[4], r7[4], r6[5], r7[5])
    let t7 = SIMD8(r6[2], r7[2], r6[3], r7[3], r6[6], r7[6], r6[7], r7[7])
    // Interleave pairs of pairs.
    let u0 = SIMD8(t0[0], t0[1], t2[0], t2[1], t0[4], t0[5], t2[4], t2[5])
    let u1 = SIMD8(t0[2], t0[3], t2[2], t2[3], t0[6], t0[7], t2[6], t2[7])
    let u2 = SIMD8(t1[0], t1[1], t3[0], t3[1], t1[4], t1[5], t3[4], t3[5])
    let u3 = SIMD8(t1[2], t1[3], t3[2], t3[3], t1[6], t1[7], t3[6], t3[7])
    let u4 = SIMD8(t4[0], t4[1], t6[0], t6[1], t4[4], t4[5], t6[4], t6[5])
    let u5 = SIMD8(t4[2], t4[3], t6[2], t6[3], t4[6], t4[7], t6[6], t6[7])
    let u6 = SIMD8(t5[0], t5[1], t7[0], t7[1], t5[4], t5[5], t7[4], t7[5])
    let u7 = SIMD8(t5[2], t5[3], t7[2], t7[3], t5[6], t5[7], t7[6], t7[7])
    // Swap 128-bit halves between rows 0-3 and 4-7.
    @inline(__always) func put(_ i: Int, _ v: SIMD8<Float>) {
        UnsafeMutableRawPointer(dst + i * ldd).storeBytes(of: v, as: SIMD8<Float>.self)
    }
    put(0, SIMD8(lowHalf: u0.lowHalf, highHalf: u4.lowHalf))
    put(1, SIMD8(lowHalf: u1.lowHalf, highHalf: u5.lowHalf))
    put(2, SIMD8(lowHalf: u2.lowHalf, highHalf: u6.lowHalf))
    put(3, SIMD8(lowHalf: u3.lowHalf, highHalf: u7.lowHalf))
    put(4, SIMD8(lowHalf: u0.highHalf, highHalf: u4.highHalf))
    put(5, SIMD8(lowHalf: u1.highHalf, highHalf: u5.highHalf))
    put(6, SIMD8(lowHalf: u2.highHalf, highHalf: u6.highHalf))
    put(7, SIMD8(lowHalf: u3.highHalf, highHalf: u7.highHalf))
}

/// One register tile: C[0 ..< rows, 0 ..< cols] = alpha * Apanel * Bpanel + beta * C, with
/// alpha = scale[0], beta = scale[1]. `ldb` is read only for in-place B (`GemmDirectB`).
@inline(__always)
func gemmMicroKernel<L: GemmALayout, BL: GemmBLayout>(
    _ layout: L.Type, _ bLayout: BL.Type, rows: Int, cols: Int, kc: Int, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, scale: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    switch rows {
    case 6: gemmTile(GemmRows6.self, L.self, BL.self, cols: cols, kc: kc, a: a, lda: lda, b: b, ldb: ldb, scale: scale, c: c, ldc: ldc)
    case 5: gemmTile(GemmRows5.self, L.self, BL.self, cols: cols, kc: kc, a: a, lda: lda, b: b, ldb: ldb, scale: scale, c: c, ldc: ldc)
    case 4: gemmTile(GemmRows4.self, L.self, BL.self, cols: cols, kc: kc, a: a, lda: lda, b: b, ldb: ldb, scale: scale, c: c, ldc: ldc)
    case 3: gemmTile(GemmRows3.self, L.self, BL.self, cols: cols, kc: kc, a: a, lda: lda, b: b, ldb: ldb, scale: scale, c: c, ldc: ldc)
    case 2: gemmTile(GemmRows2.self, L.self, BL.self, cols: cols, kc: kc, a: a, lda: lda, b: b, ldb: ldb, scale: scale, c: c, ldc: ldc)
    default: gemmTile(GemmRows1.self, L.self, BL.self, cols: cols, kc: kc, a: a, lda: lda, b: b, ldb: ldb, scale: scale, c: c, ldc: ldc)
    }
}

/// The micro-kernel for a constant number of rows `R` (1...6):
/// R SIMD16 accumulators, one B vector load and R broadcast-FMAs per step of K.
@inline(never)
func gemmTile<Rows: GemmRowCount, L: GemmALayout, BL: GemmBLayout>(
    _ rows: Rows.Type, _ layout: L.Type, _ bLayout: BL.Type, cols: Int, kc: Int, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, scale: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let nr = GemmBlocking.nr
    let bRow = BL.packed ? nr : ldb
    let R = Rows.rows
    let aRow = L.packed ? 1 : lda
    let aStep = L.packed ? GemmBlocking.mr : 1
    var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>()
    var c3 = SIMD16<Float>(), c4 = SIMD16<Float>(), c5 = SIMD16<Float>()
    var ap = a
    var bp = b
    var p = 0
    // Unrolled by 2 so the loop overhead hides behind 2 * R FMAs.
    while p + 2 <= kc {
        let b0 = UnsafeRawPointer(bp).loadUnaligned(as: SIMD16<Float>.self)
        c0 = c0.addingProduct(SIMD16(repeating: ap[0]), b0)
        if R > 1 { c1 = c1.addingProduct(SIMD16(repeating: ap[1 * aRow]), b0) }
        if R > 2 { c2 = c2.addingProduct(SIMD16(repeating: ap[2 * aRow]), b0) }
        if R > 3 { c3 = c3.addingProduct(SIMD16(repeating: ap[3 * aRow]), b0) }
        if R > 4 { c4 = c4.addingProduct(SIMD16(repeating: ap[4 * aRow]), b0) }
        if R > 5 { c5 = c5.addingProduct(SIMD16(repeating: ap[5 * aRow]), b0) }
        let b1 = UnsafeRawPointer(bp + bRow).loadUnaligned(as: SIMD16<Float>.self)
        c0 = c0.addingProduct(SIMD16(repeating: ap[aStep]), b1)
        if R > 1 { c1 = c1.addingProduct(SIMD16(repeating: ap[aStep + 1 * aRow]), b1) }
        if R > 2 { c2 = c2.addingProduct(SIMD16(repeating: ap[aStep + 2 * aRow]), b1) }
        if R > 3 { c3 = c3.addingProduct(SIMD16(repeating: ap[aStep + 3 * aRow]), b1) }
        if R > 4 { c4 = c4.addingProduct(SIMD16(repeating: ap[aStep + 4 * aRow]), b1) }
        if R > 5 { c5 = c5.addingProduct(SIMD16(repeating: ap[aStep + 5 * aRow]), b1) }
        ap += 2 * aStep
        bp += 2 * bRow
        p += 2
    }
    if p < kc {
        let b0 = UnsafeRawPointer(bp).loadUnaligned(as: SIMD16<Float>.self)
        c0 = c0.addingProduct(SIMD16(repeating: ap[0]), b0)
        if R > 1 { c1 = c1.addingProduct(SIMD16(repeating: ap[1 * aRow]), b0) }
        if R > 2 { c2 = c2.addingProduct(SIMD16(repeating: ap[2 * aRow]), b0) }
        if R > 3 { c3 = c3.addingProduct(SIMD16(repeating: ap[3 * aRow]), b0) }
        if R > 4 { c4 = c4.addingProduct(SIMD16(repeating: ap[4 * aRow]), b0) }
        if R > 5 { c5 = c5.addingProduct(SIMD16(repeating: ap[5 * aRow]), b0) }
    }
    // alpha and beta arrive through memory and are read only now: as register arguments
    // they stayed live across the loop and pushed an accumulator out to the stack.
    let alpha = scale[0], beta = scale[1]
    if cols == nr {
        gemmStoreRow(c0, c, alpha: alpha, beta: beta)
        if R > 1 { gemmStoreRow(c1, c + ldc, alpha: alpha, beta: beta) }
        if R > 2 { gemmStoreRow(c2, c + 2 * ldc, alpha: alpha, beta: beta) }
        if R > 3 { gemmStoreRow(c3, c + 3 * ldc, alpha: alpha, beta: beta) }
        if R > 4 { gemmStoreRow(c4, c + 4 * ldc, alpha: alpha, beta: beta) }
        if R > 5 { gemmStoreRow(c5, c + 5 * ldc, alpha: alpha, beta: beta) }
    } else {
        gemmStorePartialRow(c0, c, cols: cols, alpha: alpha, beta: beta)
        if R > 1 { gemmStorePartialRow(c1, c + ldc, cols: cols, alpha: alpha, beta: beta) }
        if R > 2 { gemmStorePartialRow(c2, c + 2 * ldc, cols: cols, alpha: alpha, beta: beta) }
        if R > 3 { gemmStorePartialRow(c3, c + 3 * ldc, cols: cols, alpha: alpha, beta: beta) }
        if R > 4 { gemmStorePartialRow(c4, c + 4 * ldc, cols: cols, alpha: alpha, beta: beta) }
        if R > 5 { gemmStorePartialRow(c5, c + 5 * ldc, cols: cols, alpha: alpha, beta: beta) }
    }
}

/// c[0 ..< 16] = alpha * v + beta * c (beta == 0: old c not read).
@inline(__always)
func gemmStoreRow(_ v: SIMD16<Float>, _ c: UnsafeMutablePointer<Float>, alpha: Float, beta: Float) {
    var r = alpha == 1 ? v : v * alpha
    if beta != 0 {
        let old = UnsafeRawPointer(c).loadUnaligned(as: SIMD16<Float>.self)
        r = beta == 1 ? r + old : r.addingProduct(beta, old)
    }
    UnsafeMutableRawPointer(c).storeBytes(of: r, as: SIMD16<Float>.self)
}

/// Like `gemmStoreRow` for the first `cols` (< 16) lanes only.
@inline(never)
func gemmStorePartialRow(_ v: SIMD16<Float>, _ c: UnsafeMutablePointer<Float>, cols: Int, alpha: Float, beta: Float) {
    for j in 0..<cols {
        let r = alpha * v[j]
        c[j] = beta == 0 ? r : (beta == 1 ? r + c[j] : r + beta * c[j])
    }
}
