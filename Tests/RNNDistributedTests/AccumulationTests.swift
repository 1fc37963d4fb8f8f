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
        try assertEqualsOneBigBatch(accumulated, big, label: "--accumulate 4 --batch-size 8")
        var bad = accumulated
        bad.accumulate = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--accumulate"), "\($0)") }
    }

    /// Issue 15's options under --accumulate: a 2-layer bidirectional LSTM over token ids with an
    /// embedding (padding_idx 0), variable lengths (3-9 of T = 9) and dropout 0.3 between the
    /// layers. The masks are keyed by (seed, optimizer step, sample, layer), so a chunk of 8
    /// rows draws the masks its rows get inside the batch of 32; the lengths travel with each
    /// chunk's rows; the mean is over all scored elements of the 32 rows.
    func testAccumulateWithDropoutLengthsBidirectionalEmbeddingEqualsOneBigBatch() throws {
        let path = (dir as NSString).appendingPathComponent("tokens.h5")
        // 100 samples: optimizer steps of 32, 32, 32 and 4 rows per epoch.
        try SyntheticData.variableLengthTokens(count: 100, minLength: 3, maxLength: 9, vocabularySize: 12, classes: 3, seed: 4)
            .write(to: path)
        func config(batch: Int, accumulate: Int?, dropout: Float = 0.3) throws -> TrainingConfig {
            var c = try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 8, layers: 2,
                                                  optimizer: OptimizerConfig(kind: .adam, lr: 0.01), batchSize: batch,
                                                  epochs: 3, seed: 5, shuffle: true, hashEvery: 3,
                                                  embeddingSize: 5, paddingIndex: 0, bidirectional: true, dropout: dropout)
            c.accumulate = accumulate
            try c.validate()
            return c
        }
        let accumulated = try config(batch: 8, accumulate: 4)
        XCTAssertTrue(accumulated.model.tokenInput && accumulated.model.bidirectional)
        let big = try trainInProcess(try config(batch: 32, accumulate: nil), world: 1)
        XCTAssertEqual(big.summary.globalSteps, 12)
        // Dropout acts in this configuration: without it the parameters differ.
        let plain = try trainInProcess(try config(batch: 32, accumulate: nil, dropout: 0), world: 1)
        XCTAssertGreaterThan(maxAbsDifference(plain.summary.parameters, big.summary.parameters), 1e-3)
        try assertEqualsOneBigBatch(accumulated, big, label: "bi-LSTM + embedding + lengths + dropout 0.3, --accumulate 4 --batch-size 8",
                                    interruptPollMilliseconds: 0, checkAccuracy: true)
    }

    /// `accumulated` (4 x 8 rows per optimizer step) with W = 1 and 3 equals `big` (one batch of
    /// 32, W = 1): 12 optimizer steps, each worker applied 12 updates (one all-reduce each),
    /// replicas bitwise equal, parameters within 1e-5.
    func assertEqualsOneBigBatch(_ accumulated: TrainingConfig, _ big: InProcessRun, label: String,
                                 interruptPollMilliseconds: Int = 20, checkAccuracy: Bool = false,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        for world in [1, 3] {
            let run = try trainInProcess(accumulated, world: world, interruptPollMilliseconds: interruptPollMilliseconds,
                                         configureWorker: { _, options in
                if world == 3 { options.dataBind = "tcp://127.0.0.1:*" }
            })
            XCTAssertEqual(run.summary.globalSteps, 12, file: file, line: line)
            for w in run.workers {
                XCTAssertEqual(w.steps, 12, file: file, line: line)
                XCTAssertTrue(w.parameters == run.workers[0].parameters, "W=\(world): rank \(w.rank) differs bitwise from rank 0", file: file, line: line)
            }
            let diff = maxAbsDifference(run.summary.parameters, big.summary.parameters)
            print("\(label), W=\(world) vs --batch-size 32, W=1: max |dp| = \(diff)")
            XCTAssertLessThanOrEqual(diff, 1e-5, file: file, line: line)
            XCTAssertEqual(run.summary.train.loss, big.summary.train.loss, accuracy: 1e-5, file: file, line: line)
            if checkAccuracy {
                XCTAssertEqual(run.summary.train.accuracy ?? -1, big.summary.train.accuracy ?? -2, accuracy: 0.02, file: file, line: line)
            }
        }
    }
}
