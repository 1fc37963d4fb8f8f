// Replicas stay identical and the run notices when they do not: a replica undoes the steps the
// coordinator did not accept (with the coordinator's pipelining, the next step assigned before
// the current one is collected, that can be two steps), and a replica whose parameters differ
// by one bit stops the run with an error naming it.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import RNNTransport
import XCTest

final class ReplicaConsistencyTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("replicas") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A 1-layer model on `count` random samples (T=6, I=3, 3 classes), batch 8.
    func makeConfig(count: Int, cell: CellKind, hidden: Int, epochs: Int, shuffle: Bool) throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random-\(count).h5")
        try SyntheticData.random(count: count, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        return try TrainingConfig.forDataset(files: [path], cell: cell, hiddenSize: hidden, layers: 1, optimizer: OptimizerConfig(lr: 0.05),
                                             batchSize: 8, epochs: epochs, seed: 5, shuffle: shuffle, hashEvery: 3)
    }

    func testReplicaRollsBackOneOrTwoStepsExactlyAndNoFurther() throws {
        let config = try makeConfig(count: 24, cell: .lstm, hidden: 8, epochs: 1, shuffle: false)
        let path = config.dataFiles[0]
        let table = ParameterTable(config: config.model)
        let initial = TrainingState(parameters: ParameterTable.initialParameters(config: config.model, seed: 5),
                                   expAvg: [Float](repeating: 0, count: table.totalCount),
                                   expAvgSq: [Float](repeating: 0, count: table.totalCount), stepCount: 0)
        let replica = try Replica(config: config, state: initial, threads: 1, files: [path])
        let ring = try RingAllReduce(context: ZMQContext(), rank: 0, world: 1, runID: 1, bindEndpoint: "inproc://rollback")
        func step(_ g: Int) throws {
            _ = try replica.step(StepMessage(epoch: 0, stepInEpoch: g, globalStep: g, rows: Array(g * 8..<(g + 1) * 8), wantHash: false),
                                 ring: ring)
        }
        func same(_ a: TrainingState, _ b: TrainingState) -> Bool {
            a.parameters == b.parameters && a.expAvg == b.expAvg && a.expAvgSq == b.expAvgSq && a.stepCount == b.stepCount
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

    func testParameterHashSeesEveryBitAndEveryPosition() {
        var rng = SeededGenerator(seed: 3)
        let values = (0..<1001).map { _ in rng.nextFloat(in: -1, 1) }
        let reference = parameterHash(values)
        XCTAssertEqual(parameterHash(values), reference)
        for index in [0, 1, 2, 3, 4, 500, 999, 1000] {
            for bit in [0, 7, 22, 23, 31] {
                var changed = values
                changed[index] = Float(bitPattern: changed[index].bitPattern ^ (1 << UInt32(bit)))
                XCTAssertNotEqual(parameterHash(changed), reference, "flipping bit \(bit) of value \(index) kept the hash")
            }
        }
        var swapped = values
        swapped.swapAt(10, 11)
        XCTAssertNotEqual(parameterHash(swapped), reference)
        XCTAssertNotEqual(parameterHash(Array(values.dropLast())), reference)
    }

    func testOneBitOfDifferenceBetweenReplicasStopsTheRunNamingTheRank() throws {
        let config = try makeConfig(count: 50, cell: .gru, hidden: 12, epochs: 3, shuffle: true)
        XCTAssertThrowsError(try trainInProcess(config, world: 3, timeout: 60, configureWorker: { i, options in
            if i == 2 { options.faults.corruptAfterGlobalStep = 4 }
        })) { error in
            let text = "\(error)"
            // Steps are counted from 1 in messages: the fault after step index 4 is seen at the
            // hash of step 6 (every 3rd step); the two healthy replicas are the majority.
            print("divergence: \(text)")
            XCTAssertTrue(text.contains("replicas diverged after global step 6"), text)
            XCTAssertTrue(text.contains("differ from those of the other 2 rank(s)"), text)
            XCTAssertEqual((0...2).filter { text.contains("rank \($0) ") }.count, 1, text)
        }
    }
}
