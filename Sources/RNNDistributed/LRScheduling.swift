// The coordinator's side of learning-rate schedules: it owns the one `LRScheduler` of the run,
// sends each assigned step's lr in its STEP entry (the workers apply exactly that lr, so
// replicas stay bitwise equal), steps the scheduler as steps complete and epochs end, and
// stores its state in every checkpoint (`lr_scheduler`), so a resumed run continues bitwise.
import Foundation
import RNNCore

extension TrainingConfig {
    /// Optimizer steps of the whole run: every epoch's steps, or --max-steps when fewer.
    public func totalOptimizerSteps(stepsPerEpoch: Int) -> Int {
        let all = epochs * stepsPerEpoch
        return maxSteps.map { Swift.min($0, all) } ?? all
    }
}

/// The run's scheduler: nil without a schedule (every step uses the optimizer's lr, as before
/// schedules existed). On resume, `savedJSON` (a checkpoint's `lr_scheduler`) continues the
/// saved state when it belongs to the same schedule and base lr; otherwise a fresh scheduler is
/// advanced to the checkpoint's position (the returned warning says so: a plateau's history is
/// then lost).
func makeLRScheduler(config: TrainingConfig, stepsPerEpoch: Int, savedJSON: String?,
                     globalStep: Int, epochsEnded: Int) throws -> (scheduler: LRScheduler?, warning: String?) {
    guard let schedule = config.schedule, !schedule.isConstant else { return (nil, nil) }
    let base = Double(config.optimizer.lr)
    var fresh = LRScheduler(config: schedule, baseLR: base, totalSteps: config.totalOptimizerSteps(stepsPerEpoch: stepsPerEpoch))
    if let savedJSON, !savedJSON.isEmpty {
        let saved = try JSONDecoder().decode(LRScheduler.self, from: Data(savedJSON.utf8))
        if saved.config == schedule && saved.baseLR == base {
            guard saved.stepsTaken == globalStep else {
                throw CoordinatorError("the checkpoint's lr scheduler has taken \(saved.stepsTaken) steps, the checkpoint holds global step \(globalStep)")
            }
            return (saved, nil)
        }
    }
    if globalStep == 0 && epochsEnded == 0 { return (fresh, nil) }
    // Replay the position: steps in order, an epoch end after each full epoch.
    for g in 0..<globalStep {
        fresh.stepTaken()
        if (g + 1) % stepsPerEpoch == 0 && fresh.epochsEnded < epochsEnded { fresh.epochEnded(validationLoss: nil) }
    }
    return (fresh, "the checkpoint holds no state of this lr schedule (--lr-schedule or --lr changed): it restarts at global step \(globalStep) from its formula, without the plateau's history")
}

extension LRScheduler {
    /// The state as compact, key-sorted JSON (a checkpoint's `lr_scheduler`).
    func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}
