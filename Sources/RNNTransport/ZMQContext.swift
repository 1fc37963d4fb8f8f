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

/// Process-wide allocator tuning for large messages (glibc only; a no-op elsewhere).
///
/// libzmq allocates every received multi-KiB frame with malloc. With glibc defaults such
/// blocks above 128 KiB are mmap'ed and freed memory at the top of the heap is returned to
/// the kernel, so a gradient exchange pays page faults and page zeroing for every frame
/// (measured: ~15 % of the CPU time of a 64 MiB all-reduce). This keeps freed memory in
/// the process instead. Call once at start-up of a worker or benchmark process; it changes
/// malloc behaviour for the whole process. Returns false if glibc refused a setting.
@discardableResult
public func tuneAllocatorForLargeMessages() -> Bool {
    // 32 MiB is glibc's maximum mmap threshold on 64-bit; larger blocks stay mmap'ed.
    CZeroMQ_tune_malloc_for_large_messages(32 << 20, 1 << 30) != 0
}
