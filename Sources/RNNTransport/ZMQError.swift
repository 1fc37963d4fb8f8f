// The one error funnel for libzmq calls: every call goes through `zmqCall`, which retries
// EINTR, reports EAGAIN as a value (nil) and turns every other failure into a `ZMQError`
// that names the call and, where there is one, the endpoint.
import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed libzmq call: which call, on which endpoint, with which errno.
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The libzmq function that failed, e.g. `"zmq_bind"`.
    public let call: String
    /// The endpoint involved, when the call had one (`tcp://127.0.0.1:5555`).
    public let endpoint: String?
    /// `zmq_errno()` right after the failure.
    public let errno: Int32
    /// `zmq_strerror(errno)`.
    public let message: String

    public init(call: String, endpoint: String? = nil, errno: Int32) {
        self.call = call
        self.endpoint = endpoint
        self.errno = errno
        self.message = String(cString: zmq_strerror(errno))
    }

    /// The context was terminated while the call was in progress.
    public var isContextTerminated: Bool { errno == CZeroMQ_ETERM() }
    /// ROUTER_MANDATORY: the routing id names no connected peer.
    public var isHostUnreachable: Bool { errno == CZeroMQ_EHOSTUNREACH() }

    public var description: String {
        if let endpoint {
            return "\(call) on '\(endpoint)' failed: \(message) (errno \(errno))"
        }
        return "\(call) failed: \(message) (errno \(errno))"
    }
}

/// Runs one libzmq call that returns a negative value on failure.
///
/// - EINTR is retried (the call is repeated; callers that wait pass a recomputed timeout
///   through `body`).
/// - EAGAIN is returned as `nil` ("would block" / "timed out"), not thrown.
/// - Anything else throws `ZMQError` naming `call` and `endpoint`, with errno kept.
@inline(__always)
@discardableResult
func zmqCall(_ call: String, endpoint: String? = nil, _ body: () -> Int32) throws(ZMQError) -> Int32? {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        let err = zmq_errno()
        if err == EINTR { continue }
        if err == EAGAIN { return nil }
        throw ZMQError(call: call, endpoint: endpoint, errno: err)
    }
}

/// The libzmq version linked at run time, e.g. (4, 3, 4).
public func zmqVersion() -> (major: Int, minor: Int, patch: Int) {
    var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
    zmq_version(&major, &minor, &patch)
    return (Int(major), Int(minor), Int(patch))
}
