// `rnn-coord start --compress bf16` with real worker processes: digits still reaches 97 % test
// accuracy (computed here from the checkpoint), the run is reproducible bit for bit, replicas
// stay equal (the coordinator's hash check is on), and the result differs from the float32 run
// by bf16 rounding, not by float summation order alone. A bad value is one line and exit 64.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import XCTest

final class CompressionTests: XCTestCase {
    var dirs: [String] = []
    let train = repositoryRoot.appendingPathComponent("datasets/digits/digits-train.h5").path
    let test = repositoryRoot.appendingPathComponent("datasets/digits/digits-test.h5").path
    let model = ModelConfig(cell: .lstm, inputSize: 8, hiddenSize: 64, layers: 1, outputSize: 10)

    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }

    /// The README's demo (LSTM H=64, batch 32, lr 0.01, 15 epochs): final parameters.
    func train(workers: Int, _ extra: [String], steps: Int = 675) throws -> (parameters: [Float], configYAML: String) {
        let dir = try makeTemporaryDirectory("bf16")
        dirs.append(dir)
        let coord = try ChildProcess("rnn-coord", ["start", "--data", train, "--val", test, "--cell", "lstm", "--hidden", "64",
                                                   "--batch-size", "32", "--epochs", "15", "--lr", "0.01", "--shuffle",
                                                   "--local-workers", "\(workers)", "--bind", "tcp://127.0.0.1:*",
                                                   "--checkpoint-dir", dir] + (steps == 675 ? [] : ["--max-steps", "\(steps)"]) + extra)
        XCTAssertEqual(coord.wait(timeout: 300), 0, coord.output)
        let ckpt = try CheckpointStore.read(path: (dir as NSString).appendingPathComponent("ckpt-\(steps).h5"), table: ParameterTable(config: model))
        let yaml = (try? String(contentsOfFile: (dir as NSString).appendingPathComponent("config.yaml"), encoding: .utf8)) ?? ""
        return (ckpt.parameters, yaml)
    }

    func accuracy(_ parameters: [Float]) throws -> Double {
        let data = try TensorDataset.open(path: test)
        let batch = try data.read(rows: Array(0..<data.count))
        guard case .classIds(let ids) = batch.targets else { XCTFail("digits targets are not classes"); return 0 }
        let network = try RNNNetwork(config: model)
        return try network.evaluate(parameters: parameters, input: batch.x, batch: batch.count, steps: data.steps, targets: .classIds(ids)).accuracy
    }

    func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    func testBF16OnTheWireStillTrainsDigitsAndIsReproducible() throws {
        let (bf16, yaml) = try train(workers: 2, ["--compress", "bf16"])
        let acc = try accuracy(bf16) * 100
        XCTAssertGreaterThanOrEqual(acc, 97, "digits with --compress bf16, 2 workers: test accuracy \(acc)%")
        XCTAssertTrue(yaml.split(separator: "\n").contains("compress: bf16"), "config.yaml keeps the flag (a resumed run compresses too): \(yaml)")
        let (again, _) = try train(workers: 2, ["--compress", "bf16"])
        XCTAssertTrue(again.elementsEqual(bf16) { $0.bitPattern == $1.bitPattern }, "two bf16 runs with the same seed and W give the same bits")

        print("bf16: test accuracy \(String(format: "%.2f", acc))% after 15 epochs with 2 workers")
    }

    /// After 3 steps (before Adam's chaos amplifies every difference): W = 2 with float32
    /// matches W = 1 to float summation order; with bf16 it differs by much more (the
    /// gradients were rounded), yet stays close. With one worker nothing travels, so
    /// --compress changes nothing.
    func testBF16ChangesWInvarianceToRoundingOnly() throws {
        let (single, _) = try train(workers: 1, [], steps: 3)
        let (float32, _) = try train(workers: 2, [], steps: 3)
        let (bf16, _) = try train(workers: 2, ["--compress", "bf16"], steps: 3)
        let (bf16Single, _) = try train(workers: 1, ["--compress", "bf16"], steps: 3)
        let orderOnly = maxAbsDifference(float32, single)
        let rounding = maxAbsDifference(bf16, single)
        XCTAssertLessThan(orderOnly, 1e-5, "float32: W=2 equals W=1 up to summation order")
        XCTAssertGreaterThan(rounding, 10 * max(orderOnly, 1e-9), "bf16 changes more than summation order (fp32 \(orderOnly), bf16 \(rounding))")
        XCTAssertLessThan(rounding, 0.1, "bf16 stays close: 3 Adam steps of lr 0.01 move each parameter by at most ~0.03")
        XCTAssertTrue(bf16Single.elementsEqual(single) { $0.bitPattern == $1.bitPattern }, "one worker sends nothing: --compress changes nothing")
        print("bf16 after 3 steps: max |W2 - W1| float32 \(orderOnly), bf16 \(rounding)")
    }

    func testBadCompressionIsOneLineAndNonZero() throws {
        let coord = try ChildProcess("rnn-coord", ["start", "--data", train, "--local-workers", "1", "--compress", "fp8"])
        let status = coord.wait(timeout: 30)
        XCTAssertNotNil(status)
        XCTAssertNotEqual(status, 0)
        let lines = coord.output.split(separator: "\n").filter { $0.contains("error") }
        XCTAssertEqual(lines.count, 1, coord.output)
        XCTAssertTrue(coord.output.contains("fp8") && coord.output.contains("bf16"), coord.output)
    }
}
