// The coordinator: validates the dataset, waits for the workers, drives every global step
// (which rows each worker computes), gathers metrics, checks that the replicas agree, has the
// workers evaluate, and writes checkpoints. Its parts:
// - `Membership` (Membership.swift): the control socket, heartbeats, members, ring formation;
// - `StepScheduler` (StepScheduler.swift): group sizes, pipelining, row splits (a value);
// - `TrainingRun` (TrainingRun.swift): counters, state, history, schedule, checkpoints;
// - this file: the phases of `train()` and the exchanges of one step group.
//
// Faults: a group's outcome is a value. `.lost`: the lost members are logged and expelled,
// the survivors get REFORM under a new generation (they drop the unfinished step, roll back
// a step they applied but the coordinator did not accept, and bind a new ring), then the same
// step (same sample set, split among the survivors) is redone; the mean gradient does not
// depend on the split, so the mathematics stay the same. Below `minWorkers` the survivors
// roll back to the last completed step, which is checkpointed, and the run stops naming what
// was lost. `.abandoned` (a worker's all-reduce failed, nobody lost): wait for the liveness
// check to name a silent peer, then re-form and redo, a bounded number of times.
// Workers that say HELLO while training runs join at the next step boundary (WELCOME with
// the current state; the ring is re-formed with them).
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNTransport

/// How one step group ended.
enum GroupOutcome {
    /// Every member's METRICS, as [step][rank].
    case done([[MetricsMessage]])
    case lost(LostMembers)
    /// A worker's all-reduce failed (or the step timed out) with every member alive.
    case abandoned(rank: Int, text: String)
}

/// How a request to the members ended.
enum Answer<Value> {
    case value(Value)
    case lost(LostMembers)
}

/// Where an epoch is.
struct EpochCursor {
    let epoch: Int
    let order: EpochOrder
    /// The first step of this epoch this run computes (a resume starts mid-epoch).
    let first: Int
    /// The next step to compute.
    var step: Int
    var stats = LossStats()
    let started: UInt64
    /// When the last group was collected: its steps' times are spread evenly over the time since.
    var lastCollected: UInt64
    /// --max-steps ended this epoch before its last step.
    var partial = false

    /// Samples of the steps `first..<first+count`.
    func samples(upTo count: Int) -> Int {
        order.positions(step: first + count - 1).upperBound - order.positions(step: first).lowerBound
    }
}

public final class Coordinator: @unchecked Sendable {
    public let options: CoordinatorOptions
    private let report: @Sendable (TrainingEvent) -> Void
    private let membership: Membership
    private var scheduler: StepScheduler
    /// Frames of the group assigned ahead that arrived while the current one was collected.
    private var aheadFrames: [(Int, Frame)] = []
    /// The first global step of the group that went out ahead (-1: none), and its size.
    private var assignedAhead = -1, aheadCount = 0
    /// Steps redone after an abandoned attempt.
    private var redone = 0

    /// The resolved control endpoint (with the real port when bound to `*`).
    public var endpoint: String { membership.endpoint }
    /// For a loopback `bind`: the same control socket, also bound to an abstract IPC name, for
    /// workers on this machine (`--local-workers`): Unix domain sockets skip the TCP stack.
    public var localEndpoint: String? { membership.localEndpoint }
    /// The run token workers must present in HELLO (nil with CURVE).
    public var token: String? { membership.token }
    /// The file holding `token` for workers on this machine (nil when none was written).
    public var tokenFile: String? { membership.tokenFile }
    /// Peers refused at the door, by reason.
    public var peerRejections: PeerRejections { membership.peerRejections }

    /// Binds the control socket; workers may connect from now on.
    /// `events` receives progress (see RNNReport's `progressReporter`); the coordinator prints nothing itself.
    public init(options: CoordinatorOptions, events: @escaping @Sendable (TrainingEvent) -> Void = { _ in }) throws {
        try options.validate()
        self.options = options
        report = events
        membership = try Membership(options: options, events: events)
        scheduler = StepScheduler(options: options)
        membership.onRingFormed = { [unowned self] world in scheduler.reset(world: world) }
    }

    /// Trains to the end and returns the summary; throws with a named cause otherwise. Workers
    /// are told BYE on success and ERROR on failure.
    public func run() throws -> TrainingSummary {
        // Once the run is over nobody may join with this token: the file goes at once (not at
        // deinit, which an exiting process may never reach).
        defer { membership.removeTokenFile() }
        do {
            return try train()
        } catch let interrupted as Interrupted {
            throw interrupted  // the workers were told BYE
        } catch {
            membership.sendError("\(error)")
            throw error
        }
    }

    // MARK: Phases

    private var config: TrainingConfig { options.config }

    private func train() throws -> TrainingSummary {
        let data = try RunData(config: config)
        let run = try TrainingRun(options: options, plan: data.plan, report: report)
        try join(run, data)
        try runEpochs(run, data)
        return try finish(run)
    }

    /// Waits for the expected workers, then forms the first ring.
    private func join(_ run: TrainingRun, _ data: RunData) throws {
        report(.message(.info, "Heartbeats on \(membership.heartbeatEndpoint) every \(options.heartbeatInterval) s; a worker silent for \(options.heartbeatTimeout) s is lost"))
        report(.message(.info, "Coordinator listening on \(endpoint) (run \(String(membership.runID, radix: 16)); \(membership.securityDescription)); waiting for \(options.workers) worker(s)"))
        let deadline = Deadline.after(seconds: options.joinTimeout)
        while membership.pending.count < options.workers {
            if let sig = options.stop?.requested {
                throw Interrupted(signal: sig, checkpoint: nil, globalStep: run.globalStep,
                                  description: "\(StopRequest.name(of: sig)) while waiting for workers (\(membership.pending.count) of \(options.workers) joined); nothing was trained")
            }
            if deadline.hasPassed {
                throw CoordinatorError("only \(membership.pending.count) of \(options.workers) workers joined \(endpoint) within \(Int(options.joinTimeout)) s")
            }
            _ = try membership.next(deadline: .after(milliseconds: 100))  // no member yet: only HELLOs arrive
        }
        _ = membership.admitPending()
        try membership.formRing(state: run.state, completed: run.globalStep, reason: "start")
        let d = data.dataset
        let accumulated = config.accumulate.map { $0 > 1 ? " x \($0) accumulated" : "" } ?? ""
        report(.message(.info, "Training \(config.model.cell.rawValue) H=\(config.model.hiddenSize) L=\(config.model.layers) on \(d.count) samples "
            + "(T=\(d.steps), I=\(d.inputSize), \(d.targetKind)), \(membership.members.count) worker(s), batch \(config.batchSize)\(accumulated), "
            + "\(data.plan.stepsPerEpoch) steps/epoch"))
    }

    /// Every epoch from the start position, until the last, --max-steps, a signal or early stopping.
    private func runEpochs(_ run: TrainingRun, _ data: RunData) throws {
        for epoch in run.startEpoch..<config.epochs {
            if let max = config.maxSteps, run.globalStep >= max { return }
            let started = monotonicNanoseconds()
            let first = epoch == run.startEpoch ? run.startStep : 0
            var cursor = EpochCursor(epoch: epoch, order: data.plan.epoch(epoch), first: first, step: first,
                                     started: started, lastCollected: started)
            try runSteps(&cursor, run, data)
            if run.interruptedBy != nil { return }
            if try endEpoch(cursor, run, data) { return }
        }
    }

    /// The steps of one epoch, group by group; joins come in at group boundaries.
    private func runSteps(_ cursor: inout EpochCursor, _ run: TrainingRun, _ data: RunData) throws {
        while cursor.step < cursor.order.steps {
            if let max = config.maxSteps, run.globalStep >= max {
                cursor.partial = true
                return
            }
            // A signal: the group assigned ahead is collected first (the workers compute it
            // anyway), then the run stops at that step boundary.
            if let sig = options.stop?.requested, assignedAhead != run.globalStep {
                run.interruptedBy = sig
                return
            }
            // Workers that asked to join come in at this step boundary with the current state
            // (at the next one when this step already went out ahead).
            if !membership.pending.isEmpty && assignedAhead != run.globalStep { try admitJoiners(run) }
            let started = monotonicNanoseconds()
            let count = assignedAhead == run.globalStep ? aheadCount
                : scheduler.groupSize(stepsInEpoch: cursor.order.steps, from: cursor.step, globalStep: run.globalStep)
            let results = try runGroup(cursor.order, from: cursor.step, count: count, run, data)
            let collected = monotonicNanoseconds()
            run.stepNanoseconds += collected - started
            scheduler.observe(seconds: Double(collected - started) / 1e9, steps: count, results: results)
            membership.spinMicroseconds = scheduler.longGroups ? 0 : options.spinMicroseconds
            try record(results, &cursor, collected: collected, run)
            cursor.lastCollected = collected
            // With a schedule or a best tracker, a checkpoint at an epoch's end waits for the
            // epoch's end (the scheduler's epoch step, the validation seen by the tracker), so
            // that a resume from it continues exactly.
            let deferAtEpochEnd = run.hasScheduler || run.best != nil
            if checkpointDue(run) && (!deferAtEpochEnd || cursor.step < cursor.order.steps) {
                try refreshState(run)
                try run.writeCheckpoint(worldSize: membership.members.count)
            }
        }
    }

    private func checkpointDue(_ run: TrainingRun) -> Bool {
        options.checkpointEvery > 0 && run.globalStep % options.checkpointEvery == 0
    }

    private func admitJoiners(_ run: TrainingRun) throws {
        try refreshState(run)
        let joining = membership.admitPending().joined(separator: ", ")
        try membership.formRing(state: run.state, completed: run.globalStep, reason: "joined: \(joining)")
        report(.message(.info, "Worker(s) \(joining) joined at global step \(run.globalStep); \(membership.members.count) worker(s) now"))
    }

    /// Each collected step: checks, counters, history, its metrics.jsonl record and progress.
    private func record(_ results: [[MetricsMessage]], _ cursor: inout EpochCursor, collected: UInt64, _ run: TrainingRun) throws {
        for (i, stepResults) in results.enumerated() {
            var stats = LossStats()
            for r in stepResults { stats = stats + LossStats(lossSum: r.lossSum, scoredCount: r.scored, correct: r.correct) }
            try checkFinite(stats, stepResults, globalStep: run.globalStep, checkpoint: run.lastGoodCheckpoint)
            if wantsHash(run.globalStep) { try checkHashes(stepResults, globalStep: run.globalStep) }
            cursor.stats = cursor.stats + stats
            run.samplesDone += cursor.order.positions(step: cursor.step).count
            let stepLR = run.completeStep(stats)
            let at = cursor.lastCollected + (collected - cursor.lastCollected) * UInt64(i + 1) / UInt64(results.count)
            let elapsed = Double(at - cursor.started) / 1e9
            let done = cursor.step - cursor.first + 1
            let rate = Double(cursor.samples(upTo: done)) / max(elapsed, 1e-9)
            let eta = Double(cursor.order.steps - cursor.step - 1) / Double(done) * elapsed
            // The slowest rank's all-reduce, and how much of it that rank waited for after backward.
            let slowest = stepResults.max { $0.reduceSeconds < $1.reduceSeconds }
            let reduceSeconds = slowest?.reduceSeconds ?? 0
            let accuracy = run.reportsAccuracy ? stats.accuracy : nil
            var entry: [String: Any?] = [
                "kind": "step", "global_step": run.globalStep, "epoch": cursor.epoch + 1, "step": cursor.step + 1,
                "loss": stats.meanLoss, "accuracy": accuracy, "samples_per_s": rate, "workers": membership.members.count,
                "reduce_s": reduceSeconds, "compute_s": stepResults.map(\.computeSeconds).max() ?? 0, "lr": stepLR,
                "reduce_exposed_s": slowest?.reduceExposedSeconds ?? 0, "reduce_hidden_s": slowest?.reduceHiddenSeconds ?? 0]
            if stepResults.count > 1 {
                // Per rank: who computed how many rows in how long (a slow machine shows here).
                entry["rows_by_rank"] = stepResults.map(\.samples)
                entry["compute_s_by_rank"] = stepResults.map(\.computeSeconds)
            }
            run.metrics?.append(entry)
            report(.step(StepProgress(epoch: cursor.epoch + 1, epochs: config.epochs, step: cursor.step + 1, stepsPerEpoch: cursor.order.steps,
                                      globalStep: run.globalStep, loss: stats.meanLoss, accuracy: accuracy,
                                      samplesPerSecond: rate, etaSeconds: eta, reduceSeconds: reduceSeconds, lr: stepLR)))
            cursor.step += 1
        }
    }

    /// The epoch record: validation on the workers, the best tracker, the schedule's epoch
    /// step, a deferred checkpoint. True when the run ends here (partial epoch, early stop).
    private func endEpoch(_ cursor: EpochCursor, _ run: TrainingRun, _ data: RunData) throws -> Bool {
        let epoch = cursor.epoch
        let seconds = Double(monotonicNanoseconds() - cursor.started) / 1e9
        run.lastEpoch = EvalResult(loss: cursor.stats.meanLoss, accuracy: config.model.loss == .crossEntropy ? cursor.stats.accuracy : nil)
        var entry: [String: Any?] = ["kind": "epoch", "epoch": epoch + 1, "global_step": run.globalStep,
                                     "loss": cursor.stats.meanLoss, "accuracy": run.lastEpoch.accuracy, "seconds": seconds]
        if cursor.partial { entry["partial"] = true }
        if data.validation != nil {
            let v = try validate(run, data)
            run.lastValidation = v
            entry["val_loss"] = v.loss
            entry["val_accuracy"] = v.accuracy
        }
        addLanguageModelMetrics(to: &entry, model: config.model)  // TaskMetrics.swift
        // A partial epoch (--max-steps) is neither scored nor counted by the schedule: a
        // resume completes it, and then it counts once.
        let stopEarly = cursor.partial ? false : try observeBest(epoch: epoch, run, &entry)
        if run.hasScheduler, !cursor.partial {
            entry["lr"] = run.endEpochForScheduler(validationLoss: data.validation == nil ? nil : run.lastValidation?.loss)
        }
        report(.epoch(EpochProgress(epoch: epoch + 1, epochs: config.epochs, globalStep: run.globalStep, loss: cursor.stats.meanLoss,
                                    accuracy: run.lastEpoch.accuracy, validationLoss: run.lastValidation?.loss,
                                    validationAccuracy: run.lastValidation?.accuracy, seconds: seconds,
                                    samplesPerSecond: Double(cursor.samples(upTo: cursor.step - cursor.first)) / max(seconds, 1e-9),
                                    languageModel: isLanguageModel(config.model))))
        run.metrics?.append(entry)
        if cursor.partial { return true }
        run.epochsCompleted = epoch + 1
        if (run.hasScheduler || run.best != nil) && checkpointDue(run) {
            try refreshState(run)
            try run.writeCheckpoint(worldSize: membership.members.count)
        }
        if stopEarly {
            run.stoppedEarly = true
            report(.message(.info, "Early stopping after epoch \(epoch + 1): \(config.earlyStopping!) epoch(s) without a better \(run.best!.metric.rawValue) than epoch \(run.best!.bestEpoch ?? 0)'s"))
        }
        return stopEarly
    }

    /// --keep-best / --early-stopping (BestTracker.swift): best.h5 holds the best epoch's
    /// state. True when early stopping ends the run after this epoch.
    private func observeBest(epoch: Int, _ run: TrainingRun, _ entry: inout [String: Any?]) throws -> Bool {
        guard let v = run.lastValidation, run.best != nil else { return false }
        if run.best!.observe(epoch: epoch + 1, validation: v), config.keepBest != nil, run.store != nil {
            try refreshState(run)
            try run.writeBest(worldSize: membership.members.count)
        }
        entry["best_epoch"] = run.best!.bestEpoch
        guard let patience = config.earlyStopping, run.best!.epochsWithoutImprovement >= patience else { return false }
        return epoch + 1 < config.epochs
    }

    /// The end: final state, final checkpoint, BYE, the summary.
    private func finish(_ run: TrainingRun) throws -> TrainingSummary {
        try refreshState(run)
        try run.writeCheckpoint(worldSize: membership.members.count)
        membership.sendBye(run.interruptedBy.map { "the coordinator was stopped by \(StopRequest.name(of: $0))" } ?? "training complete")
        if let sig = run.interruptedBy {
            run.metrics?.flush()
            let where_ = run.store == nil ? "no --checkpoint-dir, so no checkpoint was written"
                : "checkpoint \(run.checkpoints.last ?? "?") holds it; continue with: rnn-coord start --resume \(options.checkpointDir!)"
            throw Interrupted(signal: sig, checkpoint: run.store == nil ? nil : run.checkpoints.last, globalStep: run.stateStep,
                              description: "stopped by \(StopRequest.name(of: sig)) after global step \(run.stateStep); \(where_)")
        }
        let rejects = membership.rejects
        var summary = TrainingSummary(globalSteps: run.globalStep, epochsCompleted: run.epochsCompleted, train: run.lastEpoch,
                                      validation: run.lastValidation, parameters: run.state.parameters, checkpoints: run.checkpoints,
                                      samplesPerSecond: Double(run.samplesDone) / max(Double(run.stepNanoseconds) / 1e9, 1e-9),
                                      rejectedFrames: rejects.total)
        summary.rejectedByReason = Dictionary(uniqueKeysWithValues: rejects.snapshot.map { ($0.key.rawValue, $0.value) })
        summary.rejectedPeers = peerRejections.total
        summary.lostWorkers = membership.lostNames
        summary.reforms = membership.reforms
        summary.redoneSteps = redone
        summary.finalWorld = membership.members.count
        summary.best = run.best
        summary.bestCheckpoint = run.bestCheckpoint
        summary.stoppedEarly = run.stoppedEarly
        if rejects.total > 0 || peerRejections.total > 0 {
            let byReason = rejects.snapshot.map { "\($0.key.rawValue) \($0.value)" }.sorted().joined(separator: ", ")
            report(.message(.info, "Rejected \(rejects.total) frame(s) (\(byReason)) and \(peerRejections.total) peer(s)"))
        }
        return summary
    }

    // MARK: Faults

    /// Handles lost members: log, check the minimum (checkpoint + named error), re-form.
    private func recover(_ lost: LostMembers, _ run: TrainingRun) throws {
        let names = membership.drop(lost).joined(separator: "; ")
        guard membership.members.count < options.minWorkers else {
            return try membership.formRing(state: run.state, completed: run.globalStep, reason: "lost \(names)")
        }
        var saved = ""
        if run.store != nil {
            // The survivors roll back to the last completed step and hand over their state.
            if !membership.members.isEmpty,
               (try? membership.formRing(state: run.state, completed: run.globalStep, reason: "below --min-workers", belowMinimum: true)) != nil,
               case .value(let s)? = try? fetchState(globalStep: run.globalStep) {
                run.adopt(s)
            }
            if (try? run.writeCheckpoint(worldSize: membership.members.count)) != nil, let last = run.checkpoints.last {
                saved = "; checkpoint \(last) holds global step \(run.stateStep)"
            }
        }
        throw CoordinatorError("lost \(names); \(membership.members.count) worker(s) left, fewer than --min-workers \(options.minWorkers)\(saved)")
    }

    /// After a loss the group assigned ahead is void (the re-formed ring redoes the current one).
    private func redo(after lost: LostMembers, _ run: TrainingRun) throws {
        assignedAhead = -1
        aheadFrames = []
        try recover(lost, run)
        redone += 1
        report(.message(.warning, "Redoing global step \(run.globalStep + 1) with \(membership.members.count) worker(s) (generation \(membership.generation))"))
    }

    /// Brings the run's state to its completed steps (from rank 0), re-forming the ring if a
    /// member is lost meanwhile.
    private func refreshState(_ run: TrainingRun) throws {
        while run.stateIsStale {
            switch try fetchState(globalStep: run.globalStep) {
            case .value(let state): run.adopt(state)
            case .lost(let lost): try recover(lost, run)
            }
        }
    }

    // MARK: One step group

    /// Whether the replicas report their parameter hash after global step `g`.
    private func wantsHash(_ g: Int) -> Bool { (g + 1) % config.hashEvery == 0 }

    /// Assigns, pipelines and collects the group of `count` steps from step `s`, redoing it
    /// after losses and failed exchanges; the METRICS as [step][rank].
    private func runGroup(_ order: EpochOrder, from s: Int, count: Int, _ run: TrainingRun, _ data: RunData) throws -> [[MetricsMessage]] {
        var failures = 0
        while true {
            let g = run.globalStep
            if assignedAhead != g { assign(order, step: s, count: count, globalStep: g, run, data) }
            assignedAhead = -1
            // Pipelining: the next group goes out before this one is collected, so a worker
            // starts it right after its update instead of one coordinator round trip later.
            if scheduler.mayAssignAhead(stepsInEpoch: order.steps, from: s, count: count, globalStep: g,
                                        joinsPending: !membership.pending.isEmpty, stopping: options.stop?.requested != nil) {
                aheadCount = scheduler.groupSize(stepsInEpoch: order.steps, from: s + count, globalStep: g + count)
                assign(order, step: s + count, count: aheadCount, globalStep: g + count, run, data)
                assignedAhead = g + count
            }
            switch try collect(globalStep: g, count: count) {
            case .done(let results):
                return results
            case .lost(let lost):
                try redo(after: lost, run)
            case .abandoned(let rank, let text):
                assignedAhead = -1
                aheadFrames = []
                failures += 1
                report(.message(.warning, "Worker \(membership.name(ofRank: rank)) abandoned global step \(g + 1): \(text)"))
                // Give the liveness check the time to name a silent peer before retrying.
                if let lost = try membership.waitForLoss(seconds: options.heartbeatTimeout + options.heartbeatInterval) {
                    try redo(after: lost, run)
                    continue
                }
                if failures > options.maxStepRetries {
                    throw CoordinatorError("global step \(g + 1) failed \(failures) times with every worker alive; last: \(text)")
                }
                try membership.formRing(state: run.state, completed: g, reason: "retry after a failed all-reduce")
                redone += 1
            }
        }
    }

    /// Sends each member its rows of `count` steps from step `s` (global step `g`), one message each.
    private func assign(_ order: EpochOrder, step s: Int, count: Int, globalStep g: Int, _ run: TrainingRun, _ data: RunData) {
        let world = membership.members.count
        let parts = (0..<count).map { i in scheduler.parts(rows: order.positions(step: s + i).count, world: world) }
        for m in membership.members {
            let steps = (0..<count).map { i in
                StepMessage(epoch: order.epoch, stepInEpoch: s + i, globalStep: g + i,
                            rows: trainingRows(order.shard(step: s + i, part: parts[i][m.rank]), data.trainRows), wantHash: wantsHash(g + i),
                            lr: run.lr(ahead: g + i - run.globalStep))
            }
            membership.send(StepGroupMessage(steps), to: m, step: g)
        }
    }

    /// Gathers every member's METRICS of the `count` steps from `globalStep`. Frames of the
    /// next group (assigned ahead) that arrive meanwhile are kept for the next call.
    private func collect(globalStep: Int, count: Int) throws -> GroupOutcome {
        var results = [[MetricsMessage]?](repeating: nil, count: membership.members.count)
        var missing = membership.members.count
        var next: [(Int, Frame)] = []
        let steps = globalStep..<globalStep + count
        /// Takes one frame of a member: its text if it reports a failed exchange of this group.
        func take(_ rank: Int, _ frame: Frame) -> String? {
            if frame.header.generation != membership.generation {
                membership.rejects.record(.stale)
                return nil
            }
            if frame.header.kind == .stepFailed, let failed = try? StepFailedMessage.decode(frame) {
                if steps.contains(failed.globalStep) { return failed.text }
                if failed.globalStep >= steps.upperBound { next.append((rank, frame)) } else { membership.rejects.record(.unexpected) }
                return nil
            }
            guard frame.header.kind == .metrics, let m = try? MetricsGroupMessage.decode(frame) else {
                membership.rejects.record(.unexpected)
                return nil
            }
            if m.records[0].globalStep == steps.upperBound {
                next.append((rank, frame))
            } else if m.records[0].globalStep == globalStep, m.records.count == count, results[rank] == nil {
                results[rank] = m.records
                if let c = m.records[0].measuredCrossover { membership.record(c) }
                missing -= 1
            } else {
                membership.rejects.record(.unexpected)
            }
            return nil
        }
        let early = aheadFrames
        aheadFrames = []
        for (rank, frame) in early where rank < results.count {
            if let text = take(rank, frame) { return .abandoned(rank: rank, text: text) }
        }
        switch try gather(while: { missing > 0 }, take) {
        case .lost(let lost):
            return .lost(lost)
        case .stopped(let rank, let text):
            return .abandoned(rank: rank, text: text)
        case .timedOut:
            // Everyone still sends heartbeats, yet the step is stuck: treat it as a failed
            // exchange (re-form and redo, a bounded number of times).
            let silent = membership.members.filter { results[$0.rank] == nil }
            return .abandoned(rank: silent.first?.rank ?? 0,
                              text: "no result from \(silent.map(\.name).joined(separator: ", ")) within the step timeout of \(options.stepTimeout) s")
        case .complete:
            break
        }
        aheadFrames = next
        let byRank = results.map { $0! }
        return .done((0..<count).map { i in byRank.map { $0[i] } })
    }

    /// Stops the run when a step's loss, reduced gradient or update is not finite (diverged):
    /// the replicas now hold non-finite parameters, so nothing more is checkpointed and the
    /// last good checkpoint stays as it is.
    private func checkFinite(_ stats: LossStats, _ results: [MetricsMessage], globalStep: Int, checkpoint: String?) throws {
        let gradientBad = results.contains { !$0.gradientFinite }
        guard !stats.meanLoss.isFinite || gradientBad else { return }
        let what = !stats.meanLoss.isFinite ? "the loss is \(stats.meanLoss)"
            : "the gradient or the updated parameters hold NaN or Inf (the loss was \(stats.meanLoss))"
        let kept = checkpoint.map { "; the last good checkpoint is \($0)" } ?? "; no checkpoint was written before it"
        throw CoordinatorError("training diverged at global step \(globalStep + 1): \(what)\(kept); try a lower --lr or --clip-norm")
    }

    /// Stops the run when the replicas' parameter hashes differ, naming the ranks that differ
    /// from the majority (or all of them when there is none, e.g. two workers).
    private func checkHashes(_ results: [MetricsMessage], globalStep: Int) throws {
        let groups = Dictionary(grouping: results.indices, by: { results[$0].parameterHash })
        guard groups.count > 1 else { return }
        let largest = groups.values.max { $0.count < $1.count }!
        if largest.count * 2 > results.count {
            let names = results.indices.filter { !largest.contains($0) }.map(membership.name(ofRank:)).joined(separator: ", ")
            throw CoordinatorError("replicas diverged after global step \(globalStep + 1): the parameters of \(names) differ from those of the other \(largest.count) rank(s)")
        }
        let names = results.indices.map { "\(membership.name(ofRank: $0)) \(String(results[$0].parameterHash, radix: 16))" }.joined(separator: ", ")
        throw CoordinatorError("replicas diverged after global step \(globalStep + 1): no majority of equal parameters (hashes: \(names))")
    }

    /// How a wait for the members' answers ended.
    private enum Gathered {
        case complete
        case lost(LostMembers)
        case timedOut
        /// `take` said stop: this rank's text.
        case stopped(rank: Int, text: String)
    }

    /// Hands every member frame to `take` while `waiting()` holds, for at most the step
    /// timeout; `take` returns a text to stop at once (a failed exchange), nil to go on.
    private func gather(while waiting: () -> Bool, _ take: (Int, Frame) -> String?) throws -> Gathered {
        let deadline = Deadline.after(seconds: options.stepTimeout)
        while waiting() {
            switch try membership.next(deadline: deadline) {
            case .lost(let lost): return .lost(lost)
            case .timedOut: return .timedOut
            case .frame(let rank, let frame):
                if let text = take(rank, frame) { return .stopped(rank: rank, text: text) }
            }
        }
        return .complete
    }

    // MARK: Requests

    /// The replicated state after `globalStep` steps, from rank 0.
    private func fetchState(globalStep: Int) throws -> Answer<TrainingState> {
        let rank0 = membership.members[0]
        membership.send(StateRequestMessage(), to: rank0)
        let deadline = Deadline.after(seconds: options.stepTimeout)
        while true {
            switch try membership.next(deadline: deadline) {
            case .lost(let lost):
                return .lost(lost)
            case .timedOut:
                throw CoordinatorError("no state from \(rank0.name) within \(Int(options.stepTimeout)) s")
            case .frame(let rank, let frame):
                guard rank == 0, frame.header.kind == .state, let msg = try? StateMessage.decode(frame) else {
                    membership.rejects.record(.unexpected)
                    continue
                }
                guard msg.globalStep == globalStep else {
                    throw CoordinatorError("\(rank0.name) sent the state of global step \(msg.globalStep), expected \(globalStep)")
                }
                return .value(msg.state)
            }
        }
    }

    /// The validation loss (and accuracy) of the replicas' current parameters, evaluated on
    /// the workers; redone with the survivors after a loss.
    private func validate(_ run: TrainingRun, _ data: RunData) throws -> EvalResult {
        while true {
            switch try evaluateOnWorkers(globalStep: run.globalStep, data) {
            case .value(let total):
                return EvalResult(loss: total.meanLoss, accuracy: config.model.loss == .crossEntropy ? total.accuracy : nil)
            case .lost(let lost):
                try recover(lost, run)
            }
        }
    }

    /// Each member evaluates a contiguous share of whole batches of the validation rows and
    /// returns each batch's loss sums; the sums are added in batch order from zero, so the
    /// result has the bits of one evaluator going through every batch.
    private func evaluateOnWorkers(globalStep: Int, _ data: RunData) throws -> Answer<LossStats> {
        guard let validation = data.validation else { return .value(LossStats()) }
        let rows = data.validationRows ?? Array(0..<validation.count)
        let batchSize = evaluationBatchSize
        let batches = (rows.count + batchSize - 1) / batchSize
        let members = membership.members
        for m in members {
            let share = EpochPlan.shardRange(count: batches, rank: m.rank, worldSize: members.count)
            let part = Array(rows[min(share.lowerBound * batchSize, rows.count)..<min(share.upperBound * batchSize, rows.count)])
            membership.send(EvaluateMessage(globalStep: globalStep, validationFiles: data.validationIsFiles, batchSize: batchSize, rows: part), to: m)
        }
        var byRank = [[LossStats]?](repeating: nil, count: members.count)
        var missing = members.count
        let outcome = try gather(while: { missing > 0 }) { rank, frame in
            guard frame.header.generation == membership.generation, frame.header.kind == .evaluation,
                  let answer = try? EvaluationMessage.decode(frame), byRank[rank] == nil else {
                membership.rejects.record(frame.header.generation == membership.generation ? .unexpected : .stale)
                return nil
            }
            byRank[rank] = answer.batches
            missing -= 1
            return nil
        }
        switch outcome {
        case .lost(let lost):
            return .lost(lost)
        case .timedOut, .stopped:
            let silent = members.filter { byRank[$0.rank] == nil }.map(\.name).joined(separator: ", ")
            throw CoordinatorError("no evaluation from \(silent) within the step timeout of \(options.stepTimeout) s")
        case .complete:
            break
        }
        let all = byRank.flatMap { $0! }
        guard all.count == batches else {
            throw CoordinatorError("the workers evaluated \(all.count) batches of the validation data, expected \(batches)")
        }
        return .value(all.reduce(LossStats(), +))
    }
}
