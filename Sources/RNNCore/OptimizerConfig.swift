// Optimizer settings, as `torch.optim.Adam` / `torch.optim.AdamW` take them.

public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// `torch.optim.Adam`: weight_decay added to the gradient (L2).
    case adam
    /// `torch.optim.AdamW`: decoupled weight decay, p *= 1 - lr * weight_decay.
    case adamw
}

public struct OptimizerConfig: Codable, Sendable, Equatable {
    public var kind: OptimizerKind
    public var lr: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// Global-norm gradient clipping (`clip_grad_norm_`), applied to the reduced gradient; nil = off.
    public var clipNorm: Float?

    public init(
        kind: OptimizerKind = .adam, lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
        eps: Float = 1e-8, weightDecay: Float? = nil, clipNorm: Float? = nil
    ) {
        self.kind = kind
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        // PyTorch defaults: Adam 0, AdamW 1e-2.
        self.weightDecay = weightDecay ?? (kind == .adamw ? 1e-2 : 0)
        self.clipNorm = clipNorm
    }

    public func validate() throws(ConfigError) {
        if !(lr > 0) || !lr.isFinite { throw ConfigError("learning rate must be a positive number, found \(lr)") }
        if !(beta1 >= 0 && beta1 < 1) { throw ConfigError("beta1 must be in [0, 1), found \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { throw ConfigError("beta2 must be in [0, 1), found \(beta2)") }
        if !(eps > 0) { throw ConfigError("eps must be positive, found \(eps)") }
        if !(weightDecay >= 0) { throw ConfigError("weight decay must be >= 0, found \(weightDecay)") }
        if let c = clipNorm, !(c > 0) { throw ConfigError("clip norm must be positive, found \(c)") }
    }
}
