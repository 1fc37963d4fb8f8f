// Attributes on groups and datasets: strings (h5py writes variable-length UTF-8), integers,
// floats and small arrays of them.

import CHDF5

/// An attribute value as found in a file.
public enum HDF5AttributeValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integers([Int64])
    case floats([Double])
    /// Anything else, described by its stored type.
    case unsupported(String)

    public var description: String {
        switch self {
        case .string(let s): return s
        case .integers(let v): return v.count == 1 ? String(v[0]) : "[" + v.map(String.init).joined(separator: ", ") + "]"
        case .floats(let v): return v.count == 1 ? String(v[0]) : "[" + v.map { String($0) }.joined(separator: ", ") + "]"
        case .unsupported(let t): return "<\(t)>"
        }
    }
}

extension HDF5Object {
    /// Whether this object carries attribute `name`.
    public func hasAttribute(_ name: String) throws(HDF5Error) -> Bool {
        try h5Call("H5Aexists", "looking up attribute '\(name)' of \(where_)") { H5Aexists(id, name) } > 0
    }

    /// Names of all attributes, in creation/name order.
    public func attributeNames() throws(HDF5Error) -> [String] {
        let count = try h5Call("H5Aget_num_attrs", "listing attributes of \(where_)") { H5Aget_num_attrs(id) }
        var names: [String] = []
        for index in 0..<Int(count) {
            let attr = try h5Call("H5Aopen_by_idx", "listing attributes of \(where_)") {
                H5Aopen_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(index), CHDF5_H5P_DEFAULT(), CHDF5_H5P_DEFAULT())
            }
            defer { H5Aclose(attr) }
            let length = try h5Call("H5Aget_name", "listing attributes of \(where_)") { H5Aget_name(attr, 0, nil) }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            _ = buffer.withUnsafeMutableBufferPointer { H5Aget_name(attr, Int(length) + 1, $0.baseAddress) }
            names.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return names
    }

    /// Reads attribute `name` whatever its type.
    public func attribute(_ name: String) throws(HDF5Error) -> HDF5AttributeValue {
        let context = "reading attribute '\(name)' of \(where_)"
        let attr = try h5Call("H5Aopen", context) { H5Aopen(id, name, CHDF5_H5P_DEFAULT()) }
        defer { H5Aclose(attr) }
        let type = try h5Call("H5Aget_type", context) { H5Aget_type(attr) }
        defer { H5Tclose(type) }
        let info = try HDF5TypeInfo.of(type, context: context)
        let space = try h5Call("H5Aget_space", context) { H5Aget_space(attr) }
        defer { H5Sclose(space) }
        let count = Int(try h5Call("H5Sget_simple_extent_npoints", context) { H5Sget_simple_extent_npoints(space) })
        switch info.typeClass {
        case .string:
            if count != 1 { return .unsupported("array of \(count) strings") }
            if info.isVariableLength {
                let memType = try h5Call("H5Tcopy", context) { H5Tcopy(CHDF5_H5T_C_S1()) }
                defer { H5Tclose(memType) }
                _ = try h5Call("H5Tset_size", context) { H5Tset_size(memType, CHDF5_H5T_VARIABLE()) }
                _ = try h5Call("H5Tset_cset", context) { H5Tset_cset(memType, H5T_CSET_UTF8) }
                var pointer: UnsafeMutablePointer<CChar>? = nil
                _ = try h5Call("H5Aread", context) { H5Aread(attr, memType, &pointer) }
                guard let pointer else { return .string("") }
                let text = String(cString: pointer)
                H5free_memory(pointer)
                return .string(text)
            }
            var bytes = [UInt8](repeating: 0, count: info.size)
            _ = try h5Call("H5Aread", context) { bytes.withUnsafeMutableBufferPointer { H5Aread(attr, type, $0.baseAddress) } }
            let end = bytes.firstIndex(of: 0) ?? bytes.count
            return .string(String(decoding: bytes[..<end], as: UTF8.self))
        case .integer:
            var values = [Int64](repeating: 0, count: count)
            _ = try h5Call("H5Aread", context) {
                values.withUnsafeMutableBufferPointer { H5Aread(attr, CHDF5_H5T_NATIVE_INT64(), $0.baseAddress) }
            }
            if !info.isSigned && info.size == 8 {
                // Keep the bits of unsigned 64-bit values (e.g. RNG state words).
                var unsigned = [UInt64](repeating: 0, count: count)
                _ = try h5Call("H5Aread", context) {
                    unsigned.withUnsafeMutableBufferPointer { H5Aread(attr, CHDF5_H5T_NATIVE_UINT64(), $0.baseAddress) }
                }
                values = unsigned.map { Int64(bitPattern: $0) }
            }
            return .integers(values)
        case .float:
            var values = [Double](repeating: 0, count: count)
            _ = try h5Call("H5Aread", context) {
                values.withUnsafeMutableBufferPointer { H5Aread(attr, CHDF5_H5T_NATIVE_DOUBLE(), $0.baseAddress) }
            }
            return .floats(values)
        case .other:
            return .unsupported(info.description)
        }
    }

    /// A string attribute; throws when missing or not a string.
    public func stringAttribute(_ name: String) throws(HDF5Error) -> String {
        guard case .string(let s) = try attribute(name) else {
            throw HDF5Error(call: "H5Aread", context: "reading attribute '\(name)' of \(where_): expected a string")
        }
        return s
    }

    /// A scalar integer attribute (a one-element array also counts).
    public func integerAttribute(_ name: String) throws(HDF5Error) -> Int64 {
        guard case .integers(let v) = try attribute(name), v.count == 1 else {
            throw HDF5Error(call: "H5Aread", context: "reading attribute '\(name)' of \(where_): expected one integer")
        }
        return v[0]
    }

    /// A scalar float attribute (integers are accepted and converted).
    public func floatAttribute(_ name: String) throws(HDF5Error) -> Double {
        switch try attribute(name) {
        case .floats(let v) where v.count == 1: return v[0]
        case .integers(let v) where v.count == 1: return Double(v[0])
        default:
            throw HDF5Error(call: "H5Aread", context: "reading attribute '\(name)' of \(where_): expected one number")
        }
    }

    private func replaceAttribute(_ name: String, context: String) throws(HDF5Error) {
        if try h5Call("H5Aexists", context, { H5Aexists(id, name) }) > 0 {
            _ = try h5Call("H5Adelete", context) { H5Adelete(id, name) }
        }
    }

    private func writeAttribute<T: HDF5Element>(_ name: String, values: [T], scalar: Bool) throws(HDF5Error) {
        let context = "writing attribute '\(name)' of \(where_)"
        try replaceAttribute(name, context: context)
        var dims = [hsize_t(values.count)]
        let space = try h5Call("H5Screate", context) {
            scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
        }
        defer { H5Sclose(space) }
        let attr = try h5Call("H5Acreate2", context) {
            H5Acreate2(id, name, T.hdf5Scalar.nativeType, space, CHDF5_H5P_DEFAULT(), CHDF5_H5P_DEFAULT())
        }
        defer { H5Aclose(attr) }
        _ = try h5Call("H5Awrite", context) {
            values.withUnsafeBufferPointer { H5Awrite(attr, T.hdf5Scalar.nativeType, $0.baseAddress) }
        }
    }

    /// Sets a scalar numeric attribute (replacing any existing one).
    public func setAttribute<T: HDF5Element>(_ name: String, _ value: T) throws(HDF5Error) {
        try writeAttribute(name, values: [value], scalar: true)
    }

    /// Sets a one-dimensional numeric array attribute.
    public func setAttribute<T: HDF5Element>(_ name: String, array: [T]) throws(HDF5Error) {
        try writeAttribute(name, values: array, scalar: false)
    }

    /// Sets a variable-length UTF-8 string attribute (h5py reads it as `str`).
    public func setAttribute(_ name: String, _ value: String) throws(HDF5Error) {
        let context = "writing attribute '\(name)' of \(where_)"
        try replaceAttribute(name, context: context)
        let memType = try h5Call("H5Tcopy", context) { H5Tcopy(CHDF5_H5T_C_S1()) }
        defer { H5Tclose(memType) }
        _ = try h5Call("H5Tset_size", context) { H5Tset_size(memType, CHDF5_H5T_VARIABLE()) }
        _ = try h5Call("H5Tset_cset", context) { H5Tset_cset(memType, H5T_CSET_UTF8) }
        let space = try h5Call("H5Screate", context) { H5Screate(H5S_SCALAR) }
        defer { H5Sclose(space) }
        let attr = try h5Call("H5Acreate2", context) {
            H5Acreate2(id, name, memType, space, CHDF5_H5P_DEFAULT(), CHDF5_H5P_DEFAULT())
        }
        defer { H5Aclose(attr) }
        _ = try h5Call("H5Awrite", context) {
            value.withCString { cString in
                var pointer: UnsafePointer<CChar>? = cString
                return H5Awrite(attr, memType, &pointer)
            }
        }
    }
}
