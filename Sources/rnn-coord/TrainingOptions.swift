// `rnn-coord start`'s learning-rate schedule and SGD flags (one option group, so Start.swift
// only pulls it in): torch.optim.lr_scheduler's StepLR, CosineAnnealingLR, ReduceLROnPlateau,
// LinearLR warmup, and torch.optim.SGD's momentum and Nesterov.
import ArgumentParser
import RNNCore
import RNNDistributed
import RNNReport

extension LRScheduleKind: ExpressibleByArgument {}

struct ScheduleOptions: ParsableArguments {
    @Option(name: .customLong("lr-schedule"), help: "Learning-rate schedule: constant, step (StepLR, per epoch), cosine (CosineAnnealingLR over the run's steps), plateau (ReduceLROnPlateau on the validation loss, per epoch).")
    var lrSchedule: LRScheduleKind = .constant
    @Option(name: .customLong("lr-step-size"), parsing: .unconditional, help: "step: multiply the lr by --lr-gamma every N epochs.")
    var lrStepSize = 10
    @Option(name: .customLong("lr-gamma"), parsing: .unconditional, help: "step: the factor every --lr-step-size epochs; plateau: the factor on a plateau.")
    var lrGamma: Double = 0.1
    @Option(name: .customLong("lr-min"), parsing: .unconditional, help: "cosine: the final lr (eta_min); plateau: the lowest lr (min_lr).")
    var lrMin: Double = 0
    @Option(name: .customLong("lr-patience"), parsing: .unconditional, help: "plateau: epochs without improvement of the validation loss before the lr drops.")
    var lrPatience = 10
    @Option(name: .customLong("warmup-steps"), parsing: .unconditional, help: "Raise the lr linearly from 0 over the first N optimizer steps (LinearLR), then follow the schedule.")
    var warmupSteps = 0
    @Option(parsing: .unconditional, help: "SGD momentum (--optimizer sgd; 0: none).")
    var momentum: Float = 0
    @Flag(help: "SGD with Nesterov momentum (needs --momentum).")
    var nesterov = false
    @Option(parsing: .unconditional, help: "Gradient accumulation: each optimizer step consumes N consecutive global batches (computed one batch at a time, one all-reduce per step), equal to one step over N x --batch-size samples.")
    var accumulate = 1

    func validate() throws {
        if lrStepSize < 1 { throw ValidationError("Please specify '--lr-step-size' of at least 1 epoch, found \(lrStepSize).") }
        if !(lrGamma > 0) || !lrGamma.isFinite { throw ValidationError("Please specify a positive '--lr-gamma', found \(lrGamma).") }
        if lrSchedule == .plateau && !(lrGamma < 1) {
            throw ValidationError("Please specify '--lr-gamma' below 1 with '--lr-schedule plateau' (it lowers the lr), found \(lrGamma).")
        }
        if !(lrMin >= 0) || !lrMin.isFinite { throw ValidationError("Please specify '--lr-min' of 0 or more, found \(lrMin).") }
        if lrPatience < 0 { throw ValidationError("Please specify '--lr-patience' of 0 or more epochs, found \(lrPatience).") }
        if warmupSteps < 0 { throw ValidationError("Please specify '--warmup-steps' of 0 or more, found \(warmupSteps).") }
        if !(momentum >= 0 && momentum < 1) { throw ValidationError("Please specify '--momentum' in [0, 1), found \(momentum).") }
        if nesterov && momentum == 0 { throw ValidationError("Please specify a '--momentum' above 0 with '--nesterov'.") }
        if accumulate < 1 { throw ValidationError("Please specify '--accumulate' of at least 1 batch, found \(accumulate).") }
    }

    /// The schedule and --accumulate into the run's config.
    func apply(to config: inout TrainingConfig) {
        config.schedule = schedule
        config.accumulate = accumulate > 1 ? accumulate : nil
    }

    /// The schedule's config (nil: constant lr without warmup).
    var schedule: LRScheduleConfig? {
        let c = LRScheduleConfig(kind: lrSchedule, stepSize: lrStepSize, gamma: lrGamma, minLR: lrMin, patience: lrPatience,
                                 warmupSteps: warmupSteps)
        return c.isConstant ? nil : c
    }

    /// These flags' effective values, in config-file keys.
    var effectiveConfig: [(String, ConfigValue?)] {
        func s<T>(_ v: T) -> ConfigValue? { .scalar("\(v)") }
        return [("lr-schedule", s(lrSchedule.rawValue)), ("lr-step-size", s(lrStepSize)), ("lr-gamma", s(lrGamma)),
                ("lr-min", s(lrMin)), ("lr-patience", s(lrPatience)), ("warmup-steps", s(warmupSteps)),
                ("momentum", s(momentum)), ("nesterov", .flag(nesterov)), ("accumulate", s(accumulate))]
    }
}

/// `rnn-coord start`'s extra outputs: --tensorboard, --log-scale.
struct ReportOptions: ParsableArguments {
    @Option(help: "Also write TensorBoard event files (loss, accuracy, lr, samples/s, reduce_s per step; validation per epoch) to this folder.")
    var tensorboard: String?
    @Flag(name: .customLong("log-scale"), help: "Draw loss.png with a log10 loss axis (default: when the loss spans more than a decade).")
    var logScale = false

    func validate() throws {
        if let tensorboard, tensorboard.isEmpty { throw ValidationError("Please specify a folder for '--tensorboard'.") }
    }

    /// The event-file writer, nil without --tensorboard.
    func tensorboardWriter() throws -> TensorBoardWriter? {
        try tensorboard.map { try TensorBoardWriter(directory: $0) }
    }

    var effectiveConfig: [(String, ConfigValue?)] { [("tensorboard", tensorboard.map { .scalar($0) }), ("log-scale", .flag(logScale))] }
}

extension BestMetric: ExpressibleByArgument {}

/// `rnn-coord start`'s validation choices: --val-split, --keep-best, --early-stopping.
struct ValidationOptions: ParsableArguments {
    @Option(name: .customLong("val-split"), parsing: .unconditional, help: "Without --val: hold out this seeded fraction of the training data as validation (e.g. 0.1).")
    var valSplit: Double?
    @Option(name: .customLong("keep-best"), help: "Keep best.h5, the checkpoint of the best epoch by val_loss or val_accuracy (never removed by --keep).")
    var keepBest: BestMetric?
    @Option(name: .customLong("early-stopping"), parsing: .unconditional, help: "Stop after P epochs without a better validation result (--keep-best's metric, else val_loss).")
    var earlyStopping: Int?

    func validate() throws {
        if let f = valSplit, !(f > 0 && f < 1) { throw ValidationError("Please specify '--val-split' as a fraction in (0, 1), found \(f).") }
        if let p = earlyStopping, p < 1 { throw ValidationError("Please specify '--early-stopping' of at least 1 epoch, found \(p).") }
    }

    /// Into the run's config; best.h5 needs a folder to go in.
    func apply(to config: inout TrainingConfig, checkpointDir: String?) throws {
        if let keepBest, checkpointDir == nil {
            throw ValidationError("'--keep-best \(keepBest.rawValue)' writes best.h5 into '--checkpoint-dir': please specify one.")
        }
        config.valSplit = valSplit
        config.keepBest = keepBest
        config.earlyStopping = earlyStopping
    }

    var effectiveConfig: [(String, ConfigValue?)] {
        [("val-split", valSplit.map { .scalar("\($0)") }), ("keep-best", keepBest.map { .scalar($0.rawValue) }),
         ("early-stopping", earlyStopping.map { .scalar("\($0)") })]
    }
}
