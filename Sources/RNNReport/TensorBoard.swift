// TensorBoard event files, written without TensorFlow: a file `events.out.tfevents.<time>.<host>`
// of records
//
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | length bytes of a
//   serialized tensorflow.Event | uint32 masked CRC-32C of the data
//
// masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. The first event carries
// file_version "brain.Event:2"; each scalar is an Event{wall_time, step, summary{value{tag,
// simple_value}}}, encoded by hand (protobuf fields: Event.wall_time 1 double, step 2 int64,
// file_version 3 string, summary 5 message; Summary.value 1 repeated; Value.tag 1 string,
// simple_value 2 float). TensorBoard and tbparse read simple_value scalars as scalars.
import Foundation
import RNNDistributed

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked form of the checksum.
    public static func masked<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}

/// Protocol-buffer encoding of the few Event fields we write.
enum EventProto {
    static func varint(_ v: UInt64, into out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func key(_ field: UInt64, _ wireType: UInt64, into out: inout [UInt8]) { varint(field << 3 | wireType, into: &out) }

    static func bytesField(_ field: UInt64, _ bytes: [UInt8], into out: inout [UInt8]) {
        key(field, 2, into: &out)
        varint(UInt64(bytes.count), into: &out)
        out += bytes
    }

    /// An Event with wall_time and step, and either file_version or a summary of scalars.
    static func event(wallTime: Double, step: Int64, fileVersion: String? = nil, scalars: [(String, Float)] = []) -> [UInt8] {
        var out: [UInt8] = []
        key(1, 1, into: &out)  // wall_time, 64-bit
        withUnsafeBytes(of: wallTime.bitPattern.littleEndian) { out += $0 }
        key(2, 0, into: &out)  // step, varint (two's complement for negatives)
        varint(UInt64(bitPattern: step), into: &out)
        if let fileVersion { bytesField(3, Array(fileVersion.utf8), into: &out) }
        if !scalars.isEmpty {
            var summary: [UInt8] = []
            for (tag, value) in scalars {
                var v: [UInt8] = []
                bytesField(1, Array(tag.utf8), into: &v)
                key(2, 5, into: &v)  // simple_value, 32-bit
                withUnsafeBytes(of: value.bitPattern.littleEndian) { v += $0 }
                bytesField(1, v, into: &summary)
            }
            bytesField(5, summary, into: &out)
        }
        return out
    }

    /// One TFRecord around `data`.
    static func record(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { out += $0 }
        let lengthCRC = CRC32C.masked(out)
        withUnsafeBytes(of: lengthCRC.littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
        return out
    }
}

/// Writes scalars to one new event file in `directory` (created if missing).
public final class TensorBoardWriter {
    public let path: String
    private let handle: FileHandle
    private var pending: [UInt8] = []
    private var lastFlush = Date()

    public init(directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ReportError("--tensorboard \(directory): cannot create the folder: \(error.localizedDescription)")
        }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        let name = "events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid()).rnn-trainer"
        path = (directory as NSString).appendingPathComponent(name)
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw ReportError("--tensorboard \(directory): cannot create \(path)")
        }
        handle = h
        pending += EventProto.record(EventProto.event(wallTime: Date().timeIntervalSince1970, step: 0, fileVersion: "brain.Event:2"))
        flush()
    }

    deinit {
        flush()
        try? handle.close()
    }

    /// Scalars of one global step (non-finite values are left out).
    public func add(step: Int, scalars: [(String, Double?)], wallTime: Double = Date().timeIntervalSince1970) {
        let values = scalars.compactMap { tag, v in v.flatMap { $0.isFinite ? (tag, Float($0)) : nil } }
        guard !values.isEmpty else { return }
        pending += EventProto.record(EventProto.event(wallTime: wallTime, step: Int64(step), scalars: values))
        if Date().timeIntervalSince(lastFlush) > 1 || pending.count > 1 << 16 { flush() }
    }

    public func flush() {
        guard !pending.isEmpty else { return }
        try? handle.write(contentsOf: pending)
        pending.removeAll(keepingCapacity: true)
        lastFlush = Date()
    }

    /// A reporter that writes each step's and epoch's scalars here and passes every event on:
    /// loss, accuracy, lr, samples_per_s, reduce_s per step; val_loss, val_accuracy, epoch_loss,
    /// epoch_accuracy per epoch (at the epoch's last global step).
    public func tee(_ next: @escaping @Sendable (TrainingEvent) -> Void) -> @Sendable (TrainingEvent) -> Void {
        let box = TensorBoardBox(self)
        return { event in
            box.with { w in
                switch event {
                case .step(let p):
                    w.add(step: p.globalStep, scalars: [("loss", p.loss), ("accuracy", p.accuracy), ("lr", p.lr),
                                                       ("samples_per_s", p.samplesPerSecond), ("reduce_s", p.reduceSeconds)])
                case .epoch(let e):
                    w.add(step: e.globalStep, scalars: [("epoch_loss", e.loss), ("epoch_accuracy", e.accuracy),
                                                       ("val_loss", e.validationLoss), ("val_accuracy", e.validationAccuracy)])
                    w.flush()
                case .message:
                    break
                }
            }
            next(event)
        }
    }
}

/// The writer behind a lock (events arrive on the coordinator's thread, but the reporter type is Sendable).
private final class TensorBoardBox: @unchecked Sendable {
    private let lock = NSLock()
    private let writer: TensorBoardWriter
    init(_ writer: TensorBoardWriter) { self.writer = writer }
    func with(_ body: (TensorBoardWriter) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        body(writer)
    }
}
