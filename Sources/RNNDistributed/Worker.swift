// The worker: joins a coordinator, holds one replica of the model, computes the gradient sum
// of its rows of every global step, all-reduces it with its ring neighbours, and applies the
// same Adam step as every other rank.
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
    /// The run token the coordinator expects ("" when it asks none).
    public var token: String

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
    /// Global steps this worker applied.
    public var steps: Int
    /// The replica's final parameters (bitwise equal on every rank).
    public var parameters: [Float]
    public var reason: String
}

/// A worker failure; the description names the endpoint, the rank or the file.
public struct WorkerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One worker process (or thread, in tests). Use from one thread.
public final class Worker: @unchecked Sendable {
    public let options: WorkerOptions
    private let log: @Sendable (String) -> Void

    public init(options: WorkerOptions, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.options = options
        self.log = log
    }

    /// Joins, trains until the coordinator says BYE, and returns the final replica.
    /// Throws on a lost coordinator, a failed all-reduce or unusable data, with a message.
    public func run() throws -> WorkerSummary {
        let context = try ZMQContext()
        defer { context.shutdown() }
        let control = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 2000)
        defer { control.close() }
        try control.connect(options.connect)

        // HELLO: the run id is not known yet, so it travels as 0.
        let hello = HelloMessage(protocolVersion: protocolVersion, host: ProcessInfo.processInfo.hostName,
                                 pid: Int(ProcessInfo.processInfo.processIdentifier),
                                 capabilities: ["ring-allreduce", "adam", "adamw"], token: options.token)
        try control.send(frame: hello.frame(runID: 0), deadline: .after(seconds: options.joinTimeout))

        let openDecoder = FrameDecoder(expectedRunID: nil)
        guard let welcomeFrame = try control.receiveFrame(openDecoder, deadline: .after(seconds: options.joinTimeout)) else {
            throw WorkerError("no answer from the coordinator at \(options.connect) within \(Int(options.joinTimeout)) s; is `rnn-coord start` running there?")
        }
        if welcomeFrame.header.kind == .error {
            let text = (try? ErrorMessage.decode(welcomeFrame).text) ?? "unreadable error"
            throw WorkerError("the coordinator at \(options.connect) refused this worker: \(text)")
        }
        let welcome = try WelcomeMessage.decode(welcomeFrame)
        let runID = welcomeFrame.header.runID
        let config = try TrainingConfig.fromJSON(welcome.configJSON)
        let rank = welcome.rank
        let coordinatorTimeout = Double(welcome.coordinatorTimeoutMilliseconds) / 1000
        log("worker: joined run \(String(runID, radix: 16)) at \(options.connect) as rank \(rank) of \(welcome.world)")

        let replica: Replica
        do {
            replica = try Replica(config: config, state: welcome.state, threads: options.threads ?? config.workerThreads,
                                  files: config.dataFiles.map(remap))
        } catch {
            let text = "rank \(rank): \(error)"
            try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: UInt32(rank)), deadline: .after(seconds: 2))
            throw WorkerError(text)
        }

        let ring = try RingAllReduce(context: context, rank: rank, world: welcome.world, runID: runID,
                                     bindEndpoint: try dataBindEndpoint(),
                                     timeoutMilliseconds: welcome.ringTimeoutMilliseconds)
        defer { ring.close() }
        let endpoint = announced(ring.localEndpoint)
        try control.send(frame: ReadyMessage(dataEndpoint: endpoint).frame(runID: runID, sender: UInt32(rank)),
                         deadline: .after(seconds: coordinatorTimeout))

        let decoder = FrameDecoder(expectedRunID: runID)
        let sender = UInt32(rank)
        var applied = 0
        while true {
            guard let frame = try control.receiveFrame(decoder, deadline: .after(seconds: coordinatorTimeout)) else {
                throw WorkerError("rank \(rank): lost the coordinator at \(options.connect): no message for \(Int(coordinatorTimeout)) s")
            }
            switch frame.header.kind {
            case .ringUpdate:
                let update = try RingMessage.decode(frame)
                guard update.endpoints.count == welcome.world else {
                    throw WorkerError("rank \(rank): ring of \(update.endpoints.count) endpoints for a world of \(welcome.world)")
                }
                ring.setGeneration(update.generation)
                try ring.connect(peerEndpoints: update.endpoints)
            case .stepAssignment:
                let step = try StepMessage.decode(frame)
                let metrics: MetricsMessage
                do {
                    metrics = try replica.step(step, ring: ring)
                } catch {
                    let text = "rank \(rank) failed global step \(step.globalStep): \(error)"
                    try? control.send(frame: ErrorMessage(text: text).frame(runID: runID, sender: sender), deadline: .after(seconds: 2))
                    throw WorkerError(text)
                }
                applied += 1
                try control.send(frame: metrics.frame(runID: runID, sender: sender, step: UInt64(step.globalStep)),
                                 deadline: .after(seconds: coordinatorTimeout))
            case .stateRequest:
                let state = StateMessage(globalStep: replica.appliedSteps, state: replica.state)
                try control.send(frame: state.frame(runID: runID, sender: sender), deadline: .after(seconds: coordinatorTimeout))
            case .bye:
                let bye = try ByeMessage.decode(frame)
                log("worker: rank \(rank) done after \(applied) steps: \(bye.reason)")
                return WorkerSummary(rank: rank, world: welcome.world, steps: applied,
                                     parameters: replica.parameters, reason: bye.reason)
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

    /// The dataset path on this machine.
    private func remap(_ path: String) -> String {
        guard let root = options.dataRoot else { return path }
        return (root as NSString).appendingPathComponent((path as NSString).lastPathComponent)
    }

    private func dataBindEndpoint() throws -> String {
        if let bind = options.dataBind { return bind }
        guard let host = Endpoint.host(of: options.connect) else {
            throw WorkerError("cannot read a host in '\(options.connect)'; expected tcp://HOST:PORT")
        }
        return Endpoint.isLoopback(host) ? "tcp://127.0.0.1:*" : "tcp://0.0.0.0:*"
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
    /// Mean gradient handed to Adam.
    private var gradient: [Float]
    /// Gradient sums followed by one scalar (the scored count), all-reduced in one exchange.
    private let reduceBuffer: AllReduceBuffer
    private var batch = Batch()
    private(set) var appliedSteps = 0

    init(config: TrainingConfig, state: ReplicaState, threads: Int, files: [String]) throws {
        self.config = config
        network = try RNNNetwork(config: config.model, threads: threads)
        let count = network.table.totalCount
        guard state.parameters.count == count else {
            throw WorkerError("received \(state.parameters.count) parameters, the model needs \(count)")
        }
        dataset = try TensorDataset.open(paths: files, options: TensorDatasetOptions(xName: config.xName, yName: config.yName))
        try checkDataset(dataset, fits: config.model)
        parameters = state.parameters
        optimizer = try AdamOptimizer(config: config.optimizer, expAvg: state.expAvg, expAvgSq: state.expAvgSq,
                                      stepCount: state.optimizerStep)
        guard optimizer.expAvg.count == count else {
            throw WorkerError("received optimizer moments of \(optimizer.expAvg.count) values, the model needs \(count)")
        }
        gradient = [Float](repeating: 0, count: count)
        reduceBuffer = AllReduceBuffer(gradientCount: count, scalarCount: 1)
    }

    var state: ReplicaState {
        ReplicaState(parameters: parameters, expAvg: optimizer.expAvg, expAvgSq: optimizer.expAvgSq,
                     optimizerStep: optimizer.stepCount)
    }

    /// Gradient sum of this worker's rows, all-reduce, mean, Adam: one global step.
    func step(_ step: StepMessage, ring: RingAllReduce) throws -> MetricsMessage {
        let start = monotonicNanoseconds()
        reduceBuffer.zero()
        var stats = LossStats()
        if !step.rows.isEmpty {
            for r in step.rows where r < 0 || r >= dataset.count {
                throw WorkerError("row \(r) is outside the dataset's \(dataset.count) rows")
            }
            try dataset.read(rows: step.rows, into: &batch)
            let targets: Targets
            switch batch.targets {
            case .classes(let ids): targets = .classIds(ids)
            case .values(let v): targets = .values(v)
            }
            stats = try parameters.withUnsafeBufferPointer { p in
                try batch.x.withUnsafeBufferPointer { x in
                    try reduceBuffer.withGradients { g in
                        try network.accumulateGradients(parameters: p, input: x, batch: batch.count, steps: dataset.steps,
                                                        targets: targets, gradient: g)
                    }
                }
            }
        }
        reduceBuffer[scalar: 0] = Float(stats.scoredCount)
        let computed = monotonicNanoseconds()
        try reduceBuffer.allReduce(with: ring, step: UInt64(step.globalStep))
        let reduced = monotonicNanoseconds()
        let globalScored = reduceBuffer[scalar: 0]
        guard globalScored > 0 else { throw WorkerError("global step \(step.globalStep) scored no element") }
        let scale = 1 / globalScored
        reduceBuffer.withGradients { g in
            for i in 0..<gradient.count { gradient[i] = g[i] * scale }
        }
        optimizer.step(parameters: &parameters, gradient: &gradient)
        appliedSteps = step.globalStep + 1
        let end = monotonicNanoseconds()
        return MetricsMessage(globalStep: step.globalStep, lossSum: stats.lossSum, scored: stats.scoredCount,
                              correct: stats.correct, samples: step.rows.count, globalScored: Int(globalScored),
                              parameterHash: step.wantHash ? parameterHash(parameters) : 0,
                              computeSeconds: Double(computed - start) / 1e9 + Double(end - reduced) / 1e9,
                              reduceSeconds: Double(reduced - computed) / 1e9)
    }
}

/// Checks that a dataset has the input size, targets and head the model was built for.
func checkDataset(_ dataset: TensorDataset, fits model: ModelConfig, name: String = "dataset") throws {
    let files = dataset.files.map(\.path).joined(separator: ", ")
    if dataset.inputSize != model.inputSize {
        throw WorkerError("\(name) \(files) has \(dataset.inputSize) input features per step, the model expects \(model.inputSize)")
    }
    if dataset.targetKind.outputSize != model.outputSize {
        throw WorkerError("\(name) \(files) has \(dataset.targetKind.outputSize) outputs (\(dataset.targetKind)), the model expects \(model.outputSize)")
    }
    if dataset.targetKind.head != model.head || dataset.targetKind.loss != model.loss {
        throw WorkerError("\(name) \(files) has \(dataset.targetKind), which needs head '\(dataset.targetKind.head.rawValue)' and loss '\(dataset.targetKind.loss.rawValue)'; the model has '\(model.head.rawValue)' and '\(model.loss.rawValue)'")
    }
}
