// Owning handles. Each class holds one HDF5 identifier, closes it in deinit, and never lets
// the raw `hid_t` out of this module. libhdf5 on Debian is built thread-safe (one global
// lock), so a handle may be used from any thread; calls are serialised by the library.

import CHDF5

/// Something with attributes: the file's root group, a group, or a dataset.
public class HDF5Object: @unchecked Sendable {
    let id: hid_t
    private let closer: @Sendable (hid_t) -> herr_t
    /// Keeps the file open while any of its objects is alive.
    let owner: HDF5File
    /// The file this object lives in (as given when the file was opened).
    public var filePath: String { owner.path }
    /// The object's path inside the file, e.g. `/model/fc.bias`.
    public let path: String

    init(id: hid_t, owner: HDF5File, path: String, closer: @escaping @Sendable (hid_t) -> herr_t) {
        self.id = id
        self.owner = owner
        self.path = path
        self.closer = closer
    }

    deinit {
        // A file closed with H5F_CLOSE_STRONG has already closed its objects.
        if H5Iis_valid(id) > 0 {
            silenceHDF5ErrorPrinting()
            _ = closer(id)
        }
    }

    /// `path in file` for error messages.
    var where_: String { "\(path) in \(filePath)" }

    func childPath(_ name: String) -> String {
        if name.hasPrefix("/") { return name }
        return path == "/" ? "/" + name : path + "/" + name
    }
}

/// An open HDF5 file. Its root group is `root`; the file stays open while any object from it
/// is alive, unless `close()` is called, which closes everything at once.
public final class HDF5File: @unchecked Sendable {
    public enum Mode: Sendable { case readOnly, readWrite }

    let id: hid_t
    public let path: String
    private var closed = false

    private init(id: hid_t, path: String) {
        self.id = id
        self.path = path
    }

    deinit {
        if !closed && H5Iis_valid(id) > 0 {
            silenceHDF5ErrorPrinting()
            _ = H5Fclose(id)
        }
    }

    /// Whether the file at `path` starts with an HDF5 signature. Throws when it cannot be read.
    public static func isHDF5(path: String) throws(HDF5Error) -> Bool {
        try h5Call("H5Fis_hdf5", "checking the signature of \(path)") { H5Fis_hdf5(path) } > 0
    }

    /// Opens an existing file.
    public static func open(_ path: String, mode: Mode = .readOnly) throws(HDF5Error) -> HDF5File {
        let fapl = try makeAccessList(path: path)
        defer { H5Pclose(fapl) }
        let flags = mode == .readOnly ? CHDF5_H5F_ACC_RDONLY() : CHDF5_H5F_ACC_RDWR()
        let id = try h5Call("H5Fopen", "opening \(path)") { H5Fopen(path, flags, fapl) }
        return HDF5File(id: id, path: path)
    }

    /// Creates (or truncates) a file. `checksummedMetadata` stores object headers in the
    /// HDF5 1.8 format, whose metadata carry checksums (readable by any HDF5 >= 1.8).
    public static func create(_ path: String, overwrite: Bool = true, checksummedMetadata: Bool = false) throws(HDF5Error) -> HDF5File {
        let fapl = try makeAccessList(path: path)
        defer { H5Pclose(fapl) }
        if checksummedMetadata {
            _ = try h5Call("H5Pset_libver_bounds", "configuring \(path)") { H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V110) }
        }
        let flags = overwrite ? CHDF5_H5F_ACC_TRUNC() : CHDF5_H5F_ACC_EXCL()
        let id = try h5Call("H5Fcreate", "creating \(path)") { H5Fcreate(path, flags, CHDF5_H5P_DEFAULT(), fapl) }
        return HDF5File(id: id, path: path)
    }

    private static func makeAccessList(path: String) throws(HDF5Error) -> hid_t {
        let fapl = try h5Call("H5Pcreate", "opening \(path)") { H5Pcreate(CHDF5_H5P_FILE_ACCESS()) }
        do {
            _ = try h5Call("H5Pset_fclose_degree", "opening \(path)") { H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) }
        } catch {
            H5Pclose(fapl)
            throw error
        }
        return fapl
    }

    /// The root group `/`.
    public func root() throws(HDF5Error) -> HDF5Group {
        let gid = try h5Call("H5Gopen2", "opening / in \(path)") { H5Gopen2(id, "/", CHDF5_H5P_DEFAULT()) }
        return HDF5Group(id: gid, owner: self, path: "/")
    }

    /// Writes all buffered data and metadata to the operating system.
    public func flush() throws(HDF5Error) {
        _ = try h5Call("H5Fflush", "flushing \(path)") { H5Fflush(id, H5F_SCOPE_GLOBAL) }
    }

    /// Closes the file and every object opened from it; reports a failed close (for
    /// example a write that could not be completed). Later use of its objects fails.
    public func close() throws(HDF5Error) {
        if closed { return }
        closed = true
        _ = try h5Call("H5Fclose", "closing \(path)") { H5Fclose(id) }
    }

    /// Size of the file in bytes as HDF5 sees it.
    public func size() throws(HDF5Error) -> Int {
        var size: hsize_t = 0
        _ = try h5Call("H5Fget_filesize", "sizing \(path)") { H5Fget_filesize(id, &size) }
        return Int(size)
    }
}

/// A group: a folder of datasets and groups.
public final class HDF5Group: HDF5Object, @unchecked Sendable {
    init(id: hid_t, owner: HDF5File, path: String) {
        super.init(id: id, owner: owner, path: path, closer: { H5Gclose($0) })
    }

    /// Whether a link `name` (may contain `/`) exists below this group.
    public func exists(_ name: String) throws(HDF5Error) -> Bool {
        var prefix = name.hasPrefix("/") ? "/" : ""
        for part in name.split(separator: "/") {
            prefix += prefix.isEmpty || prefix.hasSuffix("/") ? String(part) : "/" + part
            let present = try h5Call("H5Lexists", "looking up \(childPath(prefix)) in \(filePath)") {
                H5Lexists(id, prefix, CHDF5_H5P_DEFAULT())
            }
            if present <= 0 { return false }
        }
        return true
    }

    /// What kind of object a child link points to.
    public enum ChildKind: Sendable, Equatable { case group, dataset, other }

    /// Names of the links directly in this group, in name order, with their kinds.
    public func children() throws(HDF5Error) -> [(name: String, kind: ChildKind)] {
        var info = H5G_info_t()
        _ = try h5Call("H5Gget_info", "listing \(where_)") { H5Gget_info(id, &info) }
        var result: [(String, ChildKind)] = []
        for index in 0..<hsize_t(info.nlinks) {
            let length = try h5Call("H5Lget_name_by_idx", "listing \(where_)") {
                H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, CHDF5_H5P_DEFAULT())
            }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            _ = try h5Call("H5Lget_name_by_idx", "listing \(where_)") {
                buffer.withUnsafeMutableBufferPointer {
                    H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, $0.baseAddress, length + 1, CHDF5_H5P_DEFAULT())
                }
            }
            let name = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let object = try h5Call("H5Oopen", "opening \(childPath(name)) in \(filePath)") { H5Oopen(id, name, CHDF5_H5P_DEFAULT()) }
            let type = H5Iget_type(object)
            _ = H5Oclose(object)
            let kind: ChildKind = type == H5I_GROUP ? .group : type == H5I_DATASET ? .dataset : .other
            result.append((name, kind))
        }
        return result
    }

    /// Opens a child group.
    public func openGroup(_ name: String) throws(HDF5Error) -> HDF5Group {
        let gid = try h5Call("H5Gopen2", "opening group \(childPath(name)) in \(filePath)") { H5Gopen2(id, name, CHDF5_H5P_DEFAULT()) }
        return HDF5Group(id: gid, owner: owner, path: childPath(name))
    }

    /// Creates a child group.
    public func createGroup(_ name: String) throws(HDF5Error) -> HDF5Group {
        let gid = try h5Call("H5Gcreate2", "creating group \(childPath(name)) in \(filePath)") {
            H5Gcreate2(id, name, CHDF5_H5P_DEFAULT(), CHDF5_H5P_DEFAULT(), CHDF5_H5P_DEFAULT())
        }
        return HDF5Group(id: gid, owner: owner, path: childPath(name))
    }

    /// Opens a dataset. `chunkCacheBytes` sets the raw-data chunk cache of this handle
    /// (HDF5's default is 1 MiB); nil keeps the file's default.
    public func openDataset(_ name: String, chunkCacheBytes: Int? = nil) throws(HDF5Error) -> HDF5Dataset {
        let context = "opening dataset \(childPath(name)) in \(filePath)"
        let dapl = try h5Call("H5Pcreate", context) { H5Pcreate(CHDF5_H5P_DATASET_ACCESS()) }
        defer { H5Pclose(dapl) }
        if let bytes = chunkCacheBytes {
            // Slots: a prime well above the number of chunks the cache can hold.
            let slots = bytes >= 256 << 20 ? 100_003 : bytes >= 16 << 20 ? 20_011 : 2_003
            _ = try h5Call("H5Pset_chunk_cache", context) {
                H5Pset_chunk_cache(dapl, slots, max(bytes, 0), CHDF5_H5D_CHUNK_CACHE_W0_DEFAULT())
            }
        }
        let did = try h5Call("H5Dopen2", context) { H5Dopen2(id, name, dapl) }
        return try HDF5Dataset(id: did, owner: owner, path: childPath(name))
    }

    /// Creates a dataset of `shape` storing `type` (native byte order unless
    /// `options.bigEndian`), with optional chunking and filters.
    public func createDataset(_ name: String, shape: [Int], type: HDF5Scalar, options: HDF5DatasetOptions = HDF5DatasetOptions()) throws(HDF5Error) -> HDF5Dataset {
        let context = "creating dataset \(childPath(name)) in \(filePath)"
        let dims = shape.map { hsize_t($0) }
        let space = try h5Call("H5Screate_simple", context) {
            dims.withUnsafeBufferPointer { H5Screate_simple(Int32(dims.count), $0.baseAddress, nil) }
        }
        defer { H5Sclose(space) }
        let dcpl = try h5Call("H5Pcreate", context) { H5Pcreate(CHDF5_H5P_DATASET_CREATE()) }
        defer { H5Pclose(dcpl) }
        if options.needsChunks && !shape.isEmpty {
            var chunk = options.chunks ?? shape
            if options.chunks == nil {
                let rowBytes = shape.dropFirst().reduce(1, *) * type.size
                chunk[0] = max(1, min(shape[0], (1 << 20) / max(rowBytes, 1)))
            }
            let chunkDims = chunk.enumerated().map { hsize_t(max(1, min($0.element, max(shape[$0.offset], 1)))) }
            _ = try h5Call("H5Pset_chunk", context) {
                chunkDims.withUnsafeBufferPointer { H5Pset_chunk(dcpl, Int32(chunkDims.count), $0.baseAddress) }
            }
            if options.fletcher32 { _ = try h5Call("H5Pset_fletcher32", context) { H5Pset_fletcher32(dcpl) } }
            if options.shuffle { _ = try h5Call("H5Pset_shuffle", context) { H5Pset_shuffle(dcpl) } }
            if let level = options.gzipLevel { _ = try h5Call("H5Pset_deflate", context) { H5Pset_deflate(dcpl, UInt32(level)) } }
        }
        var fileType = type.nativeType
        var ownedType: hid_t = -1
        if options.bigEndian {
            ownedType = try h5Call("H5Tcopy", context) { H5Tcopy(type.nativeType) }
            _ = try h5Call("H5Tset_order", context) { H5Tset_order(ownedType, H5T_ORDER_BE) }
            fileType = ownedType
        }
        defer { if ownedType >= 0 { H5Tclose(ownedType) } }
        let did = try h5Call("H5Dcreate2", context) {
            H5Dcreate2(id, name, fileType, space, CHDF5_H5P_DEFAULT(), dcpl, CHDF5_H5P_DEFAULT())
        }
        return try HDF5Dataset(id: did, owner: owner, path: childPath(name))
    }

    /// Creates a dataset and writes `values` (row-major, `shape`) into it.
    @discardableResult
    public func writeDataset<T: HDF5Element>(_ name: String, shape: [Int], values: [T], options: HDF5DatasetOptions = HDF5DatasetOptions()) throws(HDF5Error) -> HDF5Dataset {
        try writeDataset(name, shape: shape, values: values[...], options: options)
    }

    /// Creates a dataset and writes `values` (a slice, not copied) into it.
    @discardableResult
    public func writeDataset<T: HDF5Element>(_ name: String, shape: [Int], values: ArraySlice<T>, options: HDF5DatasetOptions = HDF5DatasetOptions()) throws(HDF5Error) -> HDF5Dataset {
        let dataset = try createDataset(name, shape: shape, type: T.hdf5Scalar, options: options)
        try dataset.write(values)
        return dataset
    }

    /// Removes the link `name` from this group.
    public func remove(_ name: String) throws(HDF5Error) {
        _ = try h5Call("H5Ldelete", "removing \(childPath(name)) in \(filePath)") { H5Ldelete(id, name, CHDF5_H5P_DEFAULT()) }
    }
}
