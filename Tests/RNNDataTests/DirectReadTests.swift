// Unfiltered float32 datasets are read with pread at the offsets HDF5 reports; the rows must
// equal what HDF5 itself returns, for contiguous and chunked layouts, across chunk
// boundaries, and for chunks that were never written (fill value through HDF5).

import Foundation
import XCTest
import RNNHDF5
@testable import RNNData

final class DirectReadTests: XCTestCase {
    func writeFile(_ path: String, chunks: [Int]?, writtenRows: Range<Int>? = nil) throws {
        let n = 50, t = 3, i = 2
        let file = try HDF5File.create(path)
        let root = try file.root()
        let x = try root.createDataset("X", shape: [n, t, i], type: .float32, options: HDF5DatasetOptions(chunks: chunks))
        let rows = writtenRows ?? 0..<n
        try x.write(rows: rows, values: Fixture.features(rows: Array(rows), steps: t, inputs: i))
        try root.writeDataset("Y", shape: [n], values: (0..<n).map { Int64($0 % 3) })
        try file.close()
    }

    func testDirectReadsMatchHDF5() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let rows = [49, 0, 7, 6, 8, 13, 14, 21, 22, 23, 35, 3, 3]
        for (name, chunks) in [("contiguous.h5", nil), ("chunked.h5", [7, 3, 2]) as (String, [Int]?)] {
            let path = dir.appendingPathComponent(name).path
            try writeFile(path, chunks: chunks)
            let disk = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0))
            XCTAssertNotNil(disk.parts[0].xDirect, name)
            // Preloading uses the same pread path.
            let memory = try TensorDataset.open(path: path)
            XCTAssertEqual(memory.preloaded, [true])
            XCTAssertEqual(try memory.read(rows: rows).x, Fixture.features(rows: rows, steps: 3, inputs: 2), name)
            let batch = try disk.read(rows: rows)
            XCTAssertEqual(batch.x, Fixture.features(rows: rows, steps: 3, inputs: 2), name)
            // Sorted consecutive rows go straight into the batch.
            XCTAssertEqual(try disk.read(rows: Array(5..<30)).x, Fixture.features(rows: Array(5..<30), steps: 3, inputs: 2), name)
            // Many threads at once (chunk addresses are looked up lazily under a lock).
            let fresh = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0))
            let failures = LockedCounter()
            DispatchQueue.concurrentPerform(iterations: 6) { worker in
                for start in stride(from: worker, to: 50, by: 3) {
                    let rows = [start, (start * 7) % 50, 49 - start]
                    if (try? fresh.read(rows: rows).x) != Fixture.features(rows: rows, steps: 3, inputs: 2) { failures.increment() }
                }
            }
            XCTAssertEqual(failures.value, 0, name)
        }
    }

    func testUnwrittenChunksReadAsFillValue() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("sparse.h5").path
        try writeFile(path, chunks: [10, 3, 2], writtenRows: 10..<20)
        let disk = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0))
        XCTAssertNotNil(disk.parts[0].xDirect)
        let batch = try disk.read(rows: [12, 3, 19, 45])
        XCTAssertEqual(try TensorDataset.open(path: path).read(rows: [12, 3, 19, 45]), batch)
        var expected = Fixture.features(rows: [12], steps: 3, inputs: 2)
        expected += [Float](repeating: 0, count: 6)
        expected += Fixture.features(rows: [19], steps: 3, inputs: 2)
        expected += [Float](repeating: 0, count: 6)
        XCTAssertEqual(batch.x, expected)
    }

    func testConvertedOrFilteredDataUsesHDF5() throws {
        for name in ["chunked_gzip.h5", "float64.h5", "bigendian.h5", "float16.h5"] {
            var options = TensorDatasetOptions(memoryBudgetBytes: 0)
            if name == "float64.h5" { options.xName = "inputs"; options.yName = "labels" }
            let ds = try TensorDataset.open(path: Fixture.path(name), options: options)
            XCTAssertNil(ds.parts[0].xDirect, name)
        }
    }
}

final class ConcurrentReadTests: XCTestCase {
    /// Several threads read batches from one dataset at once (HDF5 path and pread path).
    func testConcurrentReadsAgree() throws {
        XCTAssertTrue(HDF5Library.isThreadSafe, "libhdf5 \(HDF5Library.version) is not thread-safe")
        let paths = [Fixture.path("chunked_gzip.h5"), Fixture.path("chunked_gzip_part2.h5")]
        let ds = try TensorDataset.open(paths: paths, options: TensorDatasetOptions(memoryBudgetBytes: 0))
        let plan = try EpochPlan(sampleCount: ds.count, batchSize: 5, shuffle: true, seed: 1)
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for epoch in 0..<5 {
                let order = plan.epoch(epoch * 8 + worker)
                for step in 0..<order.steps {
                    let rows = order.batch(step: step)
                    guard let batch = try? ds.read(rows: rows),
                          batch.x == Fixture.features(rows: rows, steps: 6, inputs: 3) else {
                        failures.increment()
                        continue
                    }
                }
            }
        }
        XCTAssertEqual(failures.value, 0)
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
