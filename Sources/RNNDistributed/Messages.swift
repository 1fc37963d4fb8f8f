// Control-plane messages between the coordinator (ROUTER) and the workers (DEALER).
//
// Handshake:  worker HELLO (version, host, pid, run token) -> coordinator WELCOME (rank, world,
//             config, timeouts, heartbeat endpoint, state) -> worker READY (its bound ring
//             endpoint and key) -> coordinator RING (generation, all endpoints): the ring is formed.
// Each step:  coordinator STEP (rows of this worker) -> worker METRICS (loss sum, counts, hash).
//             When steps are short, one STEP carries several consecutive steps and one METRICS
//             reports them all (fewer messages, fewer thread wakeups per step).
//             A worker whose all-reduce failed sends STEP_FAILED and waits for REFORM.
// Re-form:    coordinator REFORM (new generation in the header, new rank and world, the
//             completed step count) -> worker abandons the unfinished step, rolls back to the
//             completed count, binds a new ring socket -> READY -> RING. Used after a lost
//             worker (survivors only) and when workers join at a step boundary (they get
//             WELCOME with the current state instead).
// Evaluation: coordinator EVALUATE (rows, batch size) -> worker EVALUATION (the loss sums of
//             each batch): validation after an epoch runs on the workers, each on its share.
// Liveness:   HEARTBEAT on a second socket pair (worker DEALER -> coordinator ROUTER on its own
//             thread, which answers each one): see Heartbeat.swift.
// On demand:  coordinator STATE_REQUEST -> worker STATE (parameters + optimizer state).
// The end:    coordinator BYE -> worker exits 0. A named failure travels as ERROR.
// Leaving:    worker LEAVE (on SIGTERM/SIGINT) -> the coordinator drops it at once and
//             re-forms the ring with the others.
//
// The header's generation field tags STEP, METRICS, READY, RING, REFORM, STEP_FAILED,
// EVALUATE and EVALUATION: a message of another generation is stale and dropped (counted).
//
// Every message is one ZeroMQ frame: the checked `FrameHeader` followed by the payload
// encoded here with `BinaryWriter`; decoding is bounds-checked and never trusts a length.
import RNNCore
import RNNTransport

/// A payload of one `MessageKind`.
protocol ControlMessage {
    static var kind: MessageKind { get }
    func encode(into writer: inout BinaryWriter)
    init(from reader: inout BinaryReader) throws(PayloadError)
}

extension ControlMessage {
    /// The whole frame: header (run, generation, sender, step) + payload.
    func frame(runID: UInt64, generation: UInt32 = 0, sender: UInt32 = FrameHeader.noRank, step: UInt64 = 0) -> Frame {
        var w = BinaryWriter()
        encode(into: &w)
        let header = FrameHeader(kind: Self.kind, runID: runID, generation: generation, sender: sender,
                                 step: step, payloadLength: w.bytes.count)
        return Frame(header: header, payload: w.bytes)
    }

    /// Decodes the payload of `frame`, which must be of this kind and fully consumed.
    static func decode(_ frame: Frame) throws(FrameError) -> Self {
        guard frame.header.kind == kind else {
            throw .unexpected("expected a \(kind) message, found \(frame.header.kind)")
        }
        var r = BinaryReader(frame.payload)
        do {
            let value = try Self(from: &r)
            try r.finish()
            return value
        } catch {
            throw .malformedPayload(kind: kind, reason: error.description)
        }
    }
}

/// The protocol version both sides must speak (also in every frame header).
public let protocolVersion = Int(FrameHeader.currentVersion)

struct HelloMessage: ControlMessage, Equatable {
    static let kind = MessageKind.hello
    var protocolVersion: Int
    var host: String
    var pid: Int
    /// The run token (loopback security); empty when the coordinator asks none.
    var token: String

    func encode(into w: inout BinaryWriter) {
        w.write(protocolVersion)
        w.write(host)
        w.write(pid)
        w.write(token)
    }

    init(protocolVersion: Int, host: String, pid: Int, token: String) {
        self.protocolVersion = protocolVersion
        self.host = host
        self.pid = pid
        self.token = token
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        protocolVersion = try r.readInt("protocol version")
        host = try r.readString("host")
        pid = try r.readInt("pid")
        token = try r.readString("token")
    }
}

/// RNNCore's `TrainingState` (parameters, optimizer moments, step count) as it travels in
/// WELCOME and STATE.
extension TrainingState {
    func encode(into w: inout BinaryWriter) {
        w.write(floats: parameters)
        w.write(floats: expAvg)
        w.write(floats: expAvgSq)
        w.write(stepCount)
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        self.init(parameters: try r.readFloats("parameters"), expAvg: try r.readFloats("exp_avg"),
                  expAvgSq: try r.readFloats("exp_avg_sq"), stepCount: try r.readInt("optimizer step"))
    }
}

struct WelcomeMessage: ControlMessage {
    static let kind = MessageKind.welcome
    var rank: Int
    var world: Int
    /// The run's `TrainingConfig` as JSON.
    var configJSON: String
    /// Milliseconds a worker waits for any single ring frame.
    var ringTimeoutMilliseconds: Int
    /// Global steps already applied to `state`.
    var completedSteps: Int
    /// Where the worker sends heartbeats (the coordinator's heartbeat ROUTER).
    var heartbeatEndpoint: String
    var heartbeatIntervalMilliseconds: Int
    var heartbeatTimeoutMilliseconds: Int
    var state: TrainingState

    func encode(into w: inout BinaryWriter) {
        w.write(rank)
        w.write(world)
        w.write(configJSON)
        w.write(ringTimeoutMilliseconds)
        w.write(completedSteps)
        w.write(heartbeatEndpoint)
        w.write(heartbeatIntervalMilliseconds)
        w.write(heartbeatTimeoutMilliseconds)
        state.encode(into: &w)
    }

    init(rank: Int, world: Int, configJSON: String, ringTimeoutMilliseconds: Int, completedSteps: Int, heartbeatEndpoint: String,
         heartbeatIntervalMilliseconds: Int, heartbeatTimeoutMilliseconds: Int, state: TrainingState) {
        self.rank = rank
        self.world = world
        self.configJSON = configJSON
        self.ringTimeoutMilliseconds = ringTimeoutMilliseconds
        self.completedSteps = completedSteps
        self.heartbeatEndpoint = heartbeatEndpoint
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
        self.heartbeatTimeoutMilliseconds = heartbeatTimeoutMilliseconds
        self.state = state
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        rank = try r.readInt("rank")
        world = try r.readInt("world")
        configJSON = try r.readString("config")
        ringTimeoutMilliseconds = try r.readInt("ring timeout")
        completedSteps = try r.readInt("completed steps")
        heartbeatEndpoint = try r.readString("heartbeat endpoint")
        heartbeatIntervalMilliseconds = try r.readInt("heartbeat interval")
        heartbeatTimeoutMilliseconds = try r.readInt("heartbeat timeout")
        state = try TrainingState(from: &r)
    }
}

extension WelcomeMessage {
    /// The heartbeat settings at the front of a WELCOME payload, read without decoding the
    /// (possibly large) state, so that the worker's heartbeats start at once.
    static func heartbeatSettings(_ frame: Frame) -> (endpoint: String, intervalMilliseconds: Int, timeoutMilliseconds: Int)? {
        guard frame.header.kind == kind else { return nil }
        var r = BinaryReader(frame.payload)
        do {
            _ = try r.readInt("rank")
            _ = try r.readInt("world")
            _ = try r.readString("config")
            _ = try r.readInt("ring timeout")
            _ = try r.readInt("completed steps")
            return (try r.readString("heartbeat endpoint"), try r.readInt("heartbeat interval"), try r.readInt("heartbeat timeout"))
        } catch {
            return nil
        }
    }
}

/// Coordinator -> member: the ring changes (a peer was lost, or workers join). The new
/// generation travels in the header. The worker abandons any unfinished step, returns to
/// `completedSteps` applied steps (undoing a step it applied but the coordinator did not
/// accept), binds a new ring socket as `rank` of `world` and answers READY.
struct ReformMessage: ControlMessage, Equatable {
    static let kind = MessageKind.reform
    var rank: Int
    var world: Int
    var completedSteps: Int
    var reason: String

    func encode(into w: inout BinaryWriter) {
        w.write(rank)
        w.write(world)
        w.write(completedSteps)
        w.write(reason)
    }

    init(rank: Int, world: Int, completedSteps: Int, reason: String) {
        self.rank = rank
        self.world = world
        self.completedSteps = completedSteps
        self.reason = reason
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        rank = try r.readInt("rank")
        world = try r.readInt("world")
        completedSteps = try r.readInt("completed steps")
        reason = try r.readString("reason")
    }
}

/// Worker -> coordinator: this worker abandoned global step `globalStep` (its all-reduce
/// failed: a timeout or a broken exchange) and waits for a REFORM.
struct StepFailedMessage: ControlMessage, Equatable {
    static let kind = MessageKind.stepFailed
    var globalStep: Int
    var text: String

    func encode(into w: inout BinaryWriter) {
        w.write(globalStep)
        w.write(text)
    }

    init(globalStep: Int, text: String) {
        self.globalStep = globalStep
        self.text = text
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readInt("global step")
        text = try r.readString("text")
    }
}

/// Either direction on the heartbeat sockets: liveness. The worker's carries its rank
/// and applied steps (for the log); the coordinator's answer is empty.
struct HeartbeatMessage: ControlMessage, Equatable {
    static let kind = MessageKind.heartbeat
    var appliedSteps: Int

    func encode(into w: inout BinaryWriter) { w.write(appliedSteps) }
    init(appliedSteps: Int) { self.appliedSteps = appliedSteps }
    init(from r: inout BinaryReader) throws(PayloadError) { appliedSteps = try r.readInt("applied steps") }
}

struct ReadyMessage: ControlMessage, Equatable {
    static let kind = MessageKind.ready
    /// The worker's bound ring endpoint, as its peers must dial it.
    var dataEndpoint: String
    /// With CURVE: the public key its ring socket serves with ("" otherwise).
    var publicKey: String = ""

    func encode(into w: inout BinaryWriter) {
        w.write(dataEndpoint)
        w.write(publicKey)
    }
    init(dataEndpoint: String, publicKey: String = "") {
        self.dataEndpoint = dataEndpoint
        self.publicKey = publicKey
    }
    init(from r: inout BinaryReader) throws(PayloadError) {
        dataEndpoint = try r.readString("data endpoint")
        publicKey = try r.readString("public key")
    }
}

struct RingMessage: ControlMessage, Equatable {
    static let kind = MessageKind.ringUpdate
    var generation: UInt32
    /// endpoints[k] is rank k's data endpoint.
    var endpoints: [String]
    /// With CURVE: publicKeys[k] is rank k's ring server key (empty strings otherwise).
    var publicKeys: [String]
    /// The all-reduce crossovers this run measured so far, one per (leader) world
    /// (AllReduceCrossover.swift): a ring of one of these worlds uses them instead of measuring.
    var crossovers: [CrossoverThresholds]

    func encode(into w: inout BinaryWriter) {
        w.write(generation)
        w.write(endpoints.count)
        for e in endpoints { w.write(e) }
        for k in publicKeys { w.write(k) }
        w.write(crossovers.count)
        for c in crossovers { c.encode(into: &w) }
    }

    init(generation: UInt32, endpoints: [String], publicKeys: [String]? = nil, crossovers: [CrossoverThresholds] = []) {
        self.generation = generation
        self.endpoints = endpoints
        self.publicKeys = publicKeys ?? endpoints.map { _ in "" }
        self.crossovers = crossovers
        precondition(self.publicKeys.count == endpoints.count)
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        generation = try r.readUInt32("generation")
        let n = try r.readInt("endpoint count")
        guard n >= 0 && n <= 65_536 else { throw PayloadError.invalidValue(field: "endpoint count", found: "\(n) (expected 0...65536)") }
        endpoints = []
        for _ in 0..<n { endpoints.append(try r.readString("endpoint")) }
        publicKeys = []
        for _ in 0..<n { publicKeys.append(try r.readString("public key")) }
        let c = try r.readInt("crossover count")
        guard c >= 0 && c <= 65_536 else { throw PayloadError.invalidValue(field: "crossover count", found: "\(c) (expected 0...65536)") }
        crossovers = []
        for _ in 0..<c { crossovers.append(try CrossoverThresholds(from: &r)) }
    }
}

extension CrossoverThresholds {
    func encode(into w: inout BinaryWriter) {
        w.write(world)
        w.write(recursiveDoublingMaxBytes)
        w.write(halvingDoublingMaxBytes)
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        world = try r.readInt("crossover world")
        recursiveDoublingMaxBytes = try r.readInt("recursive doubling bytes")
        halvingDoublingMaxBytes = try r.readInt("halving-doubling bytes")
        guard world >= 1, recursiveDoublingMaxBytes >= 0, halvingDoublingMaxBytes >= recursiveDoublingMaxBytes else {
            throw PayloadError.invalidValue(field: "crossover", found: "W \(world), \(recursiveDoublingMaxBytes), \(halvingDoublingMaxBytes)")
        }
    }
}

/// One global step's entry in a STEP message (`StepMessage`) or a METRICS message
/// (`MetricsMessage`).
protocol StepRecord: Equatable {
    /// The kind of the message that carries a group of these.
    static var groupKind: MessageKind { get }
    var globalStep: Int { get }
    func encode(into writer: inout BinaryWriter)
    init(from reader: inout BinaryReader) throws(PayloadError)
}

/// STEP and METRICS: one or more consecutive global steps in one message. Short steps travel
/// several per message, which a worker runs back to back and reports together (see
/// `CoordinatorOptions.maxStepsPerMessage`); long ones one per message.
struct StepGroup<Record: StepRecord>: ControlMessage, Equatable {
    static var kind: MessageKind { Record.groupKind }
    /// At least one; global steps consecutive.
    var records: [Record]

    init(_ records: [Record]) {
        precondition(!records.isEmpty, "a \(Self.kind) message needs at least one step")
        self.records = records
    }

    func encode(into w: inout BinaryWriter) {
        w.write(records.count)
        for r in records { r.encode(into: &w) }
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        let n = try r.readInt("step count")
        guard n >= 1 && n <= maxStepsPerMessageLimit else {
            throw PayloadError.invalidValue(field: "step count", found: "\(n) (expected 1...\(maxStepsPerMessageLimit))")
        }
        records = []
        records.reserveCapacity(n)
        for _ in 0..<n { records.append(try Record(from: &r)) }
        for i in records.indices.dropFirst() where records[i].globalStep != records[i - 1].globalStep + 1 {
            throw PayloadError.invalidValue(field: "global step", found: "\(records[i].globalStep) after \(records[i - 1].globalStep) (expected consecutive steps)")
        }
    }
}

typealias StepGroupMessage = StepGroup<StepMessage>
typealias MetricsGroupMessage = StepGroup<MetricsMessage>

/// The most steps one STEP or METRICS message may carry.
public let maxStepsPerMessageLimit = 64

/// One global step of a STEP message.
struct StepMessage: StepRecord {
    static let groupKind = MessageKind.stepAssignment
    var epoch: Int
    var stepInEpoch: Int
    var globalStep: Int
    /// The dataset rows this worker computes (may be empty when the batch is smaller than W).
    var rows: [Int]
    /// Report a hash of the parameters after the update.
    var wantHash: Bool
    /// The learning rate of this step's update (the coordinator's schedule; nil: the config's lr).
    var lr: Double?

    func encode(into w: inout BinaryWriter) {
        w.write(epoch)
        w.write(stepInEpoch)
        w.write(globalStep)
        w.write(wantHash)
        w.write(rows: rows)
        w.write(lr != nil)
        w.write(lr ?? 0)
    }

    init(epoch: Int, stepInEpoch: Int, globalStep: Int, rows: [Int], wantHash: Bool, lr: Double? = nil) {
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.globalStep = globalStep
        self.rows = rows
        self.wantHash = wantHash
        self.lr = lr
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        epoch = try r.readInt("epoch")
        stepInEpoch = try r.readInt("step in epoch")
        globalStep = try r.readInt("global step")
        wantHash = try r.readBool("want hash")
        rows = try r.readRows()
        let scheduled = try r.readBool("has lr")
        let value = try r.readDouble("lr")
        guard !scheduled || (value.isFinite && value >= 0) else {
            throw PayloadError.invalidValue(field: "lr", found: "\(value)")
        }
        lr = scheduled ? value : nil
    }
}

/// One step's result in a METRICS message.
struct MetricsMessage: StepRecord {
    static let groupKind = MessageKind.metrics
    var globalStep: Int
    /// Sum of the loss over this worker's scored elements.
    var lossSum: Double
    var scored: Int
    var correct: Int
    var samples: Int
    /// The global scored count the gradient was divided by (after the all-reduce).
    var globalScored: Int
    /// FNV-1a hash of the parameters after the update (0 when not asked).
    var parameterHash: UInt64
    var computeSeconds: Double
    /// Wall time of the step's all-reduce (its buckets' time, overlapped with backward or not).
    var reduceSeconds: Double
    /// The part of `reduceSeconds` the step waited for after backward, and the part that ran
    /// while backward still computed (`reduceSeconds` = exposed + hidden).
    var reduceExposedSeconds: Double
    var reduceHiddenSeconds: Double
    /// Every element of the reduced gradient and of the updated parameters was finite; false:
    /// training diverged at this step.
    var gradientFinite = true
    /// Rank 0, on the first step of a ring that measured its all-reduce crossover: the result.
    var measuredCrossover: CrossoverThresholds?

    func encode(into w: inout BinaryWriter) {
        w.write(globalStep)
        w.write(lossSum)
        w.write(scored)
        w.write(correct)
        w.write(samples)
        w.write(globalScored)
        w.write(parameterHash)
        w.write(computeSeconds)
        w.write(reduceSeconds)
        w.write(reduceExposedSeconds)
        w.write(reduceHiddenSeconds)
        w.write(gradientFinite)
        w.write(measuredCrossover != nil)
        measuredCrossover?.encode(into: &w)
    }

    init(globalStep: Int, lossSum: Double, scored: Int, correct: Int, samples: Int, globalScored: Int,
         parameterHash: UInt64, computeSeconds: Double, reduceSeconds: Double, reduceExposedSeconds: Double? = nil,
         reduceHiddenSeconds: Double = 0, gradientFinite: Bool = true) {
        self.globalStep = globalStep
        self.lossSum = lossSum
        self.scored = scored
        self.correct = correct
        self.samples = samples
        self.globalScored = globalScored
        self.parameterHash = parameterHash
        self.computeSeconds = computeSeconds
        self.reduceSeconds = reduceSeconds
        self.reduceExposedSeconds = reduceExposedSeconds ?? reduceSeconds
        self.reduceHiddenSeconds = reduceHiddenSeconds
        self.gradientFinite = gradientFinite
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readInt("global step")
        lossSum = try r.readDouble("loss sum")
        scored = try r.readInt("scored")
        correct = try r.readInt("correct")
        samples = try r.readInt("samples")
        globalScored = try r.readInt("global scored")
        parameterHash = try r.readUInt64("parameter hash")
        computeSeconds = try r.readDouble("compute seconds")
        reduceSeconds = try r.readDouble("reduce seconds")
        reduceExposedSeconds = try r.readDouble("exposed reduce seconds")
        reduceHiddenSeconds = try r.readDouble("hidden reduce seconds")
        gradientFinite = try r.readBool("gradient finite")
        measuredCrossover = try r.readBool("measured crossover") ? try CrossoverThresholds(from: &r) : nil
    }
}

struct StateRequestMessage: ControlMessage, Equatable {
    static let kind = MessageKind.stateRequest
    func encode(into w: inout BinaryWriter) {}
    init() {}
    init(from r: inout BinaryReader) throws(PayloadError) {}
}

struct StateMessage: ControlMessage, Equatable {
    static let kind = MessageKind.state
    var globalStep: Int
    var state: TrainingState

    func encode(into w: inout BinaryWriter) {
        w.write(globalStep)
        state.encode(into: &w)
    }

    init(globalStep: Int, state: TrainingState) {
        self.globalStep = globalStep
        self.state = state
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readInt("global step")
        state = try TrainingState(from: &r)
    }
}

/// Coordinator -> worker: evaluate the current parameters (those after `globalStep` applied
/// steps) on `rows`, `batchSize` rows at a time, of the validation files (`validationFiles`) or
/// of the training data (a --val-split's held-out rows).
struct EvaluateMessage: ControlMessage, Equatable {
    static let kind = MessageKind.evaluate
    var globalStep: Int
    var validationFiles: Bool
    var batchSize: Int
    var rows: [Int]

    func encode(into w: inout BinaryWriter) {
        w.write(globalStep)
        w.write(validationFiles)
        w.write(batchSize)
        w.write(rows: rows)
    }

    init(globalStep: Int, validationFiles: Bool, batchSize: Int, rows: [Int]) {
        self.globalStep = globalStep
        self.validationFiles = validationFiles
        self.batchSize = batchSize
        self.rows = rows
    }

    init(from r: inout BinaryReader) throws(PayloadError) {
        globalStep = try r.readInt("global step")
        validationFiles = try r.readBool("validation files")
        batchSize = try r.readInt("batch size")
        guard batchSize >= 1 else { throw PayloadError.invalidValue(field: "batch size", found: "\(batchSize) (expected at least 1)") }
        rows = try r.readRows()
    }
}

/// Worker -> coordinator: the loss sums of each batch of an EVALUATE, in order.
struct EvaluationMessage: ControlMessage, Equatable {
    static let kind = MessageKind.evaluation
    var batches: [LossStats]

    func encode(into w: inout BinaryWriter) {
        w.write(batches.count)
        for b in batches {
            w.write(b.lossSum)
            w.write(b.scoredCount)
            w.write(b.correct)
        }
    }

    init(batches: [LossStats]) { self.batches = batches }

    init(from r: inout BinaryReader) throws(PayloadError) {
        let n = try r.readInt("batch count")
        guard n >= 0 && n <= r.remaining / 24 else {
            throw PayloadError.invalidValue(field: "batch count", found: "\(n) batches in \(r.remaining) bytes")
        }
        batches = []
        for _ in 0..<n {
            batches.append(LossStats(lossSum: try r.readDouble("loss sum"), scoredCount: try r.readInt("scored"), correct: try r.readInt("correct")))
        }
    }
}

struct ByeMessage: ControlMessage, Equatable {
    static let kind = MessageKind.bye
    var reason: String
    func encode(into w: inout BinaryWriter) { w.write(reason) }
    init(reason: String) { self.reason = reason }
    init(from r: inout BinaryReader) throws(PayloadError) { reason = try r.readString("reason") }
}

/// A worker leaving on purpose (SIGTERM, SIGINT): the coordinator drops it at once and
/// re-forms the ring, instead of waiting for its heartbeats to stop.
struct LeaveMessage: ControlMessage, Equatable {
    static let kind = MessageKind.leave
    var reason: String
    func encode(into w: inout BinaryWriter) { w.write(reason) }
    init(reason: String) { self.reason = reason }
    init(from r: inout BinaryReader) throws(PayloadError) { reason = try r.readString("reason") }
}

/// A named failure. A refusal at the door says why in `refusal`, so that the worker need not
/// read the sentence (a stale token file is read again, anything else ends the attempt).
struct ErrorMessage: ControlMessage, Equatable {
    enum Refusal: UInt8 {
        case none = 0, wrongToken = 1, wrongProtocolVersion = 2
    }
    static let kind = MessageKind.error
    var text: String
    var refusal = Refusal.none
    func encode(into w: inout BinaryWriter) {
        w.write(text)
        w.write(refusal.rawValue)
    }
    init(text: String, refusal: Refusal = .none) {
        self.text = text
        self.refusal = refusal
    }
    init(from r: inout BinaryReader) throws(PayloadError) {
        text = try r.readString("text")
        let code = try r.readUInt8("refusal")
        guard let refusal = Refusal(rawValue: code) else {
            throw PayloadError.invalidValue(field: "refusal", found: "\(code) (expected 0...2)")
        }
        self.refusal = refusal
    }
}

extension BinaryWriter {
    /// A list of dataset rows: the count, then each row as int64.
    mutating func write(rows: [Int]) {
        write(rows.count)
        for r in rows { write(Int64(r)) }
    }
}

extension BinaryReader {
    /// A list written by `write(rows:)`; the count must fit the bytes left.
    mutating func readRows() throws(PayloadError) -> [Int] {
        let n = try readInt("row count")
        guard n >= 0 && n <= remaining / 8 else {
            throw PayloadError.invalidValue(field: "row count", found: "\(n) rows in \(remaining) bytes")
        }
        var rows: [Int] = []
        rows.reserveCapacity(n)
        for _ in 0..<n { rows.append(try readInt("row")) }
        return rows
    }
}

/// A hash of the bit patterns of `values`, equal for bitwise-equal replicas: FNV-1a over
/// 32-bit words in four interleaved lanes (independent multiply chains, ~4x faster than one
/// byte-wise chain: hashing lstm-large's 3.4 M parameters is on a replica's critical path
/// every --hash-every steps), lanes and length folded together at the end.
func parameterHash(_ values: [Float]) -> UInt64 {
    let prime: UInt64 = 0x0000_0100_0000_01B3
    var lanes = (UInt64(0xCBF2_9CE4_8422_2325), UInt64(0x8422_2325_CBF2_9CE4), UInt64(0x9E37_79B9_7F4A_7C15), UInt64(0xC2B2_AE3D_27D4_EB4F))
    values.withUnsafeBufferPointer { v in
        var i = 0
        while i + 4 <= v.count {
            lanes.0 = (lanes.0 ^ UInt64(v[i].bitPattern)) &* prime
            lanes.1 = (lanes.1 ^ UInt64(v[i + 1].bitPattern)) &* prime
            lanes.2 = (lanes.2 ^ UInt64(v[i + 2].bitPattern)) &* prime
            lanes.3 = (lanes.3 ^ UInt64(v[i + 3].bitPattern)) &* prime
            i += 4
        }
        while i < v.count {
            lanes.0 = (lanes.0 ^ UInt64(v[i].bitPattern)) &* prime
            i += 1
        }
    }
    var h = UInt64(0xCBF2_9CE4_8422_2325)
    for x in [lanes.0, lanes.1, lanes.2, lanes.3, UInt64(values.count)] {
        h = (h ^ x) &* prime
        h ^= h >> 29
    }
    return h
}
