// What a real deployment hits, run as a user or a cluster script runs the programs: key files
// in folders of any name, refused CURVE handshakes, workers started before their coordinator,
// CURVE rings formed by hand-started workers, Ctrl-C and SIGTERM, `--resume DIR` alone,
// divergence, and the smaller rough edges of the command line.
import Foundation
import RNNCheckpoint
import RNNCore
import XCTest

final class HardeningTests: XCTestCase {
    var dir = ""
    let train = repositoryRoot.appendingPathComponent("datasets/digits/digits-train.h5").path

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("hard") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    /// A short digits run (GRU H=32, 30 steps) of `rnn-coord start`.
    func shortRun(_ extra: [String], steps: Int = 30) -> [String] {
        ["start", "--data", train, "--cell", "gru", "--hidden", "32", "--batch-size", "64", "--epochs", "2",
         "--max-steps", "\(steps)", "--heartbeat-timeout", "2", "--heartbeat-interval", "0.2", "--join-timeout", "30"] + extra
    }

    func keygen(_ name: String, in folder: String) throws {
        let p = try ChildProcess("rnn-coord", ["keygen", "--out", folder, "--name", name])
        XCTAssertEqual(p.wait(timeout: 30), 0, p.output)
    }

    /// Removes the run token file a coordinator on loopback port `port` would write (as
    /// RunToken.defaultPath names it).
    func removeTokenFile(port: Int) {
        for base in [ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], NSTemporaryDirectory()].compactMap({ $0 }) where !base.isEmpty {
            unlink((base as NSString).appendingPathComponent("rnn-coord-\(getuid())-\(port).token"))
        }
    }

    func isRunning(_ pid: Int32) -> Bool {
        // A zombie (exited, not yet reaped by its parent) counts as gone.
        guard kill(pid, 0) == 0 else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !stat.contains(") Z ")
    }

    // MARK: Security and joining

    /// Item 1: keys under `mktemp -d` (`/tmp/tmp.XXXXXXXXXX/keys/coordinator.pub` is exactly 40
    /// characters of the Z85 alphabet) are read as files and the worker joins.
    func testKeysUnderAFortyCharacterPathJoin() throws {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        let top = "/tmp/tmp." + String((0..<10).map { _ in letters.randomElement()! })
        let keys = top + "/keys"
        defer { try? FileManager.default.removeItem(atPath: top) }
        try keygen("coordinator", in: keys)
        try keygen("worker", in: keys)
        XCTAssertEqual((keys + "/coordinator.pub").count, 40)
        try FileManager.default.copyItem(atPath: keys + "/worker.pub", toPath: keys + "/workers.allow")
        let coord = try ChildProcess("rnn-coord", shortRun(["--workers", "1", "--bind", "tcp://127.0.0.1:*",
                                                            "--curve-key", keys + "/coordinator.key", "--allow", keys + "/workers.allow"]))
        let endpoint = try coordinatorEndpoint(coord)
        let worker = try ChildProcess("rnn-worker", ["--connect", endpoint, "--curve-key", keys + "/worker.key",
                                                     "--server-key", keys + "/coordinator.pub", "--join-timeout", "20"])
        XCTAssertEqual(worker.wait(timeout: 60), 0, worker.output)
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        XCTAssertTrue(worker.output.contains("done after 30 steps"), worker.output)
    }

    /// Item 2: a wrong server key, a key not on the allow-list, and CURVE on one side only
    /// (both ways) each end the worker within seconds with a sentence that says which; the
    /// coordinator logs the refused peer; a right worker still trains afterwards.
    func testRefusedCURVEHandshakesAreNamedOnBothSides() throws {
        let keys = path("keys")
        for name in ["coordinator", "worker", "other"] { try keygen(name, in: keys) }
        try FileManager.default.copyItem(atPath: keys + "/worker.pub", toPath: keys + "/workers.allow")
        let coord = try ChildProcess("rnn-coord", shortRun(["--workers", "1", "--bind", "tcp://127.0.0.1:*", "--join-timeout", "60",
                                                            "--curve-key", keys + "/coordinator.key", "--allow", keys + "/workers.allow"]))
        let endpoint = try coordinatorEndpoint(coord)
        let cases: [(args: [String], says: String)] = [
            (["--curve-key", keys + "/worker.key", "--server-key", keys + "/other.pub"], "rejected our CURVE handshake: check --server-key"),
            (["--curve-key", keys + "/other.key", "--server-key", keys + "/coordinator.pub"], "is not on its allow-list"),
            ([], "requires CURVE: give this worker --curve-key"),
        ]
        for c in cases {
            let started = Date()
            let worker = try ChildProcess("rnn-worker", ["--connect", endpoint, "--join-timeout", "30"] + c.args)
            XCTAssertEqual(worker.wait(timeout: 40), 1, worker.output)
            let seconds = Date().timeIntervalSince(started)
            XCTAssertTrue(worker.output.contains(c.says), worker.output)
            XCTAssertLessThan(seconds, 10, "the worker waited for its join timeout instead of reading the handshake failure")
            print("refused handshake (\(c.says)): worker exited after \(String(format: "%.2f", seconds)) s")
        }
        XCTAssertNotNil(coord.waitForLine(containing: "its CURVE handshake does not decrypt", timeout: 5), coord.output)
        XCTAssertTrue(coord.output.contains("refused a CURVE client from 127.0.0.1"), coord.output)
        // The worker without keys: the coordinator sees the mismatch, or (when the worker hung
        // up first, having seen it itself) a connection closed during the handshake.
        XCTAssertTrue(coord.output.contains("it does not use CURVE") || coord.output.contains("closed the connection during the handshake"), coord.output)
        let good = try ChildProcess("rnn-worker", ["--connect", endpoint, "--curve-key", keys + "/worker.key",
                                                   "--server-key", keys + "/coordinator.pub"])
        XCTAssertEqual(good.wait(timeout: 60), 0, good.output)
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        // Once per peer and reason: the wrong-key worker retried every ~100 ms, one line came out.
        XCTAssertEqual(coord.output.components(separatedBy: "does not decrypt").count - 1, 1, coord.output)

        // CURVE at the worker only.
        let plain = try ChildProcess("rnn-coord", shortRun(["--workers", "1", "--bind", "tcp://127.0.0.1:*", "--join-timeout", "5"]))
        let plainEndpoint = try coordinatorEndpoint(plain)
        let curveWorker = try ChildProcess("rnn-worker", ["--connect", plainEndpoint, "--curve-key", keys + "/worker.key",
                                                          "--server-key", keys + "/coordinator.pub", "--join-timeout", "30"])
        XCTAssertEqual(curveWorker.wait(timeout: 40), 1, curveWorker.output)
        // The mismatch, or (when the coordinator hung up first) a handshake cut short.
        XCTAssertTrue(curveWorker.output.contains("it does not use CURVE") || curveWorker.output.contains("started with --curve-key"),
                      curveWorker.output)
        XCTAssertNotEqual(plain.wait(timeout: 30), 0)
        XCTAssertTrue(plain.output.contains("refused a connection from 127.0.0.1") && plain.output.contains("this coordinator was started without --curve-key"),
                      plain.output)
    }

    /// Item 3: two workers started 0.5 s before their coordinator, and two started with it,
    /// find its token file and train (on loopback, with no --token).
    func testWorkersStartedBeforeOrWithTheCoordinatorTrain() throws {
        for delay in [0.5, 0.0] {
            let port = try freeTCPPort()
            let endpoint = "tcp://127.0.0.1:\(port)"
            // A token file of an earlier coordinator killed on this port would be read (and retried,
            // as tested below): start from none, so a refusal here means a race.
            removeTokenFile(port: port)
            let workers = try (0..<2).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint, "--join-timeout", "30"]) }
            if delay > 0 { usleep(UInt32(delay * 1e6)) }
            let coord = try ChildProcess("rnn-coord", shortRun(["--workers", "2", "--bind", endpoint]))
            XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
            for w in workers {
                XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
                XCTAssertTrue(w.output.contains("done after 30 steps"), w.output)
            }
            XCTAssertFalse(coord.output.contains("Refused a worker"), coord.output)
        }
        // A token file left by a coordinator that died (SIGKILL) on the same port: the workers
        // read it, are refused, read the new one and train.
        let port = try freeTCPPort()
        let stale = try ChildProcess("rnn-coord", shortRun(["--workers", "2", "--bind", "tcp://127.0.0.1:\(port)"]))
        _ = try coordinatorEndpoint(stale)
        stale.kill()
        _ = stale.wait(timeout: 10)
        let workers = try (0..<2).map { _ in try ChildProcess("rnn-worker", ["--connect", "tcp://127.0.0.1:\(port)", "--join-timeout", "30"]) }
        usleep(300_000)
        let coord = try ChildProcess("rnn-coord", shortRun(["--workers", "2", "--bind", "tcp://127.0.0.1:\(port)"]))
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        for w in workers { XCTAssertEqual(w.wait(timeout: 30), 0, w.output) }
    }

    /// Item 4: with CURVE keys, two workers started by hand right after the coordinator form
    /// their ring at once in each of 5 trials: no ring peer is refused, no receive times out.
    func testCURVERingOfHandStartedWorkersFormsAtOnce() throws {
        let keys = path("keys")
        for name in ["coordinator", "worker"] { try keygen(name, in: keys) }
        try FileManager.default.copyItem(atPath: keys + "/worker.pub", toPath: keys + "/workers.allow")
        for trial in 0..<5 {
            let port = try freeTCPPort()
            let started = Date()
            let coord = try ChildProcess("rnn-coord", shortRun(["--workers", "2", "--bind", "tcp://127.0.0.1:\(port)", "--step-timeout", "20",
                                                                "--curve-key", keys + "/coordinator.key", "--allow", keys + "/workers.allow"], steps: 20))
            let workers = try (0..<2).map { _ in
                try ChildProcess("rnn-worker", ["--connect", "tcp://127.0.0.1:\(port)", "--curve-key", keys + "/worker.key",
                                                "--server-key", keys + "/coordinator.pub", "--join-timeout", "30"])
            }
            XCTAssertEqual(coord.wait(timeout: 90), 0, coord.output)
            for w in workers {
                XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
                XCTAssertFalse(w.output.contains("refused a CURVE client"), "trial \(trial): \(w.output)")
                XCTAssertFalse(w.output.contains("timed out"), "trial \(trial): \(w.output)")
            }
            let seconds = Date().timeIntervalSince(started)
            XCTAssertLessThan(seconds, 15, "trial \(trial) took \(seconds) s: a step waited on a refused ring peer")
            print("CURVE ring trial \(trial): 20 steps in \(String(format: "%.2f", seconds)) s")
        }
    }

    // MARK: Stopping, resuming, diverging

    /// LSTM H=160 on digits, 23 steps per epoch, long enough to be stopped mid-run.
    func longRun(_ extra: [String], epochs: Int = 30) -> [String] {
        faultArguments(["--checkpoint-dir", path("ckpt")] + extra, epochs: epochs)
    }

    /// The newest checkpoint's global step in the run folder.
    func checkpointSteps(_ folder: String) -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).compactMap { name in
            name.hasPrefix("ckpt-") && name.hasSuffix(".h5") ? Int(name.dropFirst(5).dropLast(3)) : nil
        }.sorted()
    }

    /// Global steps of metrics.jsonl's step records, and its epoch records.
    func metrics(_ folder: String) throws -> (steps: [Int], epochs: [[String: Any]]) {
        let text = try String(contentsOfFile: (folder as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var steps: [Int] = [], epochs: [[String: Any]] = []
        for line in text.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if o["kind"] as? String == "step" { steps.append(o["global_step"] as! Int) } else { epochs.append(o) }
        }
        return (steps, epochs)
    }

    /// Item 5 and 6: SIGTERM to a real coordinator mid-epoch: it checkpoints the last completed
    /// step, its local workers and its token file are gone, it exits 143 with one line naming
    /// the checkpoint; `rnn-coord start --resume DIR` alone (settings from DIR/config.yaml)
    /// finishes the run bitwise equal to an uninterrupted one, and metrics.jsonl holds every
    /// step once.
    func testSIGTERMCheckpointsAndResumeAloneEqualsTheUninterruptedRun() throws {
        let epochs = 12, total = 12 * 23
        let reference = path("reference")
        let straight = try ChildProcess("rnn-coord", faultArguments(["--local-workers", "2", "--checkpoint-dir", reference], epochs: epochs))
        XCTAssertEqual(straight.wait(timeout: 300), 0, straight.output)
        let referenceParameters = try finalCheckpoint(reference, step: total).parameters

        let ckpt = path("ckpt")
        let coord = try ChildProcess("rnn-coord", longRun(["--local-workers", "2"], epochs: epochs))
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [3/\(epochs)], Step [5/", timeout: 120), coord.output)
        let tokenLine = try XCTUnwrap(coord.waitForLine(containing: "run token in ", timeout: 5))
        let tokenFile = String(tokenLine[tokenLine.range(of: "run token in ")!.upperBound...].prefix { $0 != ")" })
        let workerPids = coord.output.split(separator: "\n").filter { $0.contains("joined (") }.compactMap { line -> Int32? in
            guard let r = line.range(of: " pid ") else { return nil }
            return Int32(line[r.upperBound...].prefix { $0.isNumber })
        }
        XCTAssertEqual(workerPids.count, 2, coord.output)
        coord.kill(signal: SIGTERM)
        XCTAssertEqual(coord.wait(timeout: 60), 143, coord.output)
        let steps = checkpointSteps(ckpt)
        let stopped = try XCTUnwrap(steps.last, "no checkpoint after SIGTERM: \(coord.output)")
        XCTAssertGreaterThanOrEqual(stopped, 2 * 23 + 5)
        XCTAssertLessThan(stopped, total)
        let last = try XCTUnwrap(coord.output.split(separator: "\n").last(where: { $0.contains("stopped by SIGTERM") }).map(String.init), coord.output)
        XCTAssertTrue(last.contains("after global step \(stopped)") && last.contains("ckpt-\(stopped).h5") && last.contains("--resume"), last)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tokenFile), "the token file outlived the coordinator")
        for pid in workerPids { XCTAssertFalse(isRunning(pid), "local worker \(pid) outlived its coordinator") }
        let saved = try String(contentsOfFile: (ckpt as NSString).appendingPathComponent("config.yaml"), encoding: .utf8)
        XCTAssertTrue(saved.contains("local-workers: 2") && saved.contains("hidden: 160"), saved)

        let resumed = try ChildProcess("rnn-coord", ["start", "--resume", ckpt])
        XCTAssertEqual(resumed.wait(timeout: 300), 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("Resuming from \(ckpt)/ckpt-\(stopped).h5"), resumed.output)
        let final = try finalCheckpoint(ckpt, step: total)
        XCTAssertTrue(final.parameters == referenceParameters,
                      "stopped at \(stopped) + resumed differs from the straight run by \(maxAbsDifference(final.parameters, referenceParameters))")
        XCTAssertEqual(try metrics(ckpt).steps, Array(1...total), "every step once in metrics.jsonl")
        print("SIGTERM at global step \(stopped) of \(total); resume from config.yaml bitwise equal to the straight run")
    }

    /// A second Ctrl-C does not wait: the coordinator exits at once (130), its token file and
    /// its local workers go with it.
    func testSecondSIGINTExitsAtOnce() throws {
        let coord = try ChildProcess("rnn-coord", longRun(["--local-workers", "2", "--step-timeout", "30", "--heartbeat-timeout", "30"], epochs: 200))
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/200], Step [3/", timeout: 120), coord.output)
        let tokenLine = try XCTUnwrap(coord.waitForLine(containing: "run token in ", timeout: 5))
        let tokenFile = String(tokenLine[tokenLine.range(of: "run token in ")!.upperBound...].prefix { $0 != ")" })
        let workerPids = coord.output.split(separator: "\n").filter { $0.contains("joined (") }.compactMap { line -> Int32? in
            guard let r = line.range(of: " pid ") else { return nil }
            return Int32(line[r.upperBound...].prefix { $0.isNumber })
        }
        // SIGSTOP the workers: the first SIGINT's step can then never finish.
        for pid in workerPids { kill(pid, SIGSTOP) }
        coord.kill(signal: SIGINT)
        XCTAssertNotNil(coord.waitForLine(containing: "stopping after the current step", timeout: 10), coord.output)
        usleep(300_000)
        XCTAssertTrue(coord.process.isRunning, "the first SIGINT waits for the step in flight")
        let second = Date()
        coord.kill(signal: SIGINT)
        XCTAssertEqual(coord.wait(timeout: 10), 130, coord.output)
        XCTAssertLessThan(Date().timeIntervalSince(second), 3)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tokenFile))
        usleep(500_000)
        for pid in workerPids {
            XCTAssertFalse(isRunning(pid), "local worker \(pid) outlived the coordinator's forced exit")
            kill(pid, SIGKILL)
        }
    }

    /// A worker given SIGTERM leaves (exit 143): the coordinator re-forms the ring at once,
    /// long before the heartbeat timeout (10 s here), and training ends equal to one worker's.
    func testSIGTERMWorkerLeavesAndTheRingReformsAtOnce() throws {
        let reference = try ReferenceRuns.shared.parameters(workers: 1)
        let ckpt = path("ckpt")
        let coord = try ChildProcess("rnn-coord", faultArguments(["--workers", "3", "--checkpoint-dir", ckpt, "--heartbeat-timeout", "10"]))
        let endpoint = try coordinatorEndpoint(coord)
        let workers = try (0..<3).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint]) }
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/6], Step [5/", timeout: 60), coord.output)
        let leaving = workers[1]
        leaving.kill(signal: SIGTERM)
        let detected = secondsUntil(coord, shows: "Lost worker", timeout: 30)
        XCTAssertEqual(leaving.wait(timeout: 10), 143, leaving.output)
        XCTAssertEqual(coord.wait(timeout: 120), 0, coord.output)
        let seconds = try XCTUnwrap(detected, coord.output)
        XCTAssertLessThan(seconds, 2, "the coordinator waited for the heartbeat timeout")
        XCTAssertTrue(coord.output.contains("it left (rank") && coord.output.contains("received SIGTERM"), coord.output)
        for w in [workers[0], workers[2]] { XCTAssertEqual(w.wait(timeout: 30), 0, w.output) }
        let diff = maxAbsDifference(try finalCheckpoint(ckpt, step: faultSteps).parameters, reference)
        XCTAssertLessThanOrEqual(diff, 1e-5)
        print("SIGTERM worker: ring re-formed after \(String(format: "%.2f", seconds)) s; max |p - p_1 worker| = \(diff)")
    }

    /// A coordinator killed outright (SIGKILL: no handler runs) does not leave its local
    /// workers behind: they see they were re-parented and exit within a second or two.
    func testLocalWorkersExitWhenTheCoordinatorIsKilled() throws {
        let coord = try ChildProcess("rnn-coord", longRun(["--local-workers", "2", "--heartbeat-timeout", "30"], epochs: 200))
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [1/200], Step [3/", timeout: 120), coord.output)
        let workerPids = coord.output.split(separator: "\n").filter { $0.contains("joined (") }.compactMap { line -> Int32? in
            guard let r = line.range(of: " pid ") else { return nil }
            return Int32(line[r.upperBound...].prefix { $0.isNumber })
        }
        XCTAssertEqual(workerPids.count, 2)
        let killed = Date()
        kill(coord.process.processIdentifier, SIGKILL)
        // (Not coord.wait: the workers hold the coordinator's output pipe open while they run.)
        let deadline = killed.addingTimeInterval(5)
        while workerPids.contains(where: isRunning) && Date() < deadline { usleep(50_000) }
        let seconds = Date().timeIntervalSince(killed)
        for pid in workerPids {
            XCTAssertFalse(isRunning(pid), "local worker \(pid) still runs 5 s after its coordinator was killed (heartbeat timeout 30 s)")
            kill(pid, SIGKILL)
        }
        _ = coord.wait(timeout: 10)
        print("SIGKILL coordinator: its local workers exited after \(String(format: "%.2f", seconds)) s")
    }

    /// Item 6: config.yaml holds --curve-key and --allow (paths, not secrets) but not the
    /// token; resuming with another model names both models.
    func testResumeWithAnotherModelSaysSoAndConfigKeepsTheKeys() throws {
        let keys = path("keys")
        for name in ["coordinator", "worker"] { try keygen(name, in: keys) }
        try FileManager.default.copyItem(atPath: keys + "/worker.pub", toPath: keys + "/workers.allow")
        let ckpt = path("ckpt")
        let coord = try ChildProcess("rnn-coord", shortRun(["--workers", "1", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", ckpt,
                                                            "--curve-key", keys + "/coordinator.key", "--allow", keys + "/workers.allow"]))
        let endpoint = try coordinatorEndpoint(coord)
        let worker = try ChildProcess("rnn-worker", ["--connect", endpoint, "--curve-key", keys + "/worker.key", "--server-key", keys + "/coordinator.pub"])
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        XCTAssertEqual(worker.wait(timeout: 30), 0, worker.output)
        let saved = try String(contentsOfFile: ckpt + "/config.yaml", encoding: .utf8)
        XCTAssertTrue(saved.contains("curve-key: \(keys)/coordinator.key"), saved)
        XCTAssertTrue(saved.contains("allow: \(keys)/workers.allow"), saved)
        XCTAssertFalse(saved.contains("token:"), saved)
        // --resume alone keeps CURVE: a worker without keys cannot join the resumed run.
        let resumed = try ChildProcess("rnn-coord", ["start", "--resume", ckpt, "--max-steps", "40", "--join-timeout", "20"])
        let resumedEndpoint = try coordinatorEndpoint(resumed)
        XCTAssertTrue(resumed.output.contains("CURVE, 1 allowed key(s)"), resumed.output)
        let plainWorker = try ChildProcess("rnn-worker", ["--connect", resumedEndpoint, "--join-timeout", "10"])
        XCTAssertEqual(plainWorker.wait(timeout: 20), 1, plainWorker.output)
        XCTAssertTrue(plainWorker.output.contains("requires CURVE"), plainWorker.output)
        let keyed = try ChildProcess("rnn-worker", ["--connect", resumedEndpoint, "--curve-key", keys + "/worker.key", "--server-key", keys + "/coordinator.pub"])
        XCTAssertEqual(resumed.wait(timeout: 60), 0, resumed.output)
        XCTAssertEqual(keyed.wait(timeout: 30), 0, keyed.output)
        XCTAssertEqual(checkpointSteps(ckpt).last, 40)

        let other = try ChildProcess("rnn-coord", ["start", "--resume", ckpt, "--hidden", "48"])
        XCTAssertEqual(other.wait(timeout: 30), 1, other.output)
        XCTAssertTrue(other.output.contains("the checkpoints in \(ckpt) hold a gru H=32") && other.output.contains("you asked for H=48"), other.output)
        XCTAssertFalse(other.output.contains("no valid checkpoint"), other.output)
    }

    /// Item 7: a learning rate that blows the parameters up (1e37: the first step moves them to
    /// about 1e38, the second overflows) stops the run at the step whose loss is not finite,
    /// naming it and the last good checkpoint, which stays as it was; lr 1e38, whose first
    /// bias-corrected step (lr / 0.1) is already Inf, stops at step 1 with no checkpoint.
    func testDivergenceStopsTheRunAtTheGlobalStep() throws {
        let ckpt = path("ckpt")
        let coord = try ChildProcess("rnn-coord", shortRun(["--local-workers", "2", "--bind", "tcp://127.0.0.1:*", "--lr", "1e37",
                                                            "--checkpoint-dir", ckpt, "--checkpoint-every", "1"]))
        XCTAssertEqual(coord.wait(timeout: 60), 1, coord.output)
        let line = try XCTUnwrap(coord.output.split(separator: "\n").first { $0.contains("training diverged at global step") }.map(String.init), coord.output)
        let step = try XCTUnwrap(Int(line[line.range(of: "global step ")!.upperBound...].prefix { $0.isNumber }))
        XCTAssertTrue(line.contains("the last good checkpoint is \(ckpt)/ckpt-\(step - 1).h5"), line)
        XCTAssertEqual(checkpointSteps(ckpt).last, step - 1, "a checkpoint after the divergence was written")
        let good = try CheckpointStore.read(path: "\(ckpt)/ckpt-\(step - 1).h5",
                                            table: ParameterTable(config: ModelConfig(cell: .gru, inputSize: 8, hiddenSize: 32, outputSize: 10)))
        XCTAssertTrue(good.parameters.allSatisfy(\.isFinite))
        print("lr 1e37: diverged at global step \(step)")
        let first = path("first")
        let overflow = try ChildProcess("rnn-coord", shortRun(["--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--lr", "1e38",
                                                               "--checkpoint-dir", first, "--checkpoint-every", "1"]))
        XCTAssertEqual(overflow.wait(timeout: 60), 1, overflow.output)
        XCTAssertTrue(overflow.output.contains("training diverged at global step 1: the gradient or the updated parameters hold NaN or Inf"), overflow.output)
        XCTAssertEqual(checkpointSteps(first), [], "no checkpoint of diverged parameters")
    }

    // MARK: The smaller ones

    func testNegativeNumbersGetTheRealMessage() throws {
        for (flag, value, says) in [("--lr", "-1", "Please specify a positive '--lr', found -1.0."),
                                    ("--hidden", "-5", "Please specify '--hidden' of at least 1."),
                                    ("--beta1", "-0.5", "Please specify '--beta1' in [0, 1), found -0.5."),
                                    ("--lr-gamma", "-0.5", "Please specify a positive '--lr-gamma', found -0.5."),
                                    ("--warmup-steps", "-2", "Please specify '--warmup-steps' of 0 or more, found -2."),
                                    ("--embedding", "-3", "Please specify '--embedding' of at least 1, found -3.")] {
            let p = try ChildProcess("rnn-coord", shortRun(["--local-workers", "1", flag, value]))
            XCTAssertNotEqual(p.wait(timeout: 30), 0)
            XCTAssertTrue(p.output.contains(says), p.output)
            XCTAssertFalse(p.output.contains("Missing value"), p.output)
        }
        let g = try ChildProcess("rnn-coord", ["generate", "--checkpoint", dir, "--prompt", "a", "--temperature", "-1"])
        XCTAssertNotEqual(g.wait(timeout: 30), 0)
        XCTAssertTrue(g.output.contains("Please specify '--temperature' of 0 or more, found -1.0."), g.output)
        let w = try ChildProcess("rnn-worker", ["--connect", "tcp://127.0.0.1:1", "--threads", "-2"])
        XCTAssertNotEqual(w.wait(timeout: 30), 0)
        XCTAssertTrue(w.output.contains("Please specify '--threads' of at least 1."), w.output)
    }

    /// --keep 0 is refused before an earlier run's metrics.jsonl is moved aside; a
    /// --checkpoint-dir that is a file gets one plain sentence.
    func testKeepZeroAndAFileAsCheckpointDirAreRefusedUpFront() throws {
        let ckpt = path("ckpt")
        try FileManager.default.createDirectory(atPath: ckpt, withIntermediateDirectories: true)
        try "{\"kind\":\"step\",\"global_step\":1}\n".write(toFile: ckpt + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let keep = try ChildProcess("rnn-coord", shortRun(["--local-workers", "1", "--checkpoint-dir", ckpt, "--keep", "0"]))
        XCTAssertNotEqual(keep.wait(timeout: 30), 0)
        XCTAssertTrue(keep.output.contains("Please specify '--keep' of at least 1"), keep.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt + "/metrics.jsonl"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ckpt + "/metrics.1.jsonl"), "an earlier run's metrics were moved before the refusal")

        let file = path("afile")
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let p = try ChildProcess("rnn-coord", shortRun(["--local-workers", "1", "--checkpoint-dir", file]))
        XCTAssertNotEqual(p.wait(timeout: 30), 0)
        XCTAssertTrue(p.output.contains("Please specify '--checkpoint-dir' as a folder: \(file) is a file."), p.output)
        XCTAssertFalse(p.output.contains("NSCocoaErrorDomain") || p.output.contains("Error Domain"), p.output)
        XCTAssertEqual(p.output.split(separator: "\n").filter { $0.contains("error") }.count, 1, p.output)
    }

    /// --max-steps inside the first epoch reports the real loss; resuming for more steps
    /// leaves metrics.jsonl with each step once and one record for that epoch, not two.
    func testMaxStepsInsideAnEpochAndItsResume() throws {
        let ckpt = path("ckpt")
        let first = try ChildProcess("rnn-coord", shortRun(["--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", ckpt], steps: 5))
        XCTAssertEqual(first.wait(timeout: 60), 0, first.output)
        let done = try XCTUnwrap(first.output.split(separator: "\n").first { $0.hasPrefix("Done:") }.map(String.init), first.output)
        XCTAssertFalse(done.contains("nan"), done)
        XCTAssertTrue(done.contains("5 steps, loss 2."), done)
        let (_, partial) = try metrics(ckpt)
        XCTAssertEqual(partial.count, 1, "\(partial)")
        XCTAssertEqual(partial.first?["partial"] as? Bool, true)

        let more = try ChildProcess("rnn-coord", ["start", "--resume", ckpt, "--max-steps", "30"])
        XCTAssertEqual(more.wait(timeout: 60), 0, more.output)
        let (steps, epochs) = try metrics(ckpt)
        XCTAssertEqual(steps, Array(1...30))
        // digits: 1437 samples / 64 = 23 steps per epoch: epoch 1 complete, epoch 2 partial.
        XCTAssertEqual(epochs.map { $0["epoch"] as? Int }, [1, 2], "\(epochs)")
        guard epochs.count == 2 else { return }
        XCTAssertNil(epochs[0]["partial"])
        XCTAssertEqual(epochs[1]["partial"] as? Bool, true)
    }

    /// predict on a regression model prints the values (exit 0, also with --outputs); --text
    /// on a model that is not a character model says so; a per-step validation file with
    /// another vocabulary says "vocabulary".
    func testPredictOnRegressionAndTextModelsAndVocabularyMismatch() throws {
        let data = path("reg.h5"), ckpt = path("reg")
        let make = try ChildProcess("/usr/bin/env", ["python3", "-c", """
            import h5py, numpy as np
            rng = np.random.default_rng(0)
            X = rng.standard_normal((200, 8, 3)).astype(np.float32)
            Y = np.stack([X.sum(axis=(1, 2)), X[:, -1, 0]], 1).astype(np.float32)
            with h5py.File("\(data)", "w") as f:
                f["X"] = X; f["Y"] = Y
            """])
        guard make.wait(timeout: 60) == 0 else { throw XCTSkip("h5py is not installed: \(make.output)") }
        let coord = try ChildProcess("rnn-coord", ["start", "--data", data, "--cell", "gru", "--hidden", "16", "--batch-size", "32",
                                                   "--epochs", "2", "--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", ckpt])
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        let predict = try ChildProcess("rnn-coord", ["predict", "--checkpoint", ckpt, "--data", data, "--limit", "3", "--outputs", path("out.h5")])
        XCTAssertEqual(predict.wait(timeout: 30), 0, predict.output)
        let lines = predict.output.split(separator: "\n").map(String.init)
        let header = try XCTUnwrap(lines.firstIndex(of: "sample,predicted,true"), predict.output)
        XCTAssertEqual(lines.count - header - 1, 3, predict.output)
        guard lines.count > header + 1 else { return }
        let row = lines[header + 1].split(separator: ",")
        guard row.count == 3 else { return XCTFail("not sample,predicted,true: \(lines[header + 1])") }
        func values(_ field: Substring) -> [Float] { field.filter { $0 != "\"" }.split(separator: " ").compactMap { Float($0) } }
        XCTAssertEqual(values(row[1]).count, 2, "two predicted values: \(lines[header + 1])")
        XCTAssertEqual(values(row[2]).count, 2, "two true values: \(lines[header + 1])")
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("out.h5")))
        let text = try ChildProcess("rnn-coord", ["predict", "--checkpoint", ckpt, "--text", "hello"])
        XCTAssertEqual(text.wait(timeout: 30), 1)
        XCTAssertTrue(text.output.contains("--text needs a character model") && text.output.contains("regression model"), text.output)

        try "hello world, this is a test of text\n".write(toFile: path("a.txt"), atomically: true, encoding: .utf8)
        try "xyz qq\n".write(toFile: path("b.txt"), atomically: true, encoding: .utf8)
        for (src, out) in [("a.txt", "a.h5"), ("b.txt", "b.h5")] {
            let m = try ChildProcess("rnn-data", ["make", "text", "--from", path(src), "--output", path(out), "--seq-len", "5"])
            XCTAssertEqual(m.wait(timeout: 30), 0, m.output)
        }
        let mismatch = try ChildProcess("rnn-coord", ["start", "--data", path("a.h5"), "--val", path("b.h5"), "--hidden", "8",
                                                      "--local-workers", "1", "--bind", "tcp://127.0.0.1:*"])
        XCTAssertEqual(mismatch.wait(timeout: 30), 1)
        XCTAssertTrue(mismatch.output.contains("vocabulary"), mismatch.output)
    }
}
