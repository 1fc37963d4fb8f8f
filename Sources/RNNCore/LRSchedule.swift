// Learning-rate schedules with torch.optim.lr_scheduler's values, as one value type whose
// state a checkpoint stores and restores (so a resumed run continues bitwise).
//
// Units: `s` counts optimizer steps taken (0 before the first), `e` epochs ended.
// The lr of the next optimizer step is `lr`; after each optimizer step call `stepTaken()`,
// after each epoch `epochEnded(validationLoss:)`. PyTorch's values are recursive products
// in double precision (its "chainable" form); we run the same recursions in Double, so the
// sequences agree to the last bit or within a few ulps (test: LRScheduleTests against
// fixtures from scripts/make_schedule_fixtures.py).
//
//   constant  lr = base
//   step      StepLR(step_size, gamma), stepped per epoch: lr *= gamma every step_size epochs
//   cosine    CosineAnnealingLR(T_max = total steps - warmup, eta_min = lr_min), per step
//   plateau   ReduceLROnPlateau(mode min, factor gamma, patience, threshold 1e-4 rel,
//             min_lr = lr_min, eps 1e-8), stepped per epoch on the validation loss
//   warmup N  LinearLR(start_factor = warmupStartFactor, end_factor 1, total_iters N) for the
//             first N optimizer steps, then the schedule above. For cosine that is exactly
//             SequentialLR([LinearLR, CosineAnnealingLR], milestones [N]) stepped per step;
//             the per-epoch schedules (step, plateau) keep counting epochs from the run's
//             start, and their value applies once the warmup is over.
import RealModule

public enum LRScheduleKind: String, Codable, Sendable, CaseIterable {
    case constant, step, cosine, plateau
}

/// The schedule's settings (flags `--lr-schedule`, `--lr-step-size`, `--lr-gamma`, `--lr-min`,
/// `--lr-patience`, `--warmup-steps`).
public struct LRScheduleConfig: Codable, Sendable, Equatable {
    public var kind: LRScheduleKind
    /// StepLR's step_size in epochs.
    public var stepSize: Int
    /// StepLR's gamma and ReduceLROnPlateau's factor.
    public var gamma: Double
    /// CosineAnnealingLR's eta_min and ReduceLROnPlateau's min_lr.
    public var minLR: Double
    /// ReduceLROnPlateau's patience in epochs.
    public var patience: Int
    /// Linear warmup over this many optimizer steps (0: none).
    public var warmupSteps: Int

    /// LinearLR's start_factor for the warmup: PyTorch requires it > 0, so "from 0" is this
    /// small factor (the first step's lr is 1e-8 of the base).
    public static let warmupStartFactor = 1e-8
    /// ReduceLROnPlateau's defaults that have no flag.
    public static let plateauThreshold = 1e-4
    public static let plateauEps = 1e-8

    public init(kind: LRScheduleKind = .constant, stepSize: Int = 10, gamma: Double = 0.1, minLR: Double = 0,
                patience: Int = 10, warmupSteps: Int = 0) {
        self.kind = kind
        self.stepSize = stepSize
        self.gamma = gamma
        self.minLR = minLR
        self.patience = patience
        self.warmupSteps = warmupSteps
    }

    /// Whether the lr ever differs from the base.
    public var isConstant: Bool { kind == .constant && warmupSteps == 0 }

    public func validate() throws(ConfigError) {
        if stepSize < 1 { throw ConfigError("--lr-step-size must be at least 1, found \(stepSize)") }
        if !(gamma > 0 && gamma < 1) && kind == .plateau {
            throw ConfigError("--lr-gamma must be in (0, 1) for plateau, found \(gamma)")
        }
        if !(gamma > 0) || !gamma.isFinite { throw ConfigError("--lr-gamma must be a positive number, found \(gamma)") }
        if !(minLR >= 0) || !minLR.isFinite { throw ConfigError("--lr-min must be 0 or more, found \(minLR)") }
        if patience < 0 { throw ConfigError("--lr-patience must be 0 or more, found \(patience)") }
        if warmupSteps < 0 { throw ConfigError("--warmup-steps must be 0 or more, found \(warmupSteps)") }
    }
}

/// A running schedule: the lr of the next optimizer step and everything needed to continue.
public struct LRScheduler: Codable, Sendable, Equatable {
    public var config: LRScheduleConfig
    /// The optimizer's lr (the schedules' base_lr).
    public var baseLR: Double
    /// Optimizer steps of the whole run (for cosine's T_max).
    public var totalSteps: Int
    /// Optimizer steps taken so far.
    public private(set) var stepsTaken = 0
    /// Epochs ended so far.
    public private(set) var epochsEnded = 0
    /// The warmup's group lr (LinearLR's recursion).
    public private(set) var warmupLR: Double
    /// The main schedule's group lr (its own recursion).
    public private(set) var mainLR: Double
    /// ReduceLROnPlateau: best validation loss so far (nil before the first) and bad epochs.
    public private(set) var plateauBest: Double?
    public private(set) var plateauBadEpochs = 0

    public init(config: LRScheduleConfig, baseLR: Double, totalSteps: Int) {
        self.config = config
        self.baseLR = baseLR
        self.totalSteps = totalSteps
        warmupLR = baseLR * LRScheduleConfig.warmupStartFactor
        mainLR = baseLR
    }

    /// The lr of the next optimizer step.
    public var lr: Double {
        stepsTaken < config.warmupSteps ? warmupLR : mainLR
    }

    /// The lr of the optimizer step `ahead` steps after the next one, with no epoch ending in
    /// between (what the coordinator sends with steps it assigns before the earlier ones finish).
    public func lr(ahead: Int) -> Double {
        var copy = self
        for _ in 0..<ahead { copy.stepTaken() }
        return copy.lr
    }

    /// CosineAnnealingLR's T_max: the steps after the warmup (at least 1).
    var cosinePeriod: Int { max(1, totalSteps - config.warmupSteps) }

    /// One optimizer step was taken.
    public mutating func stepTaken() {
        stepsTaken += 1
        let n = config.warmupSteps
        if stepsTaken <= n {
            // LinearLR.get_lr at last_epoch = stepsTaken (chainable form).
            let start = LRScheduleConfig.warmupStartFactor, end = 1.0
            warmupLR *= 1 + (end - start) / (Double(n) * start + Double(stepsTaken - 1) * (end - start))
        }
        guard config.kind == .cosine else { return }
        let epoch = stepsTaken - n  // the cosine's last_epoch
        if epoch < 0 { return }
        let tMax = Double(cosinePeriod), eta = config.minLR
        if epoch == 0 {
            // SequentialLR at the milestone calls step(0): the closed form at 0. Without a
            // warmup this is the constructor's value, base_lr itself.
            if n > 0 { mainLR = eta + (baseLR - eta) * (1 + Double.cos(0)) / 2 }
        } else if (epoch - 1 - cosinePeriod) % (2 * cosinePeriod) == 0 {
            mainLR += (baseLR - eta) * (1 - Double.cos(Double.pi / tMax)) / 2
        } else {
            mainLR = (1 + Double.cos(Double.pi * Double(epoch) / tMax)) / (1 + Double.cos(Double.pi * Double(epoch - 1) / tMax))
                * (mainLR - eta) + eta
        }
    }

    /// One epoch ended; plateau needs its validation loss (nil: no validation, no change).
    public mutating func epochEnded(validationLoss: Double?) {
        epochsEnded += 1
        switch config.kind {
        case .step:
            if epochsEnded % config.stepSize == 0 { mainLR *= config.gamma }
        case .plateau:
            guard let loss = validationLoss else { return }
            // best starts at +inf (a NaN loss is never better).
            if loss < (plateauBest ?? .infinity) * (1 - LRScheduleConfig.plateauThreshold) {
                plateauBest = loss
                plateauBadEpochs = 0
            } else {
                plateauBadEpochs += 1
            }
            if plateauBadEpochs > config.patience {
                let reduced = max(mainLR * config.gamma, config.minLR)
                if mainLR - reduced > LRScheduleConfig.plateauEps { mainLR = reduced }
                plateauBadEpochs = 0
            }
        case .constant, .cosine:
            break
        }
    }
}
