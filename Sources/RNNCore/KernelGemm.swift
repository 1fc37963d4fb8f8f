// Packing routines and the register-blocked micro-kernel of the GEMM (see Gemm.swift).
// Packed A panel: `kc` steps of MR = 6 floats (column p of six rows of op(A)), rows past M
// zero. Packed B panel: `kc` steps of NR = 16 floats (row p of 16 columns of op(B)), columns
// past N zero.

/// Packs op(A)[0 ..< mc, 0 ..< kc] into ceil(mc / 6) panels of `kc * 6` floats at `dst`.
/// `a` points at op(A)[0, 0]: A[i, p] = a[i * lda + p], or a[p * lda + i] when transposed.
func gemmPackA(transA: Bool, mc: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, dst: UnsafeMutablePointer<Float>) {
    let mr = GemmBlocking.mr
    var i = 0
    var d = dst
    while i < mc {
        let rows = min(mr, mc - i)
        if transA {
            // op(A) column p of rows i..<i+6 is contiguous in memory.
            var src = a + i
            if rows == mr {
                for _ in 0..<kc {
                    d[0] = src[0]; d[1] = src[1]; d[2] = src[2]
                    d[3] = src[3]; d[4] = src[4]; d[5] = src[5]
                    d += mr
                    src += lda
                }
            } else {
                for _ in 0..<kc {
                    for r in 0..<mr { d[r] = r < rows ? src[r] : 0 }
                    d += mr
                    src += lda
                }
            }
        } else {
            if rows == mr {
                let r0 = a + i * lda, r1 = r0 + lda, r2 = r1 + lda
                let r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda
                var p = 0
                // 8 columns at a time: contiguous vector loads, strided scalar stores.
                while p + 8 <= kc {
                    let v0 = UnsafeRawPointer(r0 + p).loadUnaligned(as: SIMD8<Float>.self)
                    let v1 = UnsafeRawPointer(r1 + p).loadUnaligned(as: SIMD8<Float>.self)
                    let v2 = UnsafeRawPointer(r2 + p).loadUnaligned(as: SIMD8<Float>.self)
                    let v3 = UnsafeRawPointer(r3 + p).loadUnaligned(as: SIMD8<Float>.self)
                    let v4 = UnsafeRawPointer(r4 + p).loadUnaligned(as: SIMD8<Float>.self)
                    let v5 = UnsafeRawPointer(r5 + p).loadUnaligned(as: SIMD8<Float>.self)
                    for q in 0..<8 {
                        d[0] = v0[q]; d[1] = v1[q]; d[2] = v2[q]
                        d[3] = v3[q]; d[4] = v4[q]; d[5] = v5[q]
                        d += mr
                    }
                    p += 8
                }
                while p < kc {
                    d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]
                    d[3] = r3[p]; d[4] = r4[p]; d[5] = r5[p]
                    d += mr
                    p += 1
                }
            } else {
                for p in 0..<kc {
                    for r in 0..<mr { d[r] = r < rows ? a[(i + r) * lda + p] : 0 }
                    d += mr
                }
            }
        }
        i += mr
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
            // Column j+q of op(B) is row j+q of B: read 8 consecutive p of each of the 16
            // rows as vectors, transpose through registers into 8 panel rows.
            let src = b + j * ldb
            var p = 0
            while p + 8 <= kc {
                for q in 0..<nr {
                    let v = UnsafeRawPointer(src + q * ldb + p).loadUnaligned(as: SIMD8<Float>.self)
                    d[q] = v[0]; d[nr + q] = v[1]; d[2 * nr + q] = v[2]; d[3 * nr + q] = v[3]
                    d[4 * nr + q] = v[4]; d[5 * nr + q] = v[5]; d[6 * nr + q] = v[6]; d[7 * nr + q] = v[7]
                }
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

/// One register tile: C[0 ..< rows, 0 ..< cols] = alpha * Apanel * Bpanel + beta * C, with
/// alpha = scale[0], beta = scale[1].
@inline(__always)
func gemmMicroKernel<L: GemmALayout>(
    _ layout: L.Type, rows: Int, cols: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    switch rows {
    case 6: gemmTile(GemmRows6.self, L.self, cols: cols, kc: kc, a: a, lda: lda, b: b, scale: scale, c: c, ldc: ldc)
    case 5: gemmTile(GemmRows5.self, L.self, cols: cols, kc: kc, a: a, lda: lda, b: b, scale: scale, c: c, ldc: ldc)
    case 4: gemmTile(GemmRows4.self, L.self, cols: cols, kc: kc, a: a, lda: lda, b: b, scale: scale, c: c, ldc: ldc)
    case 3: gemmTile(GemmRows3.self, L.self, cols: cols, kc: kc, a: a, lda: lda, b: b, scale: scale, c: c, ldc: ldc)
    case 2: gemmTile(GemmRows2.self, L.self, cols: cols, kc: kc, a: a, lda: lda, b: b, scale: scale, c: c, ldc: ldc)
    default: gemmTile(GemmRows1.self, L.self, cols: cols, kc: kc, a: a, lda: lda, b: b, scale: scale, c: c, ldc: ldc)
    }
}

/// The micro-kernel for a constant number of rows `R` (1...6):
/// R SIMD16 accumulators, one B vector load and R broadcast-FMAs per step of K.
@inline(never)
func gemmTile<Rows: GemmRowCount, L: GemmALayout>(
    _ rows: Rows.Type, _ layout: L.Type, cols: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let nr = GemmBlocking.nr
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
        let b1 = UnsafeRawPointer(bp + nr).loadUnaligned(as: SIMD16<Float>.self)
        c0 = c0.addingProduct(SIMD16(repeating: ap[aStep]), b1)
        if R > 1 { c1 = c1.addingProduct(SIMD16(repeating: ap[aStep + 1 * aRow]), b1) }
        if R > 2 { c2 = c2.addingProduct(SIMD16(repeating: ap[aStep + 2 * aRow]), b1) }
        if R > 3 { c3 = c3.addingProduct(SIMD16(repeating: ap[aStep + 3 * aRow]), b1) }
        if R > 4 { c4 = c4.addingProduct(SIMD16(repeating: ap[aStep + 4 * aRow]), b1) }
        if R > 5 { c5 = c5.addingProduct(SIMD16(repeating: ap[aStep + 5 * aRow]), b1) }
        ap += 2 * aStep
        bp += 2 * nr
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
