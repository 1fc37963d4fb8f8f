// Fused per-step gate kernels of the recurrent cells, forward and backward.
//
// Dimension legend: B batch rows of one time step, H hidden units, G gates
// (RNN 1, LSTM 4 in order i,f,g,o, GRU 3 in order r,z,n). Every buffer of one time step is
// row-major with B rows: gates (B, G*H), states (B, H). The kernels walk each row in chunks
// of 8 lanes; the tail of a row is loaded into a zero-padded vector so that every element
// goes through the same vectorised activation (VectorMath) and results do not depend on H % 8.
// Every kernel works on the hidden units `units` (a sub-range of 0 ..< H: the columns of each
// gate block and of the states) so that the members of a thread team can each take a share;
// every element gets the same operations whatever the range, so a split is bitwise the whole.

@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>, _ i: Int, _ n: Int) -> SIMD8<Float> {
    if n == 8 { return UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self) }
    var v = SIMD8<Float>()
    for k in 0..<n { v[k] = p[i + k] }
    return v
}

@inline(__always)
func loadLanes(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ n: Int) -> SIMD8<Float> {
    loadLanes(UnsafePointer(p), i, n)
}

@inline(__always)
func storeLanes(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ n: Int) {
    if n == 8 {
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD8<Float>.self)
        return
    }
    for k in 0..<n { p[i + k] = v[k] }
}

/// Calls body(j, width) for j = 0, 8, 16, ... over `count` elements: full chunks first (width
/// is the constant 8 there, so the partial-load branches fold away in the hot loop), then one
/// partial chunk for the tail.
///
/// A large body must be a local `@inline(__always) func` rather than a closure literal: LLVM
/// outlines a big closure with a run-time width, and the merged full/partial lane code then
/// runs on 128-bit halves and scalars (LSTM backward: 32 xmm and 24 scalar ops against 8 ymm
/// ops); inlined, the full-chunk loop is pure 256-bit code.
@inline(__always)
func forEachChunk(_ count: Int, _ body: (Int, Int) -> Void) {
    var j = 0
    while j + 8 <= count {
        body(j, 8)
        j += 8
    }
    if j < count { body(j, count - j) }
}

/// forEachChunk over the elements of `range` (chunks start at range.lowerBound).
@inline(__always)
func forEachChunk(in range: Range<Int>, _ body: (Int, Int) -> Void) {
    var j = range.lowerBound
    while j + 8 <= range.upperBound {
        body(j, 8)
        j += 8
    }
    if j < range.upperBound { body(j, range.upperBound - j) }
}

enum CellKernels {
    /// Rows per block of the backward kernels' bias sums (8 rows of one chunk's streams stay in L1).
    static let biasRows = 8

    // MARK: Simple RNN, h = act(pre)

    /// h (B, H) = tanh or relu of pre (B, H) + bias (H): pre holds the two products
    /// x W_ih^T + h W_hh^T, bias = b_ih + b_hh.
    /// (Both RNN kernels use local functions rather than `forEachChunk` closures: LLVM
    /// outlined rnnBackward's closure in some builds, which cost ~2% of a seed-small step.)
    static func rnnForward(
        relu: Bool, pre: UnsafePointer<Float>, bias: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>,
        batch: Int, hidden H: Int, units: Range<Int>
    ) {
        for b in 0..<batch {
            let row = b * H
            @inline(__always) func chunk(_ j: Int, _ w: Int) {
                let x = loadLanes(pre, row + j, w) + loadLanes(bias, j, w)
                let y = relu ? x.replacing(with: 0, where: x .< 0) : VectorMath.tanh(x)
                storeLanes(y, h, row + j, w)
            }
            var j = units.lowerBound
            while j + 8 <= units.upperBound {
                chunk(j, 8)
                j += 8
            }
            if j < units.upperBound { chunk(j, units.upperBound - j) }
        }
    }

    /// dPre (B, H) = (dOut + carry) * act'(h); act' from the output: tanh 1-h^2, relu [h > 0].
    /// dOut: (B, H) gradient from above (head or next layer); carry: (B, H) from step t+1.
    /// dBias (H) += the column sums of dPre (the bias gradient, summed while in registers).
    static func rnnBackward(
        relu: Bool, h: UnsafePointer<Float>, dOut: UnsafePointer<Float>, carry: UnsafePointer<Float>,
        dPre: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>, batch: Int, hidden H: Int, units: Range<Int>
    ) {
        // Rows in blocks with the bias sums in registers, as in lstmBackward.
        var b0 = 0
        while b0 < batch {
            let b1 = min(batch, b0 + biasRows)
            @inline(__always) func chunk(_ j: Int, _ w: Int) {
                var sum = loadLanes(dBias, j, w)
                for b in b0..<b1 {
                    let i = b * H + j
                    let hv = loadLanes(h, i, w)
                    let dh = loadLanes(dOut, i, w) + loadLanes(carry, i, w)
                    let d: SIMD8<Float>
                    if relu {
                        d = SIMD8<Float>(repeating: 0).replacing(with: dh, where: hv .> 0)
                    } else {
                        d = dh * (1 - hv * hv)
                    }
                    storeLanes(d, dPre, i, w)
                    sum = sum + d
                }
                storeLanes(sum, dBias, j, w)
            }
            var j = units.lowerBound
            while j + 8 <= units.upperBound {
                chunk(j, 8)
                j += 8
            }
            if j < units.upperBound { chunk(j, units.upperBound - j) }
            b0 = b1
        }
    }

    // MARK: LSTM, gates i,f,g,o

    /// gates (B, 4H): the products x W_ih^T + h W_hh^T in, activations i,f,g,o of those plus
    /// bias (4H, b_ih + b_hh) out (kept for backward).
    /// c = f*cPrev + i*g, tc = tanh(c), h = o*tc; cPrev, c, tc, h: (B, H).
    static func lstmForward(
        gates: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, cPrev: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
        batch: Int, hidden H: Int, units: Range<Int>
    ) {
        // One activation per pass over the row (the row's 4H gates stay in L1): each pass is
        // a small loop that compiles to plain 256-bit code. All five activations fused in one
        // loop body were split by LLVM into 128-bit halves with spills (3x slower); the bias
        // added inside each activation's pass (local chunk functions) was outlined by LLVM and
        // took 2.8x the instructions of these passes (callgrind, lstm-med at batch 16).
        for b in 0..<batch {
            let g = gates + b * 4 * H
            let row = b * H
            let lo = units.lowerBound, n = units.count
            for gate in 0..<4 {
                forEachChunk(in: (gate * H + lo)..<(gate * H + lo + n)) { j, w in
                    storeLanes(loadLanes(g, j, w) + loadLanes(bias, j, w), g, j, w)
                }
            }
            if n == H {
                VectorMath.sigmoid(g, count: 2 * H)
            } else {
                VectorMath.sigmoid(g + lo, count: n)
                VectorMath.sigmoid(g + H + lo, count: n)
            }
            VectorMath.tanh(g + 2 * H + lo, count: n)
            VectorMath.sigmoid(g + 3 * H + lo, count: n)
            // A local function, not a `forEachChunk` closure: as a closure, tanh was called
            // out of line (0.6 % of an lstm-med step).
            @inline(__always) func chunk(_ j: Int, _ w: Int) {
                let cv = (loadLanes(g, H + j, w) * loadLanes(cPrev, row + j, w))
                    .addingProduct(loadLanes(g, j, w), loadLanes(g, 2 * H + j, w))
                let tc = VectorMath.tanh(cv)
                storeLanes(cv, c, row + j, w)
                storeLanes(tc, tanhC, row + j, w)
                storeLanes(loadLanes(g, 3 * H + j, w) * tc, h, row + j, w)
            }
            var j = units.lowerBound
            while j + 8 <= units.upperBound {
                chunk(j, 8)
                j += 8
            }
            if j < units.upperBound { chunk(j, units.upperBound - j) }
        }
    }

    /// Backward of one LSTM step. dh = dOut + dhCarry; dc = dcCarry + dh*o*(1-tc^2);
    /// dGates (B, 4H) = pre-activation gradients of i,f,g,o; dcCarry becomes dc*f (for t-1).
    /// dBias (4H) += the column sums of dGates (the bias gradient, summed while in registers).
    /// dGates may be `gates` itself: each chunk of the gates is read before it is written.
    static func lstmBackward(
        gates: UnsafePointer<Float>, cPrev: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, dhCarry: UnsafePointer<Float>, dcCarry: UnsafeMutablePointer<Float>,
        dGates: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>, batch: Int, hidden H: Int, units: Range<Int>
    ) {
        // Rows in blocks of `biasRows`, each chunk of columns down the block's rows: the bias sums
        // stay in registers for the block (added in row order, as a per-row update would).
        var b0 = 0
        while b0 < batch {
            let b1 = min(batch, b0 + biasRows)
            @inline(__always) func chunk(_ j: Int, _ w: Int) {
                var s0 = loadLanes(dBias, j, w), s1 = loadLanes(dBias, H + j, w)
                var s2 = loadLanes(dBias, 2 * H + j, w), s3 = loadLanes(dBias, 3 * H + j, w)
                for b in b0..<b1 {
                    let g = gates + b * 4 * H
                    let dg = dGates + b * 4 * H
                    let row = b * H
                    let iv = loadLanes(g, j, w)
                    let fv = loadLanes(g, H + j, w)
                    let gv = loadLanes(g, 2 * H + j, w)
                    let ov = loadLanes(g, 3 * H + j, w)
                    let tc = loadLanes(tanhC, row + j, w)
                    let dh = loadLanes(dOut, row + j, w) + loadLanes(dhCarry, row + j, w)
                    let dc = loadLanes(dcCarry, row + j, w) + dh * ov * (1 - tc * tc)
                    let di = dc * gv * iv * (1 - iv)
                    let df = dc * loadLanes(cPrev, row + j, w) * fv * (1 - fv)
                    let dgg = dc * iv * (1 - gv * gv)
                    let dov = dh * tc * ov * (1 - ov)
                    storeLanes(di, dg, j, w)
                    storeLanes(df, dg, H + j, w)
                    storeLanes(dgg, dg, 2 * H + j, w)
                    storeLanes(dov, dg, 3 * H + j, w)
                    storeLanes(dc * fv, dcCarry, row + j, w)
                    s0 = s0 + di
                    s1 = s1 + df
                    s2 = s2 + dgg
                    s3 = s3 + dov
                }
                storeLanes(s0, dBias, j, w)
                storeLanes(s1, dBias, H + j, w)
                storeLanes(s2, dBias, 2 * H + j, w)
                storeLanes(s3, dBias, 3 * H + j, w)
            }
            var j = units.lowerBound
            while j + 8 <= units.upperBound {
                chunk(j, 8)
                j += 8
            }
            if j < units.upperBound { chunk(j, units.upperBound - j) }
            b0 = b1
        }
    }

    // MARK: GRU, gates r,z,n

    /// gates (B, 3H): input projections x W_ih^T in, activations r,z,n out. bias (3H):
    /// b_ih + b_hh for r and z, b_in for n. hh (B, 3H): h_prev W_hh^T without bias.
    /// gx = gates + bias; r = sig(gx_r + hh_r), z = sig(gx_z + hh_z), hn = hh_n + b_hn,
    /// n = tanh(gx_n + r*hn), h = (1-z)*n + z*hPrev. hn (B, H) is kept for backward.
    static func gruForward(
        gates: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, hh: UnsafePointer<Float>,
        biasHN: UnsafePointer<Float>, hPrev: UnsafePointer<Float>, hn: UnsafeMutablePointer<Float>,
        h: UnsafeMutablePointer<Float>, batch: Int, hidden H: Int, units: Range<Int>
    ) {
        // Two passes over the row (see lstmForward): r and z, then n and h.
        for b in 0..<batch {
            let g = gates + b * 3 * H
            let r3 = hh + b * 3 * H
            let row = b * H
            let lo = units.lowerBound, n = units.count
            for gate in 0..<2 {
                forEachChunk(in: (gate * H + lo)..<(gate * H + lo + n)) { j, w in
                    storeLanes(loadLanes(g, j, w) + loadLanes(r3, j, w) + loadLanes(bias, j, w), g, j, w)
                }
            }
            if n == H {
                VectorMath.sigmoid(g, count: 2 * H)
            } else {
                VectorMath.sigmoid(g + lo, count: n)
                VectorMath.sigmoid(g + H + lo, count: n)
            }
            forEachChunk(in: units) { j, w in
                let hnv = loadLanes(r3, 2 * H + j, w) + loadLanes(biasHN, j, w)
                let gxn = loadLanes(g, 2 * H + j, w) + loadLanes(bias, 2 * H + j, w)
                let nv = VectorMath.tanh(gxn.addingProduct(loadLanes(g, j, w), hnv))
                let zv = loadLanes(g, H + j, w)
                storeLanes(nv, g, 2 * H + j, w)
                storeLanes(hnv, hn, row + j, w)
                storeLanes(nv.addingProduct(zv, loadLanes(hPrev, row + j, w) - nv), h, row + j, w)
            }
        }
    }

    /// Backward of one GRU step. dh = dOut + dhCarry.
    /// dGx (B, 3H) = pre-activation gradients seen by W_ih, b_ih and the input: r, z, n.
    /// dGh (B, 3H) = gradients seen by W_hh, b_hh: r, z, and r*dn for the hn part.
    /// dhCarry becomes dh*z, the direct path to h_{t-1} (the caller adds dGh W_hh).
    /// dBias (4H) += the column sums of dGx (3H, b_ih's gradient) and of dGh's hn part (H,
    /// b_hn's; b_hr and b_hz have b_ir's and b_iz's), summed while in registers.
    /// dGx may be `gates` itself: each chunk of the gates is read before it is written.
    static func gruBackward(
        gates: UnsafePointer<Float>, hn: UnsafePointer<Float>, hPrev: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, dhCarry: UnsafeMutablePointer<Float>,
        dGx: UnsafeMutablePointer<Float>, dGh: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
        batch: Int, hidden H: Int, units: Range<Int>
    ) {
        // Rows in blocks with the bias sums in registers, as in lstmBackward.
        var b0 = 0
        while b0 < batch {
            let b1 = min(batch, b0 + biasRows)
            @inline(__always) func chunk(_ j: Int, _ w: Int) {
                var s0 = loadLanes(dBias, j, w), s1 = loadLanes(dBias, H + j, w)
                var s2 = loadLanes(dBias, 2 * H + j, w), s3 = loadLanes(dBias, 3 * H + j, w)
                for b in b0..<b1 {
                    let g = gates + b * 3 * H
                    let dx = dGx + b * 3 * H
                    let dhh = dGh + b * 3 * H
                    let row = b * H
                    let rv = loadLanes(g, j, w)
                    let zv = loadLanes(g, H + j, w)
                    let nv = loadLanes(g, 2 * H + j, w)
                    let hnv = loadLanes(hn, row + j, w)
                    let hp = loadLanes(hPrev, row + j, w)
                    let dh = loadLanes(dOut, row + j, w) + loadLanes(dhCarry, row + j, w)
                    let dnPre = dh * (1 - zv) * (1 - nv * nv)
                    let dzPre = dh * (hp - nv) * zv * (1 - zv)
                    let drPre = dnPre * hnv * rv * (1 - rv)
                    let dhn = dnPre * rv
                    storeLanes(drPre, dx, j, w)
                    storeLanes(dzPre, dx, H + j, w)
                    storeLanes(dnPre, dx, 2 * H + j, w)
                    storeLanes(drPre, dhh, j, w)
                    storeLanes(dzPre, dhh, H + j, w)
                    storeLanes(dhn, dhh, 2 * H + j, w)
                    storeLanes(dh * zv, dhCarry, row + j, w)
                    s0 = s0 + drPre
                    s1 = s1 + dzPre
                    s2 = s2 + dnPre
                    s3 = s3 + dhn
                }
                storeLanes(s0, dBias, j, w)
                storeLanes(s1, dBias, H + j, w)
                storeLanes(s2, dBias, 2 * H + j, w)
                storeLanes(s3, dBias, 3 * H + j, w)
            }
            var j = units.lowerBound
            while j + 8 <= units.upperBound {
                chunk(j, 8)
                j += 8
            }
            if j < units.upperBound { chunk(j, units.upperBound - j) }
            b0 = b1
        }
    }
}
