// A replica undoes the steps the coordinator did not accept: with the coordinator's pipelining
// (the next step assigned before the current one is collected) that can be two steps.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import RNNTransport
import XCTest

final class RollbackTests: XCTestCase {
    func testReplicaRollsBackOneOrTwoStepsExactlyAndNoFurther() throws {
        let dir = try makeTemporaryDirectory("rollback")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = (dir as NSString).appendingPathComponent("random.h5")
        try SyntheticData.random(count: 24, steps: 5, features: 3, classes: 3, seed: 4).write(to: path)
        let config = try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 8, layers: 1,
                                                   optimizer: OptimizerConfig(lr: 0.05), batchSize: 8, epochs: 1, seed: 2, shuffle: false)
        let table = ParameterTable(config: config.model)
        let initial = ReplicaState(parameters: ParameterTable.initialParameters(config: config.model, seed: 2),
                                   expAvg: [Float](repeating: 0, count: table.totalCount),
                                   expAvgSq: [Float](repeating: 0, count: table.totalCount), optimizerStep: 0)
        let replica = try Replica(config: config, state: initial, threads: 1, files: [path])
        let ring = try RingAllReduce(context: ZMQContext(), rank: 0, world: 1, runID: 1, bindEndpoint: "inproc://rollback")
        func step(_ g: Int) throws {
            _ = try replica.step(StepMessage(epoch: 0, stepInEpoch: g, globalStep: g, rows: Array(g * 8..<(g + 1) * 8), wantHash: false),
                                 ring: ring)
        }
        func same(_ a: ReplicaState, _ b: ReplicaState) -> Bool {
            a.parameters == b.parameters && a.expAvg == b.expAvg && a.expAvgSq == b.expAvgSq && a.optimizerStep == b.optimizerStep
        }
        try step(0)
        let afterOne = replica.state
        try step(1)
        let afterTwo = replica.state
        try step(2)
        let afterThree = replica.state
        XCTAssertFalse(same(afterOne, afterTwo))

        // Two steps back (the coordinator accepted only step 0), then the same steps again.
        XCTAssertEqual(try replica.rollBack(to: 1), 2)
        XCTAssertEqual(replica.appliedSteps, 1)
        XCTAssertTrue(same(replica.state, afterOne), "two steps rolled back is not the state after step 0")
        try step(1)
        XCTAssertTrue(same(replica.state, afterTwo), "redoing step 1 after the rollback differs")
        try step(2)
        XCTAssertTrue(same(replica.state, afterThree))

        // One step back; nothing to undo; and never deeper than the two saved states.
        XCTAssertEqual(try replica.rollBack(to: 2), 1)
        XCTAssertTrue(same(replica.state, afterTwo))
        XCTAssertEqual(try replica.rollBack(to: 2), 0)
        try step(2)
        XCTAssertThrowsError(try replica.rollBack(to: 0)) { error in
            XCTAssertTrue("\(error)".contains("no saved state of step 0"), "\(error)")
        }
        XCTAssertTrue(same(replica.state, afterThree), "a refused rollback changed the state")
    }
}
