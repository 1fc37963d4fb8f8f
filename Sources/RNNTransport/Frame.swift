// Wire framing: every frame is a fixed 48-byte little-endian header followed by the payload.
//
//   offset size field
//        0    4 magic          "RNNT" (0x52 0x4E 0x4E 0x54)
//        4    2 version        protocol version (`FrameHeader.currentVersion`)
//        6    2 kind           `MessageKind` raw value
//        8    8 runID          random per run; 0 only in HELLO (the worker does not know it yet)
//       16    4 generation     ring/membership generation; frames of an older one are stale
//       20    4 sender         sender rank (0xFFFF_FFFF = coordinator or not yet ranked)
//       24    8 step           global step the frame belongs to
//       32    4 sequence       position inside a multi-frame exchange (all-reduce sub-chunk)
//       36    4 flags          reserved, must be 0
//       40    8 payloadLength  bytes after the header; the frame must be exactly 48 + this
//
// Control messages travel as one ZeroMQ frame (header + payload). The all-reduce data plane
// sends the same header as its own ZeroMQ frame followed by the payload frame (a two-part
// message, delivered atomically) so the payload can go zero-copy; `decodeSplitHeader`
// applies the same checks with the payload frame's size.
//
// Decoding never trusts a field: magic, version, run id (when the receiver knows it), kind,
// flags and exact length are checked; every rejection is a typed `FrameError` and is counted.
import Foundation

/// Closed set of message kinds of protocol version 5 (who sends each, and who handles it:
/// docs/ARCHITECTURE.md's message table).
public enum MessageKind: UInt16, CaseIterable, Sendable, CustomStringConvertible {
    /// Worker -> coordinator: protocol version, host, pid, run token.
    case hello = 1
    /// Coordinator -> worker: rank, world, config JSON, timeouts, heartbeat endpoint, state.
    case welcome = 2
    /// Worker -> coordinator: state loaded, ring socket bound (its endpoint and ring key).
    case ready = 3
    /// Either direction, on the heartbeat sockets: liveness.
    case heartbeat = 4
    /// Coordinator -> worker: the rows of one or more consecutive global steps.
    case stepAssignment = 5
    /// Worker -> coordinator: loss sums, counts, timings (and a hash) of those steps.
    case metrics = 6
    /// Worker -> worker: a (sub-)chunk of the all-reduce.
    case gradientChunk = 7
    /// Worker -> coordinator: the replicated training state (for a checkpoint).
    case state = 8
    /// Coordinator -> worker: the run is over; exit 0.
    case bye = 9
    /// Either direction: a named failure that ends the run (or refuses a peer).
    case error = 10
    /// Coordinator -> worker: the ring's endpoints and keys of the current generation.
    case ringUpdate = 11
    /// Coordinator -> worker: a new generation, rank and world; roll back to the completed
    /// step count and bind a new ring socket.
    case reform = 12
    /// Coordinator -> worker: send your state.
    case stateRequest = 13
    /// Worker -> coordinator: this worker's all-reduce of a step failed; it waits for REFORM.
    case stepFailed = 14
    /// Worker -> coordinator: leaving on purpose (a signal); re-form the ring without it now.
    case leave = 15
    /// Coordinator -> worker: evaluate the current parameters on these rows, batch by batch.
    case evaluate = 16
    /// Worker -> coordinator: the loss sums of each of those batches.
    case evaluation = 17

    public var description: String {
        switch self {
        case .hello: return "HELLO"
        case .welcome: return "WELCOME"
        case .ready: return "READY"
        case .heartbeat: return "HEARTBEAT"
        case .stepAssignment: return "STEP"
        case .metrics: return "METRICS"
        case .gradientChunk: return "GRADIENT_CHUNK"
        case .state: return "STATE"
        case .bye: return "BYE"
        case .error: return "ERROR"
        case .ringUpdate: return "RING_UPDATE"
        case .reform: return "REFORM"
        case .stateRequest: return "STATE_REQUEST"
        case .stepFailed: return "STEP_FAILED"
        case .leave: return "LEAVE"
        case .evaluate: return "EVALUATE"
        case .evaluation: return "EVALUATION"
        }
    }
}

/// The fixed header in front of every frame.
public struct FrameHeader: Sendable, Equatable {
    public static let magic: UInt32 = 0x544E_4E52  // "RNNT" read little-endian
    /// 2: STEP and METRICS carry a group of consecutive steps (1 held exactly one). 3: LEAVE.
    /// 4: REFORM and STEP_FAILED are kinds of their own, EVALUATE/EVALUATION, HELLO without
    /// capabilities, WELCOME without the coordinator timeout, no PARAMETER_HASH kind.
    public static let currentVersion: UInt16 = 5
    public static let size = 48
    /// `sender` of frames that come from the coordinator or an unranked worker.
    public static let noRank: UInt32 = 0xFFFF_FFFF

    public var version: UInt16
    public var kind: MessageKind
    public var runID: UInt64
    public var generation: UInt32
    public var sender: UInt32
    public var step: UInt64
    public var sequence: UInt32
    public var flags: UInt32
    public var payloadLength: UInt64

    public init(kind: MessageKind, runID: UInt64, generation: UInt32 = 0, sender: UInt32 = FrameHeader.noRank,
                step: UInt64 = 0, sequence: UInt32 = 0, payloadLength: Int = 0) {
        self.version = FrameHeader.currentVersion
        self.kind = kind
        self.runID = runID
        self.generation = generation
        self.sender = sender
        self.step = step
        self.sequence = sequence
        self.flags = 0
        self.payloadLength = UInt64(payloadLength)
    }

    /// Writes the 48 header bytes at `p` (unaligned stores, little-endian).
    public func encode(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: FrameHeader.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: runID.littleEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: generation.littleEndian, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: sender.littleEndian, toByteOffset: 20, as: UInt32.self)
        p.storeBytes(of: step.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: sequence.littleEndian, toByteOffset: 32, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 36, as: UInt32.self)
        p.storeBytes(of: payloadLength.littleEndian, toByteOffset: 40, as: UInt64.self)
    }

    /// The 48 header bytes.
    public var encoded: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: FrameHeader.size) { buf, n in
            encode(to: UnsafeMutableRawPointer(buf.baseAddress!))
            n = FrameHeader.size
        }
    }
}

/// Why a frame was rejected (the keys of `RejectCounter`).
public enum RejectReason: String, CaseIterable, Sendable {
    case truncated, badMagic, badVersion, wrongRun, unknownKind, badFlags, oversized, lengthMismatch
    /// A frame of an older generation or step (left over from an aborted exchange).
    case stale
    /// Well-formed but not what the receiver expects here (kind, sender, sequence).
    case unexpected
    /// The payload did not decode.
    case malformedPayload
}

/// A rejected frame. Each case names what was expected and what was found.
public enum FrameError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Shorter than the fixed header.
    case truncated(count: Int)
    /// The first four bytes are not "RNNT".
    case badMagic(found: UInt32)
    /// A protocol version this build does not speak.
    case badVersion(expected: UInt16, found: UInt16)
    /// A frame of another run (a stray process or a foreign sender).
    case wrongRun(expected: UInt64, found: UInt64)
    /// A kind value outside `MessageKind`.
    case unknownKind(raw: UInt16)
    /// Reserved flag bits set.
    case badFlags(found: UInt32)
    /// Declared payload larger than the receiver accepts.
    case oversized(declared: UInt64, limit: Int)
    /// Declared payload length disagrees with the bytes received.
    case lengthMismatch(declared: UInt64, actual: Int)
    /// Older generation or step than the exchange in progress.
    case stale(kind: MessageKind, generation: UInt32, step: UInt64, expectedGeneration: UInt32, expectedStep: UInt64)
    /// Valid frame that the receiver did not expect at this point.
    case unexpected(String)
    /// The payload did not decode.
    case malformedPayload(kind: MessageKind, reason: String)

    public var reason: RejectReason {
        switch self {
        case .truncated: return .truncated
        case .badMagic: return .badMagic
        case .badVersion: return .badVersion
        case .wrongRun: return .wrongRun
        case .unknownKind: return .unknownKind
        case .badFlags: return .badFlags
        case .oversized: return .oversized
        case .lengthMismatch: return .lengthMismatch
        case .stale: return .stale
        case .unexpected: return .unexpected
        case .malformedPayload: return .malformedPayload
        }
    }

    public var description: String {
        switch self {
        case .truncated(let n):
            return "frame of \(n) bytes is shorter than the \(FrameHeader.size)-byte header"
        case .badMagic(let m):
            return "frame magic is 0x\(String(m, radix: 16)), expected 0x\(String(FrameHeader.magic, radix: 16)) (\"RNNT\")"
        case .badVersion(let e, let f):
            return "frame has protocol version \(f), expected \(e)"
        case .wrongRun(let e, let f):
            return "frame belongs to run \(String(f, radix: 16)), expected run \(String(e, radix: 16))"
        case .unknownKind(let k):
            return "frame kind \(k) is not a known message kind"
        case .badFlags(let f):
            return "frame has reserved flags 0x\(String(f, radix: 16)) set, expected 0"
        case .oversized(let d, let l):
            return "frame declares a \(d)-byte payload, more than the limit of \(l) bytes"
        case .lengthMismatch(let d, let a):
            return "frame declares a \(d)-byte payload but carries \(a) bytes after the header"
        case .stale(let k, let g, let s, let eg, let es):
            return "stale \(k) frame of generation \(g) step \(s), expected generation \(eg) step \(es)"
        case .unexpected(let what):
            return "unexpected frame: \(what)"
        case .malformedPayload(let k, let r):
            return "malformed \(k) payload: \(r)"
        }
    }
}

/// Counts rejected frames by reason. Thread-safe.
public final class RejectCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [RejectReason: Int] = [:]

    public init() {}

    public func record(_ reason: RejectReason) {
        lock.lock(); counts[reason, default: 0] += 1; lock.unlock()
    }

    public func count(_ reason: RejectReason) -> Int {
        lock.lock(); defer { lock.unlock() }
        return counts[reason] ?? 0
    }

    public var total: Int {
        lock.lock(); defer { lock.unlock() }
        return counts.values.reduce(0, +)
    }

    /// All non-zero counts.
    public var snapshot: [RejectReason: Int] {
        lock.lock(); defer { lock.unlock() }
        return counts
    }
}

/// Validates frames: what the receiver expects, and where rejections are counted.
public struct FrameDecoder: Sendable {
    /// The run this receiver belongs to; nil accepts any run (only a coordinator awaiting
    /// HELLOs should use nil).
    public var expectedRunID: UInt64?
    /// Largest payload accepted, in bytes.
    public var maxPayloadBytes: Int
    public let rejects: RejectCounter

    public init(expectedRunID: UInt64?, maxPayloadBytes: Int = 1 << 30, rejects: RejectCounter = RejectCounter()) {
        self.expectedRunID = expectedRunID
        self.maxPayloadBytes = maxPayloadBytes
        self.rejects = rejects
    }

    /// Parses and checks the header of the complete frame `frame`; on success the payload
    /// is `frame[FrameHeader.size...]`, exactly `payloadLength` bytes. Rejections are counted.
    public func decodeHeader(_ frame: UnsafeRawBufferPointer) throws(FrameError) -> FrameHeader {
        do {
            return try parse(frame, payloadCount: frame.count - FrameHeader.size)
        } catch {
            rejects.record(error.reason)
            throw error
        }
    }

    /// Checks a header sent as its own ZeroMQ frame, followed by a payload frame of
    /// `payloadCount` bytes (the zero-copy layout of the data plane: the same 48 bytes,
    /// `payloadLength` must equal `payloadCount`). Rejections are counted.
    public func decodeSplitHeader(_ header: UnsafeRawBufferPointer, payloadCount: Int) throws(FrameError) -> FrameHeader {
        do throws(FrameError) {
            guard header.count >= FrameHeader.size else { throw FrameError.truncated(count: header.count) }
            guard header.count == FrameHeader.size else {
                throw FrameError.lengthMismatch(declared: 0, actual: header.count - FrameHeader.size)
            }
            return try parse(header, payloadCount: payloadCount)
        } catch {
            rejects.record(error.reason)
            throw error
        }
    }

    /// Counts a rejection decided by the caller (stale, unexpected, malformed payload).
    public func reject(_ error: FrameError) -> FrameError {
        rejects.record(error.reason)
        return error
    }

    private func parse(_ frame: UnsafeRawBufferPointer, payloadCount: Int) throws(FrameError) -> FrameHeader {
        guard frame.count >= FrameHeader.size, let p = frame.baseAddress else {
            throw .truncated(count: frame.count)
        }
        let magic = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard magic == FrameHeader.magic else { throw .badMagic(found: magic) }
        let version = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard version == FrameHeader.currentVersion else {
            throw .badVersion(expected: FrameHeader.currentVersion, found: version)
        }
        let rawKind = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        let runID = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        if let expectedRunID, runID != expectedRunID {
            throw .wrongRun(expected: expectedRunID, found: runID)
        }
        guard let kind = MessageKind(rawValue: rawKind) else { throw .unknownKind(raw: rawKind) }
        let flags = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt32.self))
        guard flags == 0 else { throw .badFlags(found: flags) }
        let length = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 40, as: UInt64.self))
        guard length <= UInt64(maxPayloadBytes) else { throw .oversized(declared: length, limit: maxPayloadBytes) }
        guard length == UInt64(payloadCount) else {
            throw .lengthMismatch(declared: length, actual: payloadCount)
        }
        var h = FrameHeader(kind: kind, runID: runID,
                            generation: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt32.self)),
                            sender: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 20, as: UInt32.self)),
                            step: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                            sequence: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt32.self)),
                            payloadLength: Int(length))
        h.version = version
        h.flags = flags
        return h
    }

    /// Decodes a complete frame held in `bytes`, copying the payload.
    public func decode(_ bytes: [UInt8]) throws(FrameError) -> Frame {
        let result = bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Result<Frame, FrameError> in
            do throws(FrameError) {
                let h = try decodeHeader(raw)
                return .success(Frame(header: h, payload: Array(raw[FrameHeader.size...])))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Decodes a received message, copying the payload.
    public func decode(_ message: ZMQMessage) throws(FrameError) -> Frame {
        try message.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws(FrameError) -> Frame in
            let h = try decodeHeader(raw)
            return Frame(header: h, payload: Array(raw[FrameHeader.size...]))
        }
    }
}

/// A decoded (or to-be-sent) frame: header plus payload bytes.
public struct Frame: Sendable, Equatable {
    public var header: FrameHeader
    public var payload: [UInt8]

    /// Builds a frame; `payloadLength` is set from `payload`.
    public init(header: FrameHeader, payload: [UInt8] = []) {
        var h = header
        h.payloadLength = UInt64(payload.count)
        self.header = h
        self.payload = payload
    }

    /// Header bytes followed by payload bytes.
    public var encoded: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: FrameHeader.size + payload.count) { buf, n in
            let base = UnsafeMutableRawPointer(buf.baseAddress!)
            header.encode(to: base)
            payload.withUnsafeBytes { src in
                if src.count > 0 { (base + FrameHeader.size).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            n = FrameHeader.size + payload.count
        }
    }

    /// One ZeroMQ message holding the encoded frame (a single allocation and copy).
    public func message() throws(ZMQError) -> ZMQMessage {
        let m = try ZMQMessage(size: FrameHeader.size + payload.count)
        m.withUnsafeMutableBytes { dst in
            header.encode(to: dst.baseAddress!)
            payload.withUnsafeBytes { src in
                if src.count > 0 { (dst.baseAddress! + FrameHeader.size).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
        }
        return m
    }
}

extension ZMQSocket {
    /// Sends `frame` as one message; see `send(_:more:deadline:)`.
    public func send(frame: Frame, more: Bool = false, deadline: Deadline) throws {
        try send(try frame.message(), more: more, deadline: deadline)
    }

    /// Receives frames until one passes `decoder` (rejected ones are counted and dropped) or
    /// the deadline passes (nil).
    public func receiveFrame(_ decoder: FrameDecoder, deadline: Deadline) throws(ZMQError) -> Frame? {
        let m = ZMQMessage()
        while try receive(into: m, deadline: deadline) {
            if let f = try? decoder.decode(m) { return f }
        }
        return nil
    }
}
