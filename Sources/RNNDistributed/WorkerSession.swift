// One worker's session with a coordinator, from WELCOME to BYE: a phase and one
// `handle(frame)` that dispatches each control message to a small method.
//
//   joining --WELCOME--> awaitingRing --RING--> training --REFORM--> awaitingRing ...
//                                                        --BYE--> finished
//
// While a step's all-reduce waits for a peer, `interruptCheck` looks at the control socket:
// a REFORM, ERROR or BYE abandons the step at once; the next step's assignment (sent ahead by
// the coordinator's pipelining) waits in `inbox`.
import Foundation
import RNNCore
import RNNData
import RNNTransport

final class WorkerSession {
    enum Phase: Equatable {
        case joining, awaitingRing, training, finished
    }

    private(set) var phase = Phase.joining
    private let worker: Worker
    private var options: WorkerOptions { worker.options }
    private var log: @Sendable (String) -> Void { worker.log }
    private let context: ZMQContext
    private let control: ZMQSocket
    private let heartbeat: HeartbeatLink
    private let heartbeatTimeout: Double
    private let ringTimeoutMilliseconds: Int
    private let runID: UInt64
    private let config: TrainingConfig
    private let decoder: FrameDecoder
    private let replica: Replica
    private var rank: Int
    private var world: Int
    private var generation: UInt32
    private var ring: RingAllReduce!
    /// Only the ring's members may connect to this worker's ring socket (CURVE): a ZAP handler
    /// checks client keys against the latest RING message, holding a peer that connects before
    /// this worker has read it (not refusing it: ZeroMQ would never retry).
    private let ringGate: ZAPAuthenticator?
    /// The ring's CURVE public keys by rank (from the latest RING message).
    private var ringKeys: [String] = []
    /// Frames taken off the control socket while a step was running.
    private var inbox: [Frame] = []
    private var faults: FaultInjection
    /// The validation files, opened at the first EVALUATE that needs them, and the network
    /// that evaluates (its own workspace, so the training network's stays as it is).
    private var validationData: TensorDataset?
    private var evaluator: RNNNetwork?
    /// After BYE the last frames for the right neighbour get their linger; on any failure they
    /// are useless (the ring will be re-formed or the run is over) and are dropped.
    private var finishedNormally = false
    private var generations = 1, rolledBack = 0, abandoned = 0, stepMessages = 0
    /// All-reduce bytes sent by rings of earlier generations.
    private var endpointBytes = 0, localBytes = 0
    /// This generation's ring still has to measure its all-reduce crossover (before its first step).
    private var crossoverPending = false
    /// Rank 0: the measurement to report with the next step's METRICS.
    private var crossoverToReport: CrossoverThresholds?

    init(worker: Worker, context: ZMQContext, control: ZMQSocket, identity: [UInt8], welcome welcomeFrame: Frame) throws {
        self.worker = worker
        self.context = context
        self.control = control
        faults = worker.options.faults
        runID = welcomeFrame.header.runID
        // Heartbeats first: decoding a large state may take a while.
        guard let beat = WelcomeMessage.heartbeatSettings(welcomeFrame) else {
            throw WorkerError("the coordinator at \(worker.options.connect) sent an unreadable WELCOME")
        }
        heartbeat = try HeartbeatLink(context: context, endpoint: worker.heartbeatEndpoint(beat.endpoint), controlIdentity: identity,
                                      runID: runID, intervalMilliseconds: beat.intervalMilliseconds,
                                      timeoutMilliseconds: beat.timeoutMilliseconds, curve: worker.options.curve)
        do {
            let welcome = try WelcomeMessage.decode(welcomeFrame)
            config = try TrainingConfig.fromJSON(welcome.configJSON)
            rank = welcome.rank
            world = welcome.world
            generation = welcomeFrame.header.generation
            heartbeatTimeout = Double(welcome.heartbeatTimeoutMilliseconds) / 1000
            ringTimeoutMilliseconds = welcome.ringTimeoutMilliseconds
            decoder = FrameDecoder(expectedRunID: runID)
            worker.log("worker: joined run \(String(runID, radix: 16)) at \(worker.options.connect) as rank \(rank) of \(world) at global step \(welcome.completedSteps)")
            heartbeat.update(rank: rank, appliedSteps: welcome.completedSteps)
            replica = try Self.makeReplica(worker: worker, config: config, welcome: welcome, control: control, runID: runID)
            ringGate = try worker.options.curve.map { _ in
                try ZAPAuthenticator(context: context, allowed: [], rejections: PeerRejections(),
                                     holdSeconds: min(10, Double(welcome.ringTimeoutMilliseconds) / 1000),
                                     log: { [log = worker.log] in log("worker: \($0)") })
            }
        } catch {
            heartbeat.stop()
            throw error
        }
        replica.extraSecondsPerRow = faults.extraSecondsPerRow
        replica.failBucketAt = faults.failBucketAt
        do {
            try bindRing()
        } catch {
            close()
            throw error
        }
    }

    private static func makeReplica(worker: Worker, config: TrainingConfig, welcome: WelcomeMessage, control: ZMQSocket, runID: UInt64) throws -> Replica {
        do {
            let replica = try Replica(config: config, state: welcome.state, threads: worker.options.threads ?? config.workerThreads,
                                      files: config.dataFiles.map(worker.remap))
            replica.appliedSteps = welcome.completedSteps
            return replica
        } catch {
            let text = "rank \(welcome.rank): \(error)"
            try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: UInt32(welcome.rank)), deadline: .after(seconds: 2))
            throw WorkerError(text)
        }
    }

    func close() {
        ring?.close(discardPending: !finishedNormally)
        ringGate?.stop()
        heartbeat.stop()
    }

    /// Handles control messages until BYE.
    func run() throws -> WorkerSummary {
        while true {
            if let summary = try handle(try nextFrame()) { return summary }
        }
    }

    /// The next control message: one kept in the inbox, or from the socket (waiting in slices
    /// that check for a signal and the coordinator's heartbeats; the coordinator may
    /// legitimately be quiet for long).
    private func nextFrame() throws -> Frame {
        try leaveIfAsked()
        if !inbox.isEmpty { return inbox.removeFirst() }
        while true {
            try leaveIfAsked()
            try checkCoordinator()
            if let frame = try control.receiveFrame(decoder, deadline: .after(milliseconds: 100)) { return frame }
        }
    }

    /// Dispatches one control message; the summary once the coordinator said BYE.
    func handle(_ frame: Frame) throws -> WorkerSummary? {
        switch frame.header.kind {
        case .ringUpdate: try handleRing(frame)
        case .reform: try handleReform(frame)
        case .stepAssignment: try handleSteps(frame)
        case .evaluate: try handleEvaluate(frame)
        case .stateRequest:
            try send(StateMessage(globalStep: replica.appliedSteps, state: replica.state))
        case .bye: return try handleBye(frame)
        case .error:
            let text = (try? ErrorMessage.decode(frame).text) ?? "unreadable error"
            throw WorkerError("rank \(rank): the coordinator stopped the run: \(text)")
        case .heartbeat: break
        default: decoder.rejects.record(.unexpected)
        }
        return nil
    }

    // MARK: Messages

    /// RING: the peers' endpoints and keys of this generation; the ring connects and training may start.
    private func handleRing(_ frame: Frame) throws {
        let update = try RingMessage.decode(frame)
        guard update.generation == generation else { return decoder.rejects.record(.stale) }
        guard update.endpoints.count == world else {
            throw WorkerError("rank \(rank): ring of \(update.endpoints.count) endpoints for a world of \(world)")
        }
        ringKeys = update.publicKeys
        ringGate?.setAllowed(Set(update.publicKeys))
        try ring.connect(peerEndpoints: update.endpoints)
        if let h = ring.activeHierarchy {
            let groups = Set(ring.hostGroups).count
            log("worker: hierarchical all-reduce: rank \(rank) is " + (h.leader == rank ? "the leader" : "a member (leader rank \(h.leader))")
                + " of host group \(h.leaders.firstIndex(of: h.leader)! + 1) of \(groups) (\(h.members.count) rank(s) on this host)")
        }
        crossoverPending = false
        if (config.allReduceCrossover ?? .measured) == .measured && (config.gradientCompression ?? .none) == .none {
            // A world this run has measured before keeps its thresholds (the same sums as then).
            if let known = update.crossovers.first(where: { $0.world == ring.algorithmWorld }) {
                ring.recursiveDoublingMaxBytes = known.recursiveDoublingMaxBytes
                ring.halvingDoublingMaxBytes = known.halvingDoublingMaxBytes
            } else {
                crossoverPending = ring.algorithmWorld >= 3
            }
        }
        phase = .training
    }

    /// REFORM: a new generation, rank and world; back to the completed step count, a new ring socket.
    private func handleReform(_ frame: Frame) throws {
        let reform = try ReformMessage.decode(frame)
        guard frame.header.generation > generation else { return decoder.rejects.record(.stale) }
        do {
            rolledBack += try replica.rollBack(to: reform.completedSteps)
        } catch {
            throw WorkerError("rank \(rank) \(error)")
        }
        endpointBytes += ring.endpointBytesSent
        localBytes += ring.localBytesSent
        ring.close(discardPending: true)
        rank = reform.rank
        world = reform.world
        generation = frame.header.generation
        generations += 1
        heartbeat.update(rank: rank, appliedSteps: replica.appliedSteps)
        try bindRing(reason: reform.reason)
    }

    /// STEP: runs the group's steps; METRICS when every step went through (a broken one voids the group).
    private func handleSteps(_ frame: Frame) throws {
        guard frame.header.generation == generation else { return decoder.rejects.record(.stale) }
        guard phase == .training else { return decoder.rejects.record(.unexpected) }  // no ring yet
        let group = try StepGroupMessage.decode(frame)
        stepMessages += 1
        // With the coordinator's pipelining this worker may run a whole group past the last
        // group the coordinator accepted: keep that many states to roll back to.
        replica.keepStates(2 * group.records.count)
        var results: [MetricsMessage] = []
        results.reserveCapacity(group.records.count)
        for step in group.records {
            guard let metrics = try runStep(step) else { return }
            results.append(metrics)
        }
        try send(MetricsGroupMessage(results), step: group.records[0].globalStep)
    }

    /// One step; nil when its exchange was abandoned (the coordinator's message that stopped it
    /// is in the inbox, or STEP_FAILED went out and a REFORM will follow).
    private func runStep(_ step: StepMessage) throws -> MetricsMessage? {
        var metrics: MetricsMessage
        do {
            if faults.failExchangeAtGlobalStep == step.globalStep {
                faults.failExchangeAtGlobalStep = nil
                throw AllReduceError.transport(ZMQError(call: "test: exchange failure injected at global step \(step.globalStep)", endpoint: nil, errno: 0))
            }
            if crossoverPending { try measureCrossover() }
            metrics = try replica.step(step, ring: ring)
        } catch let e as AllReduceError {
            abandoned += 1
            if case .interrupted = e {
                try leaveIfAsked()
                try checkCoordinator()
                return nil  // the coordinator's message is in the inbox
            }
            try checkCoordinator()
            // The exchange broke without word from the coordinator: report and wait for a REFORM.
            log("worker: abandoned global step \(step.globalStep + 1): \(e)")
            try send(StepFailedMessage(globalStep: step.globalStep, text: "rank \(rank): \(e)"), step: step.globalStep)
            return nil
        } catch {
            let text = "rank \(rank) failed global step \(step.globalStep): \(error)"
            try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: UInt32(rank)), deadline: .after(seconds: 2))
            throw WorkerError(text)
        }
        metrics.measuredCrossover = crossoverToReport
        crossoverToReport = nil
        if faults.corruptAfterGlobalStep == step.globalStep { replica.flipLowestBitOfFirstParameter() }
        heartbeat.update(rank: rank, appliedSteps: replica.appliedSteps)
        return metrics
    }

    /// Before the first step of a ring: every rank times the all-reduce algorithms on the sizes
    /// this run's buckets need and all agree the crossover (AllReduceCrossover.swift). A failure
    /// is the step's: STEP_FAILED, then a REFORM and a new ring that measures again.
    private func measureCrossover() throws(AllReduceError) {
        let largest = replica.buckets.buckets.map { $0.range.count * 4 }.max() ?? 0
        var tag: UInt64 = 0
        let started = monotonicNanoseconds()
        if let m = try ring.measureCrossover(sizes: AllReduceCrossover.sizes(upTo: largest), tag: &tag), rank == 0 {
            log("worker: all-reduce crossover measured in \(String(format: "%.2f", Double(monotonicNanoseconds() - started) / 1e9)) s: \(m.summary)")
            crossoverToReport = m.thresholds
        }
        crossoverPending = false
    }

    /// EVALUATE: the loss sums of each batch of the given rows, with the current parameters.
    private func handleEvaluate(_ frame: Frame) throws {
        guard frame.header.generation == generation else { return decoder.rejects.record(.stale) }
        guard phase == .training else { return decoder.rejects.record(.unexpected) }
        let request = try EvaluateMessage.decode(frame)
        do {
            guard request.globalStep == replica.appliedSteps else {
                throw WorkerError("holds \(replica.appliedSteps) applied steps; the evaluation asks for the parameters of step \(request.globalStep)")
            }
            let data = request.validationFiles ? try validationFiles() : replica.dataset
            for r in request.rows where r < 0 || r >= data.count {
                throw WorkerError("evaluation row \(r) is outside the \(data.count) rows of \(data.files.map(\.path).joined(separator: ", "))")
            }
            if evaluator == nil { evaluator = try RNNNetwork(config: config.model, threads: options.threads ?? config.workerThreads) }
            let batches = try evaluator!.evaluateBatches(parameters: replica.parameters, on: data, rows: request.rows, batchSize: request.batchSize)
            try send(EvaluationMessage(batches: batches))
        } catch {
            let text = "rank \(rank) failed to evaluate: \(error)"
            try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: UInt32(rank)), deadline: .after(seconds: 2))
            throw WorkerError(text)
        }
    }

    /// The run's validation files as this machine mounts them (the coordinator scanned their
    /// values; this worker only checks that they fit the model).
    private func validationFiles() throws -> TensorDataset {
        if let validationData { return validationData }
        let data = try TensorDataset.open(paths: config.valFiles.map(worker.remap), options: config.datasetOptions(validateValues: false))
        try data.checkFits(config.model, role: "validation data", training: replica.dataset)
        validationData = data
        return data
    }

    private func handleBye(_ frame: Frame) throws -> WorkerSummary {
        let bye = try ByeMessage.decode(frame)
        finishedNormally = true
        phase = .finished
        log("worker: rank \(rank) done after \(replica.appliedSteps) steps in \(stepMessages) STEP message(s): \(bye.reason); "
            + "\(generations) generation(s), \(rolledBack) step(s) rolled back, \(abandoned) abandoned, \(decoder.rejects.total) frame(s) rejected; "
            + "all-reduce sent \(endpointBytes + ring.endpointBytesSent) bytes to ring endpoints, \(localBytes + ring.localBytesSent) within its host")
        return WorkerSummary(rank: rank, world: world, steps: replica.appliedSteps, parameters: replica.parameters,
                             reason: bye.reason, generations: generations, rolledBack: rolledBack, abandoned: abandoned,
                             rejectedFrames: decoder.rejects.total, stepMessages: stepMessages)
    }

    // MARK: Ring

    /// Binds this generation's ring socket and answers READY with its endpoint.
    private func bindRing(reason: String? = nil) throws {
        ring = try makeRing()
        if let reason {
            log("worker: now rank \(rank) of \(world), generation \(generation), ring endpoint \(worker.announced(ring.localEndpoint)) (\(reason))")
        } else {
            log("worker: ring endpoint \(worker.announced(ring.localEndpoint)) (generation \(generation))")
        }
        phase = .awaitingRing
        try control.send(frame: ReadyMessage(dataEndpoint: worker.announced(ring.localEndpoint), publicKey: options.curve?.keys.publicKey ?? "")
                            .frame(runID: runID, generation: generation, sender: UInt32(rank)),
                         deadline: .after(seconds: heartbeatTimeout))
    }

    private func makeRing() throws -> RingAllReduce {
        var attempt = 0
        while true {
            do {
                let ring = try RingAllReduce(context: context, rank: rank, world: world, runID: runID, generation: generation,
                                             bindEndpoint: try worker.dataBindEndpoint(runID: runID, generation: generation, attempt: attempt),
                                             timeoutMilliseconds: ringTimeoutMilliseconds, rejects: decoder.rejects, socketSetup: curveSetup())
                ring.interruptPollMilliseconds = options.interruptPollMilliseconds
                ring.spinMicroseconds = options.spinMicroseconds
                ring.compression = config.gradientCompression ?? .none
                ring.hierarchical = config.hierarchicalAllReduce ?? true
                if case .thresholds(let a, let b) = config.allReduceCrossover ?? .measured {
                    ring.recursiveDoublingMaxBytes = a
                    ring.halvingDoublingMaxBytes = b
                }
                ring.interruptCheck = { [unowned self] in interruptsStep() }
                return ring
            } catch {
                // A fixed --data-bind port may still be held by the previous generation's socket.
                attempt += 1
                if attempt >= 40 { throw WorkerError("rank \(rank): cannot bind the ring socket: \(error)") }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    /// With CURVE the ring is encrypted too: each worker's receiving socket serves with its own
    /// key pair, and a sender checks its peer's key from the RING message.
    private func curveSetup() -> RingAllReduce.SocketSetup? {
        guard let curve = options.curve else { return nil }
        return { [unowned self] (socket: ZMQSocket, peer: Int?) throws in
            if let peer {
                try socket.configureCurveClient(keys: curve.keys, serverPublicKey: ringKeys.indices.contains(peer) ? ringKeys[peer] : "")
            } else {
                try socket.configureCurveServer(keys: curve.keys)
            }
        }
    }

    /// Whether a step waiting in its all-reduce must stop: a signal, a lost parent or
    /// coordinator, or a message of the coordinator other than the next step's assignment
    /// (which the coordinator sends ahead and which waits in the inbox).
    private func interruptsStep() -> Bool {
        if heartbeat.status != .alive || options.stop?.requested != nil || worker.parentIsGone { return true }
        func stops(_ f: Frame) -> Bool { f.header.kind != .stepAssignment && f.header.kind != .heartbeat }
        if inbox.contains(where: stops) { return true }
        while let f = try? control.receiveFrame(decoder, deadline: .now()) {
            inbox.append(f)
            if stops(f) { return true }
        }
        return false
    }

    // MARK: Checks

    /// A signal: LEAVE, so the coordinator re-forms the ring without this worker at once.
    private func leaveIfAsked() throws {
        do {
            try worker.checkLocalStop(rank: rank, appliedSteps: replica.appliedSteps)
        } catch let interrupted as Interrupted {
            log("worker: rank \(rank) received \(StopRequest.name(of: interrupted.signal)); leaving the run")
            try? control.send(frame: LeaveMessage(reason: "rank \(rank) received \(StopRequest.name(of: interrupted.signal))")
                                .frame(runID: runID, generation: generation, sender: UInt32(rank)), deadline: .after(seconds: 1))
            throw interrupted
        }
    }

    /// Throws when the heartbeat thread saw the coordinator go (or expel this worker).
    private func checkCoordinator() throws {
        switch heartbeat.status {
        case .alive: return
        case .lost(let silent):
            throw CoordinatorLost(description: "rank \(rank): lost the coordinator at \(options.connect): "
                + String(format: "no heartbeat answer for %.1f s (timeout %.1f s)", silent, heartbeatTimeout))
        case .expelled(let text):
            throw WorkerError("rank \(rank): \(text)")
        }
    }

    /// Sends a reply to the coordinator under this generation and rank.
    private func send<M: ControlMessage>(_ message: M, step: Int = 0) throws {
        try control.send(frame: message.frame(runID: runID, generation: generation, sender: UInt32(rank), step: UInt64(step)),
                         deadline: .after(seconds: heartbeatTimeout))
    }
}
