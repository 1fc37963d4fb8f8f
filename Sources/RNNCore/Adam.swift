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
                        // The update of one group of lanes; SIMD8 for the body, SIMD1-like scalars
                        // (the same IEEE operations, so the same results) for the tail.
                        @inline(__always)
                        func update<V: SIMD>(_ param: V, _ grad: V, _ m: V, _ v: V) -> (p: V, m: V, v: V)
                        where V.Scalar == Float {
                            let param = decoupled ? param * shrink : param
                            let grad = l2 == 0 ? grad : grad + l2 * param
                            let mi = m + oneMinusBeta1 * (grad - m)
                            let vi = v * beta2 + oneMinusBeta2 * grad * grad
                            let denom = vi.squareRoot() / bias2SqrtF + eps
                            return (param - stepSize * (mi / denom), mi, vi)
                        }

                        var i = 0
                        while i + 8 <= count {
                            func load(_ q: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
                                UnsafeRawPointer(q + i).loadUnaligned(as: SIMD8<Float>.self)
                            }
                            let r = update(load(p), UnsafeRawPointer(g + i).loadUnaligned(as: SIMD8<Float>.self), load(m), load(v))
                            UnsafeMutableRawPointer(p + i).storeBytes(of: r.p, as: SIMD8<Float>.self)
                            UnsafeMutableRawPointer(m + i).storeBytes(of: r.m, as: SIMD8<Float>.self)
                            UnsafeMutableRawPointer(v + i).storeBytes(of: r.v, as: SIMD8<Float>.self)
                            i += 8
                        }
                        while i < count {
                            let r = update(SIMD2(repeating: p[i]), SIMD2(repeating: g[i]), SIMD2(repeating: m[i]), SIMD2(repeating: v[i]))
                            p[i] = r.p[0]
                            m[i] = r.m[0]
                            v[i] = r.v[0]
                            i += 1
                        }
                    }
                }
            }
        }
        return norm
    }
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
