// Datasets: shape, stored type, layout and filters, and row-wise reads and writes through
// hyperslab selections (rows = the leading dimension).

import CHDF5
#if canImport(Glibc)
import Glibc
#endif

/// Asks the kernel for transparent huge pages in the 2 MiB-aligned interior of a large fresh
/// buffer (as numpy does for its arrays): first-touch page faults then cost 1/512 as many.
/// Only a hint; ignored where THP is off.
public func adviseHugePages(_ buffer: UnsafeMutableRawBufferPointer) {
    #if canImport(Glibc)
    let huge = 2 << 20
    guard let base = buffer.baseAddress, buffer.count >= 2 * huge else { return }
    let start = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
    let end = (Int(bitPattern: base) + buffer.count) & ~(huge - 1)
    if end > start {
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE)
    }
    #endif
}

/// An open dataset. Row `r` is the slice `[r, ...]` of the leading dimension.
public final class HDF5Dataset: HDF5Object, @unchecked Sendable {
    /// Dimensions, leading first.
    public let shape: [Int]
    /// The stored element type.
    public let typeInfo: HDF5TypeInfo
    public let layout: HDF5Layout
    public let filters: [HDF5Filter]
    /// The native memory type the stored type equals exactly (same size, order, precision),
    /// if any: such data can be copied without conversion.
    public let storedNativeScalar: HDF5Scalar?

    /// Elements per row: the product of all dimensions but the first (1 for rank 1).
    public var rowElements: Int { shape.dropFirst().reduce(1, *) }
    /// Rows: the leading dimension (1 for a scalar).
    public var rowCount: Int { shape.first ?? 1 }
    public var elementCount: Int { shape.reduce(1, *) }

    init(id: hid_t, owner: HDF5File, path: String) throws(HDF5Error) {
        let context = "describing \(path) in \(owner.path)"
        do {
            let space = try h5Call("H5Dget_space", context) { H5Dget_space(id) }
            defer { H5Sclose(space) }
            let rank = try h5Call("H5Sget_simple_extent_ndims", context) { H5Sget_simple_extent_ndims(space) }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            _ = try h5Call("H5Sget_simple_extent_dims", context) {
                dims.withUnsafeMutableBufferPointer { H5Sget_simple_extent_dims(space, $0.baseAddress, nil) }
            }
            shape = dims.map { Int($0) }
            let type = try h5Call("H5Dget_type", context) { H5Dget_type(id) }
            defer { H5Tclose(type) }
            typeInfo = try HDF5TypeInfo.of(type, context: context)
            storedNativeScalar = HDF5Scalar.allCases.first { H5Tequal(type, $0.nativeType) > 0 }
            let dcpl = try h5Call("H5Dget_create_plist", context) { H5Dget_create_plist(id) }
            defer { H5Pclose(dcpl) }
            let rawLayout = H5Pget_layout(dcpl)
            switch rawLayout {
            case H5D_CHUNKED:
                var chunk = [hsize_t](repeating: 0, count: max(Int(rank), 1))
                let n = try h5Call("H5Pget_chunk", context) {
                    chunk.withUnsafeMutableBufferPointer { H5Pget_chunk(dcpl, rank, $0.baseAddress) }
                }
                layout = .chunked(chunk.prefix(Int(n)).map { Int($0) })
            case H5D_COMPACT: layout = .compact
            case H5D_VIRTUAL: layout = .virtual
            default: layout = .contiguous
            }
            var found: [HDF5Filter] = []
            let count = try h5Call("H5Pget_nfilters", context) { H5Pget_nfilters(dcpl) }
            for index in 0..<UInt32(count) {
                var flags: UInt32 = 0
                var nValues = 8
                var values = [UInt32](repeating: 0, count: 8)
                var name = [CChar](repeating: 0, count: 128)
                let filter = try h5Call("H5Pget_filter2", context) {
                    values.withUnsafeMutableBufferPointer { v in
                        name.withUnsafeMutableBufferPointer { n in
                            H5Pget_filter2(dcpl, index, &flags, &nValues, v.baseAddress, 128, n.baseAddress, nil)
                        }
                    }
                }
                switch filter {
                case H5Z_FILTER_DEFLATE: found.append(.deflate(level: nValues > 0 ? Int(values[0]) : 0))
                case H5Z_FILTER_SHUFFLE: found.append(.shuffle)
                case H5Z_FILTER_FLETCHER32: found.append(.fletcher32)
                default:
                    found.append(.other(id: Int(filter), name: name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }))
                }
            }
            filters = found
        } catch {
            H5Dclose(id)
            throw error
        }
        super.init(id: id, owner: owner, path: path, closer: { H5Dclose($0) })
    }

    // MARK: selections

    /// A dataspace selecting the union of `runs` of rows (each a contiguous range).
    private func fileSpace(selecting runs: [Range<Int>], context: @autoclosure () -> String) throws(HDF5Error) -> hid_t {
        let space = try h5Call("H5Dget_space", context()) { H5Dget_space(id) }
        do {
            if shape.isEmpty {
                _ = try h5Call("H5Sselect_all", context()) { H5Sselect_all(space) }
                return space
            }
            var start = [hsize_t](repeating: 0, count: shape.count)
            var count = shape.map { hsize_t($0) }
            if runs.isEmpty {
                _ = try h5Call("H5Sselect_none", context()) { H5Sselect_none(space) }
            }
            for (index, run) in runs.enumerated() {
                start[0] = hsize_t(run.lowerBound)
                count[0] = hsize_t(run.count)
                let op = index == 0 ? H5S_SELECT_SET : H5S_SELECT_OR
                _ = try h5Call("H5Sselect_hyperslab", context()) {
                    H5Sselect_hyperslab(space, op, start, nil, count, nil)
                }
            }
            return space
        } catch {
            H5Sclose(space)
            throw error
        }
    }

    private func checkRuns(_ runs: [Range<Int>], capacity: Int, context: @autoclosure () -> String) throws(HDF5Error) -> Int {
        var rows = 0
        for run in runs {
            if run.lowerBound < 0 || run.upperBound > rowCount {
                throw HDF5Error(call: "H5Sselect_hyperslab", context: context() + ": rows \(run) outside 0..<\(rowCount)")
            }
            rows += run.count
        }
        if rows * rowElements > capacity {
            throw HDF5Error(call: "H5Dread", context: context() + ": buffer holds \(capacity) elements, selection needs \(rows * rowElements)")
        }
        return rows
    }

    private func memorySpace(rows: Int, context: @autoclosure () -> String) throws(HDF5Error) -> hid_t {
        var dims = shape.map { hsize_t($0) }
        dims[0] = hsize_t(rows)
        return try h5Call("H5Screate_simple", context()) {
            dims.withUnsafeBufferPointer { H5Screate_simple(Int32(dims.count), $0.baseAddress, nil) }
        }
    }

    // MARK: reading

    /// Reads the union of `runs` (row ranges, in increasing order and not overlapping) into
    /// `buffer` starting at element `offset`, converting to `T`, with one `H5Dread`.
    public func readRows<T: HDF5Element>(_ runs: [Range<Int>], into buffer: inout [T], at offset: Int = 0) throws(HDF5Error) {
        let context = "reading \(runs.count == 1 ? "rows \(runs[0])" : "\(runs.count) row ranges") of \(where_)"
        let rows = try checkRuns(runs, capacity: buffer.count - offset, context: context)
        if rows == 0 { return }
        let space = try fileSpace(selecting: runs, context: context)
        defer { H5Sclose(space) }
        // A memory space of the same rank as the file's ((rows, d1, d2, ...), all selected)
        // lets HDF5 move whole chunks straight into the buffer instead of projecting the
        // selection element by element onto a flat space.
        let memSpace = try memorySpace(rows: rows, context: context)
        defer { H5Sclose(memSpace) }
        _ = try h5Call("H5Dread", context) {
            buffer.withUnsafeMutableBufferPointer { pointer in
                H5Dread(id, T.hdf5Scalar.nativeType, memSpace, space, CHDF5_H5P_DEFAULT(), pointer.baseAddress! + offset)
            }
        }
    }

    /// Reads rows `rows` into `buffer` at `offset`.
    public func readRows<T: HDF5Element>(_ rows: Range<Int>, into buffer: inout [T], at offset: Int = 0) throws(HDF5Error) {
        try readRows([rows], into: &buffer, at: offset)
    }

    /// Reads rows `rows` as a new array.
    public func read<T: HDF5Element>(rows: Range<Int>, as type: T.Type = T.self) throws(HDF5Error) -> [T] {
        var result = [T](unsafeUninitializedCapacity: rows.count * rowElements) { buffer, n in
            adviseHugePages(UnsafeMutableRawBufferPointer(buffer))
            n = rows.count * rowElements
        }
        try readRows([rows], into: &result)
        return result
    }

    /// Reads the whole dataset, row-major.
    public func read<T: HDF5Element>(as type: T.Type = T.self) throws(HDF5Error) -> [T] {
        if shape.isEmpty {
            var result = [T](unsafeUninitializedCapacity: 1) { _, n in n = 1 }
            _ = try h5Call("H5Dread", "reading \(where_)") {
                result.withUnsafeMutableBufferPointer {
                    H5Dread(id, T.hdf5Scalar.nativeType, CHDF5_H5S_ALL(), CHDF5_H5S_ALL(), CHDF5_H5P_DEFAULT(), $0.baseAddress)
                }
            }
            return result
        }
        return try read(rows: 0..<rowCount, as: T.self)
    }

    // MARK: writing

    /// Writes `values` (row-major) over the whole dataset.
    public func write<T: HDF5Element>(_ values: [T]) throws(HDF5Error) {
        try write(values[...])
    }

    /// Writes `values` (row-major, e.g. one tensor's range of a flat buffer) over the whole
    /// dataset without copying them first.
    public func write<T: HDF5Element>(_ values: ArraySlice<T>) throws(HDF5Error) {
        if values.count != elementCount {
            throw HDF5Error(call: "H5Dwrite", context: "writing \(where_): expected \(elementCount) values for shape \(shape), found \(values.count)")
        }
        if elementCount == 0 { return }
        _ = try h5Call("H5Dwrite", "writing \(where_)") {
            values.withUnsafeBufferPointer {
                H5Dwrite(id, T.hdf5Scalar.nativeType, CHDF5_H5S_ALL(), CHDF5_H5S_ALL(), CHDF5_H5P_DEFAULT(), $0.baseAddress)
            }
        }
    }

    /// Writes `values` into rows `rows`.
    public func write<T: HDF5Element>(rows: Range<Int>, values: [T]) throws(HDF5Error) {
        let context = "writing rows \(rows) of \(where_)"
        _ = try checkRuns([rows], capacity: values.count, context: context)
        if values.count != rows.count * rowElements {
            throw HDF5Error(call: "H5Dwrite", context: context + ": expected \(rows.count * rowElements) values, found \(values.count)")
        }
        if rows.isEmpty { return }
        let space = try fileSpace(selecting: [rows], context: context)
        defer { H5Sclose(space) }
        let memSpace = try memorySpace(rows: rows.count, context: context)
        defer { H5Sclose(memSpace) }
        _ = try h5Call("H5Dwrite", context) {
            values.withUnsafeBufferPointer {
                H5Dwrite(id, T.hdf5Scalar.nativeType, memSpace, space, CHDF5_H5P_DEFAULT(), $0.baseAddress)
            }
        }
    }

    /// Bytes the dataset occupies in the file (after compression).
    public func storageSize() -> Int { Int(H5Dget_storage_size(id)) }
}
