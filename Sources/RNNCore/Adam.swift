// Adam / AdamW on the flat parameter buffer, as torch.optim.Adam / torch.optim.AdamW
// (single-tensor path) compute it, with optional clip_grad_norm_ before the update.
import RealModule

/// The state of `torch.optim.Adam(W)` over one flat parameter buffer: exp_avg (m),
/// exp_avg_sq (v) and the step count, laid out like the parameters (one `ParameterTable`).
/// A checkpoint stores and restores exactly these three fields.
public struct AdamOptimizer: Sendable, Equatable {
    public var config: OptimizerConfig
    /// exp_avg (m), same layout as the parameters.
    public var expAvg: [Float]
    /// exp_avg_sq (v), same layout as the parameters.
    public var expAvgSq: [Float]
    /// Completed steps (PyTorch's `state['step']`); 0 before the first step.
    public var stepCount: Int

    /// A fresh optimizer (m = v = 0, step 0) for `parameterCount` parameters.
    public init(config: OptimizerConfig, parameterCount: Int) {
        self.config = config
        self.expAvg = [Float](repeating: 0, count: parameterCount)
        self.expAvgSq = [Float](repeating: 0, count: parameterCount)
        self.stepCount = 0
    }

    /// An optimizer restored from a checkpoint; m and v must have the same length.
    public init(config: OptimizerConfig, expAvg: [Float], expAvgSq: [Float], stepCount: Int) throws(ConfigError) {
        guard expAvg.count == expAvgSq.count else {
            throw ConfigError("exp_avg has \(expAvg.count) values but exp_avg_sq has \(expAvgSq.count)")
        }
        guard stepCount >= 0 else { throw ConfigError("optimizer step must be >= 0, found \(stepCount)") }
        self.config = config
        self.expAvg = expAvg
        self.expAvgSq = expAvgSq
        self.stepCount = stepCount
    }

    /// One optimizer step on the reduced, mean gradient: clips `gradient` in place to
    /// `config.clipNorm` (if set, like `clip_grad_norm_`), then applies Adam or AdamW to
    /// `parameters` and advances m, v and the step count. Allocation-free.
    /// Returns the global L2 norm of the gradient before clipping.
    @discardableResult
    public mutating func step(parameters: inout [Float], gradient: inout [Float]) -> Float {
        precondition(parameters.count == expAvg.count && gradient.count == expAvg.count,
                     "Adam expects \(expAvg.count) parameters and gradients, found \(parameters.count) and \(gradient.count)")
        let norm = gradient.withUnsafeMutableBufferPointer { g in
            clipGradientNorm(g, maxNorm: config.clipNorm)
        }
        stepCount += 1
        let c = config
        let step = Double(stepCount)
        let bias1 = 1 - Double.pow(Double(c.beta1), step)
        let bias2Sqrt = Double.sqrt(1 - Double.pow(Double(c.beta2), step))
        let stepSize = Float(Double(c.lr) / bias1)
        let bias2SqrtF = Float(bias2Sqrt)
        let decoupled = c.kind == .adamw
        let l2 = decoupled ? Float(0) : c.weightDecay
        let shrink: Float = decoupled ? 1 - c.lr * c.weightDecay : 1
        let oneMinusBeta1 = 1 - c.beta1
        let oneMinusBeta2 = 1 - c.beta2
        let beta2 = c.beta2
        let eps = c.eps
        let count = parameters.count
        parameters.withUnsafeMutableBufferPointer { p in
            gradient.withUnsafeBufferPointer { g in
                expAvg.withUnsafeMutableBufferPointer { m in
                    expAvgSq.withUnsafeMutableBufferPointer { v in
                        let p = p.baseAddress!, g = g.baseAddress!, m = m.baseAddress!, v = v.baseAddress!
                        // Branch-free: shrink is 1 for Adam and l2 is 0 for AdamW (exact no-ops).
                        @inline(__always)
                        func update(_ param: SIMD8<Float>, _ grad: SIMD8<Float>, _ m: SIMD8<Float>, _ v: SIMD8<Float>)
                            -> (p: SIMD8<Float>, m: SIMD8<Float>, v: SIMD8<Float>) {
                            let param = param * shrink
                            let grad = grad.addingProduct(l2, param)
                            let mi = m + oneMinusBeta1 * (grad - m)
                            let vi = v * beta2 + oneMinusBeta2 * grad * grad
                            let denom = vectorSquareRoot(vi) / bias2SqrtF + eps
                            return (param - stepSize * (mi / denom), mi, vi)
                        }
                        var i = 0
                        while i + 8 <= count {
                            let r = update(loadLanes(p, i, 8), loadLanes(g, i, 8), loadLanes(m, i, 8), loadLanes(v, i, 8))
                            storeLanes(r.p, p, i, 8)
                            storeLanes(r.m, m, i, 8)
                            storeLanes(r.v, v, i, 8)
                            i += 8
                        }
                        if i < count {
                            let w = count - i
                            let r = update(loadLanes(p, i, w), loadLanes(g, i, w), loadLanes(m, i, w), loadLanes(v, i, w))
                            storeLanes(r.p, p, i, w)
                            storeLanes(r.m, m, i, w)
                            storeLanes(r.v, v, i, w)
                        }
                    }
                }
            }
        }
        return norm
    }
}

/// Square root of eight non-negative lanes, within one ulp of `Float.squareRoot()`: an
/// inverse-square-root estimate from the exponent bits, three Newton steps, then one
/// FMA-corrected step y += r/2 (x - y^2). (On Linux `Float.squareRoot()` keeps a libm errno
/// fallback that stops LLVM from vectorising it; this one runs in vector registers.)
/// sqrt(0) = 0; subnormal inputs give results far below any Adam eps.
@inline(__always)
func vectorSquareRoot(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let bits = unsafeBitCast(x, to: SIMD8<UInt32>.self)
    var r = unsafeBitCast(SIMD8<UInt32>(repeating: 0x5F37_59DF) &- (bits &>> 1), to: SIMD8<Float>.self)
    let half = 0.5 * x
    r = r * (1.5 - half * r * r)
    r = r * (1.5 - half * r * r)
    r = r * (1.5 - half * r * r)
    let y = x * r
    let residual = x.addingProduct(-y, y)
    return y.addingProduct(0.5 * r, residual)
}

/// The global L2 norm of `gradient`; when `maxNorm` is set, scales the gradient in place by
/// min(1, maxNorm / (norm + 1e-6)) exactly like `torch.nn.utils.clip_grad_norm_`.
@discardableResult
public func clipGradientNorm(_ gradient: UnsafeMutableBufferPointer<Float>, maxNorm: Float?) -> Float {
    guard let base = gradient.baseAddress else { return 0 }
    let count = gradient.count
    // Squares summed in float lanes over blocks of 1024 values, blocks summed in double.
    var sum: Double = 0
    var start = 0
    while start < count {
        let end = min(start + 1024, count)
        var lanes = SIMD8<Float>()
        var i = start
        while i + 8 <= end {
            let x = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self)
            lanes.addProduct(x, x)
            i += 8
        }
        var block = Double(lanes.sum())
        while i < end {
            block += Double(base[i]) * Double(base[i])
            i += 1
        }
        sum += block
        start = end
    }
    let norm = Float(sum.squareRoot())
    if let maxNorm {
        let coefficient = min(Float(1), maxNorm / (norm + 1e-6))
        for i in 0..<count { base[i] *= coefficient }
    }
    return norm
}
