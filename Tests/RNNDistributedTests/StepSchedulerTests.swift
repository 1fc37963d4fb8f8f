// The coordinator's scheduling decisions (StepScheduler) on their own, without sockets: group
// sizes, when a group may go out ahead, and the row split with and without --balance.
@testable import RNNDistributed
import XCTest

final class StepSchedulerTests: XCTestCase {
    func metrics(_ step: Int, samples: Int, seconds: Double) -> MetricsMessage {
        MetricsMessage(globalStep: step, lossSum: 1, scored: samples, correct: 0, samples: samples, globalScored: samples,
                       parameterHash: 0, computeSeconds: seconds, reduceSeconds: 0)
    }

    func testGroupSizeFollowsTheStepTimeAndStopsAtEpochEndsCheckpointsAndMaxSteps() {
        var s = StepScheduler(maxStepsPerMessage: 8, messageGroupSeconds: 0.001, checkpointEvery: 10, maxSteps: 25)
        XCTAssertEqual(s.groupSize(stepsInEpoch: 100, from: 0, globalStep: 0), 1, "nothing measured yet: one step per message")
        // 0.2 ms per step: 5 steps make the 1 ms group.
        s.observe(seconds: 0.0002, steps: 1, results: [])
        XCTAssertEqual(s.stepsPerMessage, 5)
        XCTAssertFalse(s.longGroups)
        XCTAssertEqual(s.groupSize(stepsInEpoch: 100, from: 0, globalStep: 0), 5)
        XCTAssertEqual(s.groupSize(stepsInEpoch: 100, from: 7, globalStep: 7), 3, "the checkpoint at step 10 ends the group")
        XCTAssertEqual(s.groupSize(stepsInEpoch: 12, from: 10, globalStep: 10), 2, "the epoch's end ends the group")
        XCTAssertEqual(s.groupSize(stepsInEpoch: 100, from: 23, globalStep: 23), 2, "--max-steps 25 ends the group")
        // Very short steps: capped at the maximum.
        s.observe(seconds: 1e-6, steps: 4, results: [])
        XCTAssertEqual(s.stepsPerMessage, 8)
        // A long group: one step per message, and waits stop spinning.
        s.observe(seconds: 0.5, steps: 1, results: [])
        XCTAssertEqual(s.stepsPerMessage, 1)
        XCTAssertTrue(s.longGroups)
        XCTAssertEqual(s.groupSize(stepsInEpoch: 100, from: 3, globalStep: 3), 1)
    }

    func testAssignAheadNeverCrossesAnEpochEndACheckpointMaxStepsAJoinOrAStop() {
        let s = StepScheduler(maxStepsPerMessage: 8, messageGroupSeconds: 0.001, checkpointEvery: 10, maxSteps: 30)
        XCTAssertTrue(s.mayAssignAhead(stepsInEpoch: 20, from: 0, count: 2, globalStep: 0, joinsPending: false, stopping: false))
        XCTAssertFalse(s.mayAssignAhead(stepsInEpoch: 20, from: 18, count: 2, globalStep: 18, joinsPending: false, stopping: false), "epoch end")
        XCTAssertFalse(s.mayAssignAhead(stepsInEpoch: 50, from: 8, count: 2, globalStep: 8, joinsPending: false, stopping: false), "checkpoint at 10")
        XCTAssertTrue(s.mayAssignAhead(stepsInEpoch: 50, from: 10, count: 2, globalStep: 10, joinsPending: false, stopping: false))
        XCTAssertFalse(s.mayAssignAhead(stepsInEpoch: 50, from: 27, count: 3, globalStep: 27, joinsPending: false, stopping: false), "max steps")
        XCTAssertFalse(s.mayAssignAhead(stepsInEpoch: 50, from: 2, count: 2, globalStep: 2, joinsPending: true, stopping: false), "a join waits")
        XCTAssertFalse(s.mayAssignAhead(stepsInEpoch: 50, from: 2, count: 2, globalStep: 2, joinsPending: false, stopping: true), "a stop")
        let noCheckpoints = StepScheduler(maxStepsPerMessage: 8, messageGroupSeconds: 0.001, checkpointEvery: 0, maxSteps: nil)
        XCTAssertTrue(noCheckpoints.mayAssignAhead(stepsInEpoch: 50, from: 8, count: 2, globalStep: 8, joinsPending: false, stopping: false))
    }

    func testWithoutBalanceTheSplitIsEvenWhateverTheSpeeds() {
        var s = StepScheduler(maxStepsPerMessage: 1, messageGroupSeconds: 0.001, checkpointEvery: 0, maxSteps: nil)
        s.reset(world: 2)
        s.observe(seconds: 0.1, steps: 1, results: [[metrics(0, samples: 16, seconds: 0.001), metrics(0, samples: 16, seconds: 0.1)]])
        XCTAssertEqual(s.parts(rows: 32, world: 2), [0..<16, 16..<32])
        XCTAssertEqual(s.parts(rows: 7, world: 3), [0..<3, 3..<5, 5..<7])
        XCTAssertEqual(s.secondsPerRow, [0, 0], "speeds are measured only with --balance")
    }

    func testBalanceGivesASlowRankFewerRowsDownToAQuarterOfAnEqualShare() {
        var s = StepScheduler(maxStepsPerMessage: 1, messageGroupSeconds: 0.001, checkpointEvery: 0, maxSteps: nil,
                              balance: true, balanceSmoothing: 0.25)
        s.reset(world: 2)
        XCTAssertEqual(s.parts(rows: 32, world: 2), [0..<16, 16..<32], "before anything is measured: the even split")
        // Rank 0: 1 ms per row; rank 1: 3 ms per row: rank 0 should take three times as many rows.
        s.observe(seconds: 0.05, steps: 1, results: [[metrics(0, samples: 16, seconds: 0.016), metrics(0, samples: 16, seconds: 0.048)]])
        XCTAssertEqual(s.secondsPerRow[0], 0.001, accuracy: 1e-12)
        XCTAssertEqual(s.secondsPerRow[1], 0.003, accuracy: 1e-12)
        XCTAssertEqual(s.parts(rows: 32, world: 2), [0..<24, 24..<32])
        // A rank 100x slower is held at its floor: a quarter of an equal share (4 of 32 rows).
        s.reset(world: 2)
        s.observe(seconds: 1, steps: 1, results: [[metrics(0, samples: 16, seconds: 0.016), metrics(0, samples: 16, seconds: 1.6)]])
        XCTAssertEqual(s.parts(rows: 32, world: 2), [0..<28, 28..<32])
        // The average moves by the smoothing weight: from 0.1 s/row to 0.1 + 0.25 * (0.001 - 0.1).
        s.observe(seconds: 1, steps: 1, results: [[metrics(1, samples: 16, seconds: 0.016), metrics(1, samples: 16, seconds: 0.016)]])
        XCTAssertEqual(s.secondsPerRow[1], 0.1 + 0.25 * (0.001 - 0.1), accuracy: 1e-12)
        // A new ring measures again, and results of another world size are not folded in.
        s.reset(world: 3)
        XCTAssertEqual(s.secondsPerRow, [0, 0, 0])
        s.observe(seconds: 1, steps: 1, results: [[metrics(2, samples: 16, seconds: 0.016), metrics(2, samples: 16, seconds: 0.016)]])
        XCTAssertEqual(s.secondsPerRow, [0, 0, 0])
        XCTAssertEqual(s.parts(rows: 9, world: 3), [0..<3, 3..<6, 6..<9])
    }
}
