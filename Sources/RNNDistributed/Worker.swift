// The worker: joins a coordinator, holds one replica of the model, computes the gradient sum
// of its rows of every global step, all-reduces it with its ring neighbours, and applies the
// same Adam step as every other rank.
//
// Faults: a heartbeat thread (Heartbeat.swift) tells the coordinator this worker is alive
// while it computes, and tells this worker when the coordinator is gone. Every wait on the
// control socket is sliced (100 ms) and checks that; inside the ring all-reduce the same
// check runs through `RingAllReduce.interruptCheck`, which also watches the control socket:
// a REFORM from the coordinator (a peer was lost) abandons the step at once; the next step's
// assignment, which the coordinator sends before collecting this step, waits in the inbox. The
// replica keeps the states before its last two updates, so steps it applied but the
// coordinator did not accept (a peer died after the exchange, with the next step already
// assigned) are rolled back before the step is redone.
import Foundation
import RNNCore
import RNNData
import RNNTransport

/// How a worker joins and where it finds its data.
public struct WorkerOptions: Sendable {
    /// The coordinator's control endpoint, e.g. `tcp://10.0.0.5:5555`.
    public var connect: String
    /// Where this machine mounts the dataset files: each file is looked up as
    /// `<dataRoot>/<file name>` instead of the coordinator's path. nil keeps the paths.
    public var dataRoot: String?
    /// Where to bind the ring (data-plane) socket; nil derives it from `connect`: loopback
    /// for a loopback coordinator, otherwise all interfaces with the address that reaches the
    /// coordinator announced to the peers.
    public var dataBind: String?
    /// The host name or address announced to peers for the data socket (overrides the derived one).
    public var advertiseHost: String?
    /// GEMM threads for this worker (nil: the run's configured value).
    public var threads: Int?
    /// Seconds to wait for the coordinator's WELCOME after HELLO.
    public var joinTimeout: Double
    /// The run token the coordinator expects; "" reads RNN_TOKEN, then (loopback only) the
    /// coordinator's token file.
    public var token: String
    /// After losing the coordinator, keep trying to join a (restarted) coordinator at the
    /// same endpoint for this many seconds; 0 exits non-zero at once.
    public var reconnectTimeout: Double = 0
    /// CURVE: this worker's key pair and the coordinator's public key.
    public var curve: CurveClientConfig?
    /// How often an all-reduce that waits for a peer checks the control socket for a REFORM
    /// (milliseconds).
    public var interruptPollMilliseconds = 20
    /// How long a ring receive keeps polling (yielding the CPU between tries) before it
    /// sleeps, in microseconds (`RingAllReduce.spinMicroseconds`; 0 sleeps at once).
    public var spinMicroseconds = 100
    /// SIGTERM/SIGINT (see StopRequest.swift): the worker sends LEAVE and throws `Interrupted`.
    public var stop: StopRequest?
    /// The process that started this worker (`--local-workers` sets RNN_PARENT_PID): when it is
    /// gone (this process was re-parented), the worker exits instead of outliving it.
    public var parentPID: Int32?
    /// Testing only: after applying this global step the replica flips the lowest bit of its
    /// first parameter (a memory fault), which the coordinator's hash check must catch.
    var corruptAfterGlobalStep: Int?
    /// Testing only: the exchange of this global step fails once, as a broken connection would.
    var failExchangeAtGlobalStep: Int?
    /// Testing only: the all-reduce of this bucket of this global step fails once, as a broken
    /// connection would (on the communication thread when the step overlaps).
    var failBucketAt: (globalStep: Int, bucket: Int)?
    /// Testing only: each step's computation takes this much longer per row, as on a slower
    /// machine (for the coordinator's load balancing).
    var extraSecondsPerRow: Double = 0

    public init(connect: String, dataRoot: String? = nil, dataBind: String? = nil, advertiseHost: String? = nil,
                threads: Int? = nil, joinTimeout: Double = 120, token: String = "") {
        self.connect = connect
        self.dataRoot = dataRoot
        self.dataBind = dataBind
        self.advertiseHost = advertiseHost
        self.threads = threads
        self.joinTimeout = joinTimeout
        self.token = token
    }
}

/// What a finished worker reports.
public struct WorkerSummary: Sendable {
    public var rank: Int
    public var world: Int
    /// Global steps this worker applied (and kept) in its last session.
    public var steps: Int
    /// The replica's final parameters (bitwise equal on every rank).
    public var parameters: [Float]
    public var reason: String
    /// Ring generations this worker went through.
    public var generations: Int = 1
    /// Steps it applied and then rolled back (the coordinator did not accept them).
    public var rolledBack: Int = 0
    /// Steps it abandoned mid-way (interrupted or failed all-reduce).
    public var abandoned: Int = 0
    /// Frames rejected on its control and ring sockets.
    public var rejectedFrames: Int = 0
    /// STEP messages it received (each carries one or more consecutive steps).
    public var stepMessages: Int = 0
}

/// A worker failure; the description names the endpoint, the rank or the file.
public struct WorkerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The coordinator stopped answering (heartbeats or control messages).
struct CoordinatorLost: Error, CustomStringConvertible {
    var description: String
}

/// The ring's CURVE public keys by rank (from the latest RING message).
final class RingKeys: @unchecked Sendable {
    var keys: [String] = []
}

/// Frames taken off the control socket while a step was running.
final class Inbox {
    var frames: [Frame] = []
}

/// One worker process (or thread, in tests). Use from one thread.
public final class Worker: @unchecked Sendable {
    public let options: WorkerOptions
    private let log: @Sendable (String) -> Void
    /// Tells this worker's IPC ring sockets apart from other workers' (also in one process).
    private let instance = String(UInt64.random(in: 1...UInt64.max), radix: 36)

    public init(options: WorkerOptions, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.options = options
        self.log = log
    }

    /// Joins, trains until the coordinator says BYE, and returns the final replica.
    /// Throws on a lost coordinator (after `reconnectTimeout`), a failed run or unusable
    /// data, with a message.
    public func run() throws -> WorkerSummary {
        var lostAt: Date?
        while true {
            let joinTimeout = lostAt.map { max(0.5, options.reconnectTimeout - Date().timeIntervalSince($0)) } ?? options.joinTimeout
            do {
                return try session(joinTimeout: joinTimeout, reconnecting: lostAt != nil)
            } catch let lost as CoordinatorLost {
                if options.reconnectTimeout <= 0 { throw WorkerError(lost.description) }
                let since = lostAt ?? Date()
                if Date().timeIntervalSince(since) >= options.reconnectTimeout {
                    throw WorkerError("\(lost.description); gave up after trying to reconnect for \(Int(options.reconnectTimeout)) s")
                }
                if lostAt == nil { log("worker: \(lost.description); trying to reconnect for up to \(Int(options.reconnectTimeout)) s") }
                lostAt = since
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }

    /// The run token: `--token`, RNN_TOKEN, or (loopback) the coordinator's token file, which
    /// is waited for until `deadline`: a worker started together with its coordinator (a
    /// script, compose, srun) may look before the file is written. `fromFile` says whether the
    /// token came from the file (a refusal may then mean a stale file: read it again).
    private func resolvedToken(until deadline: Deadline, check: () throws -> Void) throws -> (token: String, fromFile: Bool) {
        if !options.token.isEmpty { return (options.token, false) }
        if options.curve != nil { return ("", false) }  // CURVE runs authenticate by key, not by token
        if let env = ProcessInfo.processInfo.environment["RNN_TOKEN"], !env.isEmpty { return (env, false) }
        guard let host = Endpoint.host(of: options.connect), Endpoint.isLoopback(host), let port = Endpoint.port(of: options.connect) else {
            return ("", false)
        }
        let path = RunToken.defaultPath(port: port)
        var announced = false
        while true {
            if let t = RunToken.read(path) { return (t, true) }
            try checkLocalStop(rank: nil)
            try check()
            if deadline.hasPassed { return ("", false) }
            if !announced {
                log("worker: waiting for the coordinator's token file \(path)")
                announced = true
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Throws when this worker must stop: a signal (`Interrupted`), or the process that started
    /// it is gone. Called between frames and while waiting.
    private func checkLocalStop(rank: Int?, appliedSteps: Int = 0) throws {
        let who = rank.map { "rank \($0)" } ?? "worker"
        if let sig = options.stop?.requested {
            throw Interrupted(signal: sig, checkpoint: nil, globalStep: appliedSteps,
                              description: "\(who) stopped by \(StopRequest.name(of: sig)) after \(appliedSteps) applied step(s)")
        }
        if parentIsGone {
            throw WorkerError("\(who): the coordinator process (pid \(options.parentPID!)) that started this worker is gone")
        }
    }

    private var parentIsGone: Bool { options.parentPID.map { getppid() != $0 } ?? false }

    /// HELLO until WELCOME: waits in slices, checking for a signal, a refused CURVE handshake
    /// (the monitor says why) and the deadline; a refusal over a token read from the file is
    /// retried with the file read again (a coordinator that restarted on the same port).
    private func join(control: ZMQSocket, watch: ClientHandshakeWatch?, joinTimeout: Double, reconnecting: Bool) throws -> Frame {
        let deadline = Deadline.after(seconds: joinTimeout)
        /// Runs `attempt` in slices of at most 100 ms until it gives a value; between slices
        /// the stop request, the handshake and the deadline are checked.
        func sliced<T>(_ attempt: (Deadline) throws -> T?) throws -> T {
            while true {
                try checkLocalStop(rank: nil)
                if let failure = watch?.failure { throw WorkerError(failure) }
                if deadline.hasPassed {
                    if reconnecting { throw CoordinatorLost(description: "no coordinator answered at \(options.connect)") }
                    throw WorkerError("no answer from the coordinator at \(options.connect) within \(Int(joinTimeout)) s; is `rnn-coord start` running there?")
                }
                if let value = try attempt(Deadline(nanoseconds: min(deadline.nanoseconds, Deadline.after(milliseconds: 100).nanoseconds))) {
                    return value
                }
            }
        }
        var (token, fromFile) = try resolvedToken(until: deadline) { if let failure = watch?.failure { throw WorkerError(failure) } }
        let openDecoder = FrameDecoder(expectedRunID: nil)
        while true {
            // HELLO: the run id is not known yet, so it travels as 0. A send waits while the
            // connection is not up (a refused handshake leaves none): in slices too.
            let hello = HelloMessage(protocolVersion: protocolVersion, host: ProcessInfo.processInfo.hostName,
                                     pid: Int(ProcessInfo.processInfo.processIdentifier),
                                     capabilities: ["ring-allreduce", "adam", "adamw", "elastic"], token: token)
            try sliced { slice -> Bool? in
                do {
                    try control.send(frame: hello.frame(runID: 0), deadline: slice)
                    return true
                } catch is ZMQTimeout {
                    return nil
                }
            }
            let frame = try sliced { slice in try control.receiveFrame(openDecoder, deadline: slice) }
            guard frame.header.kind == .error else { return frame }
            let text = (try? ErrorMessage.decode(frame).text) ?? "unreadable error"
            if fromFile, text.contains("token"), !deadline.hasPassed {
                Thread.sleep(forTimeInterval: 0.2)
                token = RunToken.read(RunToken.defaultPath(port: Endpoint.port(of: options.connect) ?? "")) ?? token
                continue
            }
            // A restarted coordinator has a new token (its file may not be written yet): retry.
            if reconnecting { throw CoordinatorLost(description: "the coordinator at \(options.connect) refused this worker: \(text)") }
            throw WorkerError("the coordinator at \(options.connect) refused this worker: \(text)")
        }
    }

    private func session(joinTimeout: Double, reconnecting: Bool) throws -> WorkerSummary {
        let context = try ZMQContext()
        defer { context.shutdown() }
        var idBytes = [UInt8](repeating: 0, count: 8)
        var g = SystemRandomNumberGenerator()
        for i in idBytes.indices { idBytes[i] = UInt8.random(in: 0...255, using: &g) }
        let identity = idBytes + [0x63]
        // A short linger: a last ERROR gets out, but a dead coordinator does not delay the exit.
        let control = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 300)
        defer { control.close() }
        try control.setRoutingID(identity)
        try options.curve?.configure(control)
        // The monitor is attached before connecting, so no handshake event is missed.
        let watch = try? ClientHandshakeWatch(socket: control, endpoint: options.connect, usesCurve: options.curve != nil)
        defer { watch?.stop() }
        try control.connect(options.connect)
        let welcomeFrame = try join(control: control, watch: watch, joinTimeout: joinTimeout, reconnecting: reconnecting)
        let runID = welcomeFrame.header.runID
        // Heartbeats first: decoding a large state may take a while.
        guard let beat = WelcomeMessage.heartbeatSettings(welcomeFrame) else {
            throw WorkerError("the coordinator at \(options.connect) sent an unreadable WELCOME")
        }
        let heartbeat = try HeartbeatLink(context: context, endpoint: heartbeatEndpoint(beat.endpoint),
                                          controlIdentity: identity, runID: runID,
                                          intervalMilliseconds: beat.intervalMilliseconds,
                                          timeoutMilliseconds: beat.timeoutMilliseconds, curve: options.curve)
        defer { heartbeat.stop() }
        let welcome = try WelcomeMessage.decode(welcomeFrame)
        let config = try TrainingConfig.fromJSON(welcome.configJSON)
        var rank = welcome.rank
        var world = welcome.world
        var generation = welcomeFrame.header.generation
        log("worker: joined run \(String(runID, radix: 16)) at \(options.connect) as rank \(rank) of \(world) at global step \(welcome.completedSteps)")

        heartbeat.update(rank: rank, appliedSteps: welcome.completedSteps)
        let heartbeatTimeout = Double(welcome.heartbeatTimeoutMilliseconds) / 1000

        let replica: Replica
        do {
            replica = try Replica(config: config, state: welcome.state, threads: options.threads ?? config.workerThreads,
                                  files: config.dataFiles.map(remap))
            replica.appliedSteps = welcome.completedSteps
            replica.extraSecondsPerRow = options.extraSecondsPerRow
            replica.failBucketAt = options.failBucketAt
        } catch {
            let text = "rank \(rank): \(error)"
            try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: UInt32(rank)), deadline: .after(seconds: 2))
            throw WorkerError(text)
        }

        let decoder = FrameDecoder(expectedRunID: runID)
        let inbox = Inbox()
        let sender = { UInt32(rank) }
        /// A signal: LEAVE, so the coordinator re-forms the ring without this worker at once.
        func leaveIfAsked() throws {
            do {
                try checkLocalStop(rank: rank, appliedSteps: replica.appliedSteps)
            } catch let interrupted as Interrupted {
                log("worker: rank \(rank) received \(StopRequest.name(of: interrupted.signal)); leaving the run")
                try? control.send(frame: LeaveMessage(reason: "rank \(rank) received \(StopRequest.name(of: interrupted.signal))")
                                    .frame(runID: runID, generation: generation, sender: sender()), deadline: .after(seconds: 1))
                throw interrupted
            }
        }
        /// Throws when the heartbeat thread saw the coordinator go (or expel this worker).
        func checkCoordinator() throws {
            switch heartbeat.status {
            case .alive: return
            case .lost(let silent):
                throw CoordinatorLost(description: "rank \(rank): lost the coordinator at \(options.connect): "
                    + String(format: "no heartbeat answer for %.1f s (timeout %.1f s)", silent, heartbeatTimeout))
            case .expelled(let text):
                throw WorkerError("rank \(rank): \(text)")
            }
        }
        // With CURVE the ring is encrypted too: each worker's receiving socket serves with its
        // own key pair, and the sender checks its right neighbour's key from the RING message.
        // A peer that connects before this worker has read the RING is refused once and
        // reconnects (ZeroMQ retries every 100 ms).
        let ringKeys = RingKeys()
        let curve = options.curve
        // Only the ring's members may connect to this worker's ring socket: a ZAP handler in
        // this worker's context checks client keys against the latest RING message.
        // A ring peer that connects before this worker has read the RING message is held (not
        // refused: ZeroMQ would never retry it) until the keys arrive.
        let ringGate = try curve.map { _ in
            try ZAPAuthenticator(context: context, allowed: [], rejections: PeerRejections(),
                                 holdSeconds: min(10, Double(welcome.ringTimeoutMilliseconds) / 1000),
                                 log: { [log] in log("worker: \($0)") })
        }
        defer { ringGate?.stop() }
        let setup: RingAllReduce.SocketSetup? = curve.map { curve in
            { (socket: ZMQSocket, peer: Int?) throws in
                if let peer {
                    try socket.setCurveServerKey(ringKeys.keys.indices.contains(peer) ? ringKeys.keys[peer] : "")
                    try socket.setCurvePublicKey(curve.keys.publicKey)
                    try socket.setCurveSecretKey(curve.keys.secretKey)
                } else {
                    try socket.setCurveServer(true)
                    try socket.setCurveSecretKey(curve.keys.secretKey)
                }
            }
        }
        let ringPublicKey = curve?.keys.publicKey ?? ""
        func makeRing() throws -> RingAllReduce {
            var attempt = 0
            while true {
                do {
                    let ring = try RingAllReduce(context: context, rank: rank, world: world, runID: runID, generation: generation,
                                                 bindEndpoint: try dataBindEndpoint(runID: runID, generation: generation, attempt: attempt),
                                                 timeoutMilliseconds: welcome.ringTimeoutMilliseconds,
                                                 rejects: decoder.rejects, socketSetup: setup)
                    ring.interruptPollMilliseconds = options.interruptPollMilliseconds
                    ring.spinMicroseconds = options.spinMicroseconds
                    ring.compression = config.gradientCompression ?? .none
                    ring.hierarchical = config.hierarchicalAllReduce ?? true
                    ring.interruptCheck = { [options] in
                        if heartbeat.status != .alive || options.stop?.requested != nil { return true }
                        if let ppid = options.parentPID, getppid() != ppid { return true }
                        // A message of the coordinator during a step means: stop (REFORM, ERROR,
                        // BYE), except the next step's assignment, which the coordinator sends
                        // ahead (pipelining) and which waits in the inbox.
                        func stops(_ f: Frame) -> Bool { f.header.kind != .stepAssignment && f.header.kind != .heartbeat }
                        if inbox.frames.contains(where: stops) { return true }
                        while let f = try? control.receiveFrame(decoder, deadline: .now()) {
                            inbox.frames.append(f)
                            if stops(f) { return true }
                        }
                        return false
                    }
                    return ring
                } catch {
                    // A fixed --data-bind port may still be held by the previous generation's socket.
                    attempt += 1
                    if attempt >= 40 { throw WorkerError("rank \(rank): cannot bind the ring socket: \(error)") }
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
        }
        var ring = try makeRing()
        // After BYE the last frames for the right neighbour get their linger; on any failure
        // they are useless (the ring will be re-formed or the run is over) and are dropped.
        var finishedNormally = false
        defer { ring.close(discardPending: !finishedNormally) }
        log("worker: ring endpoint \(announced(ring.localEndpoint)) (generation \(generation))")
        try control.send(frame: ReadyMessage(dataEndpoint: announced(ring.localEndpoint), publicKey: ringPublicKey).frame(runID: runID, generation: generation, sender: sender()),
                         deadline: .after(seconds: heartbeatTimeout))

        var generations = 1, rolledBack = 0, abandoned = 0, stepMessages = 0
        // All-reduce bytes sent by rings of earlier generations.
        var endpointBytes = 0, localBytes = 0
        var failExchangeAt = options.failExchangeAtGlobalStep
        while true {
            try leaveIfAsked()
            let frame: Frame
            if !inbox.frames.isEmpty {
                frame = inbox.frames.removeFirst()
            } else {
                // The heartbeats decide whether the coordinator is alive (it may legitimately be
                // quiet for long, e.g. evaluating a large validation set).
                var next: Frame?
                while next == nil {
                    try leaveIfAsked()
                    try checkCoordinator()
                    next = try control.receiveFrame(decoder, deadline: .after(milliseconds: 100))
                }
                frame = next!
            }
            switch frame.header.kind {
            case .ringUpdate:
                let update = try RingMessage.decode(frame)
                guard update.generation == generation else {
                    decoder.rejects.record(.stale)
                    continue
                }
                guard update.endpoints.count == world else {
                    throw WorkerError("rank \(rank): ring of \(update.endpoints.count) endpoints for a world of \(world)")
                }
                ringKeys.keys = update.publicKeys
                ringGate?.setAllowed(Set(update.publicKeys))
                try ring.connect(peerEndpoints: update.endpoints)
                if let h = ring.activeHierarchy {
                    let groups = Set(ring.hostGroups).count
                    log("worker: hierarchical all-reduce: rank \(rank) is " + (h.leader == rank ? "the leader" : "a member (leader rank \(h.leader))")
                        + " of host group \(h.leaders.firstIndex(of: h.leader)! + 1) of \(groups) (\(h.members.count) rank(s) on this host)")
                }
            case .abortStep:
                // REFORM: a new generation, rank and world; back to the completed step count.
                let reform = try ReformMessage.decode(frame)
                guard frame.header.generation > generation else {
                    decoder.rejects.record(.stale)
                    continue
                }
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
                ring = try makeRing()
                heartbeat.update(rank: rank, appliedSteps: replica.appliedSteps)
                log("worker: now rank \(rank) of \(world), generation \(generation), ring endpoint \(announced(ring.localEndpoint)) (\(reform.reason))")
                try control.send(frame: ReadyMessage(dataEndpoint: announced(ring.localEndpoint), publicKey: ringPublicKey).frame(runID: runID, generation: generation, sender: sender()),
                                 deadline: .after(seconds: heartbeatTimeout))
            case .stepAssignment:
                guard frame.header.generation == generation else {
                    decoder.rejects.record(.stale)
                    continue
                }
                let group = try StepGroupMessage.decode(frame)
                stepMessages += 1
                // With the coordinator's pipelining this worker may run a whole group past the
                // last group the coordinator accepted: keep that many states to roll back to.
                replica.keepStates(2 * group.records.count)
                var results: [MetricsMessage] = []
                results.reserveCapacity(group.records.count)
                for step in group.records {
                    do {
                        if failExchangeAt == step.globalStep {
                            failExchangeAt = nil
                            throw AllReduceError.transport(ZMQError(call: "test: exchange failure injected at global step \(step.globalStep)", endpoint: nil, errno: 0))
                        }
                        results.append(try replica.step(step, ring: ring))
                    } catch let e as AllReduceError {
                        abandoned += 1
                        if case .interrupted = e {
                            try leaveIfAsked()
                            try checkCoordinator()
                            break  // the coordinator's message is in the inbox
                        }
                        try checkCoordinator()
                        // The exchange broke without word from the coordinator: report and wait for a REFORM.
                        let text = "rank \(rank): \(e)"
                        log("worker: abandoned global step \(step.globalStep + 1): \(e)")
                        try control.send(frame: StepFailedMessage(globalStep: step.globalStep, text: text)
                                            .frame(runID: runID, generation: generation, sender: sender(), step: UInt64(step.globalStep)),
                                         deadline: .after(seconds: heartbeatTimeout))
                        break
                    } catch {
                        let text = "rank \(rank) failed global step \(step.globalStep): \(error)"
                        try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: sender()), deadline: .after(seconds: 2))
                        throw WorkerError(text)
                    }
                    if options.corruptAfterGlobalStep == step.globalStep { replica.flipLowestBitOfFirstParameter() }
                    heartbeat.update(rank: rank, appliedSteps: replica.appliedSteps)
                }
                // Reported only when every step of the group went through (a broken one voids the group).
                guard results.count == group.records.count else { continue }
                try control.send(frame: MetricsGroupMessage(results)
                                    .frame(runID: runID, generation: generation, sender: sender(), step: UInt64(group.records[0].globalStep)),
                                 deadline: .after(seconds: heartbeatTimeout))
            case .stateRequest:
                let state = StateMessage(globalStep: replica.appliedSteps, state: replica.state)
                try control.send(frame: state.frame(runID: runID, generation: generation, sender: sender()), deadline: .after(seconds: heartbeatTimeout))
            case .bye:
                let bye = try ByeMessage.decode(frame)
                finishedNormally = true
                log("worker: rank \(rank) done after \(replica.appliedSteps) steps in \(stepMessages) STEP message(s): \(bye.reason); "
                    + "\(generations) generation(s), \(rolledBack) step(s) rolled back, \(abandoned) abandoned, \(decoder.rejects.total) frame(s) rejected; "
                    + "all-reduce sent \(endpointBytes + ring.endpointBytesSent) bytes to ring endpoints, \(localBytes + ring.localBytesSent) within its host")
                return WorkerSummary(rank: rank, world: world, steps: replica.appliedSteps, parameters: replica.parameters,
                                     reason: bye.reason, generations: generations, rolledBack: rolledBack, abandoned: abandoned,
                                     rejectedFrames: decoder.rejects.total, stepMessages: stepMessages)
            case .error:
                let text = (try? ErrorMessage.decode(frame).text) ?? "unreadable error"
                throw WorkerError("rank \(rank): the coordinator stopped the run: \(text)")
            case .heartbeat:
                continue
            default:
                decoder.rejects.record(.unexpected)
            }
        }
    }

    /// The coordinator's heartbeat endpoint as this machine reaches it: the port it announced
    /// at the host this worker dialled.
    private func heartbeatEndpoint(_ announced: String) -> String {
        guard announced.hasPrefix("tcp://"), let port = Endpoint.port(of: announced), let host = Endpoint.host(of: options.connect) else {
            return announced
        }
        return host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
    }

    /// The dataset path on this machine.
    private func remap(_ path: String) -> String {
        guard let root = options.dataRoot else { return path }
        return (root as NSString).appendingPathComponent((path as NSString).lastPathComponent)
    }

    /// The ring socket's bind endpoint. With a loopback or IPC coordinator every worker runs on
    /// this machine, so the ring uses an abstract-namespace IPC socket (Unix domain, no TCP stack:
    /// a 2-worker seed-small step got ~1.3x faster than over loopback TCP); otherwise TCP on
    /// every interface.
    private func dataBindEndpoint(runID: UInt64, generation: UInt32, attempt: Int) throws -> String {
        if let bind = options.dataBind { return bind }
        let local = "ipc://@rnn-ring-\(String(runID, radix: 16))-\(instance)-\(generation)-\(attempt)"
        if options.connect.hasPrefix("ipc://") { return local }
        guard let host = Endpoint.host(of: options.connect) else {
            throw WorkerError("cannot read a host in '\(options.connect)'; expected tcp://HOST:PORT")
        }
        return Endpoint.isLoopback(host) ? local : "tcp://0.0.0.0:*"
    }

    /// The endpoint peers dial: a wildcard bind address is replaced by this host's address.
    private func announced(_ bound: String) -> String {
        guard let host = Endpoint.host(of: bound), let port = Endpoint.port(of: bound) else { return bound }
        if let advertise = options.advertiseHost { return "tcp://\(advertise):\(port)" }
        guard host == "0.0.0.0" || host == "*" else { return bound }
        let reach = Endpoint.host(of: options.connect).flatMap(Endpoint.localAddress(toward:)) ?? ProcessInfo.processInfo.hostName
        return "tcp://\(reach):\(port)"
    }
}

/// One replica: the network, its parameters and optimizer, the dataset and the step buffers.
final class Replica {
    let config: TrainingConfig
    let network: RNNNetwork
    let dataset: TensorDataset
    private(set) var parameters: [Float]
    private var optimizer: AdamOptimizer
    /// Gradient sums followed by one scalar (the scored count), all-reduced bucket by bucket.
    private let reduceBuffer: AllReduceBuffer
    /// The buckets of `reduceBuffer` (GradientBuckets.swift): the head first (with the scalar),
    /// then the layers from the top down.
    let buckets: GradientBuckets
    /// All-reduce each bucket while backward computes the layers below it (TrainingConfig.overlapBackward).
    let overlap: Bool
    /// The communication thread of the overlapped path (started on first use).
    private let reducer = BucketReducer()
    /// The gradient part of `reduceBuffer` is all zero: the last update cleared it as it read
    /// it, so the next step needs no zeroing pass (20 MB for a 20,000-word one-hot W_ih). False
    /// from the moment a step starts adding into it until an update completes.
    private var gradientsCleared = true
    private var batch = Batch()
    var appliedSteps = 0
    /// Testing (`WorkerOptions.extraSecondsPerRow`): a slower machine.
    var extraSecondsPerRow: Double = 0
    /// Testing (`WorkerOptions.failBucketAt`): one bucket's all-reduce fails once.
    var failBucketAt: (globalStep: Int, bucket: Int)?
    /// The states before the last `keptStates` updates (a ring), for `rollBack(to:)`: with the
    /// coordinator's pipelining a worker may be two STEP messages past the last one the
    /// coordinator accepted.
    private var snapshots: [Snapshot] = []
    private var newestSnapshot = 0
    private(set) var keptStates = 2

    init(config: TrainingConfig, state: ReplicaState, threads: Int, files: [String]) throws {
        self.config = config
        network = try RNNNetwork(config: config.model, threads: threads)
        let count = network.table.totalCount
        guard state.parameters.count == count else {
            throw WorkerError("received \(state.parameters.count) parameters, the model needs \(count)")
        }
        // The coordinator scanned every value at its start; a worker does not scan the files
        // again (rows it reads from disk are still checked as they are read).
        dataset = try TensorDataset.open(paths: files, options: config.datasetOptions(validateValues: false))
        try checkDataset(dataset, fits: config.model)
        parameters = state.parameters
        optimizer = try AdamOptimizer(config: config.optimizer, expAvg: state.expAvg, expAvgSq: state.expAvgSq,
                                      stepCount: state.stepCount)
        guard optimizer.expAvg.count == count else {
            throw WorkerError("received optimizer moments of \(optimizer.expAvg.count) values, the model needs \(count)")
        }
        reduceBuffer = AllReduceBuffer(gradientCount: count, scalarCount: 1)
        buckets = GradientBuckets(segments: network.gradientSegments, gradientCount: count, scalarCount: 1)
        overlap = config.overlapBackward ?? true
    }

    deinit { reducer.shutDown() }

    var state: ReplicaState {
        ReplicaState(parameters: parameters, expAvg: optimizer.expAvg, expAvgSq: optimizer.expAvgSq,
                     stepCount: optimizer.stepCount)
    }

    /// Undoes the steps applied after `completed` (the coordinator did not accept them);
    /// returns how many were undone.
    func rollBack(to completed: Int) throws -> Int {
        let undone = appliedSteps - completed
        if undone == 0 { return 0 }
        guard undone > 0, let i = snapshots.indices.first(where: { snapshots[$0].appliedSteps == completed }) else {
            throw WorkerError("holds \(appliedSteps) applied steps and no saved state of step \(completed), which the coordinator asks for")
        }
        swap(&parameters, &snapshots[i].state.parameters)
        swap(&optimizer.expAvg, &snapshots[i].state.expAvg)
        swap(&optimizer.expAvgSq, &snapshots[i].state.expAvgSq)
        optimizer.stepCount = snapshots[i].state.stepCount
        appliedSteps = completed
        for j in snapshots.indices { snapshots[j].appliedSteps = -1 }
        return undone
    }

    /// Testing (`WorkerOptions.corruptAfterGlobalStep`): a one-bit memory fault.
    func flipLowestBitOfFirstParameter() {
        parameters[0] = Float(bitPattern: parameters[0].bitPattern ^ 1)
    }

    /// Keeps (at least) the states before the last `count` updates from now on; never fewer than 2.
    func keepStates(_ count: Int) {
        keptStates = max(keptStates, count)
    }

    /// Adam on the mean gradient (the reduced sums times `scale`, formed inside the update:
    /// no separate pass; the sums are zeroed as they are read, for the next step); the state
    /// before it goes into the oldest of the kept snapshots (out of place: nothing is copied,
    /// and nothing allocated once all exist).
    private func applyUpdate(scale: Float, lr: Double?) {
        if snapshots.count < keptStates {
            // A new slot right after the newest keeps the ring in age order.
            let slot = snapshots.isEmpty ? 0 : newestSnapshot + 1
            snapshots.insert(Snapshot(), at: slot)
            newestSnapshot = slot
        } else {
            newestSnapshot = (newestSnapshot + 1) % snapshots.count
        }
        reduceBuffer.withGradients { sums in
            optimizer.step(parameters: &parameters, clearingGradientSum: sums, scale: scale, lr: lr,
                           keepingPreviousIn: &snapshots[newestSnapshot].state)
        }
        gradientsCleared = true
        snapshots[newestSnapshot].appliedSteps = appliedSteps
    }

    /// Gradient sum of this worker's rows, all-reduce, mean, Adam: one global step.
    ///
    /// With `overlap` (and W >= 2, two or more buckets) the communication thread reduces each
    /// bucket as soon as the last batch's backward has finished it; otherwise this thread
    /// reduces the same buckets, in the same order, after backward (the same bits either way).
    /// With --accumulate only the last batch's backward overlaps: the earlier ones still add
    /// into every bucket.
    func step(_ step: StepMessage, ring: RingAllReduce) throws -> MetricsMessage {
        let start = monotonicNanoseconds()
        // After a step that did not reach its update (a failed exchange, bad rows) the sums
        // hold partial values: zero them here.
        if !gradientsCleared { reduceBuffer.zero() }
        gradientsCleared = false
        let overlapped = overlap && ring.world > 1 && buckets.count > 1
        var handedOver = false
        var failAt: Int?
        if let f = failBucketAt, f.globalStep == step.globalStep {
            failAt = f.bucket
            failBucketAt = nil
        }
        var stats = LossStats()
        var scored = 0
        do {
            if !step.rows.isEmpty {
                for r in step.rows where r < 0 || r >= dataset.count {
                    throw WorkerError("row \(r) is outside the dataset's \(dataset.count) rows")
                }
                // --accumulate N: the rows of N batches, computed B at a time into the same sums
                // (memory of one batch), then one all-reduce.
                let chunk = config.accumulationChunk(rows: step.rows.count)
                var first = 0
                while first < step.rows.count {
                    let rows = first == 0 && chunk >= step.rows.count ? step.rows : Array(step.rows[first..<min(first + chunk, step.rows.count)])
                    try dataset.read(rows: rows, into: &batch)
                    let targets = batch.targets.networkTargets
                    let last = first + chunk >= step.rows.count
                    var ready: ((Range<Int>) -> Void)?
                    if last {
                        // The first bucket carries the step's scored count and leaves during backward.
                        scored = stats.scoredCount + network.scoredCount(batch: batch.count, steps: dataset.steps, lengths: batch.lengths)
                        reduceBuffer[scalar: 0] = Float(scored)
                        if overlapped {
                            reducer.begin(ring: ring, buffer: reduceBuffer, plan: buckets, step: UInt64(step.globalStep), failAt: failAt)
                            handedOver = true
                            ready = { [reducer] _ in reducer.segmentReady() }
                        }
                    }
                    stats = stats + (try parameters.withUnsafeBufferPointer { p in
                        try batch.x.withUnsafeBufferPointer { x in
                            try reduceBuffer.withGradients { g in
                                try network.accumulateGradients(parameters: p, input: x, batch: batch.count, steps: dataset.steps,
                                                                targets: targets, lengths: batch.lengths,
                                                                dropout: config.dropoutKey(step: step.globalStep, rows: rows), gradient: g,
                                                                onGradientReady: ready)
                            }
                        }
                    })
                    first += chunk
                }
            } else {
                reduceBuffer[scalar: 0] = 0
            }
            guard stats.scoredCount == scored else {
                throw WorkerError("global step \(step.globalStep): the network scored \(stats.scoredCount) elements, \(scored) were announced")
            }
        } catch {
            if handedOver { reducer.cancel() }
            throw error
        }
        if extraSecondsPerRow > 0 { Thread.sleep(forTimeInterval: extraSecondsPerRow * Double(step.rows.count)) }
        let computed = monotonicNanoseconds()
        var reduceSeconds: Double
        if handedOver {
            reduceSeconds = try reducer.finish()
        } else {
            for k in 0..<buckets.count {
                if k == failAt { throw AllReduceError.injectedFailure(step: UInt64(step.globalStep), bucket: k) }
                try reduceBuffer.allReduce(bucket: k, of: buckets, with: ring, step: UInt64(step.globalStep))
            }
            reduceSeconds = 0
        }
        let reduced = monotonicNanoseconds()
        // The wait after backward is exposed; the rest of the buckets' time overlapped compute.
        let exposed = Double(reduced - computed) / 1e9
        reduceSeconds = max(reduceSeconds, exposed)
        let globalScored = reduceBuffer[scalar: 0]
        guard globalScored > 0 else { throw WorkerError("global step \(step.globalStep) scored no element") }
        applyUpdate(scale: 1 / globalScored, lr: step.lr)
        appliedSteps = step.globalStep + 1
        let finite = optimizer.lastStepWasFinite
        let end = monotonicNanoseconds()
        return MetricsMessage(globalStep: step.globalStep, lossSum: stats.lossSum, scored: stats.scoredCount,
                              correct: stats.correct, samples: step.rows.count, globalScored: Int(globalScored),
                              parameterHash: step.wantHash ? parameterHash(parameters) : 0,
                              computeSeconds: Double(computed - start) / 1e9 + Double(end - reduced) / 1e9,
                              reduceSeconds: reduceSeconds, reduceExposedSeconds: exposed,
                              reduceHiddenSeconds: reduceSeconds - exposed, gradientFinite: finite)
    }
}

/// A replica's parameters and Adam moments before one update; the buffers are reused step
/// after step (`AdamOptimizer.step(parameters:gradientSum:scale:keepingPreviousIn:)` swaps them).
private struct Snapshot {
    var state = AdamState()
    /// The applied-step count this state belongs to; -1 when the slot holds nothing usable.
    var appliedSteps = -1
}

/// Checks that a dataset has the input size, targets and head the model was built for; with
/// `training` (the run's training data), also that token ids mean the same characters.
func checkDataset(_ dataset: TensorDataset, fits model: ModelConfig, name: String = "dataset", training: TensorDataset? = nil) throws {
    let files = dataset.files.map(\.path).joined(separator: ", ")
    if let training, case .tokens(let v) = dataset.inputEncoding {
        let trainingFiles = training.files.map(\.path).joined(separator: ", ")
        if case .tokens(let trainingV) = training.inputEncoding, v != trainingV {
            throw WorkerError("\(name) \(files) has a vocabulary of \(v) tokens (vocab_size), the training data \(trainingFiles) one of \(trainingV): "
                + "token ids must mean the same characters in both; write both files with one vocabulary")
        }
        if let a = dataset.vocabulary, let b = training.vocabulary, a != b {
            throw WorkerError("\(name) \(files) has another vocabulary than the training data \(trainingFiles) "
                + "('\(String(String.UnicodeScalarView(a.prefix(40))))' vs '\(String(String.UnicodeScalarView(b.prefix(40))))'): token ids must mean the same characters in both")
        }
    }
    if dataset.inputSize != model.inputSize {
        throw WorkerError("\(name) \(files) has \(dataset.inputSize) input features per step, the model expects \(model.inputSize)")
    }
    if dataset.deliversTokenIds != model.tokenInput {
        throw WorkerError("\(name) \(files) has \(dataset.inputEncoding == .dense ? "float features" : "token ids"), the model expects \(model.tokenInput ? "token ids" : "float features")")
    }
    if dataset.targetKind.outputSize != model.outputSize {
        throw WorkerError("\(name) \(files) has \(dataset.targetKind.outputSize) outputs (\(dataset.targetKind)), the model expects \(model.outputSize)")
    }
    if dataset.targetKind.head != model.head || dataset.targetKind.loss != model.loss {
        throw WorkerError("\(name) \(files) has \(dataset.targetKind), which needs head '\(dataset.targetKind.head.rawValue)' and loss '\(dataset.targetKind.loss.rawValue)'; the model has '\(model.head.rawValue)' and '\(model.loss.rawValue)'")
    }
}

