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
    /// Compute threads for this worker (GEMMs and the recurrent steps; nil: the run's configured value).
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
    /// Testing only: faults to inject (FaultInjection).
    var faults = FaultInjection()

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

/// Faults a test injects into a worker, in one place (none by default).
struct FaultInjection: Sendable {
    /// After applying this global step the replica flips the lowest bit of its first parameter
    /// (a memory fault), which the coordinator's hash check must catch.
    var corruptAfterGlobalStep: Int?
    /// The exchange of this global step fails once, as a broken connection would.
    var failExchangeAtGlobalStep: Int?
    /// The all-reduce of this bucket of this global step fails once, as a broken connection
    /// would (on the communication thread when the step overlaps).
    var failBucketAt: (globalStep: Int, bucket: Int)?
    /// Each step's computation takes this much longer per row, as on a slower machine (for the
    /// coordinator's load balancing).
    var extraSecondsPerRow: Double = 0
}

/// One worker process (or thread, in tests). Use from one thread.
public final class Worker: @unchecked Sendable {
    public let options: WorkerOptions
    let log: @Sendable (String) -> Void
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
    func checkLocalStop(rank: Int?, appliedSteps: Int = 0) throws {
        let who = rank.map { "rank \($0)" } ?? "worker"
        if let sig = options.stop?.requested {
            throw Interrupted(signal: sig, checkpoint: nil, globalStep: appliedSteps,
                              description: "\(who) stopped by \(StopRequest.name(of: sig)) after \(appliedSteps) applied step(s)")
        }
        if parentIsGone {
            throw WorkerError("\(who): the coordinator process (pid \(options.parentPID!)) that started this worker is gone")
        }
    }

    var parentIsGone: Bool { options.parentPID.map { getppid() != $0 } ?? false }

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
                                     pid: Int(ProcessInfo.processInfo.processIdentifier), token: token)
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
            let refusal = try? ErrorMessage.decode(frame)
            let text = refusal?.text ?? "unreadable error"
            if fromFile, refusal?.refusal == .wrongToken, !deadline.hasPassed {
                Thread.sleep(forTimeInterval: 0.2)
                token = RunToken.read(RunToken.defaultPath(port: Endpoint.port(of: options.connect) ?? "")) ?? token
                continue
            }
            // A restarted coordinator has a new token (its file may not be written yet): retry.
            if reconnecting { throw CoordinatorLost(description: "the coordinator at \(options.connect) refused this worker: \(text)") }
            throw WorkerError("the coordinator at \(options.connect) refused this worker: \(text)")
        }
    }

    /// One session with a coordinator: join (HELLO until WELCOME), then a `WorkerSession`
    /// until BYE.
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
        let welcome = try join(control: control, watch: watch, joinTimeout: joinTimeout, reconnecting: reconnecting)
        let session = try WorkerSession(worker: self, context: context, control: control, identity: identity, welcome: welcome)
        defer { session.close() }
        return try session.run()
    }

    /// The coordinator's heartbeat endpoint as this machine reaches it: the port it announced
    /// at the host this worker dialled.
    func heartbeatEndpoint(_ announced: String) -> String {
        guard announced.hasPrefix("tcp://"), let port = Endpoint.port(of: announced), let host = Endpoint.host(of: options.connect) else {
            return announced
        }
        return host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
    }

    /// The dataset path on this machine.
    func remap(_ path: String) -> String {
        guard let root = options.dataRoot else { return path }
        return (root as NSString).appendingPathComponent((path as NSString).lastPathComponent)
    }

    /// The ring socket's bind endpoint. With a loopback or IPC coordinator every worker runs on
    /// this machine, so the ring uses an abstract-namespace IPC socket (Unix domain, no TCP stack:
    /// a 2-worker seed-small step got ~1.3x faster than over loopback TCP); otherwise TCP on
    /// every interface.
    func dataBindEndpoint(runID: UInt64, generation: UInt32, attempt: Int) throws -> String {
        if let bind = options.dataBind { return bind }
        let local = "ipc://@rnn-ring-\(String(runID, radix: 16))-\(instance)-\(generation)-\(attempt)"
        if options.connect.hasPrefix("ipc://") { return local }
        guard let host = Endpoint.host(of: options.connect) else {
            throw WorkerError("cannot read a host in '\(options.connect)'; expected tcp://HOST:PORT")
        }
        return Endpoint.isLoopback(host) ? local : "tcp://0.0.0.0:*"
    }

    /// The endpoint peers dial: a wildcard bind address is replaced by this host's address.
    func announced(_ bound: String) -> String {
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
    /// Backward's `onGradientReady` on the overlapped path, made once (not a closure per step).
    private lazy var reportSegment: (Range<Int>) -> Void = { [reducer] _ in reducer.segmentReady() }
    /// The gradient part of `reduceBuffer` is all zero: the last update cleared it as it read
    /// it, so the next step needs no zeroing pass (20 MB for a 20,000-word one-hot W_ih). False
    /// from the moment a step starts adding into it until an update completes.
    private var gradientsCleared = true
    private var batch = Batch()
    var appliedSteps = 0
    /// Testing (`FaultInjection.extraSecondsPerRow`): a slower machine.
    var extraSecondsPerRow: Double = 0
    /// Testing (`FaultInjection.failBucketAt`): one bucket's all-reduce fails once.
    var failBucketAt: (globalStep: Int, bucket: Int)?
    /// The states before the last `keptStates` updates (a ring), for `rollBack(to:)`: with the
    /// coordinator's pipelining a worker may be two STEP messages past the last one the
    /// coordinator accepted.
    private var snapshots: [Snapshot] = []
    private var newestSnapshot = 0
    private(set) var keptStates = 2

    init(config: TrainingConfig, state: TrainingState, threads: Int, files: [String]) throws {
        self.config = config
        network = try RNNNetwork(config: config.model, threads: threads)
        let count = network.table.totalCount
        guard state.parameters.count == count else {
            throw WorkerError("received \(state.parameters.count) parameters, the model needs \(count)")
        }
        // The coordinator scanned every value at its start; a worker does not scan the files
        // again (rows it reads from disk are still checked as they are read).
        dataset = try TensorDataset.open(paths: files, options: config.datasetOptions(validateValues: false))
        try dataset.checkFits(config.model)
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

    var state: TrainingState {
        TrainingState(parameters: parameters, expAvg: optimizer.expAvg, expAvgSq: optimizer.expAvgSq,
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

    /// Testing (`FaultInjection.corruptAfterGlobalStep`): a one-bit memory fault.
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
                    let targets = batch.targets
                    let last = first + chunk >= step.rows.count
                    var ready: ((Range<Int>) -> Void)?
                    if last {
                        // The first bucket carries the step's scored count and leaves during backward.
                        scored = stats.scoredCount + network.scoredCount(batch: batch.count, steps: dataset.steps, lengths: batch.lengths)
                        reduceBuffer[scalar: 0] = Float(scored)
                        if overlapped {
                            reducer.begin(ring: ring, buffer: reduceBuffer, plan: buckets, step: UInt64(step.globalStep), failAt: failAt)
                            handedOver = true
                            ready = reportSegment
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
    var state = TrainingState()
    /// The applied-step count this state belongs to; -1 when the slot holds nothing usable.
    var appliedSteps = -1
}
