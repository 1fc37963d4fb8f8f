// The optional `/lengths` dataset (variable-length sequences) and token ids delivered as ids
// (for the gather/embedding input of RNNCore) rather than one-hot rows; bad lengths get one
// DataError naming the file and dataset.

import XCTest
import RNNHDF5
@testable import RNNData

final class LengthsAndTokenIdsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// Token file N = 4, T = 5, V = 7 with `extra` written next to X and Y.
    func writeFile(_ name: String, lengthsName: String = "lengths", _ extra: (HDF5Group) throws -> Void) throws -> String {
        let path = dir.appendingPathComponent(name).path
        let file = try HDF5File.create(path)
        let root = try file.root()
        let x = try root.writeDataset("X", shape: [4, 5], values: (0..<20).map { Int32($0 % 7) })
        try x.setAttribute("vocab_size", Int64(7))
        _ = try root.writeDataset("Y", shape: [4], values: [Int64(0), 1, 0, 1])
        try extra(root)
        try file.close()
        return path
    }

    func testLengthsAreReadIntoEveryBatchInBatchOrder() throws {
        let path = try writeFile("ok.h5") { root in _ = try root.writeDataset("lengths", shape: [4], values: [Int64(5), 1, 3, 2]) }
        let data = try TensorDataset.open(path: path, options: TensorDatasetOptions(tokenIds: true))
        XCTAssertTrue(data.hasLengths)
        XCTAssertTrue(data.deliversTokenIds)
        XCTAssertEqual(data.sampleElements, 5)
        XCTAssertEqual(data.allLengths(), [5, 1, 3, 2])
        let batch = try data.read(rows: [2, 0, 3])
        XCTAssertEqual(batch.lengths, [3, 5, 2])
        XCTAssertEqual(batch.x, [3, 4, 5, 6, 0, 0, 1, 2, 3, 4, 1, 2, 3, 4, 5].map { Float($0) })
        // One-hot delivery is unchanged without the option; the lengths come along.
        let oneHot = try TensorDataset.open(path: path).read(rows: [1])
        XCTAssertEqual(oneHot.x.count, 5 * 7)
        XCTAssertEqual(oneHot.x[5], 1)  // step 0 holds id 5
        XCTAssertEqual(oneHot.lengths, [1])
        // --lengths-name: another name, and a file without lengths has none.
        let renamed = try writeFile("renamed.h5") { root in _ = try root.writeDataset("len", shape: [4], values: [Int32(5), 5, 5, 5]) }
        XCTAssertFalse(try TensorDataset.open(path: renamed).hasLengths)
        XCTAssertEqual(try TensorDataset.open(path: renamed, options: TensorDatasetOptions(lengthsName: "len")).read(rows: [3]).lengths, [5])
        let report = try DatasetInspector.report(path: path)
        XCTAssertTrue(report.contains("lengths: 'lengths' in [1, 5], mean 2.8 of T = 5 (45.0% padding)"), report)
    }

    func testBadLengthsGetOneClearError() throws {
        let outside = try writeFile("outside.h5") { root in _ = try root.writeDataset("lengths", shape: [4], values: [Int64(5), 0, 3, 2]) }
        assertDataError(.lengthOutOfRange, file: "outside.h5", mentions: ["'lengths'", "[1, T = 5]", "0 at sample 1"]) {
            try TensorDataset.open(path: outside)
        }
        let long = try writeFile("long.h5") { root in _ = try root.writeDataset("lengths", shape: [4], values: [Int64(5), 6, 3, 2]) }
        assertDataError(.lengthOutOfRange, file: "long.h5", mentions: ["6 at sample 1"]) { try TensorDataset.open(path: long) }
        let count = try writeFile("count.h5") { root in _ = try root.writeDataset("lengths", shape: [3], values: [Int64(5), 1, 3]) }
        assertDataError(.countMismatch, file: "count.h5", mentions: ["'lengths'", "N = 4", "N = 3"]) { try TensorDataset.open(path: count) }
        let floats = try writeFile("float.h5") { root in _ = try root.writeDataset("lengths", shape: [4], values: [Float(5), 1, 3, 2]) }
        assertDataError(.unsupportedType, file: "float.h5", mentions: ["'lengths'", "integer sequence lengths"]) { try TensorDataset.open(path: floats) }
        let rank = try writeFile("rank.h5") { root in _ = try root.writeDataset("lengths", shape: [4, 1], values: [Int64(5), 1, 3, 2]) }
        assertDataError(.rankMismatch, file: "rank.h5", mentions: ["rank 1 (N)"]) { try TensorDataset.open(path: rank) }
        let with = try writeFile("with.h5") { root in _ = try root.writeDataset("lengths", shape: [4], values: [Int64(5), 1, 3, 2]) }
        let without = try writeFile("without.h5") { _ in }
        assertDataError(.filesDisagree, file: "without.h5", mentions: ["lengths present", "no lengths dataset"]) {
            try TensorDataset.open(paths: [with, without])
        }
    }

    /// Per-step class ids past a sequence's length are padding: any value (e.g. -100) passes;
    /// inside the real steps the usual check applies.
    func testPerStepTargetsPastTheLengthMayHoldAnything() throws {
        func write(_ name: String, labels: [Int64]) throws -> String {
            let path = dir.appendingPathComponent(name).path
            let file = try HDF5File.create(path)
            let root = try file.root()
            try root.writeDataset("X", shape: [2, 3], values: [Int32(1), 2, 0, 3, 0, 0]).setAttribute("vocab_size", Int64(4))
            _ = try root.writeDataset("Y", shape: [2, 3], values: labels)
            _ = try root.writeDataset("lengths", shape: [2], values: [Int64(2), 1])
            try root.setAttribute("classes", Int64(4))
            try file.close()
            return path
        }
        let padded = try TensorDataset.open(path: try write("padded.h5", labels: [2, 3, -100, 1, -100, -100]))
        XCTAssertEqual(padded.targetKind.outputSize, 4)
        XCTAssertEqual(try padded.read(rows: [1, 0]).targets, .classIds([1, -100, -100, 2, 3, -100]))
        assertDataError(.labelOutOfRange, file: "real.h5", mentions: ["-100 at sample 0, step 1"]) {
            try TensorDataset.open(path: try write("real.h5", labels: [2, -100, 0, 1, 0, 0]))
        }
        XCTAssertTrue(try DatasetInspector.report(path: dir.appendingPathComponent("padded.h5").path).contains("class histogram"))
    }

    func testVariableLengthTokenGeneratorPadsAtTheEnd() throws {
        let contents = SyntheticData.variableLengthTokens(count: 200, minLength: 5, maxLength: 40, vocabularySize: 50, classes: 4, seed: 1)
        let path = dir.appendingPathComponent("vl.h5").path
        try contents.write(to: path)
        let data = try TensorDataset.open(path: path, options: TensorDatasetOptions(tokenIds: true))
        let lengths = data.allLengths()!
        XCTAssertEqual(lengths.min(), 5)
        XCTAssertEqual(lengths.max(), 40)
        let batch = try data.read(rows: Array(0..<200))
        for b in 0..<200 {
            let n = Int(lengths[b])
            XCTAssertTrue(batch.x[(b * 40)..<(b * 40 + n)].allSatisfy { $0 != 0 }, "real steps never hold the padding id")
            XCTAssertTrue(batch.x[(b * 40 + n)..<(b * 40 + 40)].allSatisfy { $0 == 0 }, "padding at the end")
        }
    }
}
