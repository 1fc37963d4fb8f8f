// Payload helpers: a little-endian binary writer/reader (bounds-checked, never trusts a
// length it reads) and JSON (Codable) payloads for configuration messages.
import Foundation

/// A payload that did not decode. Names the field and what was expected/found.
public enum PayloadError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Fewer bytes left than the field needs.
    case truncated(field: String, needed: Int, remaining: Int)
    /// A declared element count or string length beyond the limit.
    case tooLong(field: String, declared: UInt64, limit: Int)
    /// String bytes that are not UTF-8.
    case invalidUTF8(field: String)
    /// A value outside the allowed set (enum raw value, bool byte).
    case invalidValue(field: String, found: String)
    /// Bytes left over after the last field.
    case trailingBytes(count: Int)
    /// JSON that does not decode into the expected type.
    case invalidJSON(type: String, reason: String)

    public var description: String {
        switch self {
        case .truncated(let f, let n, let r): return "payload field '\(f)' needs \(n) bytes, only \(r) left"
        case .tooLong(let f, let d, let l): return "payload field '\(f)' declares \(d) elements, limit is \(l)"
        case .invalidUTF8(let f): return "payload field '\(f)' is not valid UTF-8"
        case .invalidValue(let f, let v): return "payload field '\(f)' has invalid value \(v)"
        case .trailingBytes(let n): return "payload has \(n) unexpected trailing bytes"
        case .invalidJSON(let t, let r): return "JSON payload is not a valid \(t): \(r)"
        }
    }
}

/// Appends little-endian values to a byte array.
public struct BinaryWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    @inline(__always)
    private mutating func appendRaw<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func write(_ v: UInt8) { bytes.append(v) }
    public mutating func write(_ v: UInt16) { appendRaw(v) }
    public mutating func write(_ v: UInt32) { appendRaw(v) }
    public mutating func write(_ v: UInt64) { appendRaw(v) }
    public mutating func write(_ v: Int32) { appendRaw(v) }
    public mutating func write(_ v: Int64) { appendRaw(v) }
    /// Ints travel as Int64.
    public mutating func write(_ v: Int) { appendRaw(Int64(v)) }
    public mutating func write(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func write(_ v: Float) { appendRaw(v.bitPattern) }
    public mutating func write(_ v: Double) { appendRaw(v.bitPattern) }

    /// UInt32 byte count, then UTF-8 bytes.
    public mutating func write(_ s: String) {
        let utf8 = Array(s.utf8)
        write(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// UInt32 byte count, then the bytes.
    public mutating func write(bytes b: [UInt8]) {
        write(UInt32(b.count))
        bytes.append(contentsOf: b)
    }

    /// UInt64 element count, then the floats (little-endian IEEE 754 binary32).
    public mutating func write(floats: UnsafeBufferPointer<Float>) {
        write(UInt64(floats.count))
        #if _endian(little)
        bytes.append(contentsOf: UnsafeRawBufferPointer(floats))
        #else
        for f in floats { write(f) }
        #endif
    }

    public mutating func write(floats: [Float]) {
        floats.withUnsafeBufferPointer { write(floats: $0) }
    }
}

/// Reads little-endian values from a byte buffer; every read checks the bytes left.
public struct BinaryReader {
    private let data: [UInt8]
    public private(set) var offset: Int = 0
    /// Upper bound on any declared element count (strings, arrays).
    public var maxElements: Int

    public init(_ data: [UInt8], maxElements: Int = 1 << 28) {
        self.data = data
        self.maxElements = maxElements
    }

    public var remaining: Int { data.count - offset }

    private mutating func need(_ n: Int, _ field: String) throws(PayloadError) {
        guard n <= remaining else { throw .truncated(field: field, needed: n, remaining: remaining) }
    }

    @inline(__always)
    private mutating func readRaw<T: FixedWidthInteger>(_: T.Type, _ field: String) throws(PayloadError) -> T {
        try need(MemoryLayout<T>.size, field)
        let v = data.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        offset += MemoryLayout<T>.size
        return v
    }

    public mutating func readUInt8(_ field: String = "uint8") throws(PayloadError) -> UInt8 { try readRaw(UInt8.self, field) }
    public mutating func readUInt16(_ field: String = "uint16") throws(PayloadError) -> UInt16 { try readRaw(UInt16.self, field) }
    public mutating func readUInt32(_ field: String = "uint32") throws(PayloadError) -> UInt32 { try readRaw(UInt32.self, field) }
    public mutating func readUInt64(_ field: String = "uint64") throws(PayloadError) -> UInt64 { try readRaw(UInt64.self, field) }
    public mutating func readInt32(_ field: String = "int32") throws(PayloadError) -> Int32 { try readRaw(Int32.self, field) }
    public mutating func readInt64(_ field: String = "int64") throws(PayloadError) -> Int64 { try readRaw(Int64.self, field) }
    public mutating func readInt(_ field: String = "int") throws(PayloadError) -> Int { Int(try readRaw(Int64.self, field)) }
    public mutating func readFloat(_ field: String = "float") throws(PayloadError) -> Float { Float(bitPattern: try readRaw(UInt32.self, field)) }
    public mutating func readDouble(_ field: String = "double") throws(PayloadError) -> Double { Double(bitPattern: try readRaw(UInt64.self, field)) }

    public mutating func readBool(_ field: String = "bool") throws(PayloadError) -> Bool {
        let b = try readRaw(UInt8.self, field)
        guard b <= 1 else { throw .invalidValue(field: field, found: "\(b)") }
        return b == 1
    }

    public mutating func readString(_ field: String = "string") throws(PayloadError) -> String {
        let n = try readRaw(UInt32.self, field)
        guard Int(n) <= maxElements else { throw .tooLong(field: field, declared: UInt64(n), limit: maxElements) }
        try need(Int(n), field)
        let slice = data[offset..<(offset + Int(n))]
        guard let s = String(validating: slice, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        offset += Int(n)
        return s
    }

    public mutating func readBytes(_ field: String = "bytes") throws(PayloadError) -> [UInt8] {
        let n = try readRaw(UInt32.self, field)
        guard Int(n) <= maxElements else { throw .tooLong(field: field, declared: UInt64(n), limit: maxElements) }
        try need(Int(n), field)
        let out = Array(data[offset..<(offset + Int(n))])
        offset += Int(n)
        return out
    }

    public mutating func readFloats(_ field: String = "floats") throws(PayloadError) -> [Float] {
        let n = try readRaw(UInt64.self, field)
        guard n <= UInt64(maxElements) else { throw .tooLong(field: field, declared: n, limit: maxElements) }
        let count = Int(n)
        try need(count * 4, field)
        let out = [Float](unsafeUninitializedCapacity: count) { buf, initialized in
            data.withUnsafeBytes { src in
                for i in 0..<count {
                    buf[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: offset + 4 * i, as: UInt32.self)))
                }
            }
            initialized = count
        }
        offset += count * 4
        return out
    }

    /// Throws unless every byte was consumed.
    public func finish() throws(PayloadError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }
}

/// JSON payloads for configuration-like messages (sorted keys: stable bytes).
public enum JSONPayload {
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }

    /// Decodes `T`, turning any failure into `PayloadError.invalidJSON` naming the type.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(PayloadError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw .invalidJSON(type: String(describing: T.self), reason: String(describing: error))
        }
    }
}
