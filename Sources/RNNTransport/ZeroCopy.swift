// Zero-copy sends: libzmq transmits straight from the caller's memory and reports, per
// "slot", when it no longer needs it (a C release callback sets an atomic flag).
import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Completion flags for zero-copy sends. A slot is idle/complete (1) or held by libzmq (0).
/// The caller must not modify or free bytes sent through a slot until it is complete.
public final class ZMQSendTracker: @unchecked Sendable {
    private var flags: UnsafeMutablePointer<Int32>
    public private(set) var capacity: Int

    public init(slots: Int = 64) {
        capacity = max(1, slots)
        flags = .allocate(capacity: capacity)
        flags.initialize(repeating: 1, count: capacity)
    }

    deinit {
        // libzmq may still write a flag: wait a bounded time, and leak rather than free
        // memory that an I/O thread could still touch.
        if waitUntilAllComplete(deadline: .after(milliseconds: 5000)) { flags.deallocate() }
    }

    @inline(__always)
    func slotPointer(_ slot: Int) -> UnsafeMutableRawPointer {
        precondition(slot >= 0 && slot < capacity, "send slot \(slot) outside 0..<\(capacity)")
        return UnsafeMutableRawPointer(flags + slot)
    }

    /// True when libzmq has released the bytes sent through `slot` (or it was never used).
    @inline(__always)
    public func isComplete(_ slot: Int) -> Bool { CZeroMQ_slot_load(slotPointer(slot)) == 1 }

    public var allComplete: Bool {
        for s in 0..<capacity where CZeroMQ_slot_load(UnsafeMutableRawPointer(flags + s)) != 1 { return false }
        return true
    }

    /// Waits (sleeping in short steps, never spinning hot) until `slot` is complete.
    /// Returns false if the deadline passed first.
    public func waitUntilComplete(_ slot: Int, deadline: Deadline) -> Bool {
        var pause: UInt32 = 2
        while !isComplete(slot) {
            if deadline.hasPassed { return false }
            usleep(pause)
            pause = min(pause * 2, 200)
        }
        return true
    }

    /// Waits until every slot is complete.
    public func waitUntilAllComplete(deadline: Deadline) -> Bool {
        for s in 0..<capacity where !waitUntilComplete(s, deadline: deadline) { return false }
        return true
    }

    /// Grows to at least `slots`; only allowed while every slot is complete.
    public func reserve(_ slots: Int) {
        guard slots > capacity else { return }
        precondition(allComplete, "cannot grow a send tracker while sends are in flight")
        flags.deallocate()
        capacity = slots
        flags = .allocate(capacity: capacity)
        flags.initialize(repeating: 1, count: capacity)
    }
}

extension ZMQSocket {
    /// Sends `bytes` as one frame without copying them. The memory must stay valid and
    /// unchanged until `tracker.isComplete(slot)`; the slot must be complete on entry.
    /// Empty buffers are sent as an ordinary empty frame.
    public func sendNoCopy(_ bytes: UnsafeRawBufferPointer, more: Bool = false, tracker: ZMQSendTracker, slot: Int,
                           deadline: Deadline) throws {
        guard bytes.count > 0, let base = bytes.baseAddress else {
            try send(try ZMQMessage(size: 0), more: more, deadline: deadline)
            return
        }
        let flag = tracker.slotPointer(slot)
        precondition(CZeroMQ_slot_load(flag) == 1, "send slot \(slot) is still in flight")
        let m = ZMQMessage()
        CZeroMQ_slot_store(flag, 0)
        let rc = zmq_msg_init_data(m.raw, UnsafeMutableRawPointer(mutating: base), bytes.count,
                                   CZeroMQ_slot_release_fn(), flag)
        guard rc == 0 else {
            CZeroMQ_slot_store(flag, 1)
            throw ZMQError(call: "zmq_msg_init_data", endpoint: endpointDescription, errno: zmq_errno())
        }
        // On failure the message is closed by ZMQMessage.deinit, which releases the slot.
        try send(m, more: more, deadline: deadline)
    }
}
