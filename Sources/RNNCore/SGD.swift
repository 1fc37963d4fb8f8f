// torch.optim.SGD's update (single-tensor path, dampening 0, maximize off) on the flat
// parameter buffer. The state is one momentum buffer laid out like the parameters; it lives in
// `AdamOptimizer.expAvg` (exp_avg_sq stays zero), so replicas, rollback snapshots and the
// wire carry SGD exactly as they carry Adam. The checkpoint names it momentum_buffer.
//
// Per element, with g the (scaled, clipped) gradient, as PyTorch's CPU kernels compute it
// (add with alpha is one fused multiply-add, mul_ rounds on its own):
//   g = g + weight_decay * p                      (if weight_decay != 0)
//   buf = g on the first step, else buf * momentum + g      (if momentum != 0)
//   g = g + momentum * buf if nesterov, else buf            (if momentum != 0)
//   p = p - lr * g

/// One SGD step's scalars and the element-wise update.
struct SGDStepConstants {
    let negativeLR, weightDecay, momentum: Float
    let useMomentum, nesterov, firstStep: Bool

    /// `step` is the step being taken (1 for the first): the momentum buffer starts as the gradient.
    init(config c: OptimizerConfig, step: Int, lr: Double) {
        negativeLR = -Float(lr)
        weightDecay = c.weightDecay
        momentum = c.momentum
        useMomentum = c.momentum != 0
        nesterov = c.nesterov
        firstStep = step == 1
    }

    /// Reads p, g, buf and writes the updated p and buf to the output pointers (which may be the
    /// inputs). The gradient used is (g * gradientScale) * clipCoefficient. Returns whether
    /// every gradient element and new parameter was finite (as `AdamStepConstants.apply`);
    /// `clearing` (g's own storage, or nil) is set to zero right after each load of g.
    @inline(__always)
    func apply(count: Int, parameters p: UnsafePointer<Float>, gradient g: UnsafePointer<Float>, gradientScale: Float,
               clipCoefficient: Float, momentumBuffer m: UnsafePointer<Float>,
               into np: UnsafeMutablePointer<Float>, _ nm: UnsafeMutablePointer<Float>,
               clearing: UnsafeMutablePointer<Float>? = nil) -> Bool {
        let (negativeLR, weightDecay, momentum) = (negativeLR, weightDecay, momentum)
        let (useMomentum, nesterov, firstStep) = (useMomentum, nesterov, firstStep)
        @inline(__always)
        func update(_ param: SIMD8<Float>, _ grad: SIMD8<Float>, _ buf: SIMD8<Float>) -> (p: SIMD8<Float>, m: SIMD8<Float>) {
            var d = (grad * gradientScale) * clipCoefficient
            if weightDecay != 0 { d = d.addingProduct(weightDecay, param) }
            var b = buf
            if useMomentum {
                b = firstStep ? d : (buf * momentum) + d
                d = nesterov ? d.addingProduct(momentum, b) : b
            }
            return (param.addingProduct(negativeLR, d), b)
        }
        var i = 0
        var nonFinite = SIMD8<Float>()
        while i + 8 <= count {
            let grad = loadLanes(g, i, 8)
            if let clearing { storeLanes(SIMD8(), clearing, i, 8) }
            let r = update(loadLanes(p, i, 8), grad, loadLanes(m, i, 8))
            nonFinite += (grad - grad) + (r.p - r.p)
            storeLanes(r.p, np, i, 8)
            storeLanes(r.m, nm, i, 8)
            i += 8
        }
        if i < count {
            let w = count - i
            let grad = loadLanes(g, i, w)
            if let clearing { storeLanes(SIMD8(), clearing, i, w) }
            let r = update(loadLanes(p, i, w), grad, loadLanes(m, i, w))
            nonFinite += (grad - grad) + (r.p - r.p)
            storeLanes(r.p, np, i, w)
            storeLanes(r.m, nm, i, w)
        }
        return nonFinite.sum() == 0
    }
}
