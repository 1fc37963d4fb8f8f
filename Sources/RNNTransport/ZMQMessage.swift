// Owning handle for one zmq_msg_t. The struct lives in its own heap allocation because
// libzmq stores small messages inside it and keeps internal pointers: it must never move.
import CZeroMQ

/// One ZeroMQ message frame.
public final class ZMQMessage {
    let raw: UnsafeMutablePointer<zmq_msg_t>

    /// An empty message (receiving target).
    public init() {
        raw = .allocate(capacity: 1)
        zmq_msg_init(raw)  // cannot fail
    }

    /// A message of `size` uninitialised bytes, to be filled through `withUnsafeMutableBytes`.
    public init(size: Int) throws(ZMQError) {
        raw = .allocate(capacity: 1)
        do {
            try zmqCall("zmq_msg_init_size") { zmq_msg_init_size(raw, size) }
        } catch {
            raw.deallocate()
            throw error
        }
    }

    /// A message holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) throws(ZMQError) {
        try self.init(size: bytes.count)
        if bytes.count > 0, let base = bytes.baseAddress {
            zmq_msg_data(raw).copyMemory(from: base, byteCount: bytes.count)
        }
    }

    /// A message holding a copy of `bytes`.
    public convenience init(_ bytes: [UInt8]) throws(ZMQError) {
        try self.init(size: bytes.count)
        if !bytes.isEmpty {
            bytes.withUnsafeBytes { src in
                zmq_msg_data(raw).copyMemory(from: src.baseAddress!, byteCount: src.count)
            }
        }
    }

    /// A message holding the UTF-8 bytes of `string`.
    public convenience init(string: String) throws(ZMQError) {
        try self.init(Array(string.utf8))
    }

    deinit {
        zmq_msg_close(raw)
        raw.deallocate()
    }

    /// Number of bytes in the frame.
    public var count: Int { zmq_msg_size(raw) }

    /// True when another frame of the same multipart message follows.
    public var hasMore: Bool { zmq_msg_more(raw) != 0 }

    /// Read access to the frame's bytes. The pointer may be unaligned: use `loadUnaligned`.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let n = zmq_msg_size(raw)
        return try body(UnsafeRawBufferPointer(start: n == 0 ? nil : zmq_msg_data(raw), count: n))
    }

    /// Write access to the frame's bytes (before sending).
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let n = zmq_msg_size(raw)
        return try body(UnsafeMutableRawBufferPointer(start: n == 0 ? nil : zmq_msg_data(raw), count: n))
    }

    /// A copy of the frame's bytes.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The frame decoded as UTF-8 (invalid sequences repaired).
    public var string: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }

    /// Resets to an empty message (drops the content), ready for another receive.
    public func reset() {
        zmq_msg_close(raw)
        zmq_msg_init(raw)
    }
}
