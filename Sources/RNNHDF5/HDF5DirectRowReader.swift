// Direct row reads for unfiltered datasets. HDF5 1.10.8 reads a whole chunk (even with the
// chunk cache off) to return one row of it: 819 KB of pread for a 12.8 KB row of a
// (64, 50, 64) float32 chunk, measured with strace. When the stored bytes are exactly the
// memory type's (no conversion) and rows are contiguous in the file (contiguous layout, or
// chunks spanning all trailing dimensions without filters), this reader asks HDF5 where the
// data lives (H5Dget_offset, H5Dget_chunk_info_by_coord) and preads just the selected rows.

import CHDF5
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads rows of one unfiltered dataset straight from its file with `pread`. Only for files
/// opened read-only (raw data written through an open handle may not be on disk yet).
public final class HDF5DirectRowReader: @unchecked Sendable {
    private let dataset: HDF5Dataset
    private let fd: Int32
    /// The native type the stored bytes are.
    public let scalar: HDF5Scalar
    private let rowBytes: Int
    /// Rows per chunk; nil for a contiguous dataset.
    private let chunkRows: Int?
    /// Contiguous: file offset of row 0.
    private let contiguousBase: UInt64
    private let userblock: UInt64
    /// File offset of each chunk: 0 = not looked up yet, UInt64.max = not allocated.
    private var chunkAddresses: [UInt64]
    private let lock = NSLock()

    private init(dataset: HDF5Dataset, fd: Int32, scalar: HDF5Scalar, chunkRows: Int?, contiguousBase: UInt64, userblock: UInt64) {
        self.dataset = dataset
        self.fd = fd
        self.scalar = scalar
        self.rowBytes = dataset.rowElements * scalar.size
        self.chunkRows = chunkRows
        self.contiguousBase = contiguousBase
        self.userblock = userblock
        let chunks = chunkRows.map { (dataset.rowCount + $0 - 1) / $0 } ?? 0
        self.chunkAddresses = [UInt64](repeating: 0, count: chunks)
    }

    deinit { close(fd) }

    /// A reader for `dataset`, or nil when its rows cannot be read directly (filters, a
    /// converted type, chunks that split rows, compact/virtual layout, no storage yet).
    public static func make(for dataset: HDF5Dataset) -> HDF5DirectRowReader? {
        guard let scalar = dataset.storedNativeScalar, !dataset.shape.isEmpty, dataset.filters.isEmpty else { return nil }
        var chunkRows: Int? = nil
        var base: UInt64 = 0
        switch dataset.layout {
        case .contiguous:
            silenceHDF5ErrorPrinting()
            base = UInt64(H5Dget_offset(dataset.id))
            _ = H5Eclear2(CHDF5_H5E_DEFAULT())
            if base == UInt64.max { return nil }
        case .chunked(let chunk):
            guard chunk.count == dataset.shape.count, Array(chunk.dropFirst()) == Array(dataset.shape.dropFirst()), chunk[0] > 0 else { return nil }
            chunkRows = chunk[0]
        default:
            return nil
        }
        var userblock: hsize_t = 0
        let fcpl = H5Fget_create_plist(dataset.owner.id)
        if fcpl >= 0 {
            _ = H5Pget_userblock(fcpl, &userblock)
            H5Pclose(fcpl)
        }
        let fd = open(dataset.filePath, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        return HDF5DirectRowReader(dataset: dataset, fd: fd, scalar: scalar, chunkRows: chunkRows, contiguousBase: base, userblock: UInt64(userblock))
    }

    /// File offset of chunk `index`, or nil when the chunk was never written.
    private func chunkAddress(_ index: Int) throws(HDF5Error) -> UInt64? {
        lock.lock()
        let known = chunkAddresses[index]
        lock.unlock()
        if known == UInt64.max { return nil }
        if known != 0 { return known }
        var coordinates = [hsize_t](repeating: 0, count: dataset.shape.count)
        coordinates[0] = hsize_t(index * chunkRows!)
        var mask: UInt32 = 0
        var address: haddr_t = 0
        var size: hsize_t = 0
        _ = try h5Call("H5Dget_chunk_info_by_coord", "locating chunk \(index) of \(dataset.path) in \(dataset.filePath)") {
            H5Dget_chunk_info_by_coord(dataset.id, coordinates, &mask, &address, &size)
        }
        let value = address == haddr_t.max ? UInt64.max : UInt64(address) + userblock
        lock.lock()
        chunkAddresses[index] = value
        lock.unlock()
        return value == UInt64.max ? nil : value
    }

    /// Reads `runs` of rows into `buffer` from element `offset` on, in run order. `T` must be
    /// the stored type (`scalar`).
    public func readRows<T: HDF5Element>(_ runs: [Range<Int>], into buffer: inout [T], at offset: Int = 0) throws(HDF5Error) {
        precondition(T.hdf5Scalar == scalar, "direct reads need the stored type \(scalar)")
        let rowElements = dataset.rowElements
        var element = offset
        for run in runs {
            if run.lowerBound < 0 || run.upperBound > dataset.rowCount || element + run.count * rowElements > buffer.count {
                throw HDF5Error(call: "pread", context: "reading rows \(run) of \(dataset.path) in \(dataset.filePath): outside 0..<\(dataset.rowCount) or the buffer")
            }
            var row = run.lowerBound
            while row < run.upperBound {
                // The longest stretch of this run that is contiguous in the file.
                let end: Int
                let fileOffset: UInt64
                if let chunkRows {
                    let chunk = row / chunkRows
                    end = min(run.upperBound, (chunk + 1) * chunkRows)
                    guard let address = try chunkAddress(chunk) else {
                        // Never written: HDF5 supplies the fill value.
                        try dataset.readRows([row..<end], into: &buffer, at: element)
                        element += (end - row) * rowElements
                        row = end
                        continue
                    }
                    fileOffset = address + UInt64((row - chunk * chunkRows) * rowBytes)
                } else {
                    end = run.upperBound
                    fileOffset = contiguousBase + UInt64(row * rowBytes)
                }
                let bytes = (end - row) * rowBytes
                let start = element
                let got = buffer.withUnsafeMutableBytes { raw -> Int in
                    let base = raw.baseAddress! + start * MemoryLayout<T>.stride
                    var done = 0
                    while done < bytes {
                        let n = pread(fd, base + done, bytes - done, off_t(fileOffset) + off_t(done))
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { return n < 0 ? -Int(errno) : done }
                        done += n
                    }
                    return done
                }
                if got != bytes {
                    let reason = got < 0 ? String(cString: strerror(Int32(-got))) : "end of file after \(got) of \(bytes) bytes"
                    throw HDF5Error(call: "pread", context: "reading rows \(row)..<\(end) of \(dataset.path) in \(dataset.filePath): \(reason)")
                }
                element += (end - row) * rowElements
                row = end
            }
        }
    }
}
