// Control-plane channels: the coordinator's ROUTER and a worker's DEALER, sending and
// receiving typed `ControlPayload` frames with deadlines, plus a liveness tracker for
// application heartbeats. The state machines of coordinator and worker build on these.

/// A worker as the coordinator's ROUTER sees it (its routing id).
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String {
        if let s = String(validating: bytes, as: UTF8.self), s.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\0" }) {
            return s
        }
        return bytes.map { String($0, radix: 16) }.joined()
    }
}

/// A validated control frame and who sent it.
public struct ReceivedControl: Sendable {
    /// The sender's routing id (coordinator side only).
    public let peer: PeerID?
    public let frame: Frame

    /// Decodes the payload as `T` (kind and exact length checked, failures counted).
    public func decode<T: ControlPayload>(_: T.Type, counting decoder: FrameDecoder? = nil) throws(FrameError) -> T {
        try T.decode(frame, counting: decoder)
    }
}

/// Frame acceptance of a control endpoint: the run's frames, plus HELLO with run id 0 on
/// the coordinator (a new worker does not know the run yet).
struct ControlDecoder {
    let decoder: FrameDecoder
    let runID: UInt64
    let acceptsAnonymousHello: Bool

    func decode(_ m: ZMQMessage) -> Frame? {
        guard let f = try? decoder.decode(m) else { return nil }  // counted by the decoder
        if f.header.runID == runID { return f }
        if acceptsAnonymousHello && f.header.runID == 0 && f.header.kind == .hello { return f }
        _ = decoder.reject(.wrongRun(expected: runID, found: f.header.runID))
        return nil
    }
}

/// The coordinator's end: one ROUTER socket all workers connect to.
public final class CoordinatorChannel: @unchecked Sendable {
    public let socket: ZMQSocket
    public let runID: UInt64
    /// The resolved endpoint (a `*` port replaced by the real one).
    public let endpoint: String
    public let rejects: RejectCounter
    private let control: ControlDecoder

    /// Binds a ROUTER at `bindEndpoint`. With `curve`, only CURVE clients can connect
    /// (pair with a ZAP allowlist to restrict which keys).
    public init(context: ZMQContext, bindEndpoint: String, runID: UInt64, curve: ZMQCurveKeyPair? = nil,
                maxPayloadBytes: Int = 1 << 30, rejects: RejectCounter = RejectCounter()) throws(ZMQError) {
        precondition(runID != 0, "run id 0 is reserved for HELLO")
        let s = try ZMQSocket(context, type: .router, lingerMilliseconds: 1000)
        try s.setRouterMandatory(true)
        if let curve { try s.configureCurveServer(keys: curve) }
        try s.bind(bindEndpoint)
        socket = s
        self.runID = runID
        endpoint = bindEndpoint.hasPrefix("tcp://") ? try s.lastEndpoint() : bindEndpoint
        self.rejects = rejects
        control = ControlDecoder(decoder: FrameDecoder(expectedRunID: nil, maxPayloadBytes: maxPayloadBytes, rejects: rejects),
                                 runID: runID, acceptsAnonymousHello: true)
    }

    /// Sends `message` to `peer`. Throws `ZMQError` (EHOSTUNREACH: peer gone) or `ZMQTimeout`.
    public func send<T: ControlPayload>(_ message: T, to peer: PeerID, generation: UInt32 = 0, step: UInt64 = 0,
                                        deadline: Deadline) throws {
        let f = message.frame(runID: runID, generation: generation, sender: FrameHeader.noRank, step: step)
        try socket.sendMultipart([try ZMQMessage(peer.bytes), try f.message()], deadline: deadline)
    }

    /// The next valid frame from any worker, or nil at the deadline. Malformed frames,
    /// frames of another run and messages of the wrong shape are counted and dropped.
    public func receive(deadline: Deadline) throws(ZMQError) -> ReceivedControl? {
        while let parts = try socket.receiveMultipart(deadline: deadline) {
            guard parts.count == 2 else {
                _ = control.decoder.reject(.unexpected("\(parts.count)-part message on the control socket"))
                continue
            }
            if let f = control.decode(parts[1]) { return ReceivedControl(peer: PeerID(parts[0].bytes), frame: f) }
        }
        return nil
    }
}

/// A worker's end: one DEALER connected to the coordinator.
public final class WorkerChannel: @unchecked Sendable {
    public let socket: ZMQSocket
    public let coordinatorEndpoint: String
    /// 0 until WELCOME; then the run id (`adopt(runID:)`).
    public private(set) var runID: UInt64 = 0
    public private(set) var rank: UInt32 = FrameHeader.noRank
    public let rejects: RejectCounter
    private var control: ControlDecoder

    /// Connects a DEALER to `coordinatorEndpoint`. `identity` becomes the routing id the
    /// coordinator sees. With `curve`, the coordinator's public key must be given.
    public init(context: ZMQContext, coordinatorEndpoint: String, identity: [UInt8]? = nil,
                curve: (keys: ZMQCurveKeyPair, serverPublicKey: String)? = nil,
                maxPayloadBytes: Int = 1 << 30, rejects: RejectCounter = RejectCounter()) throws(ZMQError) {
        let s = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 1000)
        if let identity { try s.setRoutingID(identity) }
        if let curve { try s.configureCurveClient(keys: curve.keys, serverPublicKey: curve.serverPublicKey) }
        try s.connect(coordinatorEndpoint)
        socket = s
        self.coordinatorEndpoint = coordinatorEndpoint
        self.rejects = rejects
        // Before WELCOME the worker cannot know the run: it accepts only WELCOME/ERROR then.
        control = ControlDecoder(decoder: FrameDecoder(expectedRunID: nil, maxPayloadBytes: maxPayloadBytes, rejects: rejects),
                                 runID: 0, acceptsAnonymousHello: false)
    }

    /// After WELCOME: from now on only frames of `runID` are accepted, sent with `rank`.
    public func adopt(runID: UInt64, rank: UInt32) {
        self.runID = runID
        self.rank = rank
        control = ControlDecoder(decoder: control.decoder, runID: runID, acceptsAnonymousHello: false)
    }

    public func send<T: ControlPayload>(_ message: T, generation: UInt32 = 0, step: UInt64 = 0, deadline: Deadline) throws {
        try socket.send(frame: message.frame(runID: runID, generation: generation, sender: rank, step: step), deadline: deadline)
    }

    /// The next valid frame from the coordinator, or nil at the deadline. Before `adopt`
    /// any run is accepted (the WELCOME carries it); afterwards only this run's frames.
    public func receive(deadline: Deadline) throws(ZMQError) -> ReceivedControl? {
        let m = ZMQMessage()
        while try socket.receive(into: m, deadline: deadline) {
            if runID == 0 {
                if let f = try? control.decoder.decode(m) { return ReceivedControl(peer: nil, frame: f) }
            } else if let f = control.decode(m) {
                return ReceivedControl(peer: nil, frame: f)
            }
        }
        return nil
    }
}

/// Application-level liveness: when each peer was last heard from, who is overdue, and
/// when our own next heartbeat is due. Pure bookkeeping on monotonic time (testable).
public struct LivenessTracker<Key: Hashable & Sendable>: Sendable {
    public let intervalNanoseconds: UInt64
    public let timeoutNanoseconds: UInt64
    private var lastHeard: [Key: UInt64] = [:]
    private var lastSent: UInt64 = 0

    public init(intervalMilliseconds: Int = 1000, timeoutMilliseconds: Int = 10_000) {
        intervalNanoseconds = UInt64(intervalMilliseconds) * 1_000_000
        timeoutNanoseconds = UInt64(timeoutMilliseconds) * 1_000_000
    }

    /// Any valid frame from `peer` counts as a sign of life.
    public mutating func heard(from peer: Key, at now: UInt64 = monotonicNanoseconds()) { lastHeard[peer] = now }

    /// Stops tracking `peer` (it left or was declared lost).
    public mutating func forget(_ peer: Key) { lastHeard[peer] = nil }

    public var peers: [Key] { Array(lastHeard.keys) }

    /// Peers silent for longer than the timeout, with how long (ms) they have been silent.
    public func overdue(at now: UInt64 = monotonicNanoseconds()) -> [(peer: Key, silentMilliseconds: Int)] {
        lastHeard.compactMap { k, t in
            now > t && now - t > timeoutNanoseconds ? (k, Int((now - t) / 1_000_000)) : nil
        }
    }

    /// True when our own heartbeat is due; call `sentHeartbeat` after sending it.
    public func heartbeatDue(at now: UInt64 = monotonicNanoseconds()) -> Bool { now - lastSent >= intervalNanoseconds }

    public mutating func sentHeartbeat(at now: UInt64 = monotonicNanoseconds()) { lastSent = now }

    /// The deadline for the next wait: the next heartbeat or the earliest peer timeout.
    public func nextWakeup(at now: UInt64 = monotonicNanoseconds()) -> Deadline {
        var next = lastSent &+ intervalNanoseconds
        for t in lastHeard.values { next = min(next, t &+ timeoutNanoseconds &+ 1) }
        return Deadline(nanoseconds: max(next, now))
    }
}
