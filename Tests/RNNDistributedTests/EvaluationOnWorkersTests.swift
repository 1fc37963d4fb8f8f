// Validation runs on the workers (EVALUATE / EVALUATION): each evaluates a contiguous share of
// whole batches and the coordinator adds the batch sums in order. The result must have the bits
// of one evaluator going through every batch with the same parameters, for any number of
// workers, also with more workers than batches, with --val files and with --val-split.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import XCTest

final class EvaluationOnWorkersTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("evalworkers") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    /// The loss and accuracy of `parameters` on `rows` of `file` by one evaluator, batch by batch.
    func singleEvaluator(_ config: TrainingConfig, parameters: [Float], file: String, rows: [Int]? = nil) throws -> EvalResult {
        let network = try RNNNetwork(config: config.model, threads: 1)
        let data = try TensorDataset.open(paths: [file], options: config.datasetOptions())
        let total = try network.evaluateBatches(parameters: parameters, on: data, rows: rows).reduce(LossStats(), +)
        return EvalResult(loss: total.meanLoss, accuracy: total.accuracy)
    }

    func testValidationFilesOnOneTwoFourAndSixWorkersHaveTheBitsOfOneEvaluator() throws {
        try SyntheticData.random(count: 96, steps: 5, features: 3, classes: 3, seed: 21).write(to: path("train.h5"))
        // 1,200 rows: four batches of 256 and one of 176. Two workers take 3 + 2 batches, six
        // leave one without a batch; a row given twice or missed would change the loss.
        try SyntheticData.random(count: 1200, steps: 5, features: 3, classes: 3, seed: 22).write(to: path("val.h5"))
        let config = try TrainingConfig.forDataset(files: [path("train.h5")], valFiles: [path("val.h5")], cell: .gru, hiddenSize: 10,
                                                   layers: 1, optimizer: OptimizerConfig(lr: 0.02), batchSize: 16, epochs: 2, seed: 3, shuffle: false)
        for world in [1, 2, 4, 6] {
            let run = try trainInProcess(config, world: world)
            let v = try XCTUnwrap(run.summary.validation)
            let expected = try singleEvaluator(config, parameters: run.summary.parameters, file: path("val.h5"))
            XCTAssertEqual(v.loss.bitPattern, expected.loss.bitPattern, "W=\(world): \(v.loss) vs one evaluator's \(expected.loss)")
            XCTAssertEqual(v.accuracy, expected.accuracy, "W=\(world)")
            XCTAssertTrue(v.loss.isFinite && v.loss > 0)
        }
    }

    func testValidationSplitRowsOnTwoWorkersHaveTheBitsOfOneEvaluator() throws {
        try SyntheticData.random(count: 900, steps: 4, features: 3, classes: 3, seed: 23).write(to: path("all.h5"))
        var config = try TrainingConfig.forDataset(files: [path("all.h5")], cell: .lstm, hiddenSize: 8, layers: 1,
                                                   optimizer: OptimizerConfig(lr: 0.02), batchSize: 64, epochs: 1, seed: 4, shuffle: false, maxSteps: 3)
        config.valSplit = 0.6  // 540 held-out rows: 3 batches, shared 2 + 1
        try config.validate()
        let run = try trainInProcess(config, world: 2)
        let split = try ValidationSplit(count: 900, fraction: 0.6, seed: 4)
        let expected = try singleEvaluator(config, parameters: run.summary.parameters, file: path("all.h5"), rows: split.validation)
        let v = try XCTUnwrap(run.summary.validation)
        XCTAssertEqual(v.loss.bitPattern, expected.loss.bitPattern, "\(v.loss) vs \(expected.loss)")
        XCTAssertEqual(v.accuracy, expected.accuracy)
    }
}
