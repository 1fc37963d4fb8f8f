// The central property of data-parallel training: W workers give the parameters of 1 worker
// (up to float summation order), for uneven splits too, and the ranks stay bitwise equal.
import Foundation
import RNNCore
import RNNData
import RNNDistributed
import RNNTransport
import XCTest

final class DataParallelTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("dp") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 50 samples, batch 8: 7 steps per epoch, the last of 2 samples (so with W = 3 one rank
    /// computes nothing in that step), 3 epochs = 21 steps.
    func makeConfig(cell: CellKind, shuffle: Bool, optimizer: OptimizerConfig = OptimizerConfig(lr: 0.01)) throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random-\(cell.rawValue).h5")
        try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        return try TrainingConfig.forDataset(files: [path], cell: cell, hiddenSize: 12, layers: 2, optimizer: optimizer,
                                             batchSize: 8, epochs: 3, seed: 5, shuffle: shuffle, hashEvery: 3)
    }

    func checkEquivalence(_ config: TrainingConfig) throws {
        let one = try trainInProcess(config, world: 1)
        XCTAssertEqual(one.summary.globalSteps, 21)
        for world in [2, 3] {
            // Waiting ranks look at the control socket all the time, where the next
            // step's assignment arrives while this one runs (pipelining).
            // W = 2 joins through the coordinator's IPC endpoint and rings over IPC (what
            // --local-workers does), W = 3 joins over loopback TCP and rings over TCP.
            let run = try trainInProcess(config, world: world, interruptPollMilliseconds: 0, connectOverIPC: world == 2,
                                         configureWorker: { _, options in
                if world == 3 { options.dataBind = "tcp://127.0.0.1:*" }
            })
            XCTAssertEqual(run.summary.globalSteps, 21)
            XCTAssertEqual(run.workers.count, world)
            for w in run.workers {
                XCTAssertEqual(w.steps, 21, "rank \(w.rank) applied \(w.steps) steps")
                // The next step's assignment, sent ahead while a step runs, must not abort it.
                XCTAssertEqual(w.abandoned, 0, "rank \(w.rank) abandoned \(w.abandoned) step(s)")
                XCTAssertEqual(w.rolledBack, 0)
                XCTAssertTrue(w.parameters == run.workers[0].parameters, "rank \(w.rank) differs bitwise from rank 0")
            }
            XCTAssertTrue(run.summary.parameters == run.workers[0].parameters)
            XCTAssertEqual(run.summary.redoneSteps, 0)
            let diff = maxAbsDifference(run.summary.parameters, one.summary.parameters)
            print("\(config.model.cell.rawValue) W=\(world): max |p_W - p_1| = \(diff)")
            XCTAssertLessThanOrEqual(diff, 1e-5, "W=\(world) drifted from W=1 by \(diff)")
            XCTAssertEqual(run.summary.train.loss, one.summary.train.loss, accuracy: 1e-4)
        }
        // The run really trained: the parameters moved away from the initialisation.
        let initial = ParameterTable.initialParameters(config: config.model, seed: config.seed)
        XCTAssertGreaterThan(maxAbsDifference(one.summary.parameters, initial), 1e-3)
    }

    func testLSTMWorkersMatchOneWorkerWithShuffle() throws {
        try checkEquivalence(try makeConfig(cell: .lstm, shuffle: true))
    }

    func testGRUWorkersMatchOneWorkerWithoutShuffle() throws {
        try checkEquivalence(try makeConfig(cell: .gru, shuffle: false,
                                            optimizer: OptimizerConfig(kind: .adamw, lr: 0.01, clipNorm: 1)))
    }

    func testSequenceToSequenceHelloOverThreeWorkers() throws {
        let path = (dir as NSString).appendingPathComponent("hello.h5")
        try SyntheticData.hello(copies: 3).write(to: path)
        let config = try TrainingConfig.forDataset(files: [path], cell: .rnnTanh, hiddenSize: 8, layers: 1,
                                                   optimizer: OptimizerConfig(lr: 0.1), batchSize: 3, epochs: 200,
                                                   seed: 1, shuffle: false)
        let run = try trainInProcess(config, world: 3)
        XCTAssertEqual(run.summary.globalSteps, 200)
        XCTAssertLessThan(run.summary.train.loss, 0.01)
        XCTAssertEqual(run.summary.train.accuracy ?? 0, 1, accuracy: 1e-9)
    }

    func testCheckpointsAreWrittenEveryKStepsAndAtTheEnd() throws {
        let config = try makeConfig(cell: .rnnRelu, shuffle: true)
        let ckpt = (dir as NSString).appendingPathComponent("ckpt")
        let run = try trainInProcess(config, world: 2, checkpointDir: ckpt, checkpointEvery: 5)
        let names = try FileManager.default.contentsOfDirectory(atPath: ckpt).sorted()
        // Steps 5, 10, 15, 20 and the end (21); the last 3 are kept.
        XCTAssertEqual(run.summary.checkpoints.map { ($0 as NSString).lastPathComponent },
                       ["ckpt-5.h5", "ckpt-10.h5", "ckpt-15.h5", "ckpt-20.h5", "ckpt-21.h5"])
        XCTAssertEqual(names.filter { $0.hasSuffix(".h5") }, ["ckpt-15.h5", "ckpt-20.h5", "ckpt-21.h5"])
        XCTAssertTrue(names.contains("metrics.jsonl"))
        let lines = try String(contentsOfFile: (ckpt as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        XCTAssertEqual(lines.count, 21 + 3, "one line per step and per epoch")
    }

    func testMissingWorkersFailWithinTheJoinTimeout() throws {
        let config = try makeConfig(cell: .gru, shuffle: false)
        let options = CoordinatorOptions(config: config, bind: "tcp://127.0.0.1:*", workers: 2, joinTimeout: 1)
        let coordinator = try Coordinator(options: options)
        let start = Date()
        XCTAssertThrowsError(try coordinator.run()) { error in
            XCTAssertTrue("\(error)".contains("only 0 of 2 workers joined"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    func testWorkerWithoutCoordinatorFailsWithinItsTimeout() throws {
        let worker = Worker(options: WorkerOptions(connect: "tcp://127.0.0.1:9", joinTimeout: 1))
        let start = Date()
        XCTAssertThrowsError(try worker.run()) { error in
            XCTAssertTrue("\(error)".contains("no answer from the coordinator"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    /// Random, truncated, wrong-version and foreign frames sent at the coordinator's control
    /// socket while it trains: they are rejected and counted, and training completes with the
    /// same result as an undisturbed run.
    func testCoordinatorFedGarbageKeepsTraining() throws {
        let config = try makeConfig(cell: .lstm, shuffle: true)
        let clean = try trainInProcess(config, world: 2)
        let sent = Box(0)
        let ctx = try ZMQContext()
        defer { ctx.shutdown() }
        let s = try ZMQSocket(ctx, type: .dealer, lingerMilliseconds: 0)
        defer { s.close() }
        var rng = SeededGenerator(seed: 99)
        func garbage(_ i: Int) -> [UInt8] {
            switch i % 4 {
            case 0: // random bytes
                return (0..<Int(rng.next() % 100)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: // a valid header of another run
                return Frame(header: FrameHeader(kind: .metrics, runID: rng.next(), payloadLength: 4), payload: [1, 2, 3, 4]).encoded
            case 2: // wrong version
                var h = FrameHeader(kind: .hello, runID: 0)
                h.version = 77
                return Frame(header: h).encoded
            default: // truncated header
                return Array(Frame(header: FrameHeader(kind: .heartbeat, runID: 0)).encoded.prefix(Int(rng.next() % 40)))
            }
        }
        let disturbed = try trainInProcess(config, world: 2, beforeWorkers: { endpoint in
            // Queued at the coordinator before the workers join: read during the handshake
            // and the first steps, interleaved with the workers' frames.
            try? s.connect(endpoint)
            for i in 0..<600 where (try? s.send(garbage(i), deadline: .after(milliseconds: 500))) != nil {
                sent.update { $0 += 1 }
            }
            Thread.sleep(forTimeInterval: 0.3)
        })
        XCTAssertGreaterThan(sent.get, 500)
        XCTAssertGreaterThan(disturbed.summary.rejectedFrames, 0)
        XCTAssertTrue(disturbed.summary.parameters == clean.summary.parameters,
                      "foreign frames changed the training result")
        print("garbage frames sent: \(sent.get), rejected by the coordinator: \(disturbed.summary.rejectedFrames)")
    }
}
