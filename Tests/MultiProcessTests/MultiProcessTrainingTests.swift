// The built rnn-coord and rnn-worker executables training across real processes on localhost.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import XCTest

final class MultiProcessTrainingTests: XCTestCase {
    var dir = ""
    let train = repositoryRoot.appendingPathComponent("datasets/digits/digits-train.h5").path
    let test = repositoryRoot.appendingPathComponent("datasets/digits/digits-test.h5").path

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("mp") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func digitsArguments(_ extra: [String]) -> [String] {
        ["start", "--data", train, "--val", test, "--cell", "lstm", "--hidden", "64", "--batch-size", "32",
         "--epochs", "10", "--lr", "0.01", "--shuffle", "--seed", "3", "--bind", "tcp://127.0.0.1:*"] + extra
    }

    /// Accuracy of a checkpoint's parameters on the test file, computed here (not by rnn-coord).
    func testAccuracy(of checkpointPath: String) throws -> Double {
        let model = ModelConfig(cell: .lstm, inputSize: 8, hiddenSize: 64, layers: 1, outputSize: 10)
        let table = ParameterTable(config: model)
        let ckpt = try CheckpointStore.read(path: checkpointPath, table: table)
        let data = try TensorDataset.open(path: test)
        let batch = try data.read(rows: Array(0..<data.count))
        guard case .classIds(let ids) = batch.targets else { XCTFail("digits targets are not classes"); return 0 }
        let network = try RNNNetwork(config: model)
        let stats = try network.evaluate(parameters: ckpt.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                         targets: .classIds(ids))
        return stats.accuracy
    }

    func testLocalWorkersTrainDigitsLSTMToNinetyPercent() throws {
        let ckptDir = (dir as NSString).appendingPathComponent("ckpt")
        let coord = try ChildProcess("rnn-coord", digitsArguments(["--local-workers", "2", "--checkpoint-dir", ckptDir,
                                                                   "--checkpoint-every", "100"]))
        let status = coord.wait(timeout: 300)
        let out = coord.output
        XCTAssertEqual(status, 0, out)
        let done = try XCTUnwrap(out.split(separator: "\n").last { $0.hasPrefix("Done:") }.map(String.init), out)
        let valAccuracy = try XCTUnwrap(percentage(after: "val accuracy", in: done), done)
        XCTAssertGreaterThanOrEqual(valAccuracy, 90, done)
        XCTAssertTrue(out.contains("Epoch [10/10], Loss: "), out)
        XCTAssertEqual(out.components(separatedBy: "joined (").count - 1, 2, "two workers joined")
        // 1437 samples / 32 = 45 steps per epoch, 450 in all: checkpoints at 300, 400 and 450 are kept.
        let names = try FileManager.default.contentsOfDirectory(atPath: ckptDir).filter { $0.hasSuffix(".h5") }.sorted()
        XCTAssertEqual(names, ["ckpt-300.h5", "ckpt-400.h5", "ckpt-450.h5"])
        let accuracy = try testAccuracy(of: (ckptDir as NSString).appendingPathComponent("ckpt-450.h5"))
        XCTAssertEqual(accuracy * 100, valAccuracy, accuracy: 0.01, "the final checkpoint holds the trained model")
        print("digits LSTM, 2 local worker processes: test accuracy \(valAccuracy)%")
    }

    /// Workers started separately, as on other hosts: the coordinator waits for --workers 2.
    func testSeparatelyStartedWorkersJoinTheCoordinator() throws {
        let ckptDir = (dir as NSString).appendingPathComponent("ckpt")
        let coord = try ChildProcess("rnn-coord", digitsArguments(["--workers", "2", "--checkpoint-dir", ckptDir,
                                                                   "--max-steps", "60", "--join-timeout", "60"]))
        let listening = try XCTUnwrap(coord.waitForLine(containing: "listening on", timeout: 60), coord.output)
        let endpoint = try XCTUnwrap(listening.split(separator: " ").first { $0.hasPrefix("tcp://") }.map(String.init))
        let workers = try (0..<2).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint]) }
        XCTAssertEqual(coord.wait(timeout: 120), 0, coord.output)
        for w in workers {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("done after 60 steps"), w.output)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: (ckptDir as NSString).appendingPathComponent("ckpt-60.h5")))
    }

    func testBadDatasetGivesAClearErrorAndNonZeroExit() throws {
        let bogus = (dir as NSString).appendingPathComponent("not-hdf5.h5")
        try Data("this is not an HDF5 file\n".utf8).write(to: URL(fileURLWithPath: bogus))
        let coord = try ChildProcess("rnn-coord", ["start", "--data", bogus, "--local-workers", "1"])
        let status = coord.wait(timeout: 60)
        XCTAssertNotNil(status)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(coord.output.contains(bogus) && coord.output.lowercased().contains("hdf5"), coord.output)
    }

    func testBadFlagsGiveAOneLineErrorAndHint() throws {
        let coord = try ChildProcess("rnn-coord", ["start", "--data", train, "--workers", "0"])
        XCTAssertNotEqual(coord.wait(timeout: 30), 0)
        XCTAssertTrue(coord.output.contains("'--workers' of at least 1"), coord.output)
        let worker = try ChildProcess("rnn-worker", ["--connect", "localhost:5555"])
        XCTAssertNotEqual(worker.wait(timeout: 30), 0)
        XCTAssertTrue(worker.output.contains("tcp://HOST:PORT"), worker.output)
    }

    /// A worker killed mid-run with --min-workers 2: the coordinator does not hang; within
    /// the heartbeat timeout it declares the rank lost, writes a checkpoint and exits non-zero
    /// naming what was lost; the surviving worker exits non-zero too. (With fewer required
    /// workers the run continues: FaultToleranceTests.)
    func testKilledWorkerBelowMinWorkersEndsTheRunWithACheckpointAndANamedError() throws {
        let ckptDir = (dir as NSString).appendingPathComponent("ckpt")
        let coord = try ChildProcess("rnn-coord", ["start", "--data", train, "--cell", "lstm", "--hidden", "256",
                                                   "--batch-size", "64", "--epochs", "50", "--workers", "2", "--min-workers", "2",
                                                   "--bind", "tcp://127.0.0.1:*", "--heartbeat-timeout", "2", "--log-every", "1",
                                                   "--checkpoint-dir", ckptDir])
        let listening = try XCTUnwrap(coord.waitForLine(containing: "listening on", timeout: 60), coord.output)
        let endpoint = try XCTUnwrap(listening.split(separator: " ").first { $0.hasPrefix("tcp://") }.map(String.init))
        let workers = try (0..<2).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint]) }
        XCTAssertNotNil(coord.waitForLine(containing: "Step [3/", timeout: 60), coord.output)
        workers[1].kill()
        let start = Date()
        let status = coord.wait(timeout: 60)
        XCTAssertNotNil(status, "the coordinator hung after a worker died")
        XCTAssertNotEqual(status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
        let error = try XCTUnwrap(coord.output.split(separator: "\n").first { $0.contains("rnn-coord: error") }, coord.output)
        XCTAssertTrue(error.contains("lost rank") && error.contains("pid \(workers[1].process.processIdentifier)")
                      && error.contains("--min-workers 2") && error.contains("checkpoint"), String(error))
        let saved = try FileManager.default.contentsOfDirectory(atPath: ckptDir).filter { $0.hasPrefix("ckpt-") }
        XCTAssertEqual(saved.count, 1, "one checkpoint of the last completed step: \(saved)")
        let survivor = workers[0].wait(timeout: 30)
        XCTAssertNotNil(survivor, "the surviving worker hung")
        XCTAssertNotEqual(survivor, 0, workers[0].output)
    }
}
