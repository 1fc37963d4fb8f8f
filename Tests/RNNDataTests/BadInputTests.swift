// Every bad input gives a DataError naming the file, the dataset, what was expected and found.

import XCTest
import RNNHDF5
@testable import RNNData

final class BadInputTests: XCTestCase {
    func open(_ name: String, _ options: TensorDatasetOptions = TensorDatasetOptions()) throws -> TensorDataset {
        try TensorDataset.open(path: Fixture.path(name), options: options)
    }

    func testMissingFile() {
        assertDataError(.fileNotFound, file: "/nonexistent/none.h5", mentions: ["no such file"]) {
            try TensorDataset.open(path: "/nonexistent/none.h5")
        }
    }

    func testNotAnHDF5File() {
        assertDataError(.notHDF5, file: "bad_not_hdf5.h5", mentions: ["expected an HDF5 file", "without the HDF5 signature"]) { try open("bad_not_hdf5.h5") }
    }

    func testTruncatedFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixture.path("chunked_gzip.h5")))
        let path = dir.appendingPathComponent("truncated.h5").path
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        assertDataError(.notHDF5, file: "truncated.h5", mentions: ["damaged or truncated", "HDF5 error stack"]) {
            try TensorDataset.open(path: path)
        }
    }

    func testMissingTargetsDataset() {
        assertDataError(.missingDataset, file: "bad_missing_y.h5", mentions: ["'Y'", "--y-name", "'labels'"]) { try open("bad_missing_y.h5") }
        assertDataError(.missingDataset, file: "chunked_gzip.h5", mentions: ["'feats'", "--x-name"]) {
            try open("chunked_gzip.h5", TensorDatasetOptions(xName: "feats"))
        }
    }

    func testRankMismatch() {
        assertDataError(.rankMismatch, file: "bad_rank.h5", mentions: ["'X'", "rank 3 (N, T, I)", "rank 2, shape (4, 6)"]) { try open("bad_rank.h5") }
    }

    func testCountMismatch() {
        assertDataError(.countMismatch, file: "bad_count.h5", mentions: ["'Y'", "N = 10", "N = 9"]) { try open("bad_count.h5") }
    }

    func testPerStepTargetsWithWrongT() {
        assertDataError(.shapeMismatch, file: "bad_step_t.h5", mentions: ["'Y'", "T = 4", "T = 3"]) { try open("bad_step_t.h5") }
    }

    func testUnsupportedDtype() {
        assertDataError(.unsupportedType, file: "bad_dtype.h5", mentions: ["'X'", "float16/float32/float64", "string"]) { try open("bad_dtype.h5") }
    }

    func testLabelOutsideClasses() {
        assertDataError(.labelOutOfRange, file: "bad_label.h5", mentions: ["'Y'", "[0, 3)", "5 at sample 4"]) { try open("bad_label.h5") }
    }

    func testNaNInFeaturesAtOpenAndOnRead() throws {
        assertDataError(.nonFinite, file: "bad_nan.h5", mentions: ["'X'", "finite features", "nan at sample 2, step 1, feature 0"]) { try open("bad_nan.h5") }
        // Without the scan at open, reading the bad row from disk still fails; other rows read.
        let lazy = try open("bad_nan.h5", TensorDatasetOptions(memoryBudgetBytes: 0, validateValues: false))
        XCTAssertNoThrow(try lazy.read(rows: [0, 1, 3]))
        assertDataError(.nonFinite, file: "bad_nan.h5", mentions: ["sample 2, step 1, feature 0"]) { try lazy.read(rows: [4, 2]) }
    }

    func testInfinityInTargets() {
        assertDataError(.nonFinite, file: "bad_inf_target.h5", mentions: ["'Y'", "finite targets", "inf at sample 3, output 1"]) { try open("bad_inf_target.h5") }
    }

    func testEmptyDataset() {
        assertDataError(.empty, file: "bad_empty.h5", mentions: ["'X'", "at least one sample", "(0, 3, 2)"]) { try open("bad_empty.h5") }
    }

    func testTokenOutOfRangeAndMissingVocabSize() {
        assertDataError(.tokenOutOfRange, file: "bad_token.h5", mentions: ["[0, 6)", "9 at sample 1, step 2"]) { try open("bad_token.h5") }
        assertDataError(.badAttribute, file: "bad_no_vocab_size.h5", mentions: ["vocab_size"]) { try open("bad_no_vocab_size.h5") }
    }

    func testFilesDisagreeOnStepsOrKind() throws {
        assertDataError(.filesDisagree, file: "bad_other_t.h5", mentions: ["T = 6", "T = 7", "chunked_gzip.h5"]) {
            try TensorDataset.open(paths: [Fixture.path("chunked_gzip.h5"), Fixture.path("bad_other_t.h5")])
        }
        // Same T and I, different target kind (files written through RNNData).
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let classes = dir.appendingPathComponent("classes.h5").path
        let values = dir.appendingPathComponent("values.h5").path
        try SyntheticData.random(count: 4, steps: 3, features: 2, classes: 2, seed: 1).write(to: classes)
        try DatasetContents(x: .dense([Float](repeating: 0.5, count: 12), count: 2, steps: 3, features: 2),
                            y: .values([1, 2, 3, 4], shape: [2, 2])).write(to: values)
        assertDataError(.filesDisagree, file: "values.h5", mentions: ["target kind", "class ids (N)", "float targets (N, O)", "classes.h5"]) {
            try TensorDataset.open(paths: [classes, values])
        }
    }

    func testRowOutsideDataset() throws {
        let ds = try open("chunked_gzip.h5")
        assertDataError(.badRequest, file: "chunked_gzip.h5", mentions: ["0..<20", "20"]) { try ds.read(rows: [3, 20]) }
    }

    func testBadFileCreatedThroughRNNHDF5() throws {
        // A float X whose Y is a float vector of rank 1: neither class ids nor (N, O) targets.
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("rank1_float_y.h5").path
        let file = try HDF5File.create(path)
        let root = try file.root()
        try root.writeDataset("X", shape: [2, 1, 1], values: [Float(1), 2])
        try root.writeDataset("Y", shape: [2], values: [Float(0.5), 1.5])
        try file.close()
        assertDataError(.rankMismatch, file: "rank1_float_y.h5", mentions: ["'Y'", "(N, O)", "rank 1"]) { try TensorDataset.open(path: path) }
    }
}
