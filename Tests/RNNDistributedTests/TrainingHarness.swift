// Runs a coordinator and W workers on threads of this test process, over real ZeroMQ tcp
// loopback sockets, with a deadline on the whole run.
import Foundation
import RNNCore
import RNNData
import RNNDistributed
import RNNReport
import XCTest

/// A fresh temporary folder, removed by the caller.
func makeTemporaryDirectory(_ name: String) throws -> String {
    let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("rnn-\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

struct InProcessRun {
    var summary: TrainingSummary
    var workers: [WorkerSummary]
}

/// Runs `coordinator` on a thread inside `group`; `summary` gets its result and `done` turns
/// true when it returns.
func runInBackground(_ coordinator: Coordinator, group: DispatchGroup)
    -> (summary: Box<Result<TrainingSummary, Error>?>, done: Box<Bool>) {
    let summary = Box<Result<TrainingSummary, Error>?>(nil)
    let done = Box(false)
    group.enter()
    Thread.detachNewThread {
        let r = Result { try coordinator.run() }
        summary.update { $0 = r }
        done.update { $0 = true }
        group.leave()
    }
    return (summary, done)
}

/// Trains `config` with `world` workers on threads; fails the test (never hangs) after `timeout`.
func trainInProcess(
    _ config: TrainingConfig, world: Int, checkpointDir: String? = nil, checkpointEvery: Int = 0,
    resume: String? = nil, timeout: Double = 120, interruptPollMilliseconds: Int = 20, connectOverIPC: Bool = false,
    beforeWorkers: ((String) -> Void)? = nil, configureWorker: (@Sendable (Int, inout WorkerOptions) -> Void)? = nil,
    configureCoordinator: ((inout CoordinatorOptions) -> Void)? = nil, workerLog: (@Sendable (Int, String) -> Void)? = nil
) throws -> InProcessRun {
    var options = CoordinatorOptions(config: config, bind: "tcp://127.0.0.1:*", workers: world,
                                     checkpointDir: checkpointDir, checkpointEvery: checkpointEvery, resume: resume,
                                     joinTimeout: timeout, stepTimeout: timeout, ringTimeout: timeout / 2)
    options.recordLog = MetricsLog.opener
    configureCoordinator?(&options)
    let coordinator = try Coordinator(options: options)
    beforeWorkers?(coordinator.endpoint)
    let group = DispatchGroup()
    let (summary, _) = runInBackground(coordinator, group: group)
    let workerResults = Box<[Int: Result<WorkerSummary, Error>]>([:])
    for i in 0..<world {
        group.enter()
        let endpoint = connectOverIPC ? coordinator.localEndpoint ?? "(no IPC endpoint)" : coordinator.endpoint
        Thread.detachNewThread {
            // Over IPC there is no port to find the token file by: the token is handed over,
            // as --local-workers does through RNN_TOKEN.
            var workerOptions = WorkerOptions(connect: endpoint, joinTimeout: timeout, token: connectOverIPC ? coordinator.token ?? "" : "")
            workerOptions.interruptPollMilliseconds = interruptPollMilliseconds
            configureWorker?(i, &workerOptions)
            let worker = Worker(options: workerOptions, log: { line in workerLog?(i, line) })
            let r = Result { try worker.run() }
            workerResults.update { $0[i] = r }
            group.leave()
        }
    }
    guard group.wait(timeout: .now() + timeout + 10) == .success else {
        struct Hung: Error, CustomStringConvertible { var description: String }
        throw Hung(description: "the in-process run with \(world) worker(s) did not finish within \(Int(timeout + 10)) s")
    }
    let result = try summary.get!.get()
    let workers = try workerResults.get.values.map { try $0.get() }.sorted { $0.rank < $1.rank }
    return InProcessRun(summary: result, workers: workers)
}

/// Largest absolute difference between two equally long arrays.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}
