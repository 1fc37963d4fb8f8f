// Optimizer settings, as `torch.optim.Adam` / `torch.optim.AdamW` / `torch.optim.SGD` take them.

public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// `torch.optim.Adam`: weight_decay added to the gradient (L2).
    case adam
    /// `torch.optim.AdamW`: decoupled weight decay, p *= 1 - lr * weight_decay.
    case adamw
    /// `torch.optim.SGD`: momentum (dampening 0), optional Nesterov, weight_decay as L2.
    case sgd
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
    /// SGD's momentum (0: none) and Nesterov flag; unused by Adam(W).
    public var momentum: Float
    public var nesterov: Bool

    public init(
        kind: OptimizerKind = .adam, lr: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
        eps: Float = 1e-8, weightDecay: Float? = nil, clipNorm: Float? = nil, momentum: Float = 0, nesterov: Bool = false
    ) {
        self.kind = kind
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        // PyTorch defaults: Adam 0, AdamW 1e-2.
        self.weightDecay = weightDecay ?? (kind == .adamw ? 1e-2 : 0)
        self.clipNorm = clipNorm
        self.momentum = momentum
        self.nesterov = nesterov
    }

    private enum CodingKeys: String, CodingKey {
        case kind, lr, beta1, beta2, eps, weightDecay, clipNorm, momentum, nesterov
    }

    /// Configs written before SGD existed have no momentum or nesterov: 0 and false.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(OptimizerKind.self, forKey: .kind)
        lr = try c.decode(Float.self, forKey: .lr)
        beta1 = try c.decode(Float.self, forKey: .beta1)
        beta2 = try c.decode(Float.self, forKey: .beta2)
        eps = try c.decode(Float.self, forKey: .eps)
        weightDecay = try c.decode(Float.self, forKey: .weightDecay)
        clipNorm = try c.decodeIfPresent(Float.self, forKey: .clipNorm)
        momentum = try c.decodeIfPresent(Float.self, forKey: .momentum) ?? 0
        nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? false
    }

    public func validate() throws(ConfigError) {
        if !(lr > 0) || !lr.isFinite { throw ConfigError("learning rate must be a positive number, found \(lr)") }
        if !(beta1 >= 0 && beta1 < 1) { throw ConfigError("beta1 must be in [0, 1), found \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { throw ConfigError("beta2 must be in [0, 1), found \(beta2)") }
        if !(eps > 0) { throw ConfigError("eps must be positive, found \(eps)") }
        if !(weightDecay >= 0) { throw ConfigError("weight decay must be >= 0, found \(weightDecay)") }
        if let c = clipNorm, !(c > 0) { throw ConfigError("clip norm must be positive, found \(c)") }
        if !(momentum >= 0 && momentum < 1) { throw ConfigError("--momentum must be in [0, 1), found \(momentum)") }
        if kind != .sgd && (momentum != 0 || nesterov) {
            throw ConfigError("--momentum and --nesterov belong to --optimizer sgd, found --optimizer \(kind.rawValue)")
        }
        if nesterov && momentum == 0 { throw ConfigError("--nesterov needs a --momentum above 0 (as torch.optim.SGD)") }
    }
}
