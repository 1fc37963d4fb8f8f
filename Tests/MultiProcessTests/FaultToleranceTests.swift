// Faults injected into real rnn-coord / rnn-worker processes: SIGKILL and SIGSTOP of a
// worker, SIGKILL of the coordinator (exit, resume, reconnect), SIGKILL while checkpoints are
// written. Timeouts are short (heartbeat 1 s) so the whole file runs in about a minute.
import Foundation
import RNNCheckpoint
import RNNCore
import XCTest

/// digits, LSTM H=160, batch 64: 23 steps per epoch, 6 epochs = 138 steps (about 15 ms each).
/// lr 0.002 keeps the float-order drift between world sizes small: W=1 vs W=3 fault-free
/// differ by 1.5e-6 here (at lr 0.01 Adam amplifies it to 7e-5 over 138 steps).
let faultSteps = 138

func faultArguments(_ extra: [String], hidden: Int = 160, epochs: Int = 6) -> [String] {
    ["start", "--data", repositoryRoot.appendingPathComponent("datasets/digits/digits-train.h5").path,
     "--cell", "lstm", "--hidden", "\(hidden)", "--batch-size", "64", "--epochs", "\(epochs)", "--lr", "0.002",
     "--shuffle", "--seed", "7", "--bind", "tcp://127.0.0.1:*", "--heartbeat-timeout", "1", "--heartbeat-interval", "0.2",
     "--log-every", "1"] + extra
}

func digitsTable(hidden: Int = 160) -> ParameterTable {
    ParameterTable(config: ModelConfig(cell: .lstm, inputSize: 8, hiddenSize: hidden, layers: 1, outputSize: 10))
}

/// The tcp:// endpoint in the coordinator's "listening on" line.
func coordinatorEndpoint(_ coord: ChildProcess) throws -> String {
    let listening = try XCTUnwrap(coord.waitForLine(containing: "listening on", timeout: 60), coord.output)
    return try XCTUnwrap(listening.split(separator: " ").first { $0.hasPrefix("tcp://") }.map(String.init), listening)
}

/// Seconds until `text` appears in the output (nil: not within `timeout`).
func secondsUntil(_ process: ChildProcess, shows text: String, timeout: Double) -> Double? {
    let start = Date()
    return process.waitForLine(containing: text, timeout: timeout) == nil ? nil : Date().timeIntervalSince(start)
}

/// Final parameters of a run: the newest checkpoint in `dir`.
func finalCheckpoint(_ dir: String, step: Int, hidden: Int = 160) throws -> Checkpoint {
    try CheckpointStore.read(path: (dir as NSString).appendingPathComponent("ckpt-\(step).h5"), table: digitsTable(hidden: hidden))
}

/// Reference runs shared by the tests of this file (computed once).
final class ReferenceRuns: @unchecked Sendable {
    static let shared = ReferenceRuns()
    private let lock = NSLock()
    private var cache: [Int: [Float]] = [:]

    /// Final parameters of a fault-free run with `workers` local workers.
    func parameters(workers: Int) throws -> [Float] {
        lock.lock(); defer { lock.unlock() }
        if let p = cache[workers] { return p }
        let dir = try makeTemporaryDirectory("ref\(workers)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coord = try ChildProcess("rnn-coord", faultArguments(["--local-workers", "\(workers)", "--checkpoint-dir", dir]))
        guard coord.wait(timeout: 180) == 0 else { throw XCTSkip("reference run failed: \(coord.output.suffix(2000))") }
        let p = try finalCheckpoint(dir, step: faultSteps).parameters
        cache[workers] = p
        return p
    }
}

final class FaultToleranceTests: XCTestCase {
    var dir = ""
    var ckpt: String { (dir as NSString).appendingPathComponent("ckpt") }

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("fault") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Every global step appears exactly once in metrics.jsonl (none lost, none applied twice).
    func assertEachStepOnce(_ total: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try String(contentsOfFile: (ckpt as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var steps: [Int] = []
        for l in text.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
            if o["kind"] as? String == "step" { steps.append(o["global_step"] as! Int) }
        }
        XCTAssertEqual(steps, Array(1...total), "global steps logged", file: file, line: line)
    }

    func startRun(workers: Int, extra: [String] = [], workerArgs: [String] = []) throws -> (ChildProcess, [ChildProcess]) {
        let coord = try ChildProcess("rnn-coord", faultArguments(["--workers", "\(workers)", "--checkpoint-dir", ckpt] + extra))
        let endpoint = try coordinatorEndpoint(coord)
        let ws = try (0..<workers).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint] + workerArgs) }
        return (coord, ws)
    }

    /// SIGKILL one of three workers mid-epoch: the two survivors redo the step in a re-formed
    /// ring and finish; every step is applied once; the result equals a fault-free run's.
    func testSIGKILLOneOfThreeWorkersMidEpochTrainingCompletesWithTwo() throws {
        let reference = try ReferenceRuns.shared.parameters(workers: 1)
        let (coord, workers) = try startRun(workers: 3)
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/6], Step [5/", timeout: 60), coord.output)
        let victim = workers[2]
        victim.kill()
        let detected = secondsUntil(coord, shows: "Lost worker", timeout: 30)
        XCTAssertEqual(coord.wait(timeout: 120), 0, coord.output)
        let lost = try XCTUnwrap(coord.output.split(separator: "\n").first { $0.contains("Lost worker") }, coord.output)
        XCTAssertTrue(lost.contains("rank") && lost.contains("pid \(victim.process.processIdentifier)"), String(lost))
        XCTAssertTrue(coord.output.contains("Redoing global step"), coord.output)
        for w in workers.prefix(2) {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("done after \(faultSteps) steps"), w.output)
        }
        let final = try finalCheckpoint(ckpt, step: faultSteps)
        XCTAssertEqual(final.state.stepCount, faultSteps, "Adam applied every step exactly once")
        try assertEachStepOnce(faultSteps)
        let diff = maxAbsDifference(final.parameters, reference)
        print("SIGKILL worker: loss detected after \(detected.map { String(format: "%.2f", $0) } ?? "-") s; "
              + "max |p - p_fault_free| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
    }

    /// SIGSTOP a worker: declared lost within the heartbeat timeout, training goes on; SIGCONT
    /// later: the old worker is refused and exits non-zero, and the result is unchanged.
    func testSIGSTOPWorkerIsDeclaredLostAndSIGCONTCorruptsNothing() throws {
        let reference = try ReferenceRuns.shared.parameters(workers: 1)
        let (coord, workers) = try startRun(workers: 3)
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/6], Step [9/", timeout: 60), coord.output)
        let stopped = workers[1]
        stopped.kill(signal: SIGSTOP)
        let detected = try XCTUnwrap(secondsUntil(coord, shows: "Lost worker", timeout: 30), coord.output)
        XCTAssertLessThan(detected, 1 + 2.5, "heartbeat timeout 1 s plus slack")
        XCTAssertNotNil(coord.waitForLine(containing: "Redoing global step", timeout: 10), coord.output)
        Thread.sleep(forTimeInterval: 0.3)
        stopped.kill(signal: SIGCONT)
        XCTAssertEqual(coord.wait(timeout: 120), 0, coord.output)
        let status = stopped.wait(timeout: 30)
        XCTAssertNotNil(status, "the continued worker hung")
        XCTAssertNotEqual(status, 0, stopped.output)
        XCTAssertTrue(stopped.output.contains("declared lost") || stopped.output.contains("lost the coordinator")
                      || stopped.output.contains("stopped the run"), stopped.output)
        for w in [workers[0], workers[2]] { XCTAssertEqual(w.wait(timeout: 30), 0, w.output) }
        let final = try finalCheckpoint(ckpt, step: faultSteps)
        XCTAssertEqual(final.state.stepCount, faultSteps)
        try assertEachStepOnce(faultSteps)
        let diff = maxAbsDifference(final.parameters, reference)
        print("SIGSTOP worker: declared lost after \(String(format: "%.2f", detected)) s (timeout 1 s); max |p - p_fault_free| = \(diff); "
              + "continued worker: \(stopped.output.split(separator: "\n").last ?? "")")
        XCTAssertLessThanOrEqual(diff, 1e-5)
    }

    /// SIGKILL the coordinator: the workers exit non-zero within the heartbeat timeout saying
    /// so; `--resume` with new workers completes the run, bitwise equal to the uninterrupted run.
    func testSIGKILLCoordinatorWorkersExitAndResumeEqualsUninterruptedRun() throws {
        let reference = try ReferenceRuns.shared.parameters(workers: 2)
        let (coord, workers) = try startRun(workers: 2, extra: ["--checkpoint-every", "10"])
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [3/6], Step [7/", timeout: 60), coord.output)
        coord.kill()
        let killed = Date()
        for w in workers {
            let status = w.wait(timeout: 30)
            XCTAssertNotNil(status)
            XCTAssertNotEqual(status, 0, w.output)
            XCTAssertTrue(w.output.contains("lost the coordinator"), w.output)
        }
        let exitSeconds = Date().timeIntervalSince(killed)
        XCTAssertLessThan(exitSeconds, 1 + 3, "workers exit within the heartbeat timeout (1 s) plus slack")
        let resumed = try ChildProcess("rnn-coord", faultArguments(["--workers", "2", "--checkpoint-dir", ckpt, "--checkpoint-every", "10",
                                                                     "--resume", ckpt]))
        let endpoint = try coordinatorEndpoint(resumed)
        let fresh = try (0..<2).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint]) }
        XCTAssertEqual(resumed.wait(timeout: 120), 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("Resuming from"), resumed.output)
        for w in fresh { XCTAssertEqual(w.wait(timeout: 30), 0, w.output) }
        let final = try finalCheckpoint(ckpt, step: faultSteps)
        XCTAssertTrue(final.parameters == reference, "resumed run differs from the uninterrupted one by \(maxAbsDifference(final.parameters, reference))")
        // The steps between the checkpoint and the kill were logged, then redone: logged once.
        try assertEachStepOnce(faultSteps)
        print("SIGKILL coordinator: workers exited after \(String(format: "%.2f", exitSeconds)) s; resume bitwise equal")
    }

    /// With --reconnect-timeout the workers outlive the coordinator and join the resumed one
    /// at the same endpoint; the result is again bitwise the uninterrupted run's.
    func testWorkersReconnectToAResumedCoordinator() throws {
        let reference = try ReferenceRuns.shared.parameters(workers: 2)
        let port = try freeTCPPort()
        let bind = ["--bind", "tcp://127.0.0.1:\(port)"]
        let first = try ChildProcess("rnn-coord", faultArguments(["--workers", "2", "--checkpoint-dir", ckpt, "--checkpoint-every", "10"]) + bind)
        let endpoint = try coordinatorEndpoint(first)
        let workers = try (0..<2).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint, "--reconnect-timeout", "30"]) }
        XCTAssertNotNil(first.waitForLine(containing: "Epoch [2/6], Step [15/", timeout: 60), first.output)
        first.kill()
        first.wait(timeout: 10)
        for w in workers { XCTAssertNotNil(w.waitForLine(containing: "trying to reconnect", timeout: 10), w.output) }
        let resumed = try ChildProcess("rnn-coord", faultArguments(["--workers", "2", "--checkpoint-dir", ckpt, "--checkpoint-every", "10",
                                                                     "--resume", ckpt]) + bind)
        XCTAssertEqual(resumed.wait(timeout: 120), 0, resumed.output)
        for w in workers {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("done after \(faultSteps) steps"), w.output)
        }
        let final = try finalCheckpoint(ckpt, step: faultSteps)
        XCTAssertTrue(final.parameters == reference, "differs by \(maxAbsDifference(final.parameters, reference))")
    }

    /// SIGKILL the coordinator at many points while it writes a checkpoint every step: no
    /// file under a checkpoint name is ever damaged; resume skips planted damaged and foreign
    /// files with a warning and continues from the newest valid checkpoint.
    func testSIGKILLDuringCheckpointWritesNeverLeavesADamagedCheckpoint() throws {
        let hidden = 256
        let table = digitsTable(hidden: hidden)
        var killsMidWrite = 0, checked = 0
        var previousLeftTemporary = false
        let killPoints = 10
        for i in 0..<killPoints {
            var args = faultArguments(["--local-workers", "1", "--checkpoint-dir", ckpt, "--checkpoint-every", "1", "--keep", "2"],
                                      hidden: hidden, epochs: 50)
            if i > 0 { args += ["--resume", ckpt] }
            let coord = try ChildProcess("rnn-coord", args)
            XCTAssertNotNil(coord.waitForLine(containing: "Checkpoint ", timeout: 60), coord.output)
            if previousLeftTemporary {
                XCTAssertTrue(coord.output.contains("temporary file(s) of interrupted checkpoint writes"), coord.output)
            }
            // Kill point i: i * 2 ms after a temporary checkpoint file appears, i.e. spread
            // over the write (create, datasets, flush, fsync, rename) and just after it.
            let seen = Date().addingTimeInterval(10)
            while Date() < seen, !((try? FileManager.default.contentsOfDirectory(atPath: ckpt)) ?? []).contains(where: { $0.contains(".tmp-") }) {
                usleep(200)
            }
            usleep(UInt32(i * 2_000))
            coord.kill()
            coord.wait(timeout: 10)
            let names = try FileManager.default.contentsOfDirectory(atPath: ckpt)
            previousLeftTemporary = names.contains(where: { $0.contains(".tmp-") })
            if previousLeftTemporary { killsMidWrite += 1 }
            for name in names where name.hasPrefix("ckpt-") && name.hasSuffix(".h5") {
                XCTAssertNoThrow(try CheckpointStore.read(path: (ckpt as NSString).appendingPathComponent(name), table: table),
                                 "kill point \(i): \(name) is damaged")
                checked += 1
            }
            Thread.sleep(forTimeInterval: 1.1)  // its local worker notices the loss and exits
        }
        // Plant a foreign file and a truncated copy under checkpoint names newer than any real one.
        let valid = try XCTUnwrap(CheckpointStore.newest(in: ckpt, table: table).path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: valid))
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: (ckpt as NSString).appendingPathComponent("ckpt-999999.h5")))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: (ckpt as NSString).appendingPathComponent("ckpt-999998.h5")))
        let validStep = try CheckpointStore.read(path: valid, table: table).metadata.globalStep
        let resume = try ChildProcess("rnn-coord", faultArguments(["--local-workers", "1", "--checkpoint-dir", ckpt, "--resume", ckpt,
                                                                    "--max-steps", "\(validStep + 2)"], hidden: hidden, epochs: 50))
        XCTAssertEqual(resume.wait(timeout: 60), 0, resume.output)
        XCTAssertTrue(resume.output.contains("skipping") && resume.output.contains("ckpt-999999.h5") && resume.output.contains("ckpt-999998.h5"),
                      resume.output)
        XCTAssertTrue(resume.output.contains("Resuming from \(valid)"), resume.output)
        let left = try FileManager.default.contentsOfDirectory(atPath: ckpt).filter { $0.contains(".tmp-") }
        XCTAssertEqual(left, [], "temporary files of crashed writes are cleaned up at the next start")
        print("checkpoint kill loop: \(killPoints) SIGKILLs, \(killsMidWrite) left a temporary file (killed mid-write), "
              + "\(checked) files under checkpoint names checked, all valid")
    }
}

/// A TCP port that was free a moment ago.
func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw XCTSkip("cannot find a free port") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}
