// The coordinator: validates the dataset, waits for the workers, hands out ranks, the config
// and the initial state, drives every global step (which rows each worker computes), gathers
// metrics, checks that the replicas agree, evaluates, and writes checkpoints.
//
// Faults (see also Heartbeat.swift, Security.swift, Messages.swift):
// - Every wait on the control socket runs in slices of at most 100 ms and checks liveness:
//   a member silent on the heartbeat socket past `heartbeatTimeout`, or whose connection
//   failed on a send, is lost. No step waits forever: a step that yields nothing within
//   `stepTimeout` while everyone is alive is redone in a re-formed ring (bounded retries).
// - A lost member is logged by rank, host and pid and expelled (its heartbeats are answered
//   with ERROR). The survivors get REFORM under a new generation: they drop the unfinished
//   step, roll back a step they applied but the coordinator did not accept, and bind a new
//   ring; then the same step (same sample set, split among the survivors) is redone. The
//   mean gradient does not depend on the split, so the mathematics stay the same.
// - Below `minWorkers`: the survivors roll back to the last completed step, the coordinator
//   checkpoints that state and stops with an error naming what was lost.
// - Workers that say HELLO while training runs wait for the next step boundary, then get
//   WELCOME with the current state and the ring is re-formed with them.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNTransport

/// How the coordinator runs.
public struct CoordinatorOptions: Sendable {
    public var config: TrainingConfig
    /// The ROUTER endpoint, e.g. `tcp://127.0.0.1:5555` (`*` as the port picks a free one).
    public var bind: String
    /// Workers that must join before training starts.
    public var workers: Int
    /// Where checkpoints (and metrics.jsonl) go; nil writes none.
    public var checkpointDir: String?
    /// A checkpoint every this many global steps (0: only at the end).
    public var checkpointEvery: Int
    /// Checkpoints kept.
    public var keep: Int
    /// Continue from the newest valid checkpoint in this folder.
    public var resume: String?
    /// Seconds to wait for all workers to join.
    public var joinTimeout: Double
    /// Seconds to wait for every worker's result of one step.
    public var stepTimeout: Double
    /// Seconds a worker waits for one ring frame.
    public var ringTimeout: Double
    /// Seconds a worker waits for the coordinator's next message.
    public var workerIdleTimeout: Double
    /// Seconds between heartbeats (both ways).
    public var heartbeatInterval: Double = 1
    /// A worker silent this long is declared lost (and a worker whose heartbeats stay
    /// unanswered this long declares the coordinator lost).
    public var heartbeatTimeout: Double = 10
    /// Below this many live workers the run stops with a checkpoint and a named error.
    public var minWorkers: Int = 1
    /// The run token workers must present (loopback security); nil draws a random one.
    /// Not used with CURVE (the allow-list authenticates).
    public var token: String?
    /// Where the token is written for local workers (nil: `RunToken.defaultPath`, only for
    /// loopback binds).
    public var tokenFile: String?
    /// CURVE encryption and the allow-list of worker keys.
    public var curve: CurveServerConfig?
    /// Allows a non-loopback bind without CURVE.
    public var insecure = false
    /// Times a step is redone after failed all-reduces with no worker lost.
    public var maxStepRetries = 3
    /// How long a wait for the workers' messages keeps polling (yielding the CPU between
    /// tries) before it sleeps, in microseconds; 0 sleeps at once. The two workers' results
    /// of a step arrive microseconds apart: catching the second without a thread wakeup
    /// took seed-small with 2 local workers from ~150k to ~175-190k samples/s on the 2-core
    /// KVM machine (`rnn-bench distributed --spin 0` vs the default). Not while a step group
    /// takes more than twice `messageGroupSeconds`: the next group has gone out ahead, the
    /// coordinator's wake-up is off the workers' path, and a spin would only take CPU from a
    /// local worker (lstm-med: the coordinator's main thread used 0.5 % of a core, spinning
    /// twice per step).
    public var spinMicroseconds = 100
    /// Short steps go out several per STEP message (and come back several per METRICS): up to
    /// this many consecutive steps, as many as take about `messageGroupSeconds` at the
    /// measured step time, never across an epoch end, a checkpoint or the last step. 1 sends
    /// one message per step. Each message costs thread wakeups in three processes; seed-small
    /// with 2 local workers (~0.2 ms steps) went from ~107k to ~147k samples/s with 8
    /// (`rnn-bench distributed --steps-per-message 1` vs the default, same run, busy machine).
    public var maxStepsPerMessage = 8
    /// The time one STEP message's steps should take (see `maxStepsPerMessage`).
    public var messageGroupSeconds = 0.001
    /// Load balancing (`--balance`): each step's rows are split among the workers in
    /// proportion to their measured speed (rows per second of forward, backward and update,
    /// an exponential average over recent steps) instead of evenly, so a worker on a slower
    /// or busier machine gets fewer rows and the others wait less for it. The mean gradient
    /// is the same up to float summation order (any split is), and the replicas stay bitwise
    /// identical; but the split follows timing, so two runs are no longer bitwise equal, nor
    /// a resumed run to a straight one. Off: near-equal splits, bitwise reproducible.
    public var balance = false
    /// With `balance`: the weight of the newest step in the speed average.
    public var balanceSmoothing = 0.25
    /// SIGINT/SIGTERM (see StopRequest.swift): checked between step groups; the run then ends
    /// with a checkpoint of the last completed step and throws `Interrupted`.
    public var stop: StopRequest?

    public init(config: TrainingConfig, bind: String = "tcp://127.0.0.1:5555", workers: Int = 1,
                checkpointDir: String? = nil, checkpointEvery: Int = 0, keep: Int = 3, resume: String? = nil,
                joinTimeout: Double = 120, stepTimeout: Double = 600, ringTimeout: Double = 60,
                workerIdleTimeout: Double = 120) {
        self.config = config
        self.bind = bind
        self.workers = workers
        self.checkpointDir = checkpointDir
        self.checkpointEvery = checkpointEvery
        self.keep = keep
        self.resume = resume
        self.joinTimeout = joinTimeout
        self.stepTimeout = stepTimeout
        self.ringTimeout = ringTimeout
        self.workerIdleTimeout = workerIdleTimeout
    }

    public func validate() throws {
        try config.validate()
        if workers < 1 { throw ConfigError("'--workers' must be at least 1, found \(workers)") }
        if checkpointEvery < 0 { throw ConfigError("'--checkpoint-every' must be 0 or more, found \(checkpointEvery)") }
        if keep < 1 { throw ConfigError("'--keep' must be at least 1, found \(keep)") }
        for (name, v) in [("join", joinTimeout), ("step", stepTimeout), ("ring", ringTimeout), ("worker idle", workerIdleTimeout),
                          ("heartbeat", heartbeatTimeout), ("heartbeat interval", heartbeatInterval)] where !(v > 0) {
            throw ConfigError("the \(name) timeout must be positive, found \(v)")
        }
        if heartbeatInterval >= heartbeatTimeout {
            throw ConfigError("'--heartbeat-interval' (\(heartbeatInterval) s) must be shorter than '--heartbeat-timeout' (\(heartbeatTimeout) s)")
        }
        if minWorkers < 1 { throw ConfigError("'--min-workers' must be at least 1, found \(minWorkers)") }
        if minWorkers > workers { throw ConfigError("'--min-workers' (\(minWorkers)) cannot exceed '--workers' (\(workers))") }
        if !(1...maxStepsPerMessageLimit).contains(maxStepsPerMessage) {
            throw ConfigError("'--steps-per-message' must be 1...\(maxStepsPerMessageLimit), found \(maxStepsPerMessage)")
        }
        if spinMicroseconds < 0 { throw ConfigError("'--spin' must be 0 or more microseconds, found \(spinMicroseconds)") }
        if !(balanceSmoothing > 0 && balanceSmoothing <= 1) {
            throw ConfigError("the balance smoothing must be in (0, 1], found \(balanceSmoothing)")
        }
        if curve == nil && !insecure, let host = Endpoint.host(of: bind), !Endpoint.isLoopback(host) {
            throw ConfigError("binding the coordinator to \(bind) (not loopback) without CURVE keys lets anyone on the network join; "
                + "give '--curve-key' and '--allow' (see `rnn-coord keygen`), or pass '--insecure' explicitly")
        }
    }
}

/// Loss and accuracy over some samples.
public struct EvalResult: Sendable, Equatable {
    public var loss: Double
    /// nil for regression.
    public var accuracy: Double?
}

/// What a finished run reports.
public struct TrainingSummary: Sendable {
    public var globalSteps: Int
    public var epochsCompleted: Int
    /// Mean training loss and accuracy of the last epoch.
    public var train: EvalResult
    public var validation: EvalResult?
    /// --keep-best / --early-stopping: the best epoch (1-based), its value, best.h5, and
    /// whether early stopping ended the run.
    public var best: BestTracker?
    public var bestCheckpoint: String?
    public var stoppedEarly = false
    public var parameters: [Float]
    /// Checkpoints written, oldest first (only the last `keep` still exist).
    public var checkpoints: [String]
    /// Training samples per second of step time (evaluation and checkpoints excluded).
    public var samplesPerSecond: Double
    /// Frames the coordinator rejected (malformed, foreign, unexpected, stale).
    public var rejectedFrames: Int
    /// Rejected frames by reason.
    public var rejectedByReason: [String: Int] = [:]
    /// Peers refused at the door (wrong token, key not allowed, wrong version).
    public var rejectedPeers: Int = 0
    /// Workers declared lost, as "rank r (host, pid p): why".
    public var lostWorkers: [String] = []
    /// Times the ring was re-formed after the start (losses and joins).
    public var reforms: Int = 0
    /// Steps redone after an abandoned attempt.
    public var redoneSteps: Int = 0
    /// The live workers at the end.
    public var finalWorld: Int = 0
}

/// A coordinator failure, naming the rank, the endpoint or the file.
public struct CoordinatorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One peer that joined.
struct Member {
    var identity: [UInt8]
    var rank: Int
    var host: String
    var pid: Int
    var dataEndpoint = ""
    /// Its ring socket's CURVE public key ("" without CURVE).
    var publicKey = ""
    /// Has not received WELCOME yet.
    var isNew = true
    var name: String { "rank \(rank) (\(host), pid \(pid))" }
}

/// Members declared lost while waiting (internal control flow of the coordinator).
struct MembersLost: Error {
    var ranks: [Int]
    var reasons: [String]
}

/// A worker abandoned the step (its all-reduce failed) without a member being declared lost.
struct StepAbandoned: Error {
    var rank: Int
    var text: String
}

public final class Coordinator: @unchecked Sendable {
    public let options: CoordinatorOptions
    private let report: @Sendable (TrainingEvent) -> Void
    private let context: ZMQContext
    private let router: ZMQSocket
    /// The resolved control endpoint (with the real port when bound to `*`).
    public let endpoint: String
    /// For a loopback `bind`: the same control socket, also bound to an abstract IPC name, for
    /// workers on this machine (`--local-workers`): Unix domain sockets skip the TCP stack.
    public let localEndpoint: String?
    /// The run token workers must present in HELLO (nil with CURVE).
    public let token: String?
    /// The file holding `token` for workers on this machine (nil when none was written).
    public let tokenFile: String?
    /// Peers refused at the door, by reason.
    public let peerRejections = PeerRejections()
    private let runID: UInt64
    private let rejects = RejectCounter()
    private let heartbeats: HeartbeatServer
    private let authenticator: ZAPAuthenticator?
    /// Logs peers whose handshake failed outside ZAP (wrong server key, CURVE on one side only).
    private let handshakes: ServerHandshakeWatch?
    /// The live members of the current generation, index = rank.
    private var members: [Member] = []
    /// Frames of the steps assigned ahead that arrived while the current ones were collected.
    private var aheadFrames: [(Int, Frame)] = []
    /// Workers that said HELLO and wait for the next step boundary.
    private var pending: [Member] = []
    /// Members whose connection is gone (a send failed): lost at the next check.
    private var unreachable: [[UInt8]: String] = [:]
    private var generation: UInt32 = 0
    private var lostNames: [String] = []
    private var reforms = 0
    private var redone = 0
    /// The last step group took longer than 2 x `messageGroupSeconds`: waits do not spin.
    private var longGroups = false
    /// With `options.balance`: per rank, the averaged seconds per row (0: not measured yet).
    private var secondsPerRow: [Double] = []

    /// Binds the control socket; workers may connect from now on.
    /// `events` receives progress (see RNNReport's `progressReporter`); the coordinator prints nothing itself.
    public init(options: CoordinatorOptions, events: @escaping @Sendable (TrainingEvent) -> Void = { _ in }) throws {
        try options.validate()
        self.options = options
        self.report = events
        var generator = SystemRandomNumberGenerator()
        var id: UInt64 = 0
        while id == 0 { id = generator.next() }
        runID = id
        context = try ZMQContext()
        let rejections = peerRejections
        if let curve = options.curve {
            guard zmqHas("curve") else {
                context.shutdown()
                throw CoordinatorError("CURVE keys were given but this libzmq was built without CURVE support")
            }
            authenticator = try ZAPAuthenticator(context: context, allowed: curve.allowedClientKeys, rejections: rejections,
                                                 log: { events(.message(.warning, $0)) })
        } else {
            authenticator = nil
        }
        router = try ZMQSocket(context, type: .router, lingerMilliseconds: 1000)
        handshakes = try? ServerHandshakeWatch(socket: router, curve: options.curve != nil, rejections: rejections,
                                               log: { events(.message(.warning, $0)) })
        do {
            try router.setRouterMandatory(true)
            try options.curve?.configure(router)
            try router.bind(options.bind)
        } catch {
            handshakes?.stop()
            router.close()
            authenticator?.stop()
            context.shutdown()
            throw CoordinatorError("cannot bind the coordinator to \(options.bind): \(error)")
        }
        endpoint = options.bind.hasPrefix("tcp://") ? ((try? router.lastEndpoint()) ?? options.bind) : options.bind
        if let host = Endpoint.host(of: endpoint), Endpoint.isLoopback(host) {
            let ipc = "ipc://@rnn-coord-\(String(runID, radix: 16))"
            localEndpoint = (try? router.bind(ipc)) != nil ? ipc : nil
        } else {
            localEndpoint = nil
        }
        do {
            heartbeats = try HeartbeatServer(context: context, controlBind: options.bind, runID: runID, curve: options.curve, rejects: rejects)
        } catch {
            handshakes?.stop()
            router.close()
            authenticator?.stop()
            context.shutdown()
            throw error
        }
        if options.curve != nil {
            token = nil
            tokenFile = nil
        } else {
            let t = options.token ?? RunToken.generate()
            token = t
            var file = options.tokenFile
            if file == nil, let host = Endpoint.host(of: endpoint), Endpoint.isLoopback(host), let port = Endpoint.port(of: endpoint) {
                file = RunToken.defaultPath(port: port)
            }
            if let f = file {
                try? RunToken.write(t, to: f)
                options.stop?.atForcedExit { unlink(f) }
            }
            tokenFile = file
        }
    }

    deinit {
        handshakes?.stop()
        heartbeats.stop()
        authenticator?.stop()
        router.close()
        context.shutdown()
        if let tokenFile { unlink(tokenFile) }
    }

    /// Trains to the end and returns the summary; throws with a named cause otherwise. Workers
    /// are told BYE on success and ERROR on failure.
    public func run() throws -> TrainingSummary {
        // Once the run is over nobody may join with this token: the file goes at once (not at
        // deinit, which an exiting process may never reach).
        defer { if let tokenFile { unlink(tokenFile) } }
        do {
            return try train()
        } catch let interrupted as Interrupted {
            throw interrupted  // the workers were told BYE
        } catch {
            for m in members + pending {
                try? sendRaw(ErrorMessage(text: "\(error)").frame(runID: runID), to: m.identity, deadline: .after(milliseconds: 500))
            }
            throw error
        }
    }

    // MARK: Training

    private func train() throws -> TrainingSummary {
        let config = options.config
        let table = ParameterTable(config: config.model)
        let dataOptions = config.datasetOptions(memoryBudgetBytes: 0, validateValues: true)
        let dataset = try TensorDataset.open(paths: config.dataFiles, options: dataOptions)
        try checkDataset(dataset, fits: config.model, name: "training data")
        var validation: TensorDataset?
        // --val-split (ValidationSplit.swift): epoch positions index `trainRows`, and the held-out
        // rows of the training data are the validation set.
        let split = try config.valSplit.map { try ValidationSplit(count: dataset.count, fraction: $0, seed: config.seed) }
        let trainRows = split?.train
        if split != nil { validation = dataset }
        if !config.valFiles.isEmpty {
            let val = try TensorDataset.open(paths: config.valFiles, options: config.datasetOptions())
            try checkDataset(val, fits: config.model, name: "validation data", training: dataset)
            validation = val
        }
        // One plan step is one optimizer step: B rows, or N * B with --accumulate N.
        let plan = try EpochPlan(sampleCount: trainRows?.count ?? dataset.count, batchSize: config.rowsPerOptimizerStep, shuffle: config.shuffle,
                                 seed: config.seed, dropLast: config.dropLast)
        guard plan.stepsPerEpoch > 0 else {
            throw CoordinatorError("the training data has \(dataset.count) samples, fewer than one batch of \(config.rowsPerOptimizerStep) with --drop-last")
        }

        // Initial state: fresh, or the newest valid checkpoint.
        var state = ReplicaState(parameters: ParameterTable.initialParameters(config: config.model, seed: config.seed),
                                 expAvg: [Float](repeating: 0, count: table.totalCount),
                                 expAvgSq: [Float](repeating: 0, count: table.totalCount), stepCount: 0)
        var startEpoch = 0, startStep = 0, globalStep = 0
        var history = MetricsHistory(steps: [], loss: [], accuracy: config.model.loss == .crossEntropy ? [] : nil)
        var savedScheduler: String?
        var best = config.keepBest.map { BestTracker(metric: $0) } ?? config.earlyStopping.map { _ in BestTracker(metric: .valLoss) }
        if let dir = options.resume {
            let found = CheckpointStore.newest(in: dir, table: table)
            guard let ckpt = found.checkpoint, let path = found.path else {
                if let other = CheckpointStore.newestStoredConfig(in: dir).flatMap({ try? TrainingConfig.fromJSON($0) }),
                   !config.model.continues(other.model) {
                    throw CoordinatorError("--resume \(dir): the checkpoints in \(dir) hold \(other.model.summary) model; "
                        + "you asked for \(config.model.differences(from: other.model))")
                }
                for w in found.warnings { report(.message(.warning, w)) }
                throw CoordinatorError("--resume \(dir): no valid checkpoint found")
            }
            for w in found.warnings { report(.message(.warning, w)) }
            let saved = try? ckpt.metadata.decodeConfig(TrainingConfig.self)
            if let saved, !config.model.continues(saved.model) {
                throw CoordinatorError("--resume \(path): the checkpoint's model \(saved.model) differs from the requested \(config.model)")
            }
            state = ReplicaState(parameters: ckpt.parameters, expAvg: ckpt.optimizer.expAvg,
                                 expAvgSq: ckpt.optimizer.expAvgSq, stepCount: ckpt.optimizer.step)
            startEpoch = ckpt.metadata.epoch
            startStep = ckpt.metadata.stepInEpoch
            globalStep = ckpt.metadata.globalStep
            history = ckpt.metrics
            savedScheduler = ckpt.metadata.schedulerJSON
            if let saved = try? JSONDecoder().decode(BestTracker.self, from: Data(ckpt.metadata.bestTrackerJSON.utf8)),
               saved.metric == best?.metric {
                best = saved
            }
            report(.message(.info, "Resuming from \(path): global step \(globalStep), epoch \(startEpoch + 1), step \(startStep)"))
        }
        /// The global step `state` belongs to.
        var stateStep = globalStep
        // The lr schedule (LRScheduling.swift): its state follows `globalStep`; `schedulerAtState`
        // is the one of `stateStep`, for a checkpoint of an older state.
        let made = try makeLRScheduler(config: config, stepsPerEpoch: plan.stepsPerEpoch, savedJSON: savedScheduler,
                                       globalStep: globalStep, epochsEnded: startEpoch)
        if let warning = made.warning { report(.message(.warning, warning)) }
        var scheduler = made.scheduler, schedulerAtState = scheduler
        let store = try options.checkpointDir.map { dir throws in try CheckpointStore(directory: dir, keep: options.keep) }
        if let dir = options.checkpointDir { removeInterruptedWrites(in: dir) }
        let metricsPath = options.checkpointDir.map { ($0 as NSString).appendingPathComponent("metrics.jsonl") }
        if options.resume != nil, let metricsPath {
            // The steps after the checkpoint are redone: their records (and a partial record of
            // the epoch that continues) go, so the file never holds a step twice.
            MetricsLog.truncate(path: metricsPath, afterGlobalStep: globalStep, continuingEpoch: startStep > 0 ? startEpoch + 1 : nil)
        }
        let metricsFile = metricsPath.map { MetricsLog(path: $0) }
        defer { metricsFile?.flush() }

        report(.message(.info, "Heartbeats on \(heartbeats.endpoint) every \(options.heartbeatInterval) s; a worker silent for \(options.heartbeatTimeout) s is lost"))
        var security = options.curve != nil ? "CURVE, \(options.curve!.allowedClientKeys.count) allowed key(s)" : "run token"
        if let tokenFile { security += " in \(tokenFile)" }
        report(.message(.info, "Coordinator listening on \(endpoint) (run \(String(runID, radix: 16)); \(security)); waiting for \(options.workers) worker(s)"))

        var checkpoints: [String] = []
        var bestCheckpointPath: String?
        var stoppedEarly = false

        /// Writes the current state (of the epoch just validated) as best.h5.
        func writeBest(_ store: CheckpointStore) throws -> String {
            try refreshState()
            let (epoch, stepInEpoch) = position(after: stateStep, plan: plan)
            let ckpt = Checkpoint(
                metadata: CheckpointMetadata(globalStep: stateStep, epoch: epoch, stepInEpoch: stepInEpoch, seed: config.seed,
                                             worldSize: max(1, members.count), configJSON: config.jsonString()),
                parameters: state.parameters,
                optimizer: OptimizerState(config: config.optimizer, step: state.stepCount, expAvg: state.expAvg, expAvgSq: state.expAvgSq),
                metrics: history.truncated(toSteps: stateStep))
            let path = try store.writeBest(ckpt, table: table)
            report(.message(.info, "Best checkpoint \(path) (epoch \(best?.bestEpoch ?? 0), \(best?.metric.rawValue ?? "") \(String(format: "%.6g", best?.bestValue ?? .nan)))"))
            return path
        }

        /// Writes the state of `stateStep` completed steps.
        func writeCheckpoint() throws {
            guard let store else { return }
            // metrics.jsonl covers every checkpoint: a resume from it then finds each step
            // logged once (records past it are dropped, none before it are missing).
            metricsFile?.flush()
            let (epoch, stepInEpoch) = position(after: stateStep, plan: plan)
            let ckpt = Checkpoint(
                metadata: CheckpointMetadata(globalStep: stateStep, epoch: epoch, stepInEpoch: stepInEpoch, seed: config.seed,
                                             worldSize: max(1, members.count), configJSON: config.jsonString(),
                                             schedulerJSON: (stateStep == globalStep ? scheduler : schedulerAtState)?.jsonString() ?? "",
                                             bestTrackerJSON: best?.jsonString() ?? ""),
                parameters: state.parameters,
                optimizer: OptimizerState(config: config.optimizer, step: state.stepCount,
                                          expAvg: state.expAvg, expAvgSq: state.expAvgSq),
                metrics: history.truncated(toSteps: stateStep))
            let path = try store.write(ckpt, table: table)
            if checkpoints.last != path { checkpoints.append(path) }
            report(.message(.info, "Checkpoint \(path)"))
        }

        /// Brings `state` to `globalStep` (from rank 0), re-forming the ring if a member is lost meanwhile.
        func refreshState() throws {
            if stateStep == globalStep { return }
            while true {
                do {
                    state = try fetchState(globalStep: globalStep)
                    stateStep = globalStep
                    schedulerAtState = scheduler
                    return
                } catch let lost as MembersLost {
                    try recover(lost, completed: globalStep)
                }
            }
        }

        /// Handles lost members: log, check the minimum (checkpoint + named error), re-form.
        func recover(_ lost: MembersLost, completed: Int) throws {
            let names = try dropLost(lost)
            if members.count < options.minWorkers {
                let what = names.joined(separator: "; ")
                var saved = ""
                if store != nil {
                    // The survivors roll back to the last completed step and hand over their state.
                    if !members.isEmpty, (try? formRing(state: state, completed: completed, reason: "below --min-workers", belowMinimum: true)) != nil,
                       let s = try? fetchState(globalStep: completed) {
                        state = s
                        stateStep = completed
                        schedulerAtState = scheduler
                    }
                    if (try? writeCheckpoint()) != nil, let last = checkpoints.last { saved = "; checkpoint \(last) holds global step \(stateStep)" }
                }
                throw CoordinatorError("lost \(what); \(members.count) worker(s) left, fewer than --min-workers \(options.minWorkers)\(saved)")
            }
            try formRing(state: state, completed: completed, reason: "lost \(names.joined(separator: "; "))")
        }

        // Handshake: wait for the expected workers, then form the first ring.
        let joinDeadline = Deadline.after(seconds: options.joinTimeout)
        while pending.count < options.workers {
            if let sig = options.stop?.requested {
                throw Interrupted(signal: sig, checkpoint: nil, globalStep: globalStep,
                                  description: "\(StopRequest.name(of: sig)) while waiting for workers (\(pending.count) of \(options.workers) joined); nothing was trained")
            }
            if joinDeadline.hasPassed {
                throw CoordinatorError("only \(pending.count) of \(options.workers) workers joined \(endpoint) within \(Int(options.joinTimeout)) s")
            }
            _ = try nextFromMember(deadline: .after(milliseconds: 100))
        }
        members = pending
        pending = []
        try formRing(state: state, completed: globalStep, reason: "start")
        report(.message(.info, "Training \(config.model.cell.rawValue) H=\(config.model.hiddenSize) L=\(config.model.layers) on \(dataset.count) samples "
            + "(T=\(dataset.steps), I=\(dataset.inputSize), \(dataset.targetKind)), \(members.count) worker(s), batch \(config.batchSize)\(config.accumulate.map { $0 > 1 ? " x \($0) accumulated" : "" } ?? ""), "
            + "\(plan.stepsPerEpoch) steps/epoch"))

        var lastEpoch = EvalResult(loss: .nan, accuracy: nil)
        var lastValidation: EvalResult?
        var epochsCompleted = startEpoch
        var samplesDone = 0
        /// Wall time spent in training steps (not in evaluation or checkpoints).
        var stepNanoseconds: UInt64 = 0
        let evaluator = try RNNNetwork(config: config.model, threads: 1)

        /// The first global step of the group whose assignments went out ahead (-1: none), and its size.
        var assignedAhead = -1, aheadCount = 0
        /// Steps per STEP message (see `CoordinatorOptions.maxStepsPerMessage`); starts at 1
        /// and follows the measured step time.
        var stepsPerMessage = 1
        /// Whether the replicas report their parameter hash after global step `g`.
        func wantsHash(_ g: Int) -> Bool { (g + 1) % config.hashEvery == 0 }
        /// The steps of the group starting at step `s` of the epoch (global step `g`): it ends at
        /// the latest at the epoch's end, the last step and a checkpoint.
        func groupSize(_ order: EpochOrder, from s: Int, globalStep g: Int) -> Int {
            var n = min(stepsPerMessage, order.steps - s)
            if let max = config.maxSteps { n = min(n, max - g) }
            if options.checkpointEvery > 0 { n = min(n, options.checkpointEvery - g % options.checkpointEvery) }
            return Swift.max(1, n)
        }
        /// Sends each member its rows of `count` steps from step `s` (global step `g`), one message each.
        func assign(_ order: EpochOrder, step s: Int, count: Int, globalStep g: Int) throws {
            let parts = (0..<count).map { i in rowParts(rows: order.positions(step: s + i).count) }
            for m in members {
                let steps = (0..<count).map { i in
                    StepMessage(epoch: order.epoch, stepInEpoch: s + i, globalStep: g + i,
                                rows: trainingRows(order.shard(step: s + i, part: parts[i][m.rank]), trainRows), wantHash: wantsHash(g + i),
                                lr: scheduler?.lr(ahead: g + i - globalStep))
                }
                try send(StepGroupMessage(steps), to: m, step: g)
            }
        }
        /// After a failure the group assigned ahead is void (the re-formed ring redoes the current one).
        func dropAssignedAhead() {
            assignedAhead = -1
            aheadFrames = []
        }

        /// The signal that stopped the run early.
        var interruptedBy: Int32?
        training: for epoch in startEpoch..<config.epochs {
            if let max = config.maxSteps, globalStep >= max { break training }
            let order = plan.epoch(epoch)
            var epochStats = LossStats()
            let epochStarted = monotonicNanoseconds()
            let first = epoch == startEpoch ? startStep : 0
            /// When the last group was collected: its steps' times are spread evenly over the
            /// time since the one before.
            var lastCollected = epochStarted
            var s = first
            /// --max-steps ended this epoch before its last step.
            var partial = false
            while s < order.steps {
                if let max = config.maxSteps, globalStep >= max {
                    partial = true
                    break
                }
                // A signal: the group assigned ahead is collected first (the workers compute it
                // anyway), then the run stops at that step boundary.
                if let sig = options.stop?.requested, assignedAhead != globalStep {
                    interruptedBy = sig
                    break training
                }
                // Workers that asked to join come in at this step boundary with the current state
                // (at the next one when this step already went out ahead).
                if !pending.isEmpty && assignedAhead != globalStep {
                    try refreshState()
                    let joining = pending.map { "\($0.host) pid \($0.pid)" }.joined(separator: ", ")
                    members += pending
                    pending = []
                    try formRing(state: state, completed: globalStep, reason: "joined: \(joining)")
                    report(.message(.info, "Worker(s) \(joining) joined at global step \(globalStep); \(members.count) worker(s) now"))
                }
                let stepStarted = monotonicNanoseconds()
                let count = assignedAhead == globalStep ? aheadCount : groupSize(order, from: s, globalStep: globalStep)
                var results: [[MetricsMessage]] = []
                var failures = 0
                while true {
                    do {
                        if assignedAhead != globalStep { try assign(order, step: s, count: count, globalStep: globalStep) }
                        assignedAhead = -1
                        // Pipelining: the next group goes out before this one is collected, so a
                        // worker starts it right after its Adam step instead of one coordinator
                        // round trip later. Not across an epoch end, a checkpoint, the last step
                        // or a join: the workers must be idle after this group for those.
                        let next = globalStep + count
                        if s + count < order.steps, config.maxSteps.map({ next < $0 }) ?? true, pending.isEmpty, options.stop?.requested == nil,
                           !(options.checkpointEvery > 0 && next % options.checkpointEvery == 0) {
                            aheadCount = groupSize(order, from: s + count, globalStep: next)
                            try assign(order, step: s + count, count: aheadCount, globalStep: next)
                            assignedAhead = next
                        }
                        results = try collectMetrics(globalStep: globalStep, count: count)
                        break
                    } catch let lost as MembersLost {
                        dropAssignedAhead()
                        try recover(lost, completed: globalStep)
                        redone += 1
                        report(.message(.warning, "Redoing global step \(globalStep + 1) with \(members.count) worker(s) (generation \(generation))"))
                    } catch let abandoned as StepAbandoned {
                        dropAssignedAhead()
                        failures += 1
                        let who = members.indices.contains(abandoned.rank) ? members[abandoned.rank].name : "rank \(abandoned.rank)"
                        report(.message(.warning, "Worker \(who) abandoned global step \(globalStep + 1): \(abandoned.text)"))
                        // Give the liveness check the time to name a silent peer before retrying.
                        do {
                            try waitForLoss(seconds: options.heartbeatTimeout + options.heartbeatInterval)
                        } catch let lost as MembersLost {
                            try recover(lost, completed: globalStep)
                            redone += 1
                            report(.message(.warning, "Redoing global step \(globalStep + 1) with \(members.count) worker(s) (generation \(generation))"))
                            continue
                        }
                        if failures > options.maxStepRetries {
                            throw CoordinatorError("global step \(globalStep + 1) failed \(failures) times with every worker alive; last: \(abandoned.text)")
                        }
                        try formRing(state: state, completed: globalStep, reason: "retry after a failed all-reduce")
                        redone += 1
                    }
                }
                let collected = monotonicNanoseconds()
                stepNanoseconds += collected - stepStarted
                // The next group's size follows this group's time per step.
                let perStep = Double(collected - stepStarted) / 1e9 / Double(count)
                stepsPerMessage = Swift.max(1, Swift.min(options.maxStepsPerMessage, Int(options.messageGroupSeconds / Swift.max(perStep, 1e-9))))
                longGroups = Double(collected - stepStarted) / 1e9 > 2 * options.messageGroupSeconds
                if options.balance { measureSpeeds(results) }
                for (i, stepResults) in results.enumerated() {
                    var stats = LossStats()
                    for r in stepResults { stats = stats + LossStats(lossSum: r.lossSum, scoredCount: r.scored, correct: r.correct) }
                    try checkFinite(stats, stepResults, globalStep: globalStep, checkpoint: checkpoints.last ?? store?.list().last?.path)
                    if wantsHash(globalStep) { try checkHashes(stepResults, globalStep: globalStep) }
                    epochStats = epochStats + stats
                    samplesDone += order.positions(step: s).count
                    let stepLR = scheduler?.lr ?? Double(config.optimizer.lr)
                    scheduler?.stepTaken()
                    globalStep += 1
                    history.steps.append(globalStep)
                    history.loss.append(Float(stats.meanLoss))
                    if history.accuracy != nil { history.accuracy!.append(Float(stats.accuracy)) }
                    let at = lastCollected + (collected - lastCollected) * UInt64(i + 1) / UInt64(count)
                    let elapsed = Double(at - epochStarted) / 1e9
                    let rate = Double(samplesInEpoch(order, upTo: s - first + 1, from: first)) / max(elapsed, 1e-9)
                    let eta = Double(order.steps - s - 1) / Double(s - first + 1) * elapsed
                    // The slowest rank's all-reduce, and how much of it that rank waited for after backward.
                    let slowest = stepResults.max { $0.reduceSeconds < $1.reduceSeconds }
                    let reduceSeconds = slowest?.reduceSeconds ?? 0
                    let computeSeconds = stepResults.map(\.computeSeconds).max() ?? 0
                    var record: [String: Any?] = [
                        "kind": "step", "global_step": globalStep, "epoch": epoch + 1, "step": s + 1,
                        "loss": stats.meanLoss, "accuracy": history.accuracy == nil ? nil : stats.accuracy,
                        "samples_per_s": rate, "workers": members.count, "reduce_s": reduceSeconds, "compute_s": computeSeconds,
                        "reduce_exposed_s": slowest?.reduceExposedSeconds ?? 0, "reduce_hidden_s": slowest?.reduceHiddenSeconds ?? 0,
                        "lr": stepLR]
                    if stepResults.count > 1 {
                        // Per rank: who computed how many rows in how long (a slow machine shows here).
                        record["rows_by_rank"] = stepResults.map(\.samples)
                        record["compute_s_by_rank"] = stepResults.map(\.computeSeconds)
                    }
                    metricsFile?.append(record)
                    report(.step(StepProgress(epoch: epoch + 1, epochs: config.epochs, step: s + 1, stepsPerEpoch: order.steps,
                                              globalStep: globalStep, loss: stats.meanLoss,
                                              accuracy: history.accuracy == nil ? nil : stats.accuracy,
                                              samplesPerSecond: rate, etaSeconds: eta, reduceSeconds: reduceSeconds, lr: stepLR)))
                    s += 1
                }
                lastCollected = collected
                // With a schedule or a best tracker, a checkpoint at an epoch's end waits for the
                // epoch's end (below: the scheduler's epoch step, the validation seen by the
                // tracker), so that a resume from it continues exactly.
                let deferAtEpochEnd = scheduler != nil || best != nil
                if options.checkpointEvery > 0 && globalStep % options.checkpointEvery == 0 && (!deferAtEpochEnd || s < order.steps) {
                    try refreshState()
                    try writeCheckpoint()
                }
            }
            let seconds = Double(monotonicNanoseconds() - epochStarted) / 1e9
            lastEpoch = EvalResult(loss: epochStats.meanLoss, accuracy: config.model.loss == .crossEntropy ? epochStats.accuracy : nil)
            var record: [String: Any?] = ["kind": "epoch", "epoch": epoch + 1, "global_step": globalStep,
                                          "loss": epochStats.meanLoss, "accuracy": lastEpoch.accuracy, "seconds": seconds]
            if partial { record["partial"] = true }
            if let validation {
                try refreshState()
                let v = try evaluate(evaluator, parameters: state.parameters, on: validation, rows: split?.validation)
                lastValidation = v
                record["val_loss"] = v.loss
                record["val_accuracy"] = v.accuracy
            }
            addLanguageModelMetrics(to: &record, model: config.model)  // TaskMetrics.swift
            // --keep-best / --early-stopping (BestTracker.swift): best.h5 holds the best epoch's state.
            var stopEarly = false
            // A partial epoch (--max-steps) is neither scored nor counted by the schedule: a
            // resume completes it, and then it counts once.
            if validation != nil, let v = lastValidation, best != nil, !partial {
                if best!.observe(epoch: epoch + 1, validation: v), config.keepBest != nil, let store {
                    bestCheckpointPath = try writeBest(store)
                }
                record["best_epoch"] = best!.bestEpoch
                if let patience = config.earlyStopping, best!.epochsWithoutImprovement >= patience {
                    stopEarly = epoch + 1 < config.epochs
                }
            }
            if scheduler != nil, !partial {
                scheduler?.epochEnded(validationLoss: validation == nil ? nil : lastValidation?.loss)
                record["lr"] = scheduler?.lr
            }
            let epochSamples = samplesInEpoch(order, upTo: s - first, from: first)
            report(.epoch(EpochProgress(epoch: epoch + 1, epochs: config.epochs, globalStep: globalStep, loss: epochStats.meanLoss,
                                        accuracy: lastEpoch.accuracy, validationLoss: lastValidation?.loss,
                                        validationAccuracy: lastValidation?.accuracy, seconds: seconds,
                                        samplesPerSecond: Double(epochSamples) / max(seconds, 1e-9),
                                        languageModel: isLanguageModel(config.model))))
            metricsFile?.append(record)
            if partial { break training }
            epochsCompleted = epoch + 1
            if (scheduler != nil || best != nil) && options.checkpointEvery > 0 && globalStep % options.checkpointEvery == 0 {
                try refreshState()
                try writeCheckpoint()
            }
            if stopEarly {
                stoppedEarly = true
                report(.message(.info, "Early stopping after epoch \(epoch + 1): \(config.earlyStopping!) epoch(s) without a better \(best!.metric.rawValue) than epoch \(best!.bestEpoch ?? 0)'s"))
                break training
            }
        }

        // The end: final state, final checkpoint, BYE.
        try refreshState()
        try writeCheckpoint()
        let reason = interruptedBy.map { "the coordinator was stopped by \(StopRequest.name(of: $0))" } ?? "training complete"
        for m in members + pending { try? send(ByeMessage(reason: reason), to: m, deadline: .after(seconds: 5)) }
        if let sig = interruptedBy {
            metricsFile?.flush()
            let where_ = store == nil ? "no --checkpoint-dir, so no checkpoint was written"
                : "checkpoint \(checkpoints.last ?? "?") holds it; continue with: rnn-coord start --resume \(options.checkpointDir!)"
            throw Interrupted(signal: sig, checkpoint: store == nil ? nil : checkpoints.last, globalStep: stateStep,
                              description: "stopped by \(StopRequest.name(of: sig)) after global step \(stateStep); \(where_)")
        }
        let seconds = Double(stepNanoseconds) / 1e9
        var summary = TrainingSummary(globalSteps: globalStep, epochsCompleted: epochsCompleted, train: lastEpoch,
                                      validation: lastValidation, parameters: state.parameters, checkpoints: checkpoints,
                                      samplesPerSecond: Double(samplesDone) / max(seconds, 1e-9), rejectedFrames: rejects.total)
        summary.rejectedByReason = Dictionary(uniqueKeysWithValues: rejects.snapshot.map { ($0.key.rawValue, $0.value) })
        summary.rejectedPeers = peerRejections.total
        summary.lostWorkers = lostNames
        summary.reforms = reforms
        summary.redoneSteps = redone
        summary.finalWorld = members.count
        summary.best = best
        summary.bestCheckpoint = bestCheckpointPath
        summary.stoppedEarly = stoppedEarly
        if rejects.total > 0 || peerRejections.total > 0 {
            let byReason = rejects.snapshot.map { "\($0.key.rawValue) \($0.value)" }.sorted().joined(separator: ", ")
            report(.message(.info, "Rejected \(rejects.total) frame(s) (\(byReason)) and \(peerRejections.total) peer(s)"))
        }
        return summary
    }

    /// Deletes temporary files of checkpoint writes that a crash interrupted (their writer is
    /// gone); they never carry a checkpoint name, so they were never read.
    private func removeInterruptedWrites(in dir: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        var removed: [String] = []
        for name in names where name.hasPrefix(".ckpt-") && name.contains(".tmp-") {
            // .ckpt-<step>.h5.tmp-<pid>-<random>
            let tail = name.components(separatedBy: ".tmp-").last ?? ""
            if let pid = Int32(tail.split(separator: "-").first ?? ""), pid != getpid(), kill(pid, 0) == 0 { continue }
            if unlink((dir as NSString).appendingPathComponent(name)) == 0 { removed.append(name) }
        }
        if !removed.isEmpty {
            report(.message(.warning, "Removed \(removed.count) temporary file(s) of interrupted checkpoint writes in \(dir): \(removed.sorted().joined(separator: ", "))"))
        }
    }

    /// Samples of steps first..<first+count of an epoch.
    private func samplesInEpoch(_ order: EpochOrder, upTo count: Int, from first: Int) -> Int {
        let lower = order.positions(step: first).lowerBound
        return order.positions(step: first + count - 1).upperBound - lower
    }

    /// (epoch, step in epoch) of the step after `globalStep` completed ones. Every epoch has
    /// the same number of steps, so this holds for resumed runs too.
    private func position(after globalStep: Int, plan: EpochPlan) -> (Int, Int) {
        (globalStep / plan.stepsPerEpoch, globalStep % plan.stepsPerEpoch)
    }

    // MARK: Membership

    /// Removes the lost members, tells the heartbeat thread to refuse them, logs each by rank,
    /// host and pid; returns their names.
    private func dropLost(_ lost: MembersLost) throws -> [String] {
        var names: [String] = []
        for (rank, reason) in zip(lost.ranks, lost.reasons).sorted(by: { $0.0 > $1.0 }) {
            let m = members.remove(at: rank)
            let name = "\(m.name): \(reason)"
            names.append(name)
            lostNames.append(name)
            unreachable[m.identity] = nil
            heartbeats.expel(m.identity, reason: "this worker (\(m.name)) was declared lost by the coordinator (\(reason)) and may not rejoin this run")
            report(.message(.warning, "Lost worker \(name)"))
        }
        return names.reversed()
    }

    /// Forms the ring of the current members under a new generation: WELCOME to new
    /// members (with `state`), REFORM to the others (they drop any unfinished step and roll
    /// back to `completed` steps), READY from all, then RING. Lost members meanwhile are
    /// dropped and the ring is formed again.
    private func formRing(state: ReplicaState, completed: Int, reason: String, belowMinimum: Bool = false) throws {
        var attempts = 0
        while true {
            attempts += 1
            if attempts > 10 { throw CoordinatorError("could not form the ring after \(attempts - 1) attempts (\(reason))") }
            if members.isEmpty || (members.count < options.minWorkers && !belowMinimum) {
                throw CoordinatorError("\(members.count) worker(s) left, fewer than --min-workers \(options.minWorkers); lost \(lostNames.joined(separator: "; "))")
            }
            generation += 1
            if generation > 1 { reforms += 1 }
            let world = members.count
            let configJSON = options.config.jsonString()
            // Ranks change with the membership: the speeds are measured again.
            secondsPerRow = [Double](repeating: 0, count: world)
            for i in members.indices {
                members[i].rank = i
                members[i].dataEndpoint = ""
            }
            for i in members.indices {
                let m = members[i]
                if m.isNew {
                    let welcome = WelcomeMessage(
                        rank: i, world: world, configJSON: configJSON,
                        // No worker waits on its ring longer than the coordinator waits for a step.
                        ringTimeoutMilliseconds: Int(min(options.ringTimeout, options.stepTimeout) * 1000),
                        coordinatorTimeoutMilliseconds: Int(options.workerIdleTimeout * 1000), completedSteps: completed,
                        heartbeatEndpoint: heartbeats.endpoint, heartbeatIntervalMilliseconds: Int(options.heartbeatInterval * 1000),
                        heartbeatTimeoutMilliseconds: Int(options.heartbeatTimeout * 1000), state: state)
                    heartbeats.register(m.identity, grace: options.heartbeatTimeout)
                    members[i].isNew = false
                    sendOrMark(welcome, to: m)
                } else {
                    sendOrMark(ReformMessage(rank: i, world: world, completedSteps: completed, reason: reason), to: m)
                }
            }
            do {
                var ready = 0
                let deadline = Deadline.after(seconds: options.joinTimeout)
                while ready < members.count {
                    guard let (rank, frame) = try nextFromMember(deadline: deadline) else {
                        let missing = members.filter { $0.dataEndpoint.isEmpty }.map(\.name).joined(separator: ", ")
                        throw CoordinatorError("no READY from \(missing) within \(Int(options.joinTimeout)) s")
                    }
                    guard frame.header.kind == .ready, frame.header.generation == generation,
                          let msg = try? ReadyMessage.decode(frame) else {
                        rejects.record(frame.header.generation < generation ? .stale : .unexpected)
                        continue
                    }
                    if let curve = options.curve, !curve.allowedClientKeys.contains(msg.publicKey) {
                        throw CoordinatorError("\(members[rank].name) announced a ring key that is not on the allow-list")
                    }
                    if members[rank].dataEndpoint.isEmpty { ready += 1 }
                    members[rank].dataEndpoint = msg.dataEndpoint
                    members[rank].publicKey = msg.publicKey
                }
                let ring = RingMessage(generation: generation, endpoints: members.map(\.dataEndpoint), publicKeys: members.map(\.publicKey))
                for m in members { sendOrMark(ring, to: m) }
                if generation > 1 {
                    report(.message(.info, "Ring generation \(generation): \(members.count) worker(s) (\(reason))"))
                }
                return
            } catch let lost as MembersLost {
                _ = try dropLost(lost)
            }
        }
    }

    /// Throws `MembersLost` for members silent past the heartbeat timeout or whose
    /// connection failed.
    private func checkLiveness() throws {
        var ranks: [Int] = [], reasons: [String] = []
        for (i, m) in members.enumerated() {
            if let why = unreachable[m.identity] {
                ranks.append(i); reasons.append(why)
            } else if let silent = heartbeats.silence(m.identity), silent > options.heartbeatTimeout {
                ranks.append(i); reasons.append(String(format: "no heartbeat for %.1f s", silent))
            }
        }
        if !ranks.isEmpty { throw MembersLost(ranks: ranks, reasons: reasons) }
    }

    /// Serves the control socket for `seconds` (joins, stale frames) and throws as soon as a
    /// member is lost.
    private func waitForLoss(seconds: Double) throws {
        let deadline = Deadline.after(seconds: seconds)
        while try nextFromMember(deadline: deadline) != nil {
            rejects.record(.stale)
        }
    }

    /// A HELLO (or anything) from a peer that is not a member.
    private func handleStranger(_ identity: [UInt8], _ frame: Frame) {
        if frame.header.kind == .leave, let i = pending.firstIndex(where: { $0.identity == identity }) {
            let left = pending.remove(at: i)
            heartbeats.expel(left.identity, reason: "this worker left the run")
            report(.message(.info, "Worker \(left.host) pid \(left.pid) left before training with it began"))
            return
        }
        guard frame.header.kind == .hello, frame.header.runID == 0, let hello = try? HelloMessage.decode(frame) else {
            rejects.record(frame.header.runID == runID || frame.header.runID == 0 ? .unexpected : .wrongRun)
            return
        }
        if pending.contains(where: { $0.identity == identity }) { return }
        func refuse(_ why: String, _ kind: String) {
            peerRejections.record(kind)
            let n = peerRejections.total
            if n <= 10 || n % 1000 == 0 {  // a flood of refusals must not flood the log
                report(.message(.warning, "Refused a worker on \(hello.host), pid \(hello.pid): \(why) (\(n) refused so far)"))
            }
            // Never wait for a refused peer (one that does not read must not slow the run down).
            try? sendRaw(ErrorMessage(text: why).frame(runID: 0), to: identity, deadline: .after(milliseconds: 0))
        }
        guard hello.protocolVersion == protocolVersion else {
            return refuse("protocol version \(hello.protocolVersion) is not \(protocolVersion)", "wrong protocol version")
        }
        if let token, hello.token != token {
            return refuse(hello.token.isEmpty ? "this run needs its token (--token, RNN_TOKEN or the token file of the coordinator)"
                                              : "wrong run token", "wrong run token")
        }
        pending.append(Member(identity: identity, rank: -1, host: hello.host, pid: hello.pid))
        report(.message(.info, "Worker \(hello.host) pid \(hello.pid) joined (\(pending.count + members.count)/\(options.workers))"))
    }

    // MARK: Steps

    /// The parts (offsets into the block, in rank order) of a step of `rows` rows: near-equal,
    /// or with `options.balance` and every rank measured, in proportion to the ranks' speeds,
    /// each rank keeping at least a quarter of an equal share and one row (so its speed stays
    /// measured) when the step has a row for every rank.
    private func rowParts(rows: Int) -> [Range<Int>] {
        let world = members.count
        guard options.balance, secondsPerRow.count == world, secondsPerRow.allSatisfy({ $0 > 0 }) else {
            return (0..<world).map { EpochPlan.shardRange(count: rows, rank: $0, worldSize: world) }
        }
        return EpochPlan.shardRanges(count: rows, weights: secondsPerRow.map { 1 / $0 }, minimum: max(1, rows / (4 * world)))
    }

    /// Folds each rank's seconds per row of the collected steps into its running average.
    private func measureSpeeds(_ results: [[MetricsMessage]]) {
        for stepResults in results where stepResults.count == secondsPerRow.count {
            for (rank, r) in stepResults.enumerated() where r.samples > 0 && r.computeSeconds > 0 {
                let sample = r.computeSeconds / Double(r.samples)
                let old = secondsPerRow[rank]
                secondsPerRow[rank] = old == 0 ? sample : old + options.balanceSmoothing * (sample - old)
            }
        }
    }

    /// Gathers every member's METRICS of the `count` steps from `globalStep`, as
    /// [step][rank]. Frames of the next group (assigned ahead by the pipelining) that arrive
    /// meanwhile are kept for the next call.
    private func collectMetrics(globalStep: Int, count: Int) throws -> [[MetricsMessage]] {
        var results = [[MetricsMessage]?](repeating: nil, count: members.count)
        var pendingCount = members.count
        var next: [(Int, Frame)] = []
        /// Takes one frame of a member; throws `StepAbandoned` for a failed exchange.
        func take(_ rank: Int, _ frame: Frame) throws {
            if frame.header.generation != generation {
                rejects.record(.stale)
                return
            }
            if frame.header.kind == .abortStep, let failed = try? StepFailedMessage.decode(frame) {
                if (globalStep..<globalStep + count).contains(failed.globalStep) { throw StepAbandoned(rank: rank, text: failed.text) }
                if failed.globalStep >= globalStep + count { next.append((rank, frame)) } else { rejects.record(.unexpected) }
                return
            }
            guard frame.header.kind == .metrics, let m = try? MetricsGroupMessage.decode(frame) else {
                rejects.record(.unexpected)
                return
            }
            if m.records[0].globalStep == globalStep + count {
                next.append((rank, frame))
                return
            }
            guard m.records[0].globalStep == globalStep, m.records.count == count, results[rank] == nil else {
                rejects.record(.unexpected)
                return
            }
            results[rank] = m.records
            pendingCount -= 1
        }
        let early = aheadFrames
        aheadFrames = []
        for (rank, frame) in early where rank < members.count { try take(rank, frame) }
        let deadline = Deadline.after(seconds: options.stepTimeout)
        while pendingCount > 0 {
            guard let (rank, frame) = try nextFromMember(deadline: deadline) else {
                // Everyone still sends heartbeats, yet the step is stuck: treat it as a failed
                // exchange (re-form and redo, a bounded number of times).
                let missing = members.filter { results[$0.rank] == nil }
                throw StepAbandoned(rank: missing.first?.rank ?? 0,
                                    text: "no result from \(missing.map(\.name).joined(separator: ", ")) within the step timeout of \(options.stepTimeout) s")
            }
            try take(rank, frame)
        }
        aheadFrames = next
        let byRank = results.map { $0! }
        return (0..<count).map { i in byRank.map { $0[i] } }
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
            let names = results.indices.filter { !largest.contains($0) }.map { members[$0].name }.joined(separator: ", ")
            throw CoordinatorError("replicas diverged after global step \(globalStep + 1): the parameters of \(names) differ from those of the other \(largest.count) rank(s)")
        }
        let names = results.indices.map { "\(members[$0].name) \(String(results[$0].parameterHash, radix: 16))" }.joined(separator: ", ")
        throw CoordinatorError("replicas diverged after global step \(globalStep + 1): no majority of equal parameters (hashes: \(names))")
    }

    /// The replicated state, from rank 0.
    private func fetchState(globalStep: Int) throws -> ReplicaState {
        let rank0 = members[0]
        try send(StateRequestMessage(), to: rank0)
        let deadline = Deadline.after(seconds: options.stepTimeout)
        while true {
            guard let (rank, frame) = try nextFromMember(deadline: deadline) else {
                throw CoordinatorError("no state from \(rank0.name) within \(Int(options.stepTimeout)) s")
            }
            guard rank == 0, frame.header.kind == .state, let msg = try? StateMessage.decode(frame) else {
                rejects.record(.unexpected)
                continue
            }
            guard msg.globalStep == globalStep else {
                throw CoordinatorError("\(rank0.name) sent the state of global step \(msg.globalStep), expected \(globalStep)")
            }
            return msg.state
        }
    }

    /// The loss (and accuracy) of `parameters` on `data`, or on its `rows` only (--val-split).
    private func evaluate(_ network: RNNNetwork, parameters: [Float], on data: TensorDataset, rows subset: [Int]? = nil) throws -> EvalResult {
        var total = LossStats()
        var batch = Batch()
        let chunk = 256
        var start = 0
        let count = subset?.count ?? data.count
        while start < count {
            let rows = subset.map { Array($0[start..<min(start + chunk, count)]) } ?? Array(start..<min(start + chunk, count))
            try data.read(rows: rows, into: &batch)
            let targets = batch.targets.networkTargets
            total = total + (try network.evaluate(parameters: parameters, input: batch.x, batch: batch.count,
                                                  steps: data.steps, targets: targets, lengths: batch.lengths))
            start += chunk
        }
        return EvalResult(loss: total.meanLoss, accuracy: network.config.loss == .crossEntropy ? total.accuracy : nil)
    }

    // MARK: Sockets

    private func send<M: ControlMessage>(_ message: M, to member: Member, step: Int = 0, deadline: Deadline? = nil) throws {
        do {
            try sendRaw(message.frame(runID: runID, generation: generation, step: UInt64(step)), to: member.identity,
                        deadline: deadline ?? .after(seconds: min(options.stepTimeout, options.heartbeatTimeout)))
        } catch {
            // The peer's connection is gone (or it stopped reading): it is lost at the next check.
            unreachable[member.identity] = "its connection failed (\(error))"
            try checkLiveness()
            throw error
        }
    }

    /// Sends, and on failure marks the member lost for the next liveness check.
    private func sendOrMark<M: ControlMessage>(_ message: M, to member: Member) {
        do {
            try sendRaw(message.frame(runID: runID, generation: generation), to: member.identity,
                        deadline: .after(seconds: min(options.stepTimeout, options.heartbeatTimeout)))
        } catch {
            unreachable[member.identity] = "its connection failed (\(error))"
        }
    }

    private func sendRaw(_ frame: Frame, to identity: [UInt8], deadline: Deadline) throws {
        try router.sendMultipart([identity, frame.encoded], deadline: deadline)
    }

    /// The next valid frame of this run from a member, with its rank; HELLOs of new workers
    /// are queued for the next step boundary; foreign frames are counted and dropped. Waits in
    /// slices of at most 100 ms and throws `MembersLost` as soon as a member is lost; nil at
    /// the deadline.
    private func nextFromMember(deadline: Deadline) throws -> (Int, Frame)? {
        let decoder = FrameDecoder(expectedRunID: nil, maxPayloadBytes: 1 << 31 - 1, rejects: rejects)
        while true {
            try checkLiveness()
            let slice = Deadline(nanoseconds: min(deadline.nanoseconds, Deadline.after(milliseconds: 100).nanoseconds))
            if let parts = try router.receiveMultipart(deadline: slice, spinMicroseconds: longGroups ? 0 : options.spinMicroseconds) {
                guard parts.count == 2 else {
                    rejects.record(.unexpected)
                    continue
                }
                guard let frame = try? decoder.decode(parts[1]) else { continue }
                let identity = parts[0].bytes
                if let rank = members.firstIndex(where: { $0.identity == identity }) {
                    guard frame.header.runID == runID else {
                        rejects.record(.wrongRun)
                        continue
                    }
                    if frame.header.kind == .error {
                        let text = (try? ErrorMessage.decode(frame).text) ?? "unreadable error"
                        throw CoordinatorError("worker \(members[rank].name) failed: \(text)")
                    }
                    if frame.header.kind == .leave {
                        let text = (try? LeaveMessage.decode(frame).reason) ?? "no reason given"
                        throw MembersLost(ranks: [rank], reasons: ["it left (\(text))"])
                    }
                    return (rank, frame)
                }
                handleStranger(identity, frame)
                continue
            }
            if deadline.hasPassed { return nil }
        }
    }
}



/// Appends one JSON object per line to a file (created on first use). Lines are encoded by
/// hand (JSONSerialization cost ~165 us of coordinator CPU per step, as much as a whole
/// seed-small step) and written in batches: at least every second, at each epoch record, and
/// on `flush()` / deinit.
final class MetricsLog {
    let path: String
    private var handle: FileHandle?
    private var pending: [UInt8] = []
    private var lastFlush = monotonicNanoseconds()

    init(path: String) {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        handle = FileHandle(forWritingAtPath: path)
        handle?.seekToEndOfFile()
    }

    deinit {
        flush()
        try? handle?.close()
    }

    /// One record, with an ISO-8601 UTC `time`: keys sorted; nil and non-finite values left out; values Int, Double,
    /// Float, Bool, String, [Int] or [Double] (a non-finite element as null).
    func append(_ record: [String: Any?]) {
        var record = record
        if record["time"] == nil { record["time"] = isoTimestamp() }  // MetricsTime.swift
        var line = "{"
        var first = true
        for key in record.keys.sorted() {
            guard let value = record[key] ?? nil, let text = Self.json(value) else { continue }
            if !first { line += "," }
            first = false
            line += Self.quoted(key) + ":" + text
        }
        line += "}\n"
        pending.append(contentsOf: line.utf8)
        let now = monotonicNanoseconds()
        if record["kind"] as? String != "step" || now - lastFlush > 1_000_000_000 || pending.count > 1 << 16 {
            flush()
        }
    }

    /// Before a resume from the checkpoint of `afterGlobalStep` completed steps: removes the
    /// records of later steps (they are redone, and would appear twice), epoch records of
    /// later steps, and the partial record (`--max-steps`) of `continuingEpoch` (1-based),
    /// which the resumed run completes. Rewritten atomically; lines that do not parse stay.
    static func truncate(path: String, afterGlobalStep step: Int, continuingEpoch: Int?) {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return }
        var kept: [Substring] = []
        var dropped = 0
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let globalStep = object["global_step"] as? Int else {
                kept.append(line)
                continue
            }
            let partialOfContinued = object["kind"] as? String == "epoch" && object["partial"] as? Bool == true
                && (object["epoch"] as? Int).map { continuingEpoch == $0 } == true
            if globalStep > step || partialOfContinued {
                dropped += 1
            } else {
                kept.append(line)
            }
        }
        guard dropped > 0 else { return }
        let body = kept.map { $0 + "\n" }.joined()
        try? Data(body.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Writes the buffered lines.
    func flush() {
        lastFlush = monotonicNanoseconds()
        guard !pending.isEmpty else { return }
        handle?.write(Data(pending))
        pending.removeAll(keepingCapacity: true)
    }

    private static func json(_ value: Any) -> String? {
        switch value {
        case let v as Bool: return v ? "true" : "false"
        case let v as Int: return String(v)
        case let v as Double: return v.isFinite ? "\(v)" : nil
        case let v as Float: return v.isFinite ? "\(v)" : nil
        case let v as String: return quoted(v)
        case let v as [Int]: return "[" + v.map(String.init).joined(separator: ",") + "]"
        case let v as [Double]: return "[" + v.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ",") + "]"
        default: return nil
        }
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension MetricsHistory {
    /// The history of the first `count` global steps (steps are 1-based and increasing).
    func truncated(toSteps count: Int) -> MetricsHistory {
        let n = steps.firstIndex(where: { $0 > count }) ?? steps.count
        return MetricsHistory(steps: Array(steps.prefix(n)), loss: Array(loss.prefix(n)), accuracy: accuracy.map { Array($0.prefix(n)) })
    }
}
