// The coordinator: validates the dataset, waits for the workers, hands out ranks, the config
// and the initial state, drives every global step (which rows each worker computes), gathers
// metrics, checks that the replicas agree, evaluates, and writes checkpoints.
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
        for (name, v) in [("join", joinTimeout), ("step", stepTimeout), ("ring", ringTimeout), ("worker idle", workerIdleTimeout)] where !(v > 0) {
            throw ConfigError("the \(name) timeout must be positive, found \(v)")
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
    public var parameters: [Float]
    /// Checkpoints written, oldest first (only the last `keep` still exist).
    public var checkpoints: [String]
    /// Training samples per second of step time (evaluation and checkpoints excluded).
    public var samplesPerSecond: Double
    /// Frames the coordinator rejected (malformed, foreign, unexpected).
    public var rejectedFrames: Int
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
    var name: String { "rank \(rank) (\(host), pid \(pid))" }
}

public final class Coordinator: @unchecked Sendable {
    public let options: CoordinatorOptions
    private let report: @Sendable (TrainingEvent) -> Void
    private let context: ZMQContext
    private let router: ZMQSocket
    /// The resolved control endpoint (with the real port when bound to `*`).
    public let endpoint: String
    private let runID: UInt64
    private let rejects = RejectCounter()
    private var members: [Member] = []
    /// Metrics of the next global step that arrived while the current one was collected.
    private var early: [Int: MetricsMessage] = [:]

    /// Binds the control socket; workers may connect from now on.
    /// `events` receives progress (see `plainLineReporter`); the coordinator prints nothing itself.
    public init(options: CoordinatorOptions, events: @escaping @Sendable (TrainingEvent) -> Void = { _ in }) throws {
        try options.validate()
        self.options = options
        self.report = events
        var generator = SystemRandomNumberGenerator()
        var id: UInt64 = 0
        while id == 0 { id = generator.next() }
        runID = id
        context = try ZMQContext()
        router = try ZMQSocket(context, type: .router, lingerMilliseconds: 1000)
        try router.setRouterMandatory(true)
        do {
            try router.bind(options.bind)
        } catch {
            router.close()
            context.shutdown()
            throw CoordinatorError("cannot bind the coordinator to \(options.bind): \(error)")
        }
        endpoint = options.bind.hasPrefix("tcp://") ? ((try? router.lastEndpoint()) ?? options.bind) : options.bind
    }

    deinit {
        router.close()
        context.shutdown()
    }

    /// Trains to the end and returns the summary; throws with a named cause otherwise. Workers
    /// are told BYE on success and ERROR on failure.
    public func run() throws -> TrainingSummary {
        do {
            return try train()
        } catch {
            for m in members {
                try? send(ErrorMessage(text: "\(error)"), to: m, deadline: .after(milliseconds: 500))
            }
            throw error
        }
    }

    // MARK: Training

    private func train() throws -> TrainingSummary {
        let config = options.config
        let table = ParameterTable(config: config.model)
        let dataOptions = TensorDatasetOptions(xName: config.xName, yName: config.yName, memoryBudgetBytes: 0, validateValues: true)
        let dataset = try TensorDataset.open(paths: config.dataFiles, options: dataOptions)
        try checkDataset(dataset, fits: config.model, name: "training data")
        var validation: TensorDataset?
        if !config.valFiles.isEmpty {
            let val = try TensorDataset.open(paths: config.valFiles, options: TensorDatasetOptions(xName: config.xName, yName: config.yName))
            try checkDataset(val, fits: config.model, name: "validation data")
            validation = val
        }
        let plan = try EpochPlan(sampleCount: dataset.count, batchSize: config.batchSize, shuffle: config.shuffle,
                                 seed: config.seed, dropLast: config.dropLast)
        guard plan.stepsPerEpoch > 0 else {
            throw CoordinatorError("the training data has \(dataset.count) samples, fewer than one batch of \(config.batchSize) with --drop-last")
        }

        // Initial state: fresh, or the newest valid checkpoint.
        var state = ReplicaState(parameters: ParameterTable.initialParameters(config: config.model, seed: config.seed),
                                 expAvg: [Float](repeating: 0, count: table.totalCount),
                                 expAvgSq: [Float](repeating: 0, count: table.totalCount), optimizerStep: 0)
        var startEpoch = 0, startStep = 0, globalStep = 0
        var history = MetricsHistory(steps: [], loss: [], accuracy: config.model.loss == .crossEntropy ? [] : nil)
        if let dir = options.resume {
            let found = CheckpointStore.newest(in: dir, table: table)
            for w in found.warnings { report(.message(.warning, w)) }
            guard let ckpt = found.checkpoint, let path = found.path else {
                throw CoordinatorError("--resume \(dir): no valid checkpoint found")
            }
            let saved = try? ckpt.metadata.decodeConfig(TrainingConfig.self)
            if let saved, saved.model != config.model {
                throw CoordinatorError("--resume \(path): the checkpoint's model \(saved.model) differs from the requested \(config.model)")
            }
            state = ReplicaState(parameters: ckpt.parameters, expAvg: ckpt.optimizer.expAvg,
                                 expAvgSq: ckpt.optimizer.expAvgSq, optimizerStep: ckpt.optimizer.step)
            startEpoch = ckpt.metadata.epoch
            startStep = ckpt.metadata.stepInEpoch
            globalStep = ckpt.metadata.globalStep
            history = ckpt.metrics
            report(.message(.info, "Resuming from \(path): global step \(globalStep), epoch \(startEpoch + 1), step \(startStep)"))
        }
        let store = try options.checkpointDir.map { dir throws in try CheckpointStore(directory: dir, keep: options.keep) }
        let metricsFile = options.checkpointDir.map { MetricsLog(path: ($0 as NSString).appendingPathComponent("metrics.jsonl")) }
        defer { metricsFile?.flush() }

        report(.message(.info, "Coordinator listening on \(endpoint) (run \(String(runID, radix: 16))); waiting for \(options.workers) worker(s)"))
        try handshake(state: state)
        let world = members.count
        report(.message(.info, "Training \(config.model.cell.rawValue) H=\(config.model.hiddenSize) L=\(config.model.layers) on \(dataset.count) samples "
            + "(T=\(dataset.steps), I=\(dataset.inputSize), \(dataset.targetKind)), \(world) worker(s), batch \(config.batchSize), "
            + "\(plan.stepsPerEpoch) steps/epoch"))

        var checkpoints: [String] = []
        var lastEpoch = EvalResult(loss: .nan, accuracy: nil)
        var lastValidation: EvalResult?
        var epochsCompleted = startEpoch
        var samplesDone = 0
        /// Wall time spent in training steps (not in evaluation or checkpoints).
        var stepNanoseconds: UInt64 = 0
        let evaluator = try RNNNetwork(config: config.model, threads: 1)

        func saveCheckpoint(epoch: Int, stepInEpoch: Int) throws {
            guard let store else { return }
            let current = try fetchState(globalStep: globalStep)
            state = current
            let ckpt = Checkpoint(
                metadata: CheckpointMetadata(globalStep: globalStep, epoch: epoch, stepInEpoch: stepInEpoch, seed: config.seed,
                                             worldSize: world, configJSON: config.jsonString()),
                parameters: current.parameters,
                optimizer: OptimizerState(config: config.optimizer, step: current.optimizerStep,
                                          expAvg: current.expAvg, expAvgSq: current.expAvgSq),
                metrics: history)
            let path = try store.write(ckpt, table: table)
            if checkpoints.last != path { checkpoints.append(path) }
            report(.message(.info, "Checkpoint \(path)"))
        }

        /// The global step whose assignments went out early (see the pipelining below).
        var assignedAhead = -1
        training: for epoch in startEpoch..<config.epochs {
            let order = plan.epoch(epoch)
            var epochStats = LossStats()
            let epochStarted = monotonicNanoseconds()
            let first = epoch == startEpoch ? startStep : 0
            for s in first..<order.steps {
                if let max = config.maxSteps, globalStep >= max { break training }
                let stepStarted = monotonicNanoseconds()
                let wantHash = (globalStep + 1) % config.hashEvery == 0
                func assign(_ s: Int, _ g: Int) throws {
                    for m in members {
                        let rows = order.shard(step: s, rank: m.rank, worldSize: world)
                        try send(StepMessage(epoch: epoch, stepInEpoch: s, globalStep: g, rows: rows,
                                             wantHash: (g + 1) % config.hashEvery == 0), to: m, step: g)
                    }
                }
                if assignedAhead != globalStep { try assign(s, globalStep) }
                // Pipelining: assign the next step before collecting this one, so each worker
                // starts it straight after its Adam step instead of waiting one round trip
                // through the coordinator. Not across an epoch end, a checkpoint or the last
                // step (those need the workers idle after this step).
                let next = globalStep + 1
                if s + 1 < order.steps, config.maxSteps.map({ next < $0 }) ?? true,
                   !(options.checkpointEvery > 0 && next % options.checkpointEvery == 0) {
                    try assign(s + 1, next)
                    assignedAhead = next
                }
                let results = try collectMetrics(globalStep: globalStep)
                var stats = LossStats()
                for r in results { stats = stats + LossStats(lossSum: r.lossSum, scoredCount: r.scored, correct: r.correct) }
                if wantHash { try checkHashes(results, globalStep: globalStep) }
                epochStats = epochStats + stats
                stepNanoseconds += monotonicNanoseconds() - stepStarted
                samplesDone += order.positions(step: s).count
                globalStep += 1
                history.steps.append(globalStep)
                history.loss.append(Float(stats.meanLoss))
                if history.accuracy != nil { history.accuracy!.append(Float(stats.accuracy)) }
                let elapsed = Double(monotonicNanoseconds() - epochStarted) / 1e9
                let rate = Double(samplesInEpoch(order, upTo: s - first + 1, from: first)) / max(elapsed, 1e-9)
                let eta = Double(order.steps - s - 1) / Double(s - first + 1) * elapsed
                let reduceSeconds = results.map(\.reduceSeconds).max() ?? 0
                metricsFile?.append(["kind": "step", "global_step": globalStep, "epoch": epoch + 1, "step": s + 1,
                                     "loss": stats.meanLoss, "accuracy": history.accuracy == nil ? nil : stats.accuracy,
                                     "samples_per_s": rate,
                                     "reduce_s": reduceSeconds])
                report(.step(StepProgress(epoch: epoch + 1, epochs: config.epochs, step: s + 1, stepsPerEpoch: order.steps,
                                          globalStep: globalStep, loss: stats.meanLoss,
                                          accuracy: history.accuracy == nil ? nil : stats.accuracy,
                                          samplesPerSecond: rate, etaSeconds: eta, reduceSeconds: reduceSeconds)))
                if options.checkpointEvery > 0 && globalStep % options.checkpointEvery == 0 {
                    let next = s + 1 < order.steps ? (epoch, s + 1) : (epoch + 1, 0)
                    try saveCheckpoint(epoch: next.0, stepInEpoch: next.1)
                }
            }
            let seconds = Double(monotonicNanoseconds() - epochStarted) / 1e9
            lastEpoch = EvalResult(loss: epochStats.meanLoss, accuracy: config.model.loss == .crossEntropy ? epochStats.accuracy : nil)
            var record: [String: Any?] = ["kind": "epoch", "epoch": epoch + 1, "global_step": globalStep,
                                          "loss": epochStats.meanLoss, "accuracy": lastEpoch.accuracy, "seconds": seconds]
            if let validation {
                state = try fetchState(globalStep: globalStep)
                let v = try evaluate(evaluator, parameters: state.parameters, on: validation)
                lastValidation = v
                record["val_loss"] = v.loss
                record["val_accuracy"] = v.accuracy
            }
            let epochSamples = samplesInEpoch(order, upTo: order.steps - first, from: first)
            report(.epoch(EpochProgress(epoch: epoch + 1, epochs: config.epochs, globalStep: globalStep, loss: epochStats.meanLoss,
                                        accuracy: lastEpoch.accuracy, validationLoss: lastValidation?.loss,
                                        validationAccuracy: lastValidation?.accuracy, seconds: seconds,
                                        samplesPerSecond: Double(epochSamples) / max(seconds, 1e-9))))
            metricsFile?.append(record)
            epochsCompleted = epoch + 1
        }

        // The end: final state, final checkpoint, BYE.
        state = try fetchState(globalStep: globalStep)
        let (endEpoch, endStep) = position(after: globalStep, plan: plan)
        try saveCheckpoint(epoch: endEpoch, stepInEpoch: endStep)
        for m in members { try? send(ByeMessage(reason: "training complete"), to: m, deadline: .after(seconds: 5)) }
        let seconds = Double(stepNanoseconds) / 1e9
        let summary = TrainingSummary(globalSteps: globalStep, epochsCompleted: epochsCompleted, train: lastEpoch,
                                      validation: lastValidation, parameters: state.parameters, checkpoints: checkpoints,
                                      samplesPerSecond: Double(samplesDone) / max(seconds, 1e-9), rejectedFrames: rejects.total)
        return summary
    }

    /// Samples of steps first..<first+count of an epoch.
    private func samplesInEpoch(_ order: EpochOrder, upTo count: Int, from first: Int) -> Int {
        let lower = order.positions(step: first).lowerBound
        return order.positions(step: first + count - 1).upperBound - lower
    }

    /// (epoch, step in epoch) of the step after `globalStep` completed ones, for a fresh run.
    private func position(after globalStep: Int, plan: EpochPlan) -> (Int, Int) {
        (globalStep / plan.stepsPerEpoch, globalStep % plan.stepsPerEpoch)
    }

    // MARK: Handshake

    private func handshake(state: ReplicaState) throws {
        let deadline = Deadline.after(seconds: options.joinTimeout)
        let open = FrameDecoder(expectedRunID: nil, maxPayloadBytes: 1 << 20, rejects: rejects)
        while members.count < options.workers {
            guard let (identity, frame) = try receive(open, deadline: deadline) else {
                throw CoordinatorError("only \(members.count) of \(options.workers) workers joined \(endpoint) within \(Int(options.joinTimeout)) s")
            }
            guard frame.header.kind == .hello, let hello = try? HelloMessage.decode(frame) else {
                rejects.record(.unexpected)
                continue
            }
            if members.contains(where: { $0.identity == identity }) { continue }
            guard hello.protocolVersion == protocolVersion else {
                rejects.record(.badVersion)
                try? sendRaw(ErrorMessage(text: "protocol version \(hello.protocolVersion) is not \(protocolVersion)").frame(runID: runID),
                             to: identity, deadline: .after(seconds: 1))
                continue
            }
            let member = Member(identity: identity, rank: members.count, host: hello.host, pid: hello.pid)
            members.append(member)
            report(.message(.info, "Worker \(member.name) joined (\(members.count)/\(options.workers))"))
        }
        let configJSON = options.config.jsonString()
        for m in members {
            let welcome = WelcomeMessage(rank: m.rank, world: members.count, configJSON: configJSON,
                                         // No worker waits on its ring longer than the coordinator waits for a step.
                                         ringTimeoutMilliseconds: Int(min(options.ringTimeout, options.stepTimeout) * 1000),
                                         coordinatorTimeoutMilliseconds: Int(options.workerIdleTimeout * 1000), state: state)
            try send(welcome, to: m)
        }
        var ready = 0
        let readyDeadline = Deadline.after(seconds: options.joinTimeout)
        while ready < members.count {
            guard let (rank, frame) = try receiveFromMember(deadline: readyDeadline) else {
                let missing = members.filter { $0.dataEndpoint.isEmpty }.map(\.name).joined(separator: ", ")
                throw CoordinatorError("no READY from \(missing) within \(Int(options.joinTimeout)) s")
            }
            guard frame.header.kind == .ready, let msg = try? ReadyMessage.decode(frame) else {
                rejects.record(.unexpected)
                continue
            }
            if members[rank].dataEndpoint.isEmpty { ready += 1 }
            members[rank].dataEndpoint = msg.dataEndpoint
        }
        let ring = RingMessage(generation: 1, endpoints: members.map(\.dataEndpoint))
        for m in members { try send(ring, to: m) }
    }

    // MARK: Steps

    private func collectMetrics(globalStep: Int) throws -> [MetricsMessage] {
        var results = [MetricsMessage?](repeating: nil, count: members.count)
        var pending = members.count
        // Results of this step that arrived while the previous one was being collected.
        for (rank, m) in early where m.globalStep == globalStep && rank < results.count {
            results[rank] = m
            pending -= 1
        }
        early.removeAll()
        let deadline = Deadline.after(seconds: options.stepTimeout)
        while pending > 0 {
            guard let (rank, frame) = try receiveFromMember(deadline: deadline) else {
                let missing = members.filter { results[$0.rank] == nil }.map(\.name).joined(separator: ", ")
                throw CoordinatorError("global step \(globalStep): no result from \(missing) within \(Int(options.stepTimeout)) s")
            }
            guard let m = try metricsOrFail(frame, rank: rank), m.globalStep == globalStep, results[rank] == nil else {
                if let m = try? MetricsMessage.decode(frame), frame.header.kind == .metrics,
                   m.globalStep == globalStep + 1, early[rank] == nil {
                    early[rank] = m // the next (pipelined) step, from a rank that is ahead
                } else {
                    rejects.record(.unexpected)
                }
                continue
            }
            results[rank] = m
            pending -= 1
        }
        return results.map { $0! }
    }

    private func metricsOrFail(_ frame: Frame, rank: Int) throws -> MetricsMessage? {
        if frame.header.kind == .error {
            let text = (try? ErrorMessage.decode(frame).text) ?? "unreadable error"
            throw CoordinatorError("worker \(members[rank].name) failed: \(text)")
        }
        guard frame.header.kind == .metrics else { return nil }
        return try? MetricsMessage.decode(frame)
    }

    private func checkHashes(_ results: [MetricsMessage], globalStep: Int) throws {
        let reference = results[0].parameterHash
        let differing = results.indices.filter { results[$0].parameterHash != reference }
        guard differing.isEmpty else {
            let names = differing.map { members[$0].name }.joined(separator: ", ")
            throw CoordinatorError("replicas diverged after global step \(globalStep + 1): the parameters of \(names) differ from rank 0's")
        }
    }

    /// The replicated state, from rank 0.
    private func fetchState(globalStep: Int) throws -> ReplicaState {
        let rank0 = members[0]
        try send(StateRequestMessage(), to: rank0)
        let deadline = Deadline.after(seconds: options.stepTimeout)
        while true {
            guard let (rank, frame) = try receiveFromMember(deadline: deadline) else {
                throw CoordinatorError("no state from \(rank0.name) within \(Int(options.stepTimeout)) s")
            }
            if frame.header.kind == .error { _ = try metricsOrFail(frame, rank: rank) }
            guard rank == 0, frame.header.kind == .state, let msg = try? StateMessage.decode(frame) else {
                rejects.record(.unexpected)
                continue
            }
            return msg.state
        }
    }

    private func evaluate(_ network: RNNNetwork, parameters: [Float], on data: TensorDataset) throws -> EvalResult {
        var total = LossStats()
        var batch = Batch()
        let chunk = 256
        var start = 0
        while start < data.count {
            let rows = Array(start..<min(start + chunk, data.count))
            try data.read(rows: rows, into: &batch)
            let targets: Targets
            switch batch.targets {
            case .classes(let ids): targets = .classIds(ids)
            case .values(let v): targets = .values(v)
            }
            total = total + (try network.evaluate(parameters: parameters, input: batch.x, batch: batch.count,
                                                  steps: data.steps, targets: targets))
            start += chunk
        }
        return EvalResult(loss: total.meanLoss, accuracy: network.config.loss == .crossEntropy ? total.accuracy : nil)
    }

    // MARK: Sockets

    private func send<M: ControlMessage>(_ message: M, to member: Member, step: Int = 0, deadline: Deadline? = nil) throws {
        try sendRaw(message.frame(runID: runID, step: UInt64(step)), to: member.identity,
                    deadline: deadline ?? .after(seconds: options.stepTimeout))
    }

    private func sendRaw(_ frame: Frame, to identity: [UInt8], deadline: Deadline) throws {
        try router.sendMultipart([identity, frame.encoded], deadline: deadline)
    }

    /// The next frame that decodes, with its sender's routing id; nil at the deadline.
    private func receive(_ decoder: FrameDecoder, deadline: Deadline) throws -> ([UInt8], Frame)? {
        while let parts = try router.receiveMultipart(deadline: deadline) {
            guard parts.count == 2 else {
                rejects.record(.unexpected)
                continue
            }
            guard let frame = try? decoder.decode(parts[1]) else { continue }
            return (parts[0].bytes, frame)
        }
        return nil
    }

    /// The next valid frame of this run from a member, with its rank; foreign frames are
    /// counted and dropped.
    private func receiveFromMember(deadline: Deadline) throws -> (Int, Frame)? {
        let decoder = FrameDecoder(expectedRunID: runID, maxPayloadBytes: 1 << 31 - 1, rejects: rejects)
        while let (identity, frame) = try receive(decoder, deadline: deadline) {
            guard let rank = members.firstIndex(where: { $0.identity == identity }) else {
                rejects.record(.unexpected)
                continue
            }
            return (rank, frame)
        }
        return nil
    }
}

func fmt(_ x: Double) -> String { String(format: "%.4f", x) }


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

    /// One record: keys sorted; nil and non-finite values left out; values Int, Double,
    /// Float, Bool or String.
    func append(_ record: [String: Any?]) {
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
