// Vectorised activations on SIMD8/SIMD16<Float> and on float buffers, in pure Swift.
// The standard library's (and RealModule's) exp/tanh on SIMD vectors run lane by lane;
// these evaluate all lanes at once with a range-reduced exponential.
//
// Accuracy, checked by VectorMathTests against Double-precision RealModule on a dense grid
// (step 1e-5) over [-20, 20], every 61st float in [-1, 1], [-87, 0] for sigmoid's tail, and
// the extremes. "ulp" below is relative to the exact value in units of 2^-23 (1.19e-7).
//                bound (asserted)                        measured maximum
//   exp(x)       rel <= 2 ulp for x in [-87.3, 88.7]      rel 0.99 ulp (1.2e-7)
//   sigmoid(x)   abs <= 1.2e-7; rel <= 3 ulp, x >= -87    abs 8.9e-8, rel 1.76 ulp (2.1e-7)
//   tanh(x)      abs <= 1.2e-7; rel <= 2 ulp everywhere   abs 8.9e-8, rel 1.46 ulp (1.7e-7)
// exp underflows gradually below -87.3 (0 below -104) and is +inf above 88.72.
// Saturation: sigmoid(x) is exactly 1 for x >= 17, tanh(x) exactly +-1 for |x| >= 9.1;
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

    /// The range reduction and polynomial shared by `expCore`, `expCoreNormal` and `tanh`:
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

    /// Hyperbolic tangent on eight lanes from one range-reduced exponential of z = -2|x|
    /// (`expReduction`: z = n ln2 + r, e^r = 1 + r + r^2 q): for |x| < 0.625,
    /// -m / (2 + m) with m = expm1(z) = 2^n (r + r^2 q) + (2^n - 1), which keeps the relative
    /// accuracy near 0 without a second polynomial; above, (1 - e) / (1 + e) with e = e^z,
    /// whose error is scaled down by e. One division for both; the sign is copied from x.
    /// Maximum error: absolute 1.2e-7 (measured 8.9e-8), relative 2 ulp = 2.4e-7 everywhere,
    /// including near 0 (measured 1.46 ulp). Exactly +-1 for |x| >= 9.1; NaN propagates.
    @inlinable @inline(__always)
    public static func tanh(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // Above 9.1, tanh rounds to 1; clamping keeps 2^n a normal float (n >= -27).
        let z = -2 * clampAbove(abs8(x), 9.1)
        let (r, q, ni) = expReduction(z)
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
        let rr = r * r
        let em1 = r.addingProduct(rr, q)
        let e = (r + 1).addingProduct(rr, q) * scale
        let small = z .> -1.25  // |x| < 0.625
        let m = (scale - 1).addingProduct(scale, em1)
        let numerator = (1 - e).replacing(with: -m, where: small)
        let denominator = (1 + e).replacing(with: 2 + m, where: small)
        let magnitude = abs8(numerator / denominator)
        let signBit = unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x8000_0000
        var y = unsafeBitCast(unsafeBitCast(magnitude, to: SIMD8<UInt32>.self) | signBit, to: SIMD8<Float>.self)
        y.replace(with: x, where: x .!= x)
        return y
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
