// Issue 15 end to end with the built executables: a variable-length token classification
// (lengths 5-40, padding at the end) trained by 2 local worker processes with a bidirectional
// LSTM over an embedding, then evaluated and predicted with lengths; and bad inputs for the new
// options get one clear line and a non-zero exit.
import Foundation
import RNNData
import RNNHDF5
import XCTest

final class VariableLengthTrainingTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("vl") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    func testBidirectionalEmbeddingLSTMLearnsVariableLengthTokensWithTwoLocalWorkers() throws {
        try SyntheticData.variableLengthTokens(count: 4000, minLength: 5, maxLength: 40, vocabularySize: 100, classes: 4, seed: 1)
            .write(to: path("train.h5"))
        try SyntheticData.variableLengthTokens(count: 1000, minLength: 5, maxLength: 40, vocabularySize: 100, classes: 4, seed: 2)
            .write(to: path("val.h5"))
        let run = path("run")
        // scripts/train_torch_lengths.py with the same data and settings reached 95.9 % (PyTorch 2.15).
        let coord = try ChildProcess("rnn-coord", [
            "start", "--data", path("train.h5"), "--val", path("val.h5"), "--cell", "lstm", "--hidden", "64",
            "--embedding", "32", "--padding-idx", "0", "--bidirectional", "--batch-size", "64", "--epochs", "6",
            "--lr", "0.005", "--shuffle", "--seed", "3", "--local-workers", "2", "--bind", "tcp://127.0.0.1:*",
            "--checkpoint-dir", run])
        XCTAssertEqual(coord.wait(timeout: 300), 0, coord.output)
        let done = try XCTUnwrap(coord.output.split(separator: "\n").last { $0.hasPrefix("Done:") }.map(String.init), coord.output)
        let accuracy = try XCTUnwrap(percentage(after: "val accuracy", in: done), done)
        print("variable-length tokens, bi-LSTM + embedding, 2 local workers: \(done)")
        XCTAssertGreaterThanOrEqual(accuracy, 92, done)
        let config = try String(contentsOfFile: (run as NSString).appendingPathComponent("config.yaml"), encoding: .utf8)
        XCTAssertTrue(config.contains("bidirectional: true") && config.contains("embedding: 32") && config.contains("padding-idx: 0"), config)
        // eval and predict read the lengths too.
        let eval = try ChildProcess("rnn-coord", ["eval", "--checkpoint", run, "--data", path("val.h5")])
        XCTAssertEqual(eval.wait(timeout: 120), 0, eval.output)
        XCTAssertTrue(eval.output.contains(String(format: "Accuracy: %.2f%%", accuracy)), eval.output)
        let predict = try ChildProcess("rnn-coord", ["predict", "--checkpoint", run, "--data", path("val.h5"), "--outputs", path("out.h5")])
        XCTAssertEqual(predict.wait(timeout: 120), 0, predict.output)
        let root = try HDF5File.open(path("out.h5")).root()
        XCTAssertEqual(try root.openDataset("lengths").shape, [1000])
        XCTAssertEqual(try root.openDataset("X").shape, [1000, 40])
    }

    func testBadOptionInputsGiveOneLineAndNonZeroExit() throws {
        try SyntheticData.random(count: 20, steps: 4, features: 3, classes: 2, seed: 1).write(to: path("floats.h5"))
        try SyntheticData.variableLengthTokens(count: 20, minLength: 2, maxLength: 6, vocabularySize: 10, classes: 2, seed: 1)
            .write(to: path("tokens.h5"))
        func failure(_ arguments: [String], mentions text: String, line: UInt = #line) throws {
            let coord = try ChildProcess("rnn-coord", ["start"] + arguments + ["--local-workers", "1", "--bind", "tcp://127.0.0.1:*"])
            let status = coord.wait(timeout: 60)
            XCTAssertNotNil(status, line: line)
            XCTAssertNotEqual(status, 0, coord.output, line: line)
            XCTAssertTrue(coord.output.contains(text), coord.output, line: line)
        }
        try failure(["--data", path("floats.h5"), "--embedding", "8"], mentions: "--embedding needs token ids in X")
        try failure(["--data", path("tokens.h5"), "--embedding", "8", "--padding-idx", "10"], mentions: "--padding-idx must be in [0, 10)")
        try failure(["--data", path("tokens.h5"), "--padding-idx", "1"], mentions: "'--padding-idx' only with '--embedding'")
        try failure(["--data", path("tokens.h5"), "--dropout", "0.5"], mentions: "needs --layers 2 or more")
        try failure(["--data", path("tokens.h5"), "--dropout", "1.5", "--layers", "2"], mentions: "'--dropout' in [0, 1)")
        // A lengths dataset outside [1, T].
        let file = try HDF5File.create(path("badlengths.h5"))
        let root = try file.root()
        _ = try root.writeDataset("X", shape: [2, 3, 1], values: [Float(0), 1, 2, 3, 4, 5])
        _ = try root.writeDataset("Y", shape: [2], values: [Int64(0), 1])
        _ = try root.writeDataset("lengths", shape: [2], values: [Int64(3), 4])
        try file.close()
        try failure(["--data", path("badlengths.h5")], mentions: "expected sequence lengths in [1, T = 3], found 4 at sample 1")
    }
}
