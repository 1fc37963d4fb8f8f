// The run as the coordinator keeps it: where training starts (fresh or the newest checkpoint),
// the step counters, the replicated state as last fetched from a worker, the loss history,
// the lr schedule and the best tracker, and the files written from them (checkpoints,
// best.h5, metrics.jsonl). No sockets: the coordinator fetches states and feeds results in.
//
// What is committed when: a global step counts once every worker's METRICS of it arrived
// (`globalStep`); `state` belongs to `stateStep`, which trails `globalStep` until the
// coordinator fetches the state again; a checkpoint holds `state` with the scheduler of its
// own step; metrics.jsonl is flushed before every checkpoint, so a resume from it finds each
// step logged exactly once.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData

/// The training data of a run: the training set, its plan, and the validation data.
struct RunData {
    let dataset: TensorDataset
    /// --val-files, or the training set itself with --val-split.
    let validation: TensorDataset?
    /// --val-split: the training positions index `trainRows`; the held-out rows validate.
    let split: ValidationSplit?
    let plan: EpochPlan

    var trainRows: [Int]? { split?.train }
    /// The rows of `validation` that validate (nil: all of them).
    var validationRows: [Int]? { split?.validation }
    /// The validation data are separate files (not the training set's held-out rows).
    var validationIsFiles: Bool { validation != nil && split == nil }

    /// Opens and checks the training and validation data (the one full value scan of the run).
    init(config: TrainingConfig) throws {
        let training = try TensorDataset.open(paths: config.dataFiles, options: config.datasetOptions(memoryBudgetBytes: 0, validateValues: true))
        try training.checkFits(config.model, role: "training data")
        let split = try config.valSplit.map { try ValidationSplit(count: training.count, fraction: $0, seed: config.seed) }
        var validation: TensorDataset? = split != nil ? training : nil
        if !config.valFiles.isEmpty {
            let val = try TensorDataset.open(paths: config.valFiles, options: config.datasetOptions())
            try val.checkFits(config.model, role: "validation data", training: training)
            validation = val
        }
        dataset = training
        self.split = split
        self.validation = validation
        // One plan step is one optimizer step: B rows, or N * B with --accumulate N.
        plan = try EpochPlan(sampleCount: split?.train.count ?? dataset.count, batchSize: config.rowsPerOptimizerStep,
                             shuffle: config.shuffle, seed: config.seed, dropLast: config.dropLast)
        guard plan.stepsPerEpoch > 0 else {
            throw CoordinatorError("the training data has \(dataset.count) samples, fewer than one batch of \(config.rowsPerOptimizerStep) with --drop-last")
        }
    }
}

final class TrainingRun {
    let config: TrainingConfig
    let table: ParameterTable
    let plan: EpochPlan
    let store: CheckpointStore?
    /// metrics.jsonl (`CoordinatorOptions.recordLog`), or nil.
    let metrics: (any RunRecordLog)?
    private let report: @Sendable (TrainingEvent) -> Void

    /// Where this run started: epoch, step in it, global step.
    let startEpoch: Int, startStep: Int
    /// Global steps completed (every worker's result arrived).
    private(set) var globalStep: Int
    /// The replicated state as last fetched, and the global step it belongs to.
    private(set) var state: TrainingState
    private(set) var stateStep: Int
    /// The lr schedule at `globalStep`, and the one of `stateStep` (for a checkpoint of an older state).
    private(set) var scheduler: LRScheduler?
    private var schedulerAtState: LRScheduler?
    private(set) var history: MetricsHistory
    var best: BestTracker?

    private(set) var checkpoints: [String] = []
    var bestCheckpoint: String?
    var lastEpoch = EvalResult(loss: .nan, accuracy: nil)
    var lastValidation: EvalResult?
    var epochsCompleted: Int
    var samplesDone = 0
    /// Wall time spent in training steps (not in evaluation or checkpoints).
    var stepNanoseconds: UInt64 = 0
    var stoppedEarly = false
    /// The signal that stopped the run early.
    var interruptedBy: Int32?

    init(options: CoordinatorOptions, plan: EpochPlan, report: @escaping @Sendable (TrainingEvent) -> Void) throws {
        config = options.config
        table = ParameterTable(config: config.model)
        self.plan = plan
        self.report = report
        state = TrainingState(parameters: ParameterTable.initialParameters(config: config.model, seed: config.seed),
                              expAvg: [Float](repeating: 0, count: table.totalCount),
                              expAvgSq: [Float](repeating: 0, count: table.totalCount), stepCount: 0)
        history = MetricsHistory(steps: [], loss: [], accuracy: config.model.loss == .crossEntropy ? [] : nil)
        best = config.keepBest.map { BestTracker(metric: $0) } ?? config.earlyStopping.map { _ in BestTracker(metric: .valLoss) }
        var position = (epoch: 0, step: 0, global: 0)
        var savedScheduler: String?
        if let dir = options.resume {
            let ckpt = try Self.newestCheckpoint(in: dir, config: config, table: table, report: report)
            state = ckpt.state
            position = (ckpt.metadata.epoch, ckpt.metadata.stepInEpoch, ckpt.metadata.globalStep)
            history = ckpt.metrics
            savedScheduler = ckpt.metadata.schedulerJSON
            if let saved = try? JSONDecoder().decode(BestTracker.self, from: Data(ckpt.metadata.bestTrackerJSON.utf8)),
               saved.metric == best?.metric {
                best = saved
            }
        }
        (startEpoch, startStep, globalStep) = position
        stateStep = globalStep
        epochsCompleted = startEpoch
        let made = try makeLRScheduler(config: config, stepsPerEpoch: plan.stepsPerEpoch, savedJSON: savedScheduler,
                                       globalStep: globalStep, epochsEnded: startEpoch)
        if let warning = made.warning { report(.message(.warning, warning)) }
        scheduler = made.scheduler
        schedulerAtState = scheduler
        store = try options.checkpointDir.map { dir throws in try CheckpointStore(directory: dir, keep: options.keep) }
        if let store, case let removed = store.removeInterruptedWrites(), !removed.isEmpty {
            report(.message(.warning, "Removed \(removed.count) temporary file(s) of interrupted checkpoint writes in \(store.directory): \(removed.joined(separator: ", "))"))
        }
        // A resume redoes the steps after the checkpoint: their records (and a partial record
        // of the epoch that continues) go, so the log never holds a step twice.
        let resumePoint = options.resume == nil ? nil
            : RunResumePoint(globalStep: position.global, continuingEpoch: position.step > 0 ? position.epoch + 1 : nil)
        if let dir = options.checkpointDir, let open = options.recordLog {
            metrics = try open(dir, resumePoint)
        } else {
            metrics = nil
        }
    }

    deinit { metrics?.flush() }

    /// The newest valid checkpoint in `dir`, which must hold this model; says why not otherwise.
    private static func newestCheckpoint(in dir: String, config: TrainingConfig, table: ParameterTable,
                                         report: @Sendable (TrainingEvent) -> Void) throws -> Checkpoint {
        let found = CheckpointStore.newest(in: dir, table: table)
        for w in found.warnings { report(.message(.warning, w)) }
        guard let ckpt = found.checkpoint, let path = found.path else {
            if let other = CheckpointStore.newestStoredConfig(in: dir).flatMap({ try? TrainingConfig.fromJSON($0) }),
               !config.model.continues(other.model) {
                throw CoordinatorError("--resume \(dir): the checkpoints in \(dir) hold \(other.model.summary) model; "
                    + "you asked for \(config.model.differences(from: other.model))")
            }
            throw CoordinatorError("--resume \(dir): no valid checkpoint found")
        }
        if let saved = try? ckpt.metadata.decodeConfig(TrainingConfig.self), !config.model.continues(saved.model) {
            throw CoordinatorError("--resume \(path): the checkpoint's model \(saved.model) differs from the requested \(config.model)")
        }
        report(.message(.info, "Resuming from \(path): global step \(ckpt.metadata.globalStep), epoch \(ckpt.metadata.epoch + 1), step \(ckpt.metadata.stepInEpoch)"))
        return ckpt
    }

    // MARK: Progress

    /// Whether `state` is older than the completed steps.
    var stateIsStale: Bool { stateStep != globalStep }

    /// A state fetched from the replicas after `globalStep` steps.
    func adopt(_ fetched: TrainingState) {
        state = fetched
        stateStep = globalStep
        schedulerAtState = scheduler
    }

    /// The learning rate of the step `ahead` steps after the next one (nil: the optimizer's own).
    func lr(ahead: Int) -> Double? { scheduler?.lr(ahead: ahead) }

    /// One completed global step: its loss and accuracy into the history, the scheduler
    /// steps; returns the lr the step used.
    func completeStep(_ stats: LossStats) -> Double {
        let stepLR = scheduler?.lr ?? Double(config.optimizer.lr)
        scheduler?.stepTaken()
        globalStep += 1
        history.steps.append(globalStep)
        history.loss.append(Float(stats.meanLoss))
        if history.accuracy != nil { history.accuracy!.append(Float(stats.accuracy)) }
        return stepLR
    }

    /// The scheduler's epoch step (a plateau schedule reads the validation loss); the new lr.
    func endEpochForScheduler(validationLoss: Double?) -> Double? {
        scheduler?.epochEnded(validationLoss: validationLoss)
        return scheduler?.lr
    }

    var hasScheduler: Bool { scheduler != nil }
    var reportsAccuracy: Bool { history.accuracy != nil }

    // MARK: Files

    /// (epoch, step in epoch) of the step after `globalStep` completed ones (every epoch has
    /// the same number of steps, so this holds for resumed runs too).
    private func position(after globalStep: Int) -> (Int, Int) {
        (globalStep / plan.stepsPerEpoch, globalStep % plan.stepsPerEpoch)
    }

    private func checkpoint(worldSize: Int, withProgress: Bool) -> Checkpoint {
        let (epoch, stepInEpoch) = position(after: stateStep)
        var metadata = CheckpointMetadata(globalStep: stateStep, epoch: epoch, stepInEpoch: stepInEpoch, seed: config.seed,
                                          worldSize: max(1, worldSize), configJSON: config.jsonString())
        if withProgress {
            metadata.schedulerJSON = (stateStep == globalStep ? scheduler : schedulerAtState)?.jsonString() ?? ""
            metadata.bestTrackerJSON = best?.jsonString() ?? ""
        }
        return Checkpoint(metadata: metadata, optimizer: config.optimizer, state: state, metrics: history.truncated(toSteps: stateStep))
    }

    /// Writes `state` (of `stateStep` completed steps) as a checkpoint, after flushing
    /// metrics.jsonl; nothing without a checkpoint folder.
    func writeCheckpoint(worldSize: Int) throws {
        guard let store else { return }
        metrics?.flush()
        let path = try store.write(checkpoint(worldSize: worldSize, withProgress: true), table: table)
        if checkpoints.last != path { checkpoints.append(path) }
        report(.message(.info, "Checkpoint \(path)"))
    }

    /// Writes `state` (of the epoch just validated) as best.h5.
    func writeBest(worldSize: Int) throws {
        guard let store else { return }
        let path = try store.writeBest(checkpoint(worldSize: worldSize, withProgress: false), table: table)
        bestCheckpoint = path
        report(.message(.info, "Best checkpoint \(path) (epoch \(best?.bestEpoch ?? 0), \(best?.metric.rawValue ?? "") \(String(format: "%.6g", best?.bestValue ?? .nan)))"))
    }

    /// The newest checkpoint on disk (for the divergence message).
    var lastGoodCheckpoint: String? { checkpoints.last ?? store?.list().last?.path }
}

extension MetricsHistory {
    /// The history of the first `count` global steps (steps are 1-based and increasing).
    func truncated(toSteps count: Int) -> MetricsHistory {
        let n = steps.firstIndex(where: { $0 > count }) ?? steps.count
        return MetricsHistory(steps: Array(steps.prefix(n)), loss: Array(loss.prefix(n)), accuracy: accuracy.map { Array($0.prefix(n)) })
    }
}
