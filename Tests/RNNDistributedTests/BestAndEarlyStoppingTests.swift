// --keep-best, --early-stopping and --val-split in real training (coordinator and workers on
// threads): best.h5 holds the epoch with the lowest validation loss and survives --keep,
// training stops P epochs after it, and a held-out split trains W = 3 like W = 1.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNDistributed
import XCTest

final class BestAndEarlyStoppingTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("best") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func dataPath() throws -> String {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        if !FileManager.default.fileExists(atPath: path) {
            try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        }
        return path
    }

    func epochRecords(_ runDir: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: (runDir as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
            .filter { $0["kind"] as? String == "epoch" }
    }

    func testBestCheckpointIsTheLowestValidationLossAndEarlyStoppingEndsTheRun() throws {
        let path = try dataPath()
        // Validation on a held-out 30 %; an lr far too high for Adam makes the validation loss turn up.
        var config = try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 12, layers: 1,
                                                   optimizer: OptimizerConfig(kind: .adam, lr: 0.3), batchSize: 8, epochs: 40, seed: 5,
                                                   shuffle: true, hashEvery: 3)
        config.valSplit = 0.3
        config.keepBest = .valLoss
        config.earlyStopping = 3
        try config.validate()
        let runDir = (dir as NSString).appendingPathComponent("run")
        let run = try trainInProcess(config, world: 2, checkpointDir: runDir, checkpointEvery: 5,
                                     configureCoordinator: { $0.keep = 1 })
        let epochs = try epochRecords(runDir)
        let losses = epochs.map { $0["val_loss"] as! Double }
        let bestIndex = losses.indices.min { losses[$0] < losses[$1] }!
        print("val losses: \(losses.map { String(format: "%.3f", $0) }.joined(separator: " ")); best epoch \(bestIndex + 1)")
        XCTAssertTrue(run.summary.stoppedEarly, "the validation loss never turned up: \(losses)")
        XCTAssertEqual(run.summary.best?.bestEpoch, bestIndex + 1)
        XCTAssertEqual(run.summary.epochsCompleted, bestIndex + 1 + 3, "stops 3 epochs after the best")
        XCTAssertLessThan(run.summary.epochsCompleted, 40)
        // best.h5 is the state at the best epoch's end and is still there beside the one kept checkpoint.
        let table = ParameterTable(config: config.model)
        let best = try CheckpointStore.read(path: (runDir as NSString).appendingPathComponent("best.h5"), table: table)
        XCTAssertEqual(best.metadata.globalStep, epochs[bestIndex]["global_step"] as? Int)
        let files = try FileManager.default.contentsOfDirectory(atPath: runDir).filter { $0.hasSuffix(".h5") }.sorted()
        XCTAssertEqual(files, ["best.h5", "ckpt-\(run.summary.globalSteps).h5"])
        XCTAssertNotEqual(best.parameters, run.summary.parameters)
        XCTAssertEqual(epochs.last?["best_epoch"] as? Int, bestIndex + 1)
    }

    func testValidationSplitIsSeededDisjointAndTrainsThreeWorkersLikeOne() throws {
        let a = try ValidationSplit(count: 50, fraction: 0.2, seed: 5)
        XCTAssertEqual(a, try ValidationSplit(count: 50, fraction: 0.2, seed: 5))
        XCTAssertNotEqual(a, try ValidationSplit(count: 50, fraction: 0.2, seed: 6))
        XCTAssertEqual(a.validation.count, 10)
        XCTAssertEqual(Set(a.train).union(a.validation), Set(0..<50))
        XCTAssertTrue(Set(a.train).isDisjoint(with: a.validation))
        XCTAssertThrowsError(try ValidationSplit(count: 3, fraction: 0.1, seed: 0))  // rounds to 0 held out

        var config = try TrainingConfig.forDataset(files: [try dataPath()], cell: .gru, hiddenSize: 10, layers: 2,
                                                   optimizer: OptimizerConfig(lr: 0.01), batchSize: 8, epochs: 3, seed: 5,
                                                   shuffle: true, hashEvery: 3)
        config.valSplit = 0.2
        try config.validate()
        let one = try trainInProcess(config, world: 1)
        let three = try trainInProcess(config, world: 3, configureWorker: { _, options in options.dataBind = "tcp://127.0.0.1:*" })
        XCTAssertEqual(one.summary.globalSteps, 3 * 5)  // 40 training rows, batch 8
        for w in three.workers { XCTAssertTrue(w.parameters == three.workers[0].parameters, "rank \(w.rank) differs bitwise") }
        let diff = maxAbsDifference(three.summary.parameters, one.summary.parameters)
        print("--val-split 0.2 W=3: max |p_3 - p_1| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        XCTAssertEqual(three.summary.validation!.loss, one.summary.validation!.loss, accuracy: 1e-5)
    }

    func testValidationChoicesWithoutValidationDataAreRefused() throws {
        var config = try TrainingConfig.forDataset(files: [try dataPath()], cell: .gru, hiddenSize: 4, layers: 1,
                                                   optimizer: OptimizerConfig(), batchSize: 8, epochs: 1, seed: 0, shuffle: false)
        config.keepBest = .valLoss
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("--keep-best val_loss needs validation data"), "\($0)") }
        config.keepBest = nil
        config.earlyStopping = 2
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("--early-stopping needs validation data"), "\($0)") }
        config.earlyStopping = nil
        config.valSplit = 0.1
        config.valFiles = [try dataPath()]
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("--val-split"), "\($0)") }
    }
}
