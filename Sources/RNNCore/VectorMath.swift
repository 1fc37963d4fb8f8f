// Vectorised activations on SIMD8/SIMD16<Float> and on float buffers, in pure Swift.
// The standard library's (and RealModule's) exp/tanh on SIMD vectors run lane by lane;
// these evaluate all lanes at once: exp and sigmoid with a range-reduced exponential, tanh
// as an odd rational function (one division, about a third of the exponential form's cost).
//
// Accuracy, checked by VectorMathTests against Double-precision RealModule on a dense grid
// (step 1e-5) over [-20, 20], every 61st float in [-1, 1], [-87, 0] for sigmoid's tail, and
// the extremes; tanh also on every float in [4, 9.2] (where it approaches 1). "ulp" below is
// relative to the exact value in units of 2^-23 (1.19e-7).
//                bound (asserted)                        measured maximum
//   exp(x)       rel <= 2 ulp for x in [-87.3, 88.7]      rel 0.99 ulp (1.2e-7)
//   sigmoid(x)   abs <= 1.2e-7; rel <= 3 ulp, x >= -87    abs 8.9e-8, rel 1.76 ulp (2.1e-7)
//   tanh(x)      abs <= 3.2e-7; rel <= 2.7 ulp everywhere abs 3.14e-7, rel 2.64 ulp (3.1e-7)
// tanh's maxima are over every float in [0, 9.5] (and so every float, tanh being odd and
// constant beyond), measured once with the kernel compiled as here; the test grids see at
// most that. Its error is float rounding in the evaluation, largest where tanh is near 1.
// exp underflows gradually below -87.3 (0 below -104) and is +inf above 88.72.
// Saturation: sigmoid(x) is exactly 1 for x >= 17, tanh(x) exactly +-1 for |x| >= 8.8;
// sigmoid(-inf) = 0, sigmoid(+inf) = 1, tanh(+-inf) = +-1, tanh(-0) = -0; NaN in, NaN out.
public enum VectorMath {
    // MARK: exp

    /// e^x on eight lanes: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite, two constants),
    /// e^r by a degree-6 polynomial (fitted on that interval, 3.6e-9 relative), 2^n built in
    /// the exponent bits as two factors so that n in [-150, 128] neither overflows early nor
    /// flushes subnormal results.
    /// Maximum error: relative 2 ulp (2.4e-7) for x in [-87.3, 88.7] (measured 1.2e-7);
    /// +inf above 88.72, gradual underflow below -87.3, NaN propagates.
    @inlinable @inline(__always)
    public static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let xc = clampBelow(clampAbove(x, 88.72284), -104)
        var y = expCore(xc)
        y.replace(with: .infinity, where: x .> 88.72283)
        y.replace(with: x, where: x .!= x)
        return y
    }

    /// e^x on sixteen lanes (two SIMD8 halves); same accuracy as the SIMD8 version.
    @inlinable @inline(__always)
    public static func exp(_ x: SIMD16<Float>) -> SIMD16<Float> {
        SIMD16(lowHalf: exp(x.lowHalf), highHalf: exp(x.highHalf))
    }

    /// The range reduction and polynomial shared by `expCore` and `expCoreNormal`:
    /// x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2, and e^r = 1 + r + r^2 q.
    @inlinable @inline(__always)
    static func expReduction(_ x: SIMD8<Float>) -> (r: SIMD8<Float>, q: SIMD8<Float>, n: SIMD8<Int32>) {
        // t = x / ln2 + 1.5 * 2^23 rounds x / ln2 to an integer n held in t's low mantissa bits.
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let t = magic.addingProduct(x, SIMD8(repeating: 1.442_695_04))
        let n = t - magic
        // r = x - n ln2, ln2 split in a part exact in float (ln2Hi * n exact for |n| < 2^9)
        // and the rest.
        var r = x.addingProduct(n, SIMD8(repeating: -0.693_145_752))
        r = r.addingProduct(n, SIMD8(repeating: -1.428_606_82e-6))
        // q = c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4
        var q = SIMD8<Float>(repeating: 0.001_375_140_7)
        q = SIMD8(repeating: 0.008_368_916).addingProduct(q, r)
        q = SIMD8(repeating: 0.041_669_533).addingProduct(q, r)
        q = SIMD8(repeating: 0.166_665_18).addingProduct(q, r)
        q = SIMD8(repeating: 0.499_999_88).addingProduct(q, r)
        return (r, q, unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000)
    }

    /// e^x = p * 2^n (see `expReduction`), p = e^r.
    @inlinable @inline(__always)
    static func expReduced(_ x: SIMD8<Float>) -> (p: SIMD8<Float>, n: SIMD8<Int32>) {
        let (r, q, n) = expReduction(x)
        return ((r + 1).addingProduct(r * r, q), n)
    }

    /// e^x for x already clamped to [-104, 88.72284] (NaN-free input gives finite output).
    @inlinable @inline(__always)
    static func expCore(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let (p, ni) = expReduced(x)
        // 2^n = 2^(n >> 1) * 2^(n - (n >> 1)), each factor a normal float.
        let n1 = ni &>> 1
        let n2 = ni &- n1
        let s1 = unsafeBitCast((n1 &+ 127) &<< 23, to: SIMD8<Float>.self)
        let s2 = unsafeBitCast((n2 &+ 127) &<< 23, to: SIMD8<Float>.self)
        return p * s1 * s2
    }

    /// `expCore` for x in [-86, 0] (NaN-free input), where e^x is a normal float: 2^n is one
    /// normal factor (n >= -125), and p * 2^n is exact either way, so the result is
    /// bit-identical to `expCore(x)` with five fewer vector operations.
    @inlinable @inline(__always)
    static func expCoreNormal(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let (p, ni) = expReduced(x)
        return p * unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
    }

    // MARK: sigmoid

    /// The logistic function 1 / (1 + e^-x) on eight lanes, computed from e = e^-|x| <= 1
    /// (no overflow): 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0.
    /// Maximum error: absolute 1.2e-7 (measured 8.9e-8), relative 3 ulp = 3.6e-7 for x >= -87
    /// (measured 2.1e-7). Exactly 1 for x >= 17, 0 at -inf; NaN propagates.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let ax = clampAbove(abs8(x), 104)
        let e = expCore(-ax)
        let numerator = SIMD8<Float>(repeating: 1).replacing(with: e, where: x .< 0)
        var y = numerator / (1 + e)
        y.replace(with: x, where: x .!= x)
        return y
    }

    /// The logistic function on sixteen lanes.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: SIMD16<Float>) -> SIMD16<Float> {
        SIMD16(lowHalf: sigmoid(x.lowHalf), highHalf: sigmoid(x.highHalf))
    }

    // MARK: tanh

    /// Hyperbolic tangent on eight lanes as an odd rational function:
    /// tanh(x) ~= x P(s) / Q(s), s = x^2, P of degree 6 and Q of degree 3 in s, with x clamped
    /// to +-8.8 first and the result clamped to [-1, 1]. The coefficients are a minimax
    /// fit of the relative error on [0, 9] (scripts/fit_tanh.py: 6.9e-9 before and 1.9e-8 =
    /// 0.16 ulp after rounding them to float), evaluated by Horner with fused multiply-adds;
    /// the float rounding of that evaluation dominates the error. P(0) = Q(0) = 1, so tanh(x)
    /// is exactly x for |x| <= 2^-12 (subnormals included), where tanh(x) rounds to x.
    /// One division, no exponential, no branches.
    /// Maximum error: absolute 3.2e-7, relative 2.7 ulp = 3.2e-7 everywhere, including near 0
    /// and subnormals (measured on every float: 3.14e-7 and 2.64 ulp, at x = 6.08).
    /// Exactly +-1 for |x| >= 8.8, never beyond +-1; odd (so tanh(-0) = -0); NaN propagates
    /// (the clamps are ordered comparisons that leave NaN lanes alone).
    @inlinable @inline(__always)
    public static func tanh(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // At 8.8 the rational form already reaches 1 (scripts/fit_tanh.py); tanh(8.8) = 1 - 9e-8.
        let xc = clampBelow(clampAbove(x, 8.8), -8.8)
        let s = xc * xc
        var p = SIMD8<Float>(repeating: -8.561_814e-14)
        p = SIMD8(repeating: 5.309_358e-11).addingProduct(p, s)
        p = SIMD8(repeating: -2.029_691e-8).addingProduct(p, s)
        p = SIMD8(repeating: 1.117_343_3e-5).addingProduct(p, s)
        p = SIMD8(repeating: 0.003_105_880_2).addingProduct(p, s)
        p = SIMD8(repeating: 0.130_857_65).addingProduct(p, s)
        p = SIMD8(repeating: 1).addingProduct(p, s)
        var q = SIMD8<Float>(repeating: 2.548_888e-4)
        q = SIMD8(repeating: 0.024_502_94).addingProduct(q, s)
        q = SIMD8(repeating: 0.464_190_93).addingProduct(q, s)
        q = SIMD8(repeating: 1).addingProduct(q, s)
        return clampBelow(clampAbove(xc * p / q, 1), -1)
    }

    /// Hyperbolic tangent on sixteen lanes.
    @inlinable @inline(__always)
    public static func tanh(_ x: SIMD16<Float>) -> SIMD16<Float> {
        SIMD16(lowHalf: tanh(x.lowHalf), highHalf: tanh(x.highHalf))
    }

    /// min(x, limit) lane-wise; NaN stays NaN. A masked select that always inlines (the
    /// standard library's generic `pointwiseMin` compiled to an out-of-line call per vector).
    @inlinable @inline(__always)
    static func clampAbove(_ x: SIMD8<Float>, _ limit: Float) -> SIMD8<Float> {
        x.replacing(with: limit, where: x .> limit)
    }

    /// max(x, limit) lane-wise; NaN stays NaN.
    @inlinable @inline(__always)
    static func clampBelow(_ x: SIMD8<Float>, _ limit: Float) -> SIMD8<Float> {
        x.replacing(with: limit, where: x .< limit)
    }

    /// |x| by clearing the sign bit (NaN stays NaN).
    @inlinable @inline(__always)
    static func abs8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self)
    }

    // MARK: scalars (the same approximation, for code paths that handle one value)

    /// `sigmoid` of one value, bit-identical to a lane of the vector version.
    @inlinable
    public static func sigmoid(_ x: Float) -> Float { sigmoid(SIMD8(repeating: x))[0] }

    /// `tanh` of one value, bit-identical to a lane of the vector version.
    @inlinable
    public static func tanh(_ x: Float) -> Float { tanh(SIMD8(repeating: x))[0] }

    /// `exp` of one value, bit-identical to a lane of the vector version.
    @inlinable
    public static func exp(_ x: Float) -> Float { exp(SIMD8(repeating: x))[0] }

    // MARK: buffers

    /// p[i] = sigmoid(p[i]) for i in 0..<count. The tail (count % 8) goes through the same
    /// vector code on a partly filled vector, so every element gets identical results
    /// wherever it sits in the buffer.
    @inlinable
    public static func sigmoid(_ p: UnsafeMutablePointer<Float>, count: Int) {
        apply(p, count: count) { sigmoid($0) }
    }

    /// p[i] = tanh(p[i]) for i in 0..<count (tail as in `sigmoid(_:count:)`).
    @inlinable
    public static func tanh(_ p: UnsafeMutablePointer<Float>, count: Int) {
        apply(p, count: count) { tanh($0) }
    }

    /// p[i] = exp(p[i]) for i in 0..<count (tail as in `sigmoid(_:count:)`).
    @inlinable
    public static func exp(_ p: UnsafeMutablePointer<Float>, count: Int) {
        apply(p, count: count) { exp($0) }
    }

    /// p[i] = max(p[i], 0) for i in 0..<count; NaN stays NaN (as torch.relu).
    @inlinable
    public static func relu(_ p: UnsafeMutablePointer<Float>, count: Int) {
        apply(p, count: count) { x in
            x.replacing(with: 0, where: x .< 0)
        }
    }

    /// Applies a lane-wise function to a buffer, 8 floats at a time plus a scalar tail.
    @inlinable @inline(__always)
    static func apply(_ p: UnsafeMutablePointer<Float>, count: Int, _ f: (SIMD8<Float>) -> SIMD8<Float>) {
        precondition(count >= 0, "VectorMath: negative count \(count)")
        var i = 0
        while i + 8 <= count {
            let raw = UnsafeMutableRawPointer(p + i)
            raw.storeBytes(of: f(raw.loadUnaligned(as: SIMD8<Float>.self)), as: SIMD8<Float>.self)
            i += 8
        }
        if i < count {
            var v = SIMD8<Float>()
            for l in 0..<(count - i) { v[l] = p[i + l] }
            let r = f(v)
            for l in 0..<(count - i) { p[i + l] = r[l] }
        }
    }
}
