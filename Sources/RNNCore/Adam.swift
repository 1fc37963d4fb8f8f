// Adam / AdamW on the flat parameter buffer, as torch.optim.Adam / torch.optim.AdamW
// (single-tensor path) compute it, with optional clip_grad_norm_ before the update; SGD
// (SGD.swift) through the same state and entry points when `config.kind == .sgd`.
// Each step may take a learning rate other than `config.lr` (a schedule's, LRSchedule.swift).
import RealModule

/// The state of `torch.optim.Adam(W)` over one flat parameter buffer: exp_avg (m),
/// exp_avg_sq (v) and the step count, laid out like the parameters (one `ParameterTable`).
/// With the parameters these fields make a `TrainingState`, the value WELCOME/STATE carry and
/// a checkpoint stores. For SGD `expAvg` is the momentum buffer and `expAvgSq` stays zero.
public struct AdamOptimizer: Sendable, Equatable {
    public var config: OptimizerConfig
    /// exp_avg (m), same layout as the parameters.
    public var expAvg: [Float]
    /// exp_avg_sq (v), same layout as the parameters.
    public var expAvgSq: [Float]
    /// Completed steps (PyTorch's `state['step']`); 0 before the first step.
    public var stepCount: Int
    /// Whether every element of the last step's gradient and of the parameters it produced was
    /// finite (no NaN or Inf): false means training diverged (the parameters may now hold
    /// non-finite values, e.g. a learning rate whose bias-corrected step overflows). Checked
    /// in registers during the update (two subtractions and additions per 8 lanes), so no
    /// extra pass over the buffers.
    public private(set) var lastStepWasFinite = true

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
    public mutating func step(parameters: inout [Float], gradient: inout [Float], lr: Double? = nil) -> Float {
        precondition(parameters.count == expAvg.count && gradient.count == expAvg.count,
                     "Adam expects \(expAvg.count) parameters and gradients, found \(parameters.count) and \(gradient.count)")
        let norm = gradient.withUnsafeMutableBufferPointer { g in
            clipGradientNorm(g, maxNorm: config.clipNorm)
        }
        stepCount += 1
        let lr = lr ?? Double(config.lr)
        if config.kind == .sgd {
            let c = SGDStepConstants(config: config, step: stepCount, lr: lr)
            lastStepWasFinite = parameters.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    expAvg.withUnsafeMutableBufferPointer { m in
                        c.apply(count: p.count, parameters: UnsafePointer(p.baseAddress!), gradient: g.baseAddress!,
                                gradientScale: 1, clipCoefficient: 1, momentumBuffer: UnsafePointer(m.baseAddress!),
                                into: p.baseAddress!, m.baseAddress!)
                    }
                }
            }
            return norm
        }
        let c = AdamStepConstants(config: config, step: stepCount, lr: lr)
        lastStepWasFinite = parameters.withUnsafeMutableBufferPointer { p in
            gradient.withUnsafeBufferPointer { g in
                expAvg.withUnsafeMutableBufferPointer { m in
                    expAvgSq.withUnsafeMutableBufferPointer { v in
                        c.apply(count: p.count, parameters: UnsafePointer(p.baseAddress!), gradient: g.baseAddress!,
                                expAvg: UnsafePointer(m.baseAddress!), expAvgSq: UnsafePointer(v.baseAddress!),
                                into: p.baseAddress!, m.baseAddress!, v.baseAddress!)
                    }
                }
            }
        }
        return norm
    }

    /// The same step, out of place and on a gradient SUM: the mean gradient is
    /// `gradientSum[i] * scale`, formed in registers (bitwise what scaling the buffer first
    /// gives), then clipped in registers like `clip_grad_norm_` when `config.clipNorm` is set;
    /// `gradientSum` itself is only read. The updated parameters and moments are written into
    /// `previous`'s buffers, which are then swapped in, so that afterwards `parameters`,
    /// `expAvg` and `expAvgSq` hold the new state and `previous` the state before the step
    /// (what a data-parallel replica keeps to undo a step) without copying anything.
    /// Bitwise equal to scaling into a buffer and calling `step(parameters:gradient:)`, with
    /// one pass over the gradient instead of three (scale, norm, update) when nothing is
    /// clipped. Allocation-free once `previous` has the parameter count (it is resized on
    /// first use). Returns the L2 norm of the mean gradient before clipping when clipping
    /// (nil otherwise: it is not computed).
    @discardableResult
    public mutating func step(parameters: inout [Float], gradientSum: UnsafeBufferPointer<Float>, scale: Float,
                              lr: Double? = nil, keepingPreviousIn previous: inout TrainingState) -> Float? {
        precondition(parameters.count == expAvg.count && gradientSum.count == expAvg.count,
                     "Adam expects \(expAvg.count) parameters and gradients, found \(parameters.count) and \(gradientSum.count)")
        return outOfPlaceStep(parameters: &parameters, gradientSum: gradientSum, clearing: nil, scale: scale, lr: lr,
                              keepingPreviousIn: &previous)
    }

    /// The same step, bitwise, that also sets `gradientSum` to zero as it reads it (in the
    /// update's one pass, after the clipping norm if any): the buffer is ready for the next
    /// step's sums without a separate zeroing pass over it (20 MB for a 20,000-word one-hot
    /// W_ih, whose scatter-add touches only the columns seen but whose update is dense).
    @discardableResult
    public mutating func step(parameters: inout [Float], clearingGradientSum gradientSum: UnsafeMutableBufferPointer<Float>,
                              scale: Float, lr: Double? = nil, keepingPreviousIn previous: inout TrainingState) -> Float? {
        precondition(parameters.count == expAvg.count && gradientSum.count == expAvg.count,
                     "Adam expects \(expAvg.count) parameters and gradients, found \(parameters.count) and \(gradientSum.count)")
        return outOfPlaceStep(parameters: &parameters, gradientSum: UnsafeBufferPointer(gradientSum), clearing: gradientSum.baseAddress,
                              scale: scale, lr: lr, keepingPreviousIn: &previous)
    }

    /// The out-of-place step of both entry points above; `clearing` (nil, or gradientSum's
    /// own storage) is zeroed as it is read.
    private mutating func outOfPlaceStep(parameters: inout [Float], gradientSum: UnsafeBufferPointer<Float>,
                                         clearing: UnsafeMutablePointer<Float>?, scale: Float, lr: Double?,
                                         keepingPreviousIn previous: inout TrainingState) -> Float? {
        let count = parameters.count
        if previous.parameters.count != count { previous.parameters = [Float](repeating: 0, count: count) }
        if previous.expAvg.count != count { previous.expAvg = [Float](repeating: 0, count: count) }
        if previous.expAvgSq.count != count { previous.expAvgSq = [Float](repeating: 0, count: count) }
        previous.stepCount = stepCount
        guard let g = gradientSum.baseAddress else { return nil }
        var norm: Float?
        var coefficient: Float = 1
        if let maxNorm = config.clipNorm {
            let n = gradientNorm(g, count: count, scale: scale)
            norm = n
            coefficient = clipCoefficient(norm: n, maxNorm: maxNorm)
        }
        stepCount += 1
        let lr = lr ?? Double(config.lr)
        if config.kind == .sgd {
            let c = SGDStepConstants(config: config, step: stepCount, lr: lr)
            lastStepWasFinite = parameters.withUnsafeBufferPointer { p in
                expAvg.withUnsafeBufferPointer { m in
                    previous.parameters.withUnsafeMutableBufferPointer { np in
                        previous.expAvg.withUnsafeMutableBufferPointer { nm in
                            c.apply(count: count, parameters: p.baseAddress!, gradient: g, gradientScale: scale,
                                    clipCoefficient: coefficient, momentumBuffer: m.baseAddress!,
                                    into: np.baseAddress!, nm.baseAddress!, clearing: clearing)
                        }
                    }
                }
            }
            swap(&parameters, &previous.parameters)
            swap(&expAvg, &previous.expAvg)
            // exp_avg_sq is unused (zero): the previous state's copy is the same.
            return norm
        }
        let c = AdamStepConstants(config: config, step: stepCount, lr: lr)
        lastStepWasFinite = parameters.withUnsafeBufferPointer { p in
            expAvg.withUnsafeBufferPointer { m in
                expAvgSq.withUnsafeBufferPointer { v in
                    previous.parameters.withUnsafeMutableBufferPointer { np in
                        previous.expAvg.withUnsafeMutableBufferPointer { nm in
                            previous.expAvgSq.withUnsafeMutableBufferPointer { nv in
                                c.apply(count: count, parameters: p.baseAddress!, gradient: g, gradientScale: scale,
                                        clipCoefficient: coefficient, expAvg: m.baseAddress!, expAvgSq: v.baseAddress!,
                                        into: np.baseAddress!, nm.baseAddress!, nv.baseAddress!, clearing: clearing)
                            }
                        }
                    }
                }
            }
        }
        swap(&parameters, &previous.parameters)
        swap(&expAvg, &previous.expAvg)
        swap(&expAvgSq, &previous.expAvgSq)
        return norm
    }

}

/// The training state: the parameters with the optimizer's moments and step count. The one
/// type for it everywhere: a replica's state and the state it keeps to undo an update (see
/// `AdamOptimizer.step(parameters:gradient:keepingPreviousIn:)`), the state WELCOME and STATE
/// carry between processes, and what a checkpoint stores beside its optimizer settings.
/// For SGD, `expAvg` holds the momentum buffer and `expAvgSq` stays zero.
public struct TrainingState: Sendable, Equatable {
    public var parameters: [Float]
    /// Adam's m (exp_avg), or SGD's momentum buffer; laid out like `parameters`.
    public var expAvg: [Float]
    /// Adam's v (exp_avg_sq); zero for SGD.
    public var expAvgSq: [Float]
    /// The optimizer's step count (PyTorch's `state['step']`) that goes with these values.
    public var stepCount: Int

    public init(parameters: [Float] = [], expAvg: [Float] = [], expAvgSq: [Float] = [], stepCount: Int = 0) {
        self.parameters = parameters
        self.expAvg = expAvg
        self.expAvgSq = expAvgSq
        self.stepCount = stepCount
    }
}

/// The per-step scalars of one Adam(W) update and the element-wise update itself.
private struct AdamStepConstants {
    let stepSize, bias2Sqrt, l2, shrink, oneMinusBeta1, oneMinusBeta2, beta2, eps: Float

    /// `lr` is this step's learning rate (`Double(c.lr)` without a schedule: bitwise as before).
    init(config c: OptimizerConfig, step stepCount: Int, lr: Double) {
        let step = Double(stepCount)
        let bias1 = 1 - Double.pow(Double(c.beta1), step)
        stepSize = Float(lr / bias1)
        bias2Sqrt = Float(Double.sqrt(1 - Double.pow(Double(c.beta2), step)))
        let decoupled = c.kind == .adamw
        l2 = decoupled ? Float(0) : c.weightDecay
        shrink = decoupled ? 1 - Float(lr) * c.weightDecay : 1
        oneMinusBeta1 = 1 - c.beta1
        oneMinusBeta2 = 1 - c.beta2
        beta2 = c.beta2
        eps = c.eps
    }

    /// Reads p, g, m, v and writes the updated p, m, v to the output pointers (which may be
    /// the inputs: every element is read before it is written). The gradient used is
    /// (g * gradientScale) * clipCoefficient; both factors 1 leave it exactly as stored.
    /// Returns whether every gradient element and every new parameter was finite (x - x is 0
    /// for a finite x, NaN for NaN and Inf; the lanes' sum stays 0 only when all were finite).
    /// `clearing` (g's own storage, or nil) is set to zero right after each load of g.
    @inline(__always)
    func apply(count: Int, parameters p: UnsafePointer<Float>, gradient g: UnsafePointer<Float>, gradientScale: Float = 1,
               clipCoefficient: Float = 1, expAvg m: UnsafePointer<Float>,
               expAvgSq v: UnsafePointer<Float>, into np: UnsafeMutablePointer<Float>, _ nm: UnsafeMutablePointer<Float>,
               _ nv: UnsafeMutablePointer<Float>, clearing: UnsafeMutablePointer<Float>? = nil) -> Bool {
        let (stepSize, bias2SqrtF, l2, shrink) = (stepSize, bias2Sqrt, l2, shrink)
        let (oneMinusBeta1, oneMinusBeta2, beta2, eps) = (oneMinusBeta1, oneMinusBeta2, beta2, eps)
        // Branch-free: shrink is 1 for Adam and l2 is 0 for AdamW (exact no-ops).
        @inline(__always)
        func update(_ param: SIMD8<Float>, _ grad: SIMD8<Float>, _ m: SIMD8<Float>, _ v: SIMD8<Float>)
            -> (p: SIMD8<Float>, m: SIMD8<Float>, v: SIMD8<Float>) {
            let param = param * shrink
            let grad = ((grad * gradientScale) * clipCoefficient).addingProduct(l2, param)
            let mi = m + oneMinusBeta1 * (grad - m)
            let vi = v * beta2 + oneMinusBeta2 * grad * grad
            let denom = vectorSquareRoot(vi) / bias2SqrtF + eps
            return (param - stepSize * (mi / denom), mi, vi)
        }
        var i = 0
        var nonFinite = SIMD8<Float>()
        while i + 8 <= count {
            let grad = loadLanes(g, i, 8)
            if let clearing { storeLanes(SIMD8(), clearing, i, 8) }
            let r = update(loadLanes(p, i, 8), grad, loadLanes(m, i, 8), loadLanes(v, i, 8))
            nonFinite += (grad - grad) + (r.p - r.p)
            storeLanes(r.p, np, i, 8)
            storeLanes(r.m, nm, i, 8)
            storeLanes(r.v, nv, i, 8)
            i += 8
        }
        if i < count {
            let w = count - i
            let grad = loadLanes(g, i, w)
            if let clearing { storeLanes(SIMD8(), clearing, i, w) }
            let r = update(loadLanes(p, i, w), grad, loadLanes(m, i, w), loadLanes(v, i, w))
            nonFinite += (grad - grad) + (r.p - r.p)
            storeLanes(r.p, np, i, w)
            storeLanes(r.m, nm, i, w)
            storeLanes(r.v, nv, i, w)
        }
        return nonFinite.sum() == 0
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
    let norm = gradientNorm(base, count: count, scale: 1)
    if let maxNorm {
        let coefficient = clipCoefficient(norm: norm, maxNorm: maxNorm)
        for i in 0..<count { base[i] *= coefficient }
    }
    return norm
}

/// `clip_grad_norm_`'s factor: min(1, maxNorm / (norm + 1e-6)).
@inline(__always)
func clipCoefficient(norm: Float, maxNorm: Float) -> Float {
    min(Float(1), maxNorm / (norm + 1e-6))
}

/// The L2 norm of `gradient[i] * scale` (scale 1: of the values as stored). Squares are summed
/// in float lanes over blocks of 1024 values, blocks summed in double.
func gradientNorm(_ base: UnsafePointer<Float>, count: Int, scale: Float) -> Float {
    var sum: Double = 0
    var start = 0
    while start < count {
        let end = min(start + 1024, count)
        var lanes = SIMD8<Float>()
        var i = start
        while i + 8 <= end {
            let x = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self) * scale
            lanes.addProduct(x, x)
            i += 8
        }
        var block = Double(lanes.sum())
        while i < end {
            let x = base[i] * scale
            block += Double(x) * Double(x)
            i += 1
        }
        sum += block
        start = end
    }
    return Float(sum.squareRoot())
}
