// libzmq's socket monitor (zmq_socket_monitor): connection and handshake events of one socket,
// read on a thread of their own and handed to a closure. ZeroMQ hides a failed CURVE
// handshake from the sockets' users (the connection is retried, or silently given up); the
// monitor is the only place it shows, so the programs can say what went wrong.
//
// Measured with libzmq 4.3 (a client DEALER against a CURVE-server ROUTER with a ZAP handler):
//   wrong server key at the client  client: HANDSHAKE_FAILED_NO_DETAIL (EPIPE), retried every
//                                   ~100-200 ms forever; server: HANDSHAKE_FAILED_PROTOCOL
//                                   (ZMTP_CRYPTOGRAPHIC)
//   client key refused by ZAP       both: HANDSHAKE_FAILED_AUTH (status 400); the client never
//                                   reconnects
//   CURVE on one side only          both: HANDSHAKE_FAILED_PROTOCOL (ZMTP_MECHANISM_MISMATCH);
//                                   no reconnect
// A server's events carry its bound endpoint, not the peer's address; ACCEPTED and
// DISCONNECTED carry the connection's file descriptor, from which the peer's address is read.
import CZeroMQ
import Foundation

/// One event of a monitored socket.
public struct ZMQMonitorEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case connected
        /// A connection accepted by a bound socket; `peer` is the remote address when it could
        /// be read (the descriptor may be closed by the time the event is read).
        case accepted(fd: Int32, peer: String?)
        case disconnected(fd: Int32)
        case handshakeSucceeded
        /// The peer closed the connection during the handshake (errno in `value`): what a CURVE
        /// client sees when the server cannot decrypt its HELLO (a wrong server key).
        case handshakeFailedNoDetail(errno: Int32)
        /// The peers disagree on the security mechanism (CURVE on one side only).
        case mechanismMismatch
        /// A CURVE box failed to open (a wrong server key, as the server sees it).
        case cryptographicFailure
        /// Another ZMTP or ZAP protocol error (code as libzmq's ZMQ_PROTOCOL_ERROR_*).
        case protocolError(code: UInt32)
        /// The ZAP handler refused the peer (`status`, e.g. 400: not on the allow-list).
        case authenticationFailed(status: UInt32)
        case other(event: UInt16, value: UInt32)
    }

    public var kind: Kind
    /// The endpoint of the event (for a bound socket: its own bound endpoint).
    public var endpoint: String
}

/// Reads a socket's monitor events on its own thread until `stop()` or the context's shutdown.
public final class ZMQMonitor: @unchecked Sendable {
    private let pair: ZMQSocket
    private let lock = NSLock()
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    /// The events read: connections, disconnections and every handshake outcome.
    public static let connectionAndHandshakeEvents: Int32 = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED
        | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
        | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH

    /// Starts monitoring `socket` (call from the thread that uses it, before it connects or
    /// binds, so no event is missed). `handler` runs on the monitor's thread.
    public init(_ socket: ZMQSocket, events: Int32 = ZMQMonitor.connectionAndHandshakeEvents,
                handler: @escaping @Sendable (ZMQMonitorEvent) -> Void) throws(ZMQError) {
        let address = "inproc://rnn-monitor-\(UInt64.random(in: 1...UInt64.max))"
        let h = try socket.rawHandle()
        _ = try zmqCall("zmq_socket_monitor", endpoint: address) { zmq_socket_monitor(h, address, events) }
        pair = try ZMQSocket(socket.context, type: .pair, lingerMilliseconds: 0)
        try pair.connect(address)
        Thread.detachNewThread { [self] in loop(handler) }
    }

    /// Ends the monitor's thread (within ~100 ms).
    public func stop() {
        lock.lock()
        let already = stopping
        stopping = true
        lock.unlock()
        if !already { _ = finished.wait(timeout: .now() + 2) }
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func loop(_ handler: @Sendable (ZMQMonitorEvent) -> Void) {
        defer {
            pair.close()
            finished.signal()
        }
        while !isStopping {
            let parts: [ZMQMessage]?
            do { parts = try pair.receiveMultipart(deadline: .after(milliseconds: 100)) } catch { return }
            guard let parts, parts.count == 2 else { continue }
            let head = parts[0].bytes
            guard head.count >= 6 else { continue }
            // Host byte order, as libzmq writes it: uint16 event, uint32 value.
            let event = head.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt16.self) }
            let value = head.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt32.self) }
            let endpoint = String(decoding: parts[1].bytes, as: UTF8.self)
            handler(ZMQMonitorEvent(kind: Self.kind(event: event, value: value), endpoint: endpoint))
        }
    }

    static func kind(event: UInt16, value: UInt32) -> ZMQMonitorEvent.Kind {
        switch Int32(event) {
        case ZMQ_EVENT_CONNECTED: return .connected
        case ZMQ_EVENT_ACCEPTED: return .accepted(fd: Int32(bitPattern: value), peer: peerAddress(fd: Int32(bitPattern: value)))
        case ZMQ_EVENT_DISCONNECTED: return .disconnected(fd: Int32(bitPattern: value))
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return .handshakeSucceeded
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return .handshakeFailedNoDetail(errno: Int32(bitPattern: value))
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: return .authenticationFailed(status: value)
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            switch Int64(value) {
            case Int64(ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH): return .mechanismMismatch
            case Int64(ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC): return .cryptographicFailure
            default: return .protocolError(code: value)
            }
        default: return .other(event: event, value: value)
        }
    }

    /// "HOST:PORT" of the peer of a connected TCP descriptor, or nil.
    static func peerAddress(fd: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        var host = [CChar](repeating: 0, count: 64)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var addr = sin.pointee.sin_addr
                    guard inet_ntop(AF_INET, &addr, &host, socklen_t(host.count)) != nil else { return nil }
                    return "\(String(cString: host)):\(UInt16(bigEndian: sin.pointee.sin_port))"
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var addr = sin.pointee.sin6_addr
                    guard inet_ntop(AF_INET6, &addr, &host, socklen_t(host.count)) != nil else { return nil }
                    return "[\(String(cString: host))]:\(UInt16(bigEndian: sin.pointee.sin6_port))"
                }
            }
        default:
            return nil
        }
    }
}
