// Owning handle for a libzmq context.
import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libzmq context. Thread-safe (libzmq contexts are); every socket keeps its context
/// alive, so `zmq_ctx_term` in `deinit` runs only after the last socket has closed.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Creates a context with `ioThreads` background I/O threads.
    /// "Blocky" is switched off: sockets default to LINGER 0 unless set otherwise,
    /// so terminating a context never waits for an unreachable peer.
    public init(ioThreads: Int = 1) throws(ZMQError) {
        guard let ctx = zmq_ctx_new() else {
            throw ZMQError(call: "zmq_ctx_new", errno: zmq_errno())
        }
        handle = ctx
        do {
            try zmqCall("zmq_ctx_set(ZMQ_IO_THREADS)") { zmq_ctx_set(ctx, ZMQ_IO_THREADS, Int32(ioThreads)) }
            try zmqCall("zmq_ctx_set(ZMQ_BLOCKY)") { zmq_ctx_set(ctx, ZMQ_BLOCKY, 0) }
        } catch {
            zmq_ctx_term(ctx)
            throw error
        }
    }

    /// Makes every blocking call on this context's sockets fail with ETERM (used to abort
    /// waiting threads). Sockets must still be closed; the context terminates in `deinit`.
    public func shutdown() {
        zmq_ctx_shutdown(handle)
    }

    deinit {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }
}

/// True when the linked libzmq supports `capability` ("curve", "ipc", ...).
public func zmqHas(_ capability: String) -> Bool {
    zmq_has(capability) != 0
}
