// Load balancing (`--balance`): a worker on a slower machine gets fewer rows of each step,
// and the run still gives the parameters of one worker (up to float summation order).
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import XCTest

final class LoadBalanceTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("balance") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 320 samples, batch 32: 10 steps per epoch, 3 epochs.
    func makeConfig() throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        try SyntheticData.random(count: 320, steps: 5, features: 3, classes: 3, seed: 4).write(to: path)
        return try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 8, layers: 1,
                                             optimizer: OptimizerConfig(lr: 0.01), batchSize: 32, epochs: 3, seed: 2,
                                             shuffle: true, hashEvery: 2)
    }

    /// The step records of a run's metrics.jsonl.
    func stepRecords(_ folder: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: (folder as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").compactMap { line in
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return record?["kind"] as? String == "step" ? record : nil
        }
    }

    /// Two workers, the second 2 ms per row slower (a tiny model computes a row in microseconds).
    func runWithSlowWorker(balance: Bool, folder: String, config: TrainingConfig) throws -> (InProcessRun, [[String: Any]]) {
        let run = try trainInProcess(config, world: 2, checkpointDir: folder, configureWorker: { i, options in
            if i == 1 { options.faults.extraSecondsPerRow = 0.002 }
        }, configureCoordinator: { $0.balance = balance })
        return (run, try stepRecords(folder))
    }

    func testSlowWorkerGetsFewerRowsAndTheRunStillMatchesOneWorker() throws {
        let config = try makeConfig()
        let one = try trainInProcess(config, world: 1)
        let (run, records) = try runWithSlowWorker(balance: true, folder: (dir as NSString).appendingPathComponent("on"), config: config)
        XCTAssertEqual(records.count, 30)
        let rows = records.map { $0["rows_by_rank"] as? [Int] ?? [] }
        let seconds = records.map { $0["compute_s_by_rank"] as? [Double] ?? [] }
        // Every step's 32 rows are computed, once.
        for r in rows { XCTAssertEqual(r.reduce(0, +), 32, "\(r)") }
        // Before anything is measured: the even split.
        XCTAssertEqual(rows[0], [16, 16])
        // The slow rank is the one with more seconds per row; it ends at its floor of a
        // quarter of an equal share (4 rows), the other rank takes the rest.
        let last = seconds.count - 1
        let slow = seconds[last][0] / Double(rows[last][0]) > seconds[last][1] / Double(rows[last][1]) ? 0 : 1
        for step in 20..<30 {
            XCTAssertEqual(rows[step][slow], 4, "step \(step + 1): rows \(rows[step])")
        }
        // The replicas stay bitwise equal, and the mean gradient is the same up to summation order.
        XCTAssertTrue(run.workers[0].parameters == run.workers[1].parameters)
        let diff = maxAbsDifference(run.summary.parameters, one.summary.parameters)
        XCTAssertLessThanOrEqual(diff, 1e-5, "balanced W=2 drifted from W=1 by \(diff)")
        XCTAssertEqual(run.summary.redoneSteps, 0)
    }

    func testWithoutBalanceTheSplitStaysEven() throws {
        let config = try makeConfig()
        let (run, records) = try runWithSlowWorker(balance: false, folder: (dir as NSString).appendingPathComponent("off"), config: config)
        XCTAssertEqual(records.count, 30)
        for record in records { XCTAssertEqual(record["rows_by_rank"] as? [Int], [16, 16]) }
        XCTAssertTrue(run.workers[0].parameters == run.workers[1].parameters)
    }
}
