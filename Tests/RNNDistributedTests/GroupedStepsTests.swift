// Short steps travel several per STEP message (and come back several per METRICS): the run is
// bitwise the one with a message per step, groups stop at epoch ends and checkpoints, and an
// exchange that breaks inside a group rolls the replicas back to the group's start.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import RNNTransport
import XCTest

final class GroupedStepsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("groups") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 50 samples, batch 8: 7 steps per epoch, 3 epochs = 21 steps; hash every 3 steps.
    func makeConfig() throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        return try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 12, layers: 1, optimizer: OptimizerConfig(lr: 0.01),
                                             batchSize: 8, epochs: 3, seed: 5, shuffle: true, hashEvery: 3)
    }

    /// Groups of up to 4 steps whatever the step time (the target time per message is huge).
    func grouped(_ options: inout CoordinatorOptions) {
        options.maxStepsPerMessage = 4
        options.messageGroupSeconds = 1000
        options.heartbeatTimeout = 1
        options.heartbeatInterval = 0.2
    }

    /// (global step, loss) of every step record in a run folder's metrics.jsonl; each record
    /// must also carry the slowest worker's compute and all-reduce seconds.
    func stepLosses(_ folder: String) throws -> [(Int, Double)] {
        let text = try String(contentsOfFile: (folder as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").compactMap { line in
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            guard o["kind"] as? String == "step" else { return nil }
            let compute = try XCTUnwrap(o["compute_s"] as? Double), reduce = try XCTUnwrap(o["reduce_s"] as? Double)
            XCTAssertTrue(compute > 0 && compute < 60 && reduce >= 0 && reduce < 60, "compute_s \(compute), reduce_s \(reduce) in \(line)")
            return (try XCTUnwrap(o["global_step"] as? Int), try XCTUnwrap(o["loss"] as? Double))
        }
    }

    func checkpointNames(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("ckpt-") }.sorted()
    }

    func testGroupedStepsGiveBitwiseTheRunOfOneStepPerMessage() throws {
        let config = try makeConfig()
        let one = (dir as NSString).appendingPathComponent("one"), many = (dir as NSString).appendingPathComponent("many")
        let single = try trainInProcess(config, world: 2, checkpointDir: one, checkpointEvery: 5,
                                        configureCoordinator: { $0.maxStepsPerMessage = 1 })
        let groups = try trainInProcess(config, world: 2, checkpointDir: many, checkpointEvery: 5,
                                        configureCoordinator: grouped)
        XCTAssertEqual(groups.summary.globalSteps, 21)
        XCTAssertTrue(groups.summary.parameters == single.summary.parameters, "grouped steps changed the parameters")
        for w in single.workers { XCTAssertEqual(w.stepMessages, 21) }
        // The first two messages hold one step each (the second goes out ahead, before any step
        // time is measured); then up to 4, cut at the epoch ends (after 7, 14) and the
        // checkpoints (after 5, 10, 15, 20): [0] [1] [2-4] [5-6] | [7-9] [10-13] | [14] [15-18] [19] [20].
        for w in groups.workers {
            XCTAssertEqual(w.stepMessages, 10, "rank \(w.rank)")
            XCTAssertEqual(w.steps, 21)
            XCTAssertEqual(w.abandoned, 0)
            XCTAssertEqual(w.rolledBack, 0)
            XCTAssertTrue(w.parameters == groups.summary.parameters, "rank \(w.rank) differs bitwise")
        }
        XCTAssertEqual(try checkpointNames(many), try checkpointNames(one))
        XCTAssertEqual(try checkpointNames(many), ["ckpt-15.h5", "ckpt-20.h5", "ckpt-21.h5"], "the newest 3 of 5, 10, 15, 20, 21")
        let a = try stepLosses(one), b = try stepLosses(many)
        XCTAssertEqual(a.map(\.0), Array(1...21))
        XCTAssertEqual(b.map(\.0), a.map(\.0))
        XCTAssertEqual(b.map(\.1), a.map(\.1), "per-step losses differ")
    }

    /// Rank 1's exchange of global step 13, the last of the group [10-13], breaks: both ranks
    /// hold steps 10-12, which the coordinator never accepted (three, deeper than the two
    /// states kept for one step per message), roll them back, and the group is redone; the
    /// result is bitwise the fault-free one.
    func testABrokenExchangeInsideAGroupRollsBackToTheGroupStart() throws {
        let config = try makeConfig()
        let clean = try trainInProcess(config, world: 2, checkpointEvery: 5, configureCoordinator: grouped)
        let faulty = try trainInProcess(config, world: 2, checkpointEvery: 5, configureWorker: { i, options in
            if i == 1 { options.faults.failExchangeAtGlobalStep = 13 }
        }, configureCoordinator: grouped)
        XCTAssertEqual(faulty.summary.globalSteps, 21)
        XCTAssertEqual(faulty.summary.redoneSteps, 1)
        XCTAssertTrue(faulty.summary.parameters == clean.summary.parameters, "the redone group changed the result")
        for w in faulty.workers {
            XCTAssertEqual(w.steps, 21)
            XCTAssertEqual(w.rolledBack, 3, "rank \(w.rank) should undo steps 10-12")
            XCTAssertEqual(w.abandoned, 1, "rank \(w.rank)")
            XCTAssertTrue(w.parameters == clean.summary.parameters)
        }
    }

    /// STEP and METRICS messages round-trip a group, and refuse an empty, an oversized and a
    /// non-consecutive one with an error that names what was found.
    func testGroupMessagesRoundTripAndRejectBadGroups() throws {
        let steps = (0..<3).map { StepMessage(epoch: 1, stepInEpoch: 4 + $0, globalStep: 11 + $0, rows: [$0, 7, 9], wantHash: $0 == 1) }
        let frame = StepGroupMessage(steps).frame(runID: 5, generation: 2, step: 11)
        XCTAssertEqual(frame.header.kind, .stepAssignment)
        XCTAssertEqual(try StepGroupMessage.decode(frame).records, steps)
        let results = (0..<2).map { MetricsMessage(globalStep: 3 + $0, lossSum: 1.5, scored: 8, correct: $0, samples: 8, globalScored: 16,
                                                   parameterHash: 99, computeSeconds: 0.1, reduceSeconds: 0.2) }
        XCTAssertEqual(try MetricsGroupMessage.decode(MetricsGroupMessage(results).frame(runID: 5)).records, results)
        XCTAssertThrowsError(try StepGroupMessage.decode(MetricsGroupMessage(results).frame(runID: 5)))

        func payload(count: Int, globalSteps: [Int]) -> Frame {
            var w = BinaryWriter()
            w.write(count)
            for g in globalSteps { StepMessage(epoch: 0, stepInEpoch: 0, globalStep: g, rows: [], wantHash: false).encode(into: &w) }
            return Frame(header: FrameHeader(kind: .stepAssignment, runID: 5, payloadLength: w.bytes.count), payload: w.bytes)
        }
        for (frame, expected) in [(payload(count: 0, globalSteps: []), "0 (expected 1...64)"),
                                  (payload(count: 65, globalSteps: Array(0..<65)), "65 (expected 1...64)"),
                                  (payload(count: 2, globalSteps: [4, 6]), "6 after 4 (expected consecutive steps)"),
                                  (payload(count: 3, globalSteps: [4, 5]), "needs 8 bytes, only 0 left")] {
            XCTAssertThrowsError(try StepGroupMessage.decode(frame)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }
}
