// Files written by h5py (scripts/make_data_fixtures.py) read back exactly.

import XCTest
import RNNHDF5
@testable import RNNData

final class InteropFixtureTests: XCTestCase {
    /// Both modes: preloaded (default budget) and row reads from disk (budget 0).
    let modes = [TensorDatasetOptions(), TensorDatasetOptions(memoryBudgetBytes: 0)]

    func testChunkedGzipShuffleFloat32WithInt32Labels() throws {
        for options in modes {
            let ds = try TensorDataset.open(path: Fixture.path("chunked_gzip.h5"), options: options)
            XCTAssertEqual(ds.count, 20); XCTAssertEqual(ds.steps, 6); XCTAssertEqual(ds.inputSize, 3)
            XCTAssertEqual(ds.targetKind, .sequenceClasses(classes: 3))
            XCTAssertEqual(ds.datasetDescription, "fixture: chunked gzip+shuffle float32 X, int32 Y")
            XCTAssertEqual(ds.preloaded, [options.memoryBudgetBytes > 0])
            let rows = [17, 3, 4, 5, 0, 19, 8]
            let batch = try ds.read(rows: rows)
            XCTAssertEqual(batch.count, rows.count)
            XCTAssertEqual(batch.x, Fixture.features(rows: rows, steps: 6, inputs: 3))
            XCTAssertEqual(batch.targets, .classIds(rows.map { Int32($0 % 3) }))
        }
        let file = try HDF5File.open(Fixture.path("chunked_gzip.h5"))
        let x = try file.root().openDataset("X")
        XCTAssertEqual(x.layout, .chunked([4, 6, 3]))
        XCTAssertEqual(x.filters, [.shuffle, .deflate(level: 4)])
    }

    func testFloat64WithCustomNames() throws {
        for var options in modes {
            options.xName = "inputs"; options.yName = "labels"
            let ds = try TensorDataset.open(path: Fixture.path("float64.h5"), options: options)
            XCTAssertEqual([ds.count, ds.steps, ds.inputSize], [10, 4, 2])
            let batch = try ds.read(rows: Array(0..<10))
            XCTAssertEqual(batch.x, Fixture.features(rows: Array(0..<10), steps: 4, inputs: 2))
            XCTAssertEqual(batch.targets, .classIds((0..<10).map { Int32($0 % 3) }))
        }
    }

    func testTokenIdsAreOneHotEncoded() throws {
        for options in modes {
            let ds = try TensorDataset.open(path: Fixture.path("tokens.h5"), options: options)
            XCTAssertEqual(ds.inputEncoding, .tokens(vocabularySize: 6))
            XCTAssertEqual([ds.count, ds.steps, ds.inputSize], [8, 5, 6])
            XCTAssertEqual(ds.targetKind, .stepClasses(classes: 6))
            XCTAssertEqual(ds.vocabulary.map { String(String.UnicodeScalarView($0)) }, "abcdef")
            let rows = [6, 1, 1]
            let batch = try ds.read(rows: rows)
            var expected = [Float](repeating: 0, count: 3 * 5 * 6)
            var labels: [Int32] = []
            for (b, g) in rows.enumerated() {
                for t in 0..<5 {
                    expected[(b * 5 + t) * 6 + (g + t) % 6] = 1
                    labels.append(Int32((g + 1 + t) % 6))
                }
            }
            XCTAssertEqual(batch.x, expected)
            XCTAssertEqual(batch.targets, .classIds(labels))
            XCTAssertEqual(ds.decode([0, 1, 5]), "abf")
        }
    }

    func testBigEndianFloatsAndRegressionTargets() throws {
        for options in modes {
            let ds = try TensorDataset.open(path: Fixture.path("bigendian.h5"), options: options)
            XCTAssertEqual(ds.targetKind, .sequenceValues(outputs: 3))
            let rows = [9, 0, 4]
            let batch = try ds.read(rows: rows)
            XCTAssertEqual(batch.x, Fixture.features(rows: rows, steps: 4, inputs: 2))
            XCTAssertEqual(batch.targets, .values(rows.flatMap { g in (0..<3).map { Fixture.target(g, 0, $0) } }))
        }
        let x = try HDF5File.open(Fixture.path("bigendian.h5")).root().openDataset("X")
        XCTAssertTrue(x.typeInfo.isBigEndian)
        XCTAssertEqual(x.typeInfo.description, "float32 (big-endian)")
    }

    func testFloat16FeaturesAndPerStepFloatTargets() throws {
        for options in modes {
            let ds = try TensorDataset.open(path: Fixture.path("float16.h5"), options: options)
            XCTAssertEqual(ds.targetKind, .stepValues(outputs: 2))
            let rows = [3, 2, 7]
            let batch = try ds.read(rows: rows)
            XCTAssertEqual(batch.x, Fixture.features(rows: rows, steps: 4, inputs: 2))
            XCTAssertEqual(batch.targets, .values(rows.flatMap { g in (0..<4).flatMap { t in (0..<2).map { Fixture.target(g, t, $0) } } }))
        }
    }

    func testSeveralFilesConcatenateInOrder() throws {
        let paths = [Fixture.path("chunked_gzip.h5"), Fixture.path("chunked_gzip_part2.h5")]
        for options in modes {
            let ds = try TensorDataset.open(paths: paths, options: options)
            XCTAssertEqual(ds.count, 27)
            XCTAssertEqual(ds.files.map { $0.rows }, [20, 7])
            // Unsorted, crossing the file boundary, with a repeat.
            let rows = [26, 19, 20, 2, 26, 21, 0]
            let batch = try ds.read(rows: rows)
            XCTAssertEqual(batch.x, Fixture.features(rows: rows, steps: 6, inputs: 3))
            XCTAssertEqual(batch.targets, .classIds(rows.map { Int32($0 % 3) }))
            // Into a reused batch.
            var reused = batch
            try ds.read(rows: [1, 22], into: &reused)
            XCTAssertEqual(reused.x, Fixture.features(rows: [1, 22], steps: 6, inputs: 3))
        }
    }

    func testLongRandomReadsFromDiskMatchPreloaded() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("big.h5").path
        try SyntheticData.random(count: 3000, steps: 4, features: 3, classes: 4, seed: 9).write(to: path)
        let memory = try TensorDataset.open(path: path)
        let disk = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0))
        XCTAssertEqual(memory.preloaded, [true]); XCTAssertEqual(disk.preloaded, [false])
        // More than maxRunsPerRead runs, with some contiguous stretches.
        let plan = try EpochPlan(sampleCount: 3000, batchSize: 1000, shuffle: true, seed: 3)
        var rows = plan.epoch(0).batch(step: 0)
        rows += Array(100..<140)
        XCTAssertEqual(try disk.read(rows: rows), try memory.read(rows: rows))
    }
}
