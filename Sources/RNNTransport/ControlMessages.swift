// Control-plane payloads of protocol version 1 (coordinator ROUTER <-> worker DEALER).
// Each struct is one `MessageKind`; payloads use the bounds-checked binary codec, and
// configuration travels as JSON text (its types live in higher modules).
//
// Handshake: HELLO -> WELCOME -> READY. Then per step: STEP -> (ring all-reduce between
// workers) -> METRICS. Either side: HEARTBEAT every interval, BYE on orderly exit, ERROR
// with a named failure. Membership changes: RING_UPDATE (new generation), ABORT_STEP.
// Checkpoints and joins: STATE_REQUEST -> STATE. Divergence check: PARAMETER_HASH.

/// A payload that belongs to exactly one message kind.
public protocol ControlPayload: Sendable, Equatable {
    static var kind: MessageKind { get }
    func encode(to w: inout BinaryWriter)
    init(from r: inout BinaryReader) throws(PayloadError)
}

extension ControlPayload {
    /// The payload bytes.
    public var payloadBytes: [UInt8] {
        var w = BinaryWriter()
        encode(to: &w)
        return w.bytes
    }

    /// A complete frame carrying this payload.
    public func frame(runID: UInt64, generation: UInt32 = 0, sender: UInt32 = FrameHeader.noRank, step: UInt64 = 0) -> Frame {
        Frame(header: FrameHeader(kind: Self.kind, runID: runID, generation: generation, sender: sender, step: step),
              payload: payloadBytes)
    }

    /// Decodes the payload of `frame`, which must be of `Self.kind` and be consumed exactly.
    /// Failures are `FrameError.unexpected` / `.malformedPayload`, counted in `decoder`.
    public static func decode(_ frame: Frame, counting decoder: FrameDecoder? = nil) throws(FrameError) -> Self {
        guard frame.header.kind == kind else {
            let e = FrameError.unexpected("expected \(kind), found \(frame.header.kind)")
            _ = decoder?.reject(e)
            throw e
        }
        do throws(PayloadError) {
            var r = BinaryReader(frame.payload)
            let v = try Self(from: &r)
            try r.finish()
            return v
        } catch {
            let e = FrameError.malformedPayload(kind: kind, reason: error.description)
            _ = decoder?.reject(e)
            throw e
        }
    }
}

extension BinaryWriter {
    mutating func write(strings: [String]) {
        write(UInt32(strings.count))
        for s in strings { write(s) }
    }
}

extension BinaryReader {
    mutating func readStrings(_ field: String) throws(PayloadError) -> [String] {
        let n = try readUInt32(field)
        guard Int(n) <= min(maxElements, remaining / 4) else {
            throw .tooLong(field: field, declared: UInt64(n), limit: min(maxElements, remaining / 4))
        }
        var out: [String] = []
        out.reserveCapacity(Int(n))
        for i in 0..<Int(n) { out.append(try readString("\(field)[\(i)]")) }
        return out
    }
}

/// Worker -> coordinator: who I am and where my data socket listens.
public struct HelloMessage: ControlPayload {
    public static let kind = MessageKind.hello
    /// Protocol version the worker speaks (`FrameHeader.currentVersion`).
    public var protocolVersion: UInt16
    /// Feature names, e.g. "lstm", "gru", "avx2", "curve".
    public var capabilities: [String]
    /// The worker's bound all-reduce endpoint (`RingAllReduce.localEndpoint`).
    public var dataEndpoint: String
    public var hostname: String
    public var processID: Int
    public var threads: Int
    /// Per-run token for loopback runs without CURVE ("" when CURVE authenticates).
    public var token: String

    public init(protocolVersion: UInt16 = FrameHeader.currentVersion, capabilities: [String], dataEndpoint: String,
                hostname: String, processID: Int, threads: Int, token: String = "") {
        self.protocolVersion = protocolVersion
        self.capabilities = capabilities
        self.dataEndpoint = dataEndpoint
        self.hostname = hostname
        self.processID = processID
        self.threads = threads
        self.token = token
    }

    public func encode(to w: inout BinaryWriter) {
        w.write(protocolVersion); w.write(strings: capabilities); w.write(dataEndpoint); w.write(hostname)
        w.write(processID); w.write(threads); w.write(token)
    }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        protocolVersion = try r.readUInt16("protocolVersion")
        capabilities = try r.readStrings("capabilities")
        dataEndpoint = try r.readString("dataEndpoint")
        hostname = try r.readString("hostname")
        processID = try r.readInt("processID")
        threads = try r.readInt("threads")
        token = try r.readString("token")
    }
}

/// Model parameters and optimizer state in the flat-buffer convention (one table).
public struct TrainingState: Sendable, Equatable {
    /// Completed global steps.
    public var globalStep: UInt64
    public var epoch: UInt64
    public var stepInEpoch: UInt64
    /// Flat parameters in `ParameterTable` order.
    public var parameters: [Float]
    /// Adam first and second moments (empty before the first step).
    public var expAvg: [Float]
    public var expAvgSq: [Float]
    /// Adam's step counter.
    public var optimizerStep: UInt64
    /// Generator state(s) needed to resume bitwise.
    public var rngState: [UInt64]

    public init(globalStep: UInt64, epoch: UInt64, stepInEpoch: UInt64, parameters: [Float], expAvg: [Float] = [],
                expAvgSq: [Float] = [], optimizerStep: UInt64 = 0, rngState: [UInt64] = []) {
        self.globalStep = globalStep
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.parameters = parameters
        self.expAvg = expAvg
        self.expAvgSq = expAvgSq
        self.optimizerStep = optimizerStep
        self.rngState = rngState
    }

    func encode(to w: inout BinaryWriter) {
        w.write(globalStep); w.write(epoch); w.write(stepInEpoch)
        w.write(floats: parameters); w.write(floats: expAvg); w.write(floats: expAvgSq)
        w.write(optimizerStep)
        w.write(UInt32(rngState.count)); for s in rngState { w.write(s) }
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readUInt64("globalStep")
        epoch = try r.readUInt64("epoch")
        stepInEpoch = try r.readUInt64("stepInEpoch")
        parameters = try r.readFloats("parameters")
        expAvg = try r.readFloats("expAvg")
        expAvgSq = try r.readFloats("expAvgSq")
        guard expAvg.isEmpty || expAvg.count == parameters.count else {
            throw .invalidValue(field: "expAvg", found: "\(expAvg.count) values for \(parameters.count) parameters")
        }
        guard expAvgSq.count == expAvg.count else {
            throw .invalidValue(field: "expAvgSq", found: "\(expAvgSq.count) values, expAvg has \(expAvg.count)")
        }
        optimizerStep = try r.readUInt64("optimizerStep")
        let n = try r.readUInt32("rngState")
        guard Int(n) <= r.remaining / 8 else { throw .truncated(field: "rngState", needed: Int(n) * 8, remaining: r.remaining) }
        rngState = []
        for _ in 0..<n { rngState.append(try r.readUInt64("rngState")) }
    }
}

/// Coordinator -> worker: your place in the run, the configuration and the starting state.
public struct WelcomeMessage: ControlPayload {
    public static let kind = MessageKind.welcome
    public var rank: UInt32
    public var world: UInt32
    public var runID: UInt64
    public var generation: UInt32
    /// Training configuration (model, optimizer, batch size...) as JSON text.
    public var configJSON: String
    /// Dataset files, sizes and epoch plan as JSON text.
    public var datasetPlanJSON: String
    /// Data endpoints of all ranks, indexed by rank.
    public var peerEndpoints: [String]
    public var heartbeatIntervalMilliseconds: UInt32
    public var heartbeatTimeoutMilliseconds: UInt32
    public var state: TrainingState

    public init(rank: UInt32, world: UInt32, runID: UInt64, generation: UInt32, configJSON: String, datasetPlanJSON: String,
                peerEndpoints: [String], heartbeatIntervalMilliseconds: UInt32 = 1000,
                heartbeatTimeoutMilliseconds: UInt32 = 10_000, state: TrainingState) {
        self.rank = rank
        self.world = world
        self.runID = runID
        self.generation = generation
        self.configJSON = configJSON
        self.datasetPlanJSON = datasetPlanJSON
        self.peerEndpoints = peerEndpoints
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
        self.heartbeatTimeoutMilliseconds = heartbeatTimeoutMilliseconds
        self.state = state
    }

    public func encode(to w: inout BinaryWriter) {
        w.write(rank); w.write(world); w.write(runID); w.write(generation)
        w.write(configJSON); w.write(datasetPlanJSON); w.write(strings: peerEndpoints)
        w.write(heartbeatIntervalMilliseconds); w.write(heartbeatTimeoutMilliseconds)
        state.encode(to: &w)
    }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        rank = try r.readUInt32("rank")
        world = try r.readUInt32("world")
        guard world >= 1, rank < world else { throw .invalidValue(field: "rank", found: "\(rank) of world \(world)") }
        runID = try r.readUInt64("runID")
        generation = try r.readUInt32("generation")
        configJSON = try r.readString("configJSON")
        datasetPlanJSON = try r.readString("datasetPlanJSON")
        peerEndpoints = try r.readStrings("peerEndpoints")
        guard peerEndpoints.count == Int(world) else {
            throw .invalidValue(field: "peerEndpoints", found: "\(peerEndpoints.count) endpoints for world \(world)")
        }
        heartbeatIntervalMilliseconds = try r.readUInt32("heartbeatIntervalMilliseconds")
        heartbeatTimeoutMilliseconds = try r.readUInt32("heartbeatTimeoutMilliseconds")
        state = try TrainingState(from: &r)
    }
}

/// Worker -> coordinator: state loaded, ring connected.
public struct ReadyMessage: ControlPayload {
    public static let kind = MessageKind.ready
    public var rank: UInt32
    public var generation: UInt32
    /// Hash of the parameters as loaded (all ranks must agree).
    public var parameterHash: UInt64

    public init(rank: UInt32, generation: UInt32, parameterHash: UInt64) {
        self.rank = rank
        self.generation = generation
        self.parameterHash = parameterHash
    }

    public func encode(to w: inout BinaryWriter) { w.write(rank); w.write(generation); w.write(parameterHash) }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        rank = try r.readUInt32("rank"); generation = try r.readUInt32("generation"); parameterHash = try r.readUInt64("parameterHash")
    }
}

/// Coordinator -> worker: compute this part of global step `globalStep`.
public struct StepAssignment: ControlPayload {
    public static let kind = MessageKind.stepAssignment
    public var globalStep: UInt64
    public var epoch: UInt64
    public var stepInEpoch: UInt64
    /// This worker's positions in the epoch permutation: [start, start + count).
    public var positionStart: UInt64
    public var positionCount: UInt64
    /// Samples of the whole global step (all workers): the divisor of the mean gradient.
    public var globalBatchSamples: UInt64
    /// Learning rate for this step (schedules live in the coordinator).
    public var learningRate: Double

    public init(globalStep: UInt64, epoch: UInt64, stepInEpoch: UInt64, positionStart: UInt64, positionCount: UInt64,
                globalBatchSamples: UInt64, learningRate: Double) {
        self.globalStep = globalStep
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.positionStart = positionStart
        self.positionCount = positionCount
        self.globalBatchSamples = globalBatchSamples
        self.learningRate = learningRate
    }

    public func encode(to w: inout BinaryWriter) {
        w.write(globalStep); w.write(epoch); w.write(stepInEpoch); w.write(positionStart); w.write(positionCount)
        w.write(globalBatchSamples); w.write(learningRate)
    }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readUInt64("globalStep")
        epoch = try r.readUInt64("epoch")
        stepInEpoch = try r.readUInt64("stepInEpoch")
        positionStart = try r.readUInt64("positionStart")
        positionCount = try r.readUInt64("positionCount")
        globalBatchSamples = try r.readUInt64("globalBatchSamples")
        guard positionCount <= globalBatchSamples else {
            throw .invalidValue(field: "positionCount", found: "\(positionCount) > global batch \(globalBatchSamples)")
        }
        learningRate = try r.readDouble("learningRate")
    }
}

/// Worker -> coordinator: what a step produced (this worker's share, before reduction, and
/// the reduced totals it saw).
public struct MetricsMessage: ControlPayload {
    public static let kind = MessageKind.metrics
    public var globalStep: UInt64
    public var samples: UInt64
    public var lossSum: Double
    /// Correct predictions (classification), 0 otherwise.
    public var correct: UInt64
    public var computeSeconds: Double
    public var allReduceSeconds: Double

    public init(globalStep: UInt64, samples: UInt64, lossSum: Double, correct: UInt64, computeSeconds: Double, allReduceSeconds: Double) {
        self.globalStep = globalStep
        self.samples = samples
        self.lossSum = lossSum
        self.correct = correct
        self.computeSeconds = computeSeconds
        self.allReduceSeconds = allReduceSeconds
    }

    public func encode(to w: inout BinaryWriter) {
        w.write(globalStep); w.write(samples); w.write(lossSum); w.write(correct); w.write(computeSeconds); w.write(allReduceSeconds)
    }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readUInt64("globalStep")
        samples = try r.readUInt64("samples")
        lossSum = try r.readDouble("lossSum")
        correct = try r.readUInt64("correct")
        computeSeconds = try r.readDouble("computeSeconds")
        allReduceSeconds = try r.readDouble("allReduceSeconds")
    }
}

/// Full training state (checkpoint upload, or sent to a joining worker).
public struct StateMessage: ControlPayload {
    public static let kind = MessageKind.state
    public var state: TrainingState
    public init(state: TrainingState) { self.state = state }
    public func encode(to w: inout BinaryWriter) { state.encode(to: &w) }
    public init(from r: inout BinaryReader) throws(PayloadError) { state = try TrainingState(from: &r) }
}

/// Coordinator -> worker: send your state (for a checkpoint at `globalStep`).
public struct StateRequestMessage: ControlPayload {
    public static let kind = MessageKind.stateRequest
    public var globalStep: UInt64
    public init(globalStep: UInt64) { self.globalStep = globalStep }
    public func encode(to w: inout BinaryWriter) { w.write(globalStep) }
    public init(from r: inout BinaryReader) throws(PayloadError) { globalStep = try r.readUInt64("globalStep") }
}

/// Liveness, both directions.
public struct HeartbeatMessage: ControlPayload {
    public static let kind = MessageKind.heartbeat
    /// Sender's monotonic clock, for round-trip estimates.
    public var sentAtNanoseconds: UInt64
    /// Last completed global step the sender knows of.
    public var lastCompletedStep: UInt64

    public init(sentAtNanoseconds: UInt64, lastCompletedStep: UInt64) {
        self.sentAtNanoseconds = sentAtNanoseconds
        self.lastCompletedStep = lastCompletedStep
    }

    public func encode(to w: inout BinaryWriter) { w.write(sentAtNanoseconds); w.write(lastCompletedStep) }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        sentAtNanoseconds = try r.readUInt64("sentAtNanoseconds"); lastCompletedStep = try r.readUInt64("lastCompletedStep")
    }
}

/// Orderly leave.
public struct ByeMessage: ControlPayload {
    public static let kind = MessageKind.bye
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public func encode(to w: inout BinaryWriter) { w.write(reason) }
    public init(from r: inout BinaryReader) throws(PayloadError) { reason = try r.readString("reason") }
}

/// A named failure (the receiver logs it and usually stops).
public struct ErrorMessage: ControlPayload {
    public static let kind = MessageKind.error
    /// Stable machine-readable code, e.g. "version-mismatch", "rank-diverged", "data-error".
    public var code: String
    /// A full sentence for the log.
    public var message: String
    public init(code: String, message: String) { self.code = code; self.message = message }
    public func encode(to w: inout BinaryWriter) { w.write(code); w.write(message) }
    public init(from r: inout BinaryReader) throws(PayloadError) { code = try r.readString("code"); message = try r.readString("message") }
}

/// Coordinator -> workers: new ring membership (after a loss or a join).
public struct RingUpdateMessage: ControlPayload {
    public static let kind = MessageKind.ringUpdate
    public var generation: UInt32
    /// This worker's rank in the new ring.
    public var rank: UInt32
    /// Data endpoints of all ranks of the new ring, indexed by rank.
    public var peerEndpoints: [String]
    /// The step to (re)do first.
    public var resumeStep: UInt64

    public init(generation: UInt32, rank: UInt32, peerEndpoints: [String], resumeStep: UInt64) {
        self.generation = generation
        self.rank = rank
        self.peerEndpoints = peerEndpoints
        self.resumeStep = resumeStep
    }

    public func encode(to w: inout BinaryWriter) { w.write(generation); w.write(rank); w.write(strings: peerEndpoints); w.write(resumeStep) }

    public init(from r: inout BinaryReader) throws(PayloadError) {
        generation = try r.readUInt32("generation")
        rank = try r.readUInt32("rank")
        peerEndpoints = try r.readStrings("peerEndpoints")
        guard Int(rank) < peerEndpoints.count else {
            throw .invalidValue(field: "rank", found: "\(rank) of \(peerEndpoints.count) endpoints")
        }
        resumeStep = try r.readUInt64("resumeStep")
    }
}

/// Coordinator -> workers: drop the unfinished step.
public struct AbortStepMessage: ControlPayload {
    public static let kind = MessageKind.abortStep
    public var globalStep: UInt64
    public var reason: String
    public init(globalStep: UInt64, reason: String) { self.globalStep = globalStep; self.reason = reason }
    public func encode(to w: inout BinaryWriter) { w.write(globalStep); w.write(reason) }
    public init(from r: inout BinaryReader) throws(PayloadError) { globalStep = try r.readUInt64("globalStep"); reason = try r.readString("reason") }
}

/// Worker -> coordinator: parameter hash after `globalStep` (divergence check).
public struct ParameterHashMessage: ControlPayload {
    public static let kind = MessageKind.parameterHash
    public var globalStep: UInt64
    public var hash: UInt64
    public init(globalStep: UInt64, hash: UInt64) { self.globalStep = globalStep; self.hash = hash }
    public func encode(to w: inout BinaryWriter) { w.write(globalStep); w.write(hash) }
    public init(from r: inout BinaryReader) throws(PayloadError) { globalStep = try r.readUInt64("globalStep"); hash = try r.readUInt64("hash") }
}

/// FNV-1a 64 over the bit patterns of `values`: the parameter hash all ranks compare.
public func parameterHash(_ values: UnsafeBufferPointer<Float>) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for v in values {
        var bits = v.bitPattern
        for _ in 0..<4 {
            h ^= UInt64(bits & 0xFF)
            h = h &* 0x0000_0100_0000_01B3
            bits >>= 8
        }
    }
    return h
}
