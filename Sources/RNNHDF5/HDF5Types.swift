// Element types: the native memory types Swift values are read into and written from, and a
// description of a dataset's stored type (class, size, sign, byte order).

import CHDF5

/// A native numeric memory type. HDF5 converts between it and the stored file type on read
/// and write (any byte order, float16/float64 to float32, integer widths).
public enum HDF5Scalar: String, Sendable, CaseIterable {
    case float32, float64, int8, uint8, int16, uint16, int32, uint32, int64, uint64

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64: return 8
        }
    }

    var nativeType: hid_t {
        switch self {
        case .float32: return CHDF5_H5T_NATIVE_FLOAT()
        case .float64: return CHDF5_H5T_NATIVE_DOUBLE()
        case .int8: return CHDF5_H5T_NATIVE_INT8()
        case .uint8: return CHDF5_H5T_NATIVE_UINT8()
        case .int16: return CHDF5_H5T_NATIVE_INT16()
        case .uint16: return CHDF5_H5T_NATIVE_UINT16()
        case .int32: return CHDF5_H5T_NATIVE_INT32()
        case .uint32: return CHDF5_H5T_NATIVE_UINT32()
        case .int64: return CHDF5_H5T_NATIVE_INT64()
        case .uint64: return CHDF5_H5T_NATIVE_UINT64()
        }
    }
}

/// A Swift type that maps to one native HDF5 memory type.
public protocol HDF5Element: Sendable {
    static var hdf5Scalar: HDF5Scalar { get }
}
extension Float: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .float32 } }
extension Double: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .float64 } }
extension Int8: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .int8 } }
extension UInt8: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .uint8 } }
extension Int16: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .int16 } }
extension UInt16: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .uint16 } }
extension Int32: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .int32 } }
extension UInt32: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .uint32 } }
extension Int64: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .int64 } }
extension UInt64: HDF5Element { public static var hdf5Scalar: HDF5Scalar { .uint64 } }

/// What a dataset or attribute stores, as found in the file.
public struct HDF5TypeInfo: Sendable, Equatable, CustomStringConvertible {
    public enum TypeClass: Sendable, Equatable {
        case integer, float, string
        /// Any other HDF5 class (compound, enum, opaque, ...), by name.
        case other(String)
    }
    public var typeClass: TypeClass
    /// Bytes per element (for variable-length strings, the size of the pointer).
    public var size: Int
    /// Integers only.
    public var isSigned: Bool
    public var isBigEndian: Bool
    /// Strings only.
    public var isVariableLength: Bool

    public init(typeClass: TypeClass, size: Int, isSigned: Bool = true, isBigEndian: Bool = false, isVariableLength: Bool = false) {
        self.typeClass = typeClass
        self.size = size
        self.isSigned = isSigned
        self.isBigEndian = isBigEndian
        self.isVariableLength = isVariableLength
    }

    /// numpy-like spelling: `float32`, `float16`, `int64`, `uint8`, `string`, with
    /// ` (big-endian)` appended when the bytes are stored big-endian.
    public var description: String {
        let base: String
        switch typeClass {
        case .integer: base = (isSigned ? "int" : "uint") + String(size * 8)
        case .float: base = "float" + String(size * 8)
        case .string: base = isVariableLength ? "string (variable length)" : "string (\(size) bytes)"
        case .other(let name): base = name
        }
        return isBigEndian && size > 1 && typeClass != .string ? base + " (big-endian)" : base
    }

    /// Reads the description of an HDF5 datatype id (not closed here).
    static func of(_ type: hid_t, context: @autoclosure () -> String) throws(HDF5Error) -> HDF5TypeInfo {
        let cls = H5Tget_class(type)
        let size = H5Tget_size(type)
        if size == 0 { throw HDF5Error(call: "H5Tget_size", context: context(), stack: captureHDF5ErrorStack()) }
        let order = H5Tget_order(type)
        let bigEndian = order == H5T_ORDER_BE
        switch cls {
        case H5T_INTEGER:
            let sign = H5Tget_sign(type)
            return HDF5TypeInfo(typeClass: .integer, size: size, isSigned: sign != H5T_SGN_NONE, isBigEndian: bigEndian)
        case H5T_FLOAT:
            return HDF5TypeInfo(typeClass: .float, size: size, isBigEndian: bigEndian)
        case H5T_STRING:
            let variable = try h5Call("H5Tis_variable_str", context()) { H5Tis_variable_str(type) } > 0
            return HDF5TypeInfo(typeClass: .string, size: size, isVariableLength: variable)
        case H5T_COMPOUND: return HDF5TypeInfo(typeClass: .other("compound"), size: size)
        case H5T_ENUM: return HDF5TypeInfo(typeClass: .other("enum"), size: size)
        case H5T_OPAQUE: return HDF5TypeInfo(typeClass: .other("opaque"), size: size)
        case H5T_ARRAY: return HDF5TypeInfo(typeClass: .other("array"), size: size)
        case H5T_VLEN: return HDF5TypeInfo(typeClass: .other("variable-length sequence"), size: size)
        case H5T_BITFIELD: return HDF5TypeInfo(typeClass: .other("bitfield"), size: size)
        case H5T_REFERENCE: return HDF5TypeInfo(typeClass: .other("reference"), size: size)
        case H5T_TIME: return HDF5TypeInfo(typeClass: .other("time"), size: size)
        default: return HDF5TypeInfo(typeClass: .other("unknown type class"), size: size)
        }
    }
}

/// How a dataset's raw data is stored.
public enum HDF5Layout: Sendable, Equatable, CustomStringConvertible {
    case contiguous
    case compact
    /// Chunked, with the chunk shape.
    case chunked([Int])
    case virtual

    public var description: String {
        switch self {
        case .contiguous: return "contiguous"
        case .compact: return "compact"
        case .chunked(let dims): return "chunked " + dims.map(String.init).joined(separator: "x")
        case .virtual: return "virtual"
        }
    }
}

/// A filter in a chunked dataset's pipeline.
public enum HDF5Filter: Sendable, Equatable, CustomStringConvertible {
    case deflate(level: Int)
    case shuffle
    case fletcher32
    case other(id: Int, name: String)

    public var description: String {
        switch self {
        case .deflate(let level): return "gzip(\(level))"
        case .shuffle: return "shuffle"
        case .fletcher32: return "fletcher32"
        case .other(let id, let name): return name.isEmpty ? "filter \(id)" : "\(name) (filter \(id))"
        }
    }
}

/// How to store a new dataset.
public struct HDF5DatasetOptions: Sendable {
    /// Chunk shape; nil = contiguous (unless a filter needs chunks: then one chunk per
    /// up to ~1 MiB of leading-dimension rows).
    public var chunks: [Int]?
    /// gzip level 0...9; nil = no compression.
    public var gzipLevel: Int?
    public var shuffle: Bool
    /// Per-chunk Fletcher-32 checksum, verified by HDF5 on every read.
    public var fletcher32: Bool
    /// Store float32 data big-endian (to test byte-order conversion).
    public var bigEndian: Bool

    public init(chunks: [Int]? = nil, gzipLevel: Int? = nil, shuffle: Bool = false, fletcher32: Bool = false, bigEndian: Bool = false) {
        self.chunks = chunks
        self.gzipLevel = gzipLevel
        self.shuffle = shuffle
        self.fletcher32 = fletcher32
        self.bigEndian = bigEndian
    }

    var needsChunks: Bool { chunks != nil || gzipLevel != nil || shuffle || fletcher32 }
}
