// --accumulate N: an optimizer step over N consecutive batches of B, computed B rows at a time
// with one all-reduce per optimizer step, equals one step over N x B samples: with W = 1 and
// W = 3 workers, and the replicas stay bitwise equal.
import Foundation
import RNNCore
import RNNData
import RNNDistributed
import XCTest

final class AccumulationTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("accum") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testAccumulateFourBatchesOfEightEqualsBatchThirtyTwo() throws {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        // 100 samples: steps of 32, 32, 32 and 4 rows per epoch.
        try SyntheticData.random(count: 100, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        func config(batch: Int, accumulate: Int?) throws -> TrainingConfig {
            var c = try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 12, layers: 2,
                                                  optimizer: OptimizerConfig(kind: .adamw, lr: 0.01, clipNorm: 1), batchSize: batch,
                                                  epochs: 3, seed: 5, shuffle: true, hashEvery: 3)
            c.accumulate = accumulate
            try c.validate()
            return c
        }
        let accumulated = try config(batch: 8, accumulate: 4)
        XCTAssertEqual(accumulated.rowsPerOptimizerStep, 32)
        XCTAssertEqual(accumulated.accumulationChunk(rows: 32), 8)
        let big = try trainInProcess(try config(batch: 32, accumulate: nil), world: 1)
        XCTAssertEqual(big.summary.globalSteps, 12)
        for world in [1, 3] {
            let run = try trainInProcess(accumulated, world: world, configureWorker: { _, options in
                if world == 3 { options.dataBind = "tcp://127.0.0.1:*" }
            })
            // One all-reduce per optimizer step: 12 steps, each worker applied 12 updates.
            XCTAssertEqual(run.summary.globalSteps, 12)
            for w in run.workers {
                XCTAssertEqual(w.steps, 12)
                XCTAssertTrue(w.parameters == run.workers[0].parameters, "W=\(world): rank \(w.rank) differs bitwise from rank 0")
            }
            let diff = maxAbsDifference(run.summary.parameters, big.summary.parameters)
            print("--accumulate 4 --batch-size 8, W=\(world) vs --batch-size 32, W=1: max |dp| = \(diff)")
            XCTAssertLessThanOrEqual(diff, 1e-5)
            XCTAssertEqual(run.summary.train.loss, big.summary.train.loss, accuracy: 1e-5)
        }
        var bad = accumulated
        bad.accumulate = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--accumulate"), "\($0)") }
    }
}
