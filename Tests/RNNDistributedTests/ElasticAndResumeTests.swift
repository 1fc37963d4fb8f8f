// Exact resume (bitwise, mid-epoch, with and without shuffle) and workers joining a running
// job at a step boundary, with coordinator and workers on threads over tcp loopback.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNDistributed
import RNNTransport
import XCTest

final class ElasticAndResumeTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("elastic") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 50 samples, batch 8: 7 steps per epoch; 3 epochs = 21 steps.
    func makeConfig(shuffle: Bool, epochs: Int = 3) throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        if !FileManager.default.fileExists(atPath: path) {
            try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        }
        return try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 12, layers: 2, optimizer: OptimizerConfig(lr: 0.01),
                                             batchSize: 8, epochs: epochs, seed: 5, shuffle: shuffle, hashEvery: 3)
    }

    /// N steps straight == N/2 steps, stop (mid-epoch), resume, the rest: bitwise.
    func checkExactResume(shuffle: Bool, stopAt: Int) throws {
        let config = try makeConfig(shuffle: shuffle)
        let straight = try trainInProcess(config, world: 2)
        XCTAssertEqual(straight.summary.globalSteps, 21)
        let ckpt = (dir as NSString).appendingPathComponent("ckpt-\(shuffle)-\(stopAt)")
        var first = config
        first.maxSteps = stopAt
        let half = try trainInProcess(first, world: 2, checkpointDir: ckpt)
        XCTAssertEqual(half.summary.globalSteps, stopAt)
        let saved = try CheckpointStore.read(path: (ckpt as NSString).appendingPathComponent("ckpt-\(stopAt).h5"),
                                             table: ParameterTable(config: config.model))
        XCTAssertEqual(saved.metadata.epoch, stopAt / 7)
        XCTAssertEqual(saved.metadata.stepInEpoch, stopAt % 7)
        XCTAssertEqual(saved.state.stepCount, stopAt)
        let rest = try trainInProcess(config, world: 2, checkpointDir: ckpt, resume: ckpt)
        XCTAssertEqual(rest.summary.globalSteps, 21)
        XCTAssertTrue(rest.summary.parameters == straight.summary.parameters,
                      "shuffle \(shuffle), stop at \(stopAt): resumed run differs by \(maxAbsDifference(rest.summary.parameters, straight.summary.parameters))")
        for w in rest.workers { XCTAssertEqual(w.steps, 21) }
    }

    func testResumeMidEpochIsBitwiseExactWithShuffle() throws {
        try checkExactResume(shuffle: true, stopAt: 10)
    }

    func testResumeMidEpochIsBitwiseExactWithoutShuffle() throws {
        try checkExactResume(shuffle: false, stopAt: 10)
    }

    func testResumeAtAnEpochBoundaryIsBitwiseExact() throws {
        try checkExactResume(shuffle: true, stopAt: 14)
    }

    /// A third worker started while two train joins at a step boundary with the current
    /// state: it ends bitwise equal to the others, and the result stays W-independent.
    func testLateWorkerJoinsAtAStepBoundary() throws {
        let config = try makeConfig(shuffle: true, epochs: 30)
        let one = try trainInProcess(config, world: 1)
        var options = CoordinatorOptions(config: config, bind: "tcp://127.0.0.1:*", workers: 2, joinTimeout: 60, stepTimeout: 60,
                                         ringTimeout: 30)
        options.heartbeatTimeout = 2
        options.heartbeatInterval = 0.2
        let joinedAt = Box(0)
        let lateStarted = DispatchSemaphore(value: 0)
        let coordinator = try Coordinator(options: options, events: { event in
            if case .step(let p) = event, p.globalStep == 40 {
                lateStarted.signal()
                Thread.sleep(forTimeInterval: 0.3)  // hold this step boundary until the late worker said HELLO
            }
            if case .message(_, let text) = event, text.contains("joined at global step"),
               let n = text.split(separator: " ").firstIndex(of: "step").map({ text.split(separator: " ")[$0 + 1] }) {
                joinedAt.update { $0 = Int(n.trimmingCharacters(in: .punctuationCharacters)) ?? -1 }
            }
        })
        let group = DispatchGroup()
        let summary = Box<Result<TrainingSummary, Error>?>(nil)
        let results = Box<[Result<WorkerSummary, Error>]>([])
        let endpoint = coordinator.endpoint
        func startWorker() {
            group.enter()
            Thread.detachNewThread {
                let r = Result { try Worker(options: WorkerOptions(connect: endpoint, joinTimeout: 60)).run() }
                results.update { $0.append(r) }
                group.leave()
            }
        }
        group.enter()
        Thread.detachNewThread {
            let r = Result { try coordinator.run() }
            summary.update { $0 = r }
            group.leave()
        }
        startWorker()
        startWorker()
        XCTAssertEqual(lateStarted.wait(timeout: .now() + 60), .success)
        startWorker()
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "the run hung")
        let s = try XCTUnwrap(summary.get).get()
        let workers = try results.get.map { try $0.get() }
        XCTAssertEqual(s.globalSteps, 210)
        XCTAssertEqual(s.finalWorld, 3)
        XCTAssertGreaterThanOrEqual(s.reforms, 1)
        XCTAssertGreaterThan(joinedAt.get, 40)
        XCTAssertEqual(workers.count, 3)
        for w in workers {
            XCTAssertEqual(w.steps, 210)
            XCTAssertTrue(w.parameters == s.parameters, "rank \(w.rank) differs bitwise")
        }
        let diff = maxAbsDifference(s.parameters, one.summary.parameters)
        print("late join at global step \(joinedAt.get): max |p - p_W=1| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
    }

    /// A rank waiting in the all-reduce for a peer that is gone abandons the step as soon as
    /// its interrupt check fires (the coordinator's REFORM), long before the frame timeout.
    func testAllReduceWaitIsInterruptible() throws {
        let ctx = try ZMQContext()
        defer { ctx.shutdown() }
        let a = try RingAllReduce(context: ctx, rank: 0, world: 2, runID: 3, bindEndpoint: "tcp://127.0.0.1:*", timeoutMilliseconds: 10_000)
        let b = try RingAllReduce(context: ctx, rank: 1, world: 2, runID: 3, bindEndpoint: "tcp://127.0.0.1:*", timeoutMilliseconds: 10_000)
        defer { a.close(); b.close() }
        try a.connect(peerEndpoints: [a.localEndpoint, b.localEndpoint])
        let start = Date()
        a.interruptCheck = { Date().timeIntervalSince(start) > 0.2 }
        var buffer = [Float](repeating: 1, count: 100)
        XCTAssertThrowsError(try a.allReduceSum(&buffer, step: 0)) { error in
            guard case AllReduceError.interrupted(let g, let s)? = error as? AllReduceError else { return XCTFail("\(error)") }
            XCTAssertEqual(g, 0)
            XCTAssertEqual(s, 0)
        }
        let waited = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(waited, 0.2)
        XCTAssertLessThan(waited, 2, "interrupted within a few poll slices, not at the 10 s timeout")
    }
}
