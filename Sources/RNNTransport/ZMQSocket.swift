// Owning handle for a libzmq socket: options, bind/connect, sends and receives with
// deadlines. A socket may move between threads but must not be used by two at once
// (the libzmq rule); `@unchecked Sendable` lets a thread take ownership.
import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Socket patterns offered (no PUB/SUB: everything we send must arrive).
public enum ZMQSocketType: Sendable, CustomStringConvertible {
    case pair, dealer, router, push, pull, req, rep

    var raw: Int32 {
        switch self {
        case .pair: return ZMQ_PAIR
        case .dealer: return ZMQ_DEALER
        case .router: return ZMQ_ROUTER
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .req: return ZMQ_REQ
        case .rep: return ZMQ_REP
        }
    }

    public var description: String {
        switch self {
        case .pair: return "PAIR"
        case .dealer: return "DEALER"
        case .router: return "ROUTER"
        case .push: return "PUSH"
        case .pull: return "PULL"
        case .req: return "REQ"
        case .rep: return "REP"
        }
    }
}

/// A send that could not be queued before its deadline (peer absent or high-water mark hit).
public struct ZMQTimeout: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let endpoint: String?
    public let milliseconds: Int

    public var description: String {
        "\(operation) on '\(endpoint ?? "unbound socket")' timed out after \(milliseconds) ms"
    }
}

/// Poll event flags.
public struct ZMQEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let readable = ZMQEvents(rawValue: Int16(ZMQ_POLLIN))
    public static let writable = ZMQEvents(rawValue: Int16(ZMQ_POLLOUT))
    public static let error = ZMQEvents(rawValue: Int16(ZMQ_POLLERR))
}

/// One libzmq socket.
public final class ZMQSocket: @unchecked Sendable {
    private var handle: UnsafeMutableRawPointer?
    /// Keeps the context alive until this socket is closed.
    public let context: ZMQContext
    public let type: ZMQSocketType
    /// Endpoints bound or connected, for error messages.
    public private(set) var endpoints: [String] = []

    /// Creates a socket. LINGER is set to `lingerMilliseconds` (default 1000 ms: pending
    /// messages get a bounded chance to leave on close, and closing never hangs).
    public init(_ context: ZMQContext, type: ZMQSocketType, lingerMilliseconds: Int = 1000) throws(ZMQError) {
        guard let s = zmq_socket(context.handle, type.raw) else {
            throw ZMQError(call: "zmq_socket(\(type))", errno: zmq_errno())
        }
        self.handle = s
        self.context = context
        self.type = type
        try setInt(ZMQ_LINGER, Int32(lingerMilliseconds), "ZMQ_LINGER")
    }

    deinit {
        if let h = handle { zmq_close(h) }
    }

    /// Where errors should say the socket is.
    public var endpointDescription: String? { endpoints.isEmpty ? nil : endpoints.joined(separator: ",") }

    private func live(_ call: String) throws(ZMQError) -> UnsafeMutableRawPointer {
        guard let h = handle else { throw ZMQError(call: call, endpoint: endpointDescription, errno: ENOTSOCK) }
        return h
    }

    // MARK: lifecycle

    /// Binds to `endpoint` (e.g. `tcp://127.0.0.1:*`; read the chosen port with `lastEndpoint`).
    public func bind(_ endpoint: String) throws(ZMQError) {
        let h = try live("zmq_bind")
        try zmqCall("zmq_bind", endpoint: endpoint) { zmq_bind(h, endpoint) }
        endpoints.append(endpoint)
    }

    /// Connects to `endpoint` (asynchronous: succeeds before the peer exists).
    public func connect(_ endpoint: String) throws(ZMQError) {
        let h = try live("zmq_connect")
        try zmqCall("zmq_connect", endpoint: endpoint) { zmq_connect(h, endpoint) }
        endpoints.append(endpoint)
    }

    public func disconnect(_ endpoint: String) throws(ZMQError) {
        let h = try live("zmq_disconnect")
        try zmqCall("zmq_disconnect", endpoint: endpoint) { zmq_disconnect(h, endpoint) }
        endpoints.removeAll { $0 == endpoint }
    }

    public func unbind(_ endpoint: String) throws(ZMQError) {
        let h = try live("zmq_unbind")
        try zmqCall("zmq_unbind", endpoint: endpoint) { zmq_unbind(h, endpoint) }
        endpoints.removeAll { $0 == endpoint }
    }

    /// Closes the socket now. With `discardPending` (the error path) LINGER is set to 0 first
    /// so nothing waits for an unreachable peer. Further calls throw ENOTSOCK.
    public func close(discardPending: Bool = false) {
        guard let h = handle else { return }
        if discardPending {
            var zero: Int32 = 0
            zmq_setsockopt(h, ZMQ_LINGER, &zero, MemoryLayout<Int32>.size)
        }
        zmq_close(h)
        handle = nil
    }

    public var isClosed: Bool { handle == nil }

    // MARK: options

    func setInt(_ option: Int32, _ value: Int32, _ name: String) throws(ZMQError) {
        let h = try live("zmq_setsockopt(\(name))")
        var v = value
        try zmqCall("zmq_setsockopt(\(name))", endpoint: endpointDescription) {
            zmq_setsockopt(h, option, &v, MemoryLayout<Int32>.size)
        }
    }

    func setBytes(_ option: Int32, _ value: [UInt8], _ name: String) throws(ZMQError) {
        let h = try live("zmq_setsockopt(\(name))")
        try zmqCall("zmq_setsockopt(\(name))", endpoint: endpointDescription) {
            value.withUnsafeBytes { zmq_setsockopt(h, option, $0.baseAddress, $0.count) }
        }
    }

    func getInt(_ option: Int32, _ name: String) throws(ZMQError) -> Int32 {
        let h = try live("zmq_getsockopt(\(name))")
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try zmqCall("zmq_getsockopt(\(name))", endpoint: endpointDescription) { zmq_getsockopt(h, option, &v, &size) }
        return v
    }

    func getString(_ option: Int32, _ name: String, capacity: Int = 1024) throws(ZMQError) -> String {
        let h = try live("zmq_getsockopt(\(name))")
        var buffer = [UInt8](repeating: 0, count: capacity)
        var size = capacity
        try zmqCall("zmq_getsockopt(\(name))", endpoint: endpointDescription) {
            buffer.withUnsafeMutableBytes { zmq_getsockopt(h, option, $0.baseAddress, &size) }
        }
        let used = buffer.prefix(size)
        let bytes = used.last == 0 ? used.dropLast() : used
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The endpoint of the last bind/connect as libzmq resolved it: after binding
    /// `tcp://127.0.0.1:*` this holds the chosen port (`tcp://127.0.0.1:41234`).
    public func lastEndpoint() throws(ZMQError) -> String {
        try getString(ZMQ_LAST_ENDPOINT, "ZMQ_LAST_ENDPOINT")
    }

    public func setLinger(milliseconds: Int) throws(ZMQError) { try setInt(ZMQ_LINGER, Int32(milliseconds), "ZMQ_LINGER") }
    public func linger() throws(ZMQError) -> Int { Int(try getInt(ZMQ_LINGER, "ZMQ_LINGER")) }
    /// Outgoing high-water mark in messages (0 = unlimited). Set before bind/connect.
    public func setSendHighWaterMark(_ messages: Int) throws(ZMQError) { try setInt(ZMQ_SNDHWM, Int32(messages), "ZMQ_SNDHWM") }
    /// Incoming high-water mark in messages (0 = unlimited). Set before bind/connect.
    public func setReceiveHighWaterMark(_ messages: Int) throws(ZMQError) { try setInt(ZMQ_RCVHWM, Int32(messages), "ZMQ_RCVHWM") }
    public func sendHighWaterMark() throws(ZMQError) -> Int { Int(try getInt(ZMQ_SNDHWM, "ZMQ_SNDHWM")) }
    public func receiveHighWaterMark() throws(ZMQError) -> Int { Int(try getInt(ZMQ_RCVHWM, "ZMQ_RCVHWM")) }
    /// ROUTER only: sending to an unknown routing id fails (EHOSTUNREACH) instead of dropping.
    public func setRouterMandatory(_ on: Bool) throws(ZMQError) { try setInt(ZMQ_ROUTER_MANDATORY, on ? 1 : 0, "ZMQ_ROUTER_MANDATORY") }
    /// The identity a ROUTER peer sees for this socket. Set before connect.
    public func setRoutingID(_ id: [UInt8]) throws(ZMQError) { try setBytes(ZMQ_ROUTING_ID, id, "ZMQ_ROUTING_ID") }
    /// Queue messages only to completed connections (DEALER/PUSH).
    public func setImmediate(_ on: Bool) throws(ZMQError) { try setInt(ZMQ_IMMEDIATE, on ? 1 : 0, "ZMQ_IMMEDIATE") }
    /// ZMTP heartbeats: PING every `interval`, peer considered gone after `timeout`
    /// without traffic; `ttl` is what the remote should use. All in milliseconds.
    public func setHeartbeat(intervalMilliseconds: Int, timeoutMilliseconds: Int, ttlMilliseconds: Int? = nil) throws(ZMQError) {
        try setInt(ZMQ_HEARTBEAT_IVL, Int32(intervalMilliseconds), "ZMQ_HEARTBEAT_IVL")
        try setInt(ZMQ_HEARTBEAT_TIMEOUT, Int32(timeoutMilliseconds), "ZMQ_HEARTBEAT_TIMEOUT")
        try setInt(ZMQ_HEARTBEAT_TTL, Int32(ttlMilliseconds ?? timeoutMilliseconds), "ZMQ_HEARTBEAT_TTL")
    }
    public func heartbeatInterval() throws(ZMQError) -> Int { Int(try getInt(ZMQ_HEARTBEAT_IVL, "ZMQ_HEARTBEAT_IVL")) }
    /// Reconnect interval after a lost connection, in milliseconds.
    public func setReconnectInterval(milliseconds: Int) throws(ZMQError) { try setInt(ZMQ_RECONNECT_IVL, Int32(milliseconds), "ZMQ_RECONNECT_IVL") }
    /// Maximum inbound message size in bytes (-1 = unlimited); larger messages drop the peer.
    public func setMaxMessageSize(_ bytes: Int) throws(ZMQError) {
        let h = try live("zmq_setsockopt(ZMQ_MAXMSGSIZE)")
        var v = Int64(bytes)
        try zmqCall("zmq_setsockopt(ZMQ_MAXMSGSIZE)", endpoint: endpointDescription) {
            zmq_setsockopt(h, ZMQ_MAXMSGSIZE, &v, MemoryLayout<Int64>.size)
        }
    }
    /// Which of the context's I/O threads serve this socket's new connections (bit k =
    /// thread k; 0 = any). Set before bind/connect.
    public func setAffinity(_ ioThreadMask: UInt64) throws(ZMQError) {
        let h = try live("zmq_setsockopt(ZMQ_AFFINITY)")
        var v = ioThreadMask
        try zmqCall("zmq_setsockopt(ZMQ_AFFINITY)", endpoint: endpointDescription) {
            zmq_setsockopt(h, ZMQ_AFFINITY, &v, MemoryLayout<UInt64>.size)
        }
    }

    /// Kernel socket buffer sizes in bytes (0 = OS default).
    public func setKernelBuffers(sendBytes: Int, receiveBytes: Int) throws(ZMQError) {
        try setInt(ZMQ_SNDBUF, Int32(sendBytes), "ZMQ_SNDBUF")
        try setInt(ZMQ_RCVBUF, Int32(receiveBytes), "ZMQ_RCVBUF")
    }

    // MARK: CURVE

    /// Makes this socket the CURVE server side (it must also have its secret key set).
    public func setCurveServer(_ on: Bool) throws(ZMQError) { try setInt(ZMQ_CURVE_SERVER, on ? 1 : 0, "ZMQ_CURVE_SERVER") }
    /// This socket's long-term public key (Z85, 40 characters).
    public func setCurvePublicKey(_ z85: String) throws(ZMQError) { try setBytes(ZMQ_CURVE_PUBLICKEY, try Self.z85Key(z85, "ZMQ_CURVE_PUBLICKEY"), "ZMQ_CURVE_PUBLICKEY") }
    /// This socket's long-term secret key (Z85, 40 characters).
    public func setCurveSecretKey(_ z85: String) throws(ZMQError) { try setBytes(ZMQ_CURVE_SECRETKEY, try Self.z85Key(z85, "ZMQ_CURVE_SECRETKEY"), "ZMQ_CURVE_SECRETKEY") }
    /// Client side: the server's public key (Z85, 40 characters).
    public func setCurveServerKey(_ z85: String) throws(ZMQError) { try setBytes(ZMQ_CURVE_SERVERKEY, try Self.z85Key(z85, "ZMQ_CURVE_SERVERKEY"), "ZMQ_CURVE_SERVERKEY") }
    /// Configures a client socket for CURVE in one call.
    public func configureCurveClient(keys: ZMQCurveKeyPair, serverPublicKey: String) throws(ZMQError) {
        try setCurveServerKey(serverPublicKey)
        try setCurvePublicKey(keys.publicKey)
        try setCurveSecretKey(keys.secretKey)
    }
    /// Configures a server socket for CURVE in one call.
    public func configureCurveServer(keys: ZMQCurveKeyPair) throws(ZMQError) {
        try setCurveServer(true)
        try setCurveSecretKey(keys.secretKey)
    }
    /// ZAP domain (used by an authentication handler for allowlists).
    public func setZAPDomain(_ domain: String) throws(ZMQError) { try setBytes(ZMQ_ZAP_DOMAIN, Array(domain.utf8), "ZMQ_ZAP_DOMAIN") }

    private static func z85Key(_ key: String, _ name: String) throws(ZMQError) -> [UInt8] {
        let bytes = Array(key.utf8)
        guard bytes.count == 40 else { throw ZMQError(call: "zmq_setsockopt(\(name)) [key must be 40 Z85 characters, got \(bytes.count)]", errno: EINVAL) }
        return bytes
    }

    // MARK: send

    /// Sends `message` (which is emptied on success), waiting at most until `deadline` for
    /// room in the queue. Throws `ZMQTimeout` if it could not be queued in time.
    public func send(_ message: ZMQMessage, more: Bool = false, deadline: Deadline) throws {
        let h = try live("zmq_msg_send")
        let flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)
        let start = monotonicNanoseconds()
        while true {
            if try zmqCall("zmq_msg_send", endpoint: endpointDescription, { zmq_msg_send(message.raw, h, flags) }) != nil {
                return
            }
            let ms = deadline.remainingMilliseconds
            if ms == 0 {
                throw ZMQTimeout(operation: "send", endpoint: endpointDescription,
                                 milliseconds: Int((monotonicNanoseconds() - start) / 1_000_000))
            }
            _ = try pollSelf(.writable, milliseconds: ms)
        }
    }

    /// Sends a copy of `bytes` as one frame.
    public func send(bytes: UnsafeRawBufferPointer, more: Bool = false, deadline: Deadline) throws {
        try send(try ZMQMessage(copying: bytes), more: more, deadline: deadline)
    }

    /// Sends a copy of `bytes` as one frame.
    public func send(_ bytes: [UInt8], more: Bool = false, deadline: Deadline) throws {
        try send(try ZMQMessage(bytes), more: more, deadline: deadline)
    }

    /// Sends all frames as one multipart message (delivered all or nothing).
    public func sendMultipart(_ frames: [[UInt8]], deadline: Deadline) throws {
        precondition(!frames.isEmpty, "a multipart message needs at least one frame")
        for (i, f) in frames.enumerated() {
            try send(f, more: i < frames.count - 1, deadline: deadline)
        }
    }

    /// Sends all frames as one multipart message (delivered all or nothing).
    public func sendMultipart(_ frames: [ZMQMessage], deadline: Deadline) throws {
        precondition(!frames.isEmpty, "a multipart message needs at least one frame")
        for (i, f) in frames.enumerated() {
            try send(f, more: i < frames.count - 1, deadline: deadline)
        }
    }

    // MARK: receive

    /// Receives one frame into `message` (replacing its content). Returns false when the
    /// deadline passes first; never blocks past it.
    ///
    /// `spinMicroseconds` > 0 first retries the non-blocking receive for up to that long,
    /// yielding the CPU between tries (`sched_yield`), before blocking in `zmq_poll`. A frame
    /// that arrives within the spin is taken without the wakeup of a sleeping thread: on
    /// this 2-core KVM machine a blocking wait for a small frame costs ~35 µs more per
    /// message (`rnn-bench allreduce --spin`). The yield lets libzmq's I/O thread and other
    /// processes on this core run first, so spinning takes no CPU anybody else wants.
    public func receive(into message: ZMQMessage, deadline: Deadline, spinMicroseconds: Int = 0) throws(ZMQError) -> Bool {
        let h = try live("zmq_msg_recv")
        func tryReceive() throws(ZMQError) -> Bool {
            try zmqCall("zmq_msg_recv", endpoint: endpointDescription, { zmq_msg_recv(message.raw, h, ZMQ_DONTWAIT) }) != nil
        }
        if try tryReceive() { return true }
        if spinMicroseconds > 0 {
            let spinEnd = Deadline(nanoseconds: min(deadline.nanoseconds,
                                                    monotonicNanoseconds() &+ UInt64(spinMicroseconds) &* 1_000))
            while !spinEnd.hasPassed {
                sched_yield()
                if try tryReceive() { return true }
            }
        }
        while true {
            let ms = deadline.remainingMilliseconds
            if ms == 0 { return false }
            _ = try pollSelf(.readable, milliseconds: ms)
            if try tryReceive() { return true }
        }
    }

    /// Receives one frame, or nil when the deadline passes first.
    public func receive(deadline: Deadline) throws(ZMQError) -> ZMQMessage? {
        let m = ZMQMessage()
        return try receive(into: m, deadline: deadline) ? m : nil
    }

    /// Receives a whole multipart message (all its frames), or nil when the deadline passes
    /// before the first frame. The remaining frames arrive with the first (atomic delivery).
    /// `spinMicroseconds` as in `receive(into:deadline:spinMicroseconds:)`, for the first frame.
    public func receiveMultipart(deadline: Deadline, spinMicroseconds: Int = 0) throws(ZMQError) -> [ZMQMessage]? {
        let first = ZMQMessage()
        guard try receive(into: first, deadline: deadline, spinMicroseconds: spinMicroseconds) else { return nil }
        var frames = [first]
        while frames[frames.count - 1].hasMore {
            let next = ZMQMessage()
            // Parts of a multipart message are delivered together: no wait is needed, but
            // keep a short bound rather than trusting that blindly.
            guard try receive(into: next, deadline: .after(milliseconds: 1000)) else {
                throw ZMQError(call: "zmq_msg_recv (multipart continuation)", endpoint: endpointDescription, errno: EAGAIN)
            }
            frames.append(next)
        }
        return frames
    }

    // MARK: poll

    /// Waits up to `milliseconds` for `events` on this socket; returns the events that are ready.
    public func poll(_ events: ZMQEvents, deadline: Deadline) throws(ZMQError) -> ZMQEvents {
        try pollSelf(events, milliseconds: deadline.remainingMilliseconds)
    }

    private func pollSelf(_ events: ZMQEvents, milliseconds: Int) throws(ZMQError) -> ZMQEvents {
        let h = try live("zmq_poll")
        var item = zmq_pollitem_t(socket: h, fd: 0, events: events.rawValue, revents: 0)
        let rc = try zmqCall("zmq_poll", endpoint: endpointDescription) { zmq_poll(&item, 1, milliseconds) }
        if rc == nil { return [] }
        return ZMQEvents(rawValue: item.revents)
    }

    /// For `ZMQPoller`.
    func rawHandle() throws(ZMQError) -> UnsafeMutableRawPointer { try live("zmq_poll") }
}

/// Waits on several sockets at once.
public struct ZMQPoller {
    private var sockets: [ZMQSocket] = []
    private var items: [zmq_pollitem_t] = []

    public init() {}

    /// Adds a socket; returns its index for `events(at:)`.
    @discardableResult
    public mutating func add(_ socket: ZMQSocket, events: ZMQEvents = .readable) throws(ZMQError) -> Int {
        items.append(zmq_pollitem_t(socket: try socket.rawHandle(), fd: 0, events: events.rawValue, revents: 0))
        sockets.append(socket)
        return items.count - 1
    }

    /// Waits until some socket is ready or `deadline` passes. Returns the number of ready
    /// sockets (0 = deadline passed). EINTR is retried with the remaining time.
    public mutating func poll(deadline: Deadline) throws(ZMQError) -> Int {
        for i in items.indices { items[i].revents = 0 }
        while true {
            let ms = deadline.remainingMilliseconds
            let count = items.count
            let rc = try items.withUnsafeMutableBufferPointer { buf throws(ZMQError) in
                try zmqCall("zmq_poll") { zmq_poll(buf.baseAddress, Int32(count), ms) }
            }
            if let rc { return Int(rc) }
            if ms == 0 { return 0 }
        }
    }

    /// The events ready on the socket at `index` after the last `poll`.
    public func events(at index: Int) -> ZMQEvents { ZMQEvents(rawValue: items[index].revents) }
}

/// A CURVE long-term key pair in Z85 text (40 characters each).
public struct ZMQCurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh random key pair (`zmq_curve_keypair`); fails when libzmq lacks CURVE.
    public static func generate() throws(ZMQError) -> ZMQCurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&pub, &sec) }
        return ZMQCurveKeyPair(publicKey: z85Text(pub), secretKey: z85Text(sec))
    }

    /// The public key belonging to a secret key (`zmq_curve_public`).
    public static func publicKey(forSecret secret: String) throws(ZMQError) -> String {
        var pub = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_public") { zmq_curve_public(&pub, secret) }
        return z85Text(pub)
    }

    /// Z85 text of a NUL-terminated C buffer.
    private static func z85Text(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

