// Several hosts on one machine: each worker (and the coordinator) in its own network namespace
// with its own address on a bridge, every link shaped to 1 Gbit/s both ways
// (scripts/netns-hosts.sh through NetworkHosts). Needs root; skips with a message otherwise,
// unless RNN_REQUIRE_NETNS=1 (set by .ci/run as root), where that is a failure.
//
// The run: digits, LSTM H=160, batch 64, 6 epochs = 138 steps, lr 0.002 (W=1 against W=3
// differ by ~1.5e-6 there; see FaultToleranceTests), heartbeats every 0.2 s, timeout 1 s.
import Foundation
import MultiProcessSupport
import RNNCheckpoint
import RNNCore
import XCTest

let multiHostSteps = 138

final class MultiHostTests: XCTestCase {
    var hosts: NetworkHosts?
    var dirs: [String] = []

    override func tearDown() {
        hosts?.remove()
        hosts = nil
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    func makeHosts(_ count: Int, rate: String = "1gbit") throws -> NetworkHosts {
        do {
            let h = try NetworkHosts(count: count, rate: rate)
            hosts = h
            return h
        } catch let e as NetworkHostsUnavailable {
            if ProcessInfo.processInfo.environment["RNN_REQUIRE_NETNS"] == "1" {
                XCTFail("\(e), and RNN_REQUIRE_NETNS=1 requires test hosts")
            }
            throw XCTSkip("multi-host test skipped: \(e)")
        }
    }

    func directory(_ name: String) throws -> String {
        let d = try makeTemporaryDirectory(name)
        dirs.append(d)
        return d
    }

    func trainingArguments(_ extra: [String], hidden: Int = 160) -> [String] {
        ["start", "--data", repositoryRoot.appendingPathComponent("datasets/digits/digits-train.h5").path,
         "--cell", "lstm", "--hidden", "\(hidden)", "--batch-size", "64", "--epochs", "6", "--lr", "0.002",
         "--shuffle", "--seed", "7", "--heartbeat-timeout", "1", "--heartbeat-interval", "0.2",
         "--log-every", "1", "--join-timeout", "60"] + extra
    }

    func table(hidden: Int) -> ParameterTable {
        ParameterTable(config: ModelConfig(cell: .lstm, inputSize: 8, hiddenSize: hidden, layers: 1, outputSize: 10))
    }

    func finalParameters(_ dir: String, hidden: Int = 160) throws -> Checkpoint {
        try CheckpointStore.read(path: (dir as NSString).appendingPathComponent("ckpt-\(multiHostSteps).h5"), table: table(hidden: hidden))
    }

    /// The same run with one local worker on loopback.
    func oneWorkerReference(hidden: Int = 160) throws -> [Float] {
        let dir = try directory("mh-ref")
        let coord = try ChildProcess("rnn-coord", trainingArguments(["--local-workers", "1", "--bind", "tcp://127.0.0.1:*",
                                                                      "--checkpoint-dir", dir], hidden: hidden))
        XCTAssertEqual(coord.wait(timeout: 240), 0, coord.output)
        return try finalParameters(dir, hidden: hidden).parameters
    }

    /// CURVE keys for the coordinator and the workers, and the allow-list.
    func keys() throws -> String {
        let dir = try directory("mh-keys")
        for name in ["coordinator", "worker"] {
            let k = try ChildProcess("rnn-coord", ["keygen", "--out", dir, "--name", name])
            XCTAssertEqual(k.wait(timeout: 30), 0, k.output)
        }
        try FileManager.default.copyItem(atPath: "\(dir)/worker.pub", toPath: "\(dir)/workers.allow")
        return dir
    }

    /// The coordinator on host 0 and one worker on each of hosts `workerHosts`, with CURVE.
    func startRun(_ hosts: NetworkHosts, workerHosts: [Int], checkpointDir: String, keys: String,
                  hidden: Int = 160, extra: [String] = []) throws -> (coord: ChildProcess, workers: [ChildProcess])
    {
        let port = Int.random(in: 20_000..<40_000)
        let endpoint = "tcp://\(hosts.address(0)):\(port)"
        let coord = try hosts.run(0, "rnn-coord", trainingArguments([
            "--workers", "\(workerHosts.count)", "--bind", endpoint, "--checkpoint-dir", checkpointDir,
            "--curve-key", "\(keys)/coordinator.key", "--allow", "\(keys)/workers.allow"] + extra, hidden: hidden))
        XCTAssertNotNil(coord.waitForLine(containing: "listening on", timeout: 60), coord.output)
        let workers = try workerHosts.map { h in
            try hosts.run(h, "rnn-worker", ["--connect", endpoint, "--advertise-host", hosts.address(h),
                                            "--curve-key", "\(keys)/worker.key", "--server-key", "\(keys)/coordinator.pub"])
        }
        return (coord, workers)
    }

    func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    /// W = 4 workers on 4 hosts (the coordinator shares host 0 with a worker) over CURVE give
    /// the parameters of W = 1 up to float summation order.
    func testFourWorkersOnFourHostsWithCurveEqualOneWorker() throws {
        let hosts = try makeHosts(4)
        let keys = try keys()
        let dir = try directory("mh-w4")
        let started = Date()
        let (coord, workers) = try startRun(hosts, workerHosts: [0, 1, 2, 3], checkpointDir: dir, keys: keys)
        XCTAssertEqual(coord.wait(timeout: 300), 0, coord.output)
        let seconds = Date().timeIntervalSince(started)
        for (i, w) in workers.enumerated() {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("ring endpoint tcp://\(hosts.address(i)):"), "worker \(i) rings over its own host's address: \(w.output)")
            XCTAssertTrue(w.output.contains("done after \(multiHostSteps) steps"), w.output)
        }
        let final = try finalParameters(dir)
        XCTAssertEqual(final.state.stepCount, multiHostSteps)
        let reference = try oneWorkerReference()
        let diff = maxAbsDifference(final.parameters, reference)
        XCTAssertLessThan(diff, 1e-5, "W=4 on 4 hosts against W=1: max |difference| \(diff)")
        XCTAssertGreaterThan(diff, 0, "W=4 and W=1 sum in different orders; identical bits would mean the run was not split")
        print("multi-host: W=4 on 4 hosts (1gbit links, CURVE) in \(String(format: "%.1f", seconds)) s; max |W4 - W1| = \(diff)")
    }

    /// A small model (H=64: a 78 KB gradient, under the 256 KiB crossover) makes W = 4 use
    /// recursive doubling, whose partners are not ring neighbours, across hosts with CURVE: the
    /// result equals W = 1. With --compress bf16 the same run finishes with equal replicas (the
    /// coordinator's hash check), twice with the same bits, and close to W = 1.
    func testRecursiveDoublingAndBF16AcrossHostsWithCurve() throws {
        let hosts = try makeHosts(4)
        let keys = try keys()
        var results: [String: [Float]] = [:]
        for (name, extra) in [("fp32", [String]()), ("bf16", ["--compress", "bf16"]), ("bf16 again", ["--compress", "bf16"])] {
            let dir = try directory("mh-small")
            let (coord, workers) = try startRun(hosts, workerHosts: [0, 1, 2, 3], checkpointDir: dir, keys: keys, hidden: 64, extra: extra)
            XCTAssertEqual(coord.wait(timeout: 300), 0, "\(name): \(coord.output)")
            for w in workers { XCTAssertEqual(w.wait(timeout: 30), 0, "\(name): \(w.output)") }
            results[name] = try finalParameters(dir, hidden: 64).parameters
        }
        let reference = try oneWorkerReference(hidden: 64)
        let fp32 = try XCTUnwrap(results["fp32"]), bf16 = try XCTUnwrap(results["bf16"]), again = try XCTUnwrap(results["bf16 again"])
        let diff = maxAbsDifference(fp32, reference)
        XCTAssertLessThan(diff, 1e-5, "recursive doubling, W=4 on 4 hosts, against W=1: \(diff)")
        XCTAssertTrue(bf16.elementsEqual(again) { $0.bitPattern == $1.bitPattern }, "bf16 across hosts is reproducible")
        let bf16Diff = maxAbsDifference(bf16, reference)
        XCTAssertGreaterThan(bf16Diff, 10 * diff, "bf16 rounding shows (\(bf16Diff) against \(diff))")
        XCTAssertLessThan(bf16Diff, 0.5, "and stays a nearby model")
        print("multi-host H=64 W=4: recursive doubling max |W4 - W1| = \(diff); bf16 \(bf16Diff)")
    }

    /// Two workers on host 1 and two on host 2 (the coordinator alone on host 0): the
    /// hierarchical path (each pair sums over ipc://, the two leaders exchange over the link,
    /// each leader copies back) equals W = 1 within 1e-5; the members send nothing to ring
    /// endpoints; and host 1's link carries about one copy of the gradient per step and
    /// direction, against the flat ring's 2 (W-1)/W = 1.5 copies per crossing, and the ring
    /// crosses the link twice or four times as the ranks' join order falls (`--flat-allreduce`,
    /// same hosts). Then 3 workers on host 1 and 1 on host 2: the same.
    func testTwoWorkersOnEachOfTwoHostsTakeTheHierarchicalPathAndEqualOneWorker() throws {
        let hosts = try makeHosts(3)
        let keys = try keys()
        let gradientBytes = table(hidden: 160).totalCount * 4
        var sent: [String: Int] = [:], received: [String: Int] = [:]
        var results: [String: [Float]] = [:], seconds: [String: Double] = [:]
        for (name, extra, placement) in [("hierarchical", [String](), [1, 1, 2, 2]), ("flat", ["--flat-allreduce"], [1, 1, 2, 2]),
                                         ("hierarchical 3+1", [], [1, 2, 1, 1])] {
            let dir = try directory("mh-2x2")
            let before = try (1...2).map { try hosts.linkBytes($0) }
            let started = Date()
            let (coord, workers) = try startRun(hosts, workerHosts: placement, checkpointDir: dir, keys: keys, extra: extra)
            XCTAssertEqual(coord.wait(timeout: 400), 0, "\(name): \(coord.output)")
            seconds[name] = Date().timeIntervalSince(started)
            var memberLines = 0
            for w in workers {
                XCTAssertEqual(w.wait(timeout: 30), 0, "\(name): \(w.output)")
                XCTAssertTrue(w.output.contains("done after \(multiHostSteps) steps"), w.output)
                let hier = w.output.contains("hierarchical all-reduce: rank")
                XCTAssertEqual(hier, name.hasPrefix("hierarchical"), "\(name): \(w.output)")
                if w.output.contains("a member (leader rank") {
                    memberLines += 1
                    XCTAssertTrue(w.output.contains("all-reduce sent 0 bytes to ring endpoints"), "a member sends only within its host: \(w.output)")
                }
            }
            XCTAssertEqual(memberLines, ["hierarchical": 2, "flat": 0, "hierarchical 3+1": 2][name], "\(name): members (not leaders)")
            let after = try (1...2).map { try hosts.linkBytes($0) }
            sent[name] = zip(before, after).map { $1.sent - $0.sent }.max()!
            received[name] = zip(before, after).map { $1.received - $0.received }.max()!
            results[name] = try finalParameters(dir).parameters
        }
        let reference = try oneWorkerReference()
        let copies = Double(multiHostSteps * gradientBytes)
        let hier = try XCTUnwrap(results["hierarchical"]), flat = try XCTUnwrap(results["flat"])
        let diff = maxAbsDifference(hier, reference), flatDiff = maxAbsDifference(flat, reference)
        XCTAssertLessThan(diff, 1e-5, "hierarchical 2+2 against W=1: max |difference| \(diff)")
        XCTAssertGreaterThan(diff, 0, "the run was split")
        XCTAssertLessThan(flatDiff, 1e-5, "flat 2+2 against W=1: \(flatDiff)")
        let h = Double(sent["hierarchical"]!) / copies, hr = Double(received["hierarchical"]!) / copies
        let f = Double(sent["flat"]!) / copies, fr = Double(received["flat"]!) / copies
        XCTAssertGreaterThan(h, 0.95, "a leader sends the host's sum once per step")
        XCTAssertLessThan(h, 1.3, "hierarchical: about one gradient per step leaves each host (\(h))")
        XCTAssertLessThan(hr, 1.3, "and enters it (\(hr))")
        XCTAssertGreaterThan(f, 1.3 * h, "flat ring: 1.5 gradients per step cross each host's link (\(f) against \(h))")
        let uneven = try XCTUnwrap(results["hierarchical 3+1"])
        let unevenDiff = maxAbsDifference(uneven, reference)
        XCTAssertLessThan(unevenDiff, 1e-5, "hierarchical 3+1 against W=1: \(unevenDiff)")
        let u = Double(sent["hierarchical 3+1"]!) / copies
        XCTAssertGreaterThan(u, 0.95)
        XCTAssertLessThan(u, 1.3, "3+1: still one gradient per step over the busiest link (\(u))")
        print("multi-host 3+1 workers on 2 hosts: max |W4 - W1| \(unevenDiff), busiest link sent \(String(format: "%.3f", u)) gradients per step; "
              + "run seconds " + seconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value))" }.joined(separator: ", "))
        print("multi-host 2+2 workers on 2 hosts: max |W4 - W1| hierarchical \(diff), flat \(flatDiff); bytes over the busiest host link "
              + "per step, in gradients of \(gradientBytes) B: hierarchical sent \(String(format: "%.3f", h)) received \(String(format: "%.3f", hr)), "
              + "flat sent \(String(format: "%.3f", f)) received \(String(format: "%.3f", fr)) (\(sent["hierarchical"]!) vs \(sent["flat"]!) bytes)")
    }

    /// Host 3's link goes down while steps are in flight: the coordinator declares its worker
    /// lost (no heartbeat), the survivors abandon the unfinished step, re-form the ring of 3
    /// and finish; every step is applied once and the result still equals W = 1.
    func testAHostWhoseLinkGoesDownMidStepIsLostAndTheOthersFinish() throws {
        let hosts = try makeHosts(4)
        let keys = try keys()
        let dir = try directory("mh-cut")
        let (coord, workers) = try startRun(hosts, workerHosts: [1, 2, 3], checkpointDir: dir, keys: keys)
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/6], Step [5/", timeout: 120), coord.output)
        try hosts.setLink(3, up: false)
        let cut = Date()
        let detected = secondsUntil(coord, shows: "Lost worker", timeout: 30)
        XCTAssertEqual(coord.wait(timeout: 180), 0, coord.output)
        let lost = try XCTUnwrap(coord.output.split(separator: "\n").first { $0.contains("Lost worker") }, coord.output)
        XCTAssertTrue(lost.contains("no heartbeat"), String(lost))
        for w in workers.prefix(2) {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("done after \(multiHostSteps) steps"), w.output)
            XCTAssertTrue(w.output.contains("of 2, generation"), "the survivors re-form a ring of 2 workers: \(w.output)")
        }
        // "done after 138 steps ...; 2 generation(s), 1 step(s) rolled back, 1 abandoned, ..."
        let abandoned = workers.prefix(2).map { w -> Int in
            guard let r = w.output.range(of: #"(\d+) abandoned"#, options: .regularExpression) else { return 0 }
            return Int(w.output[r].split(separator: " ")[0]) ?? 0
        }
        XCTAssertTrue(abandoned.contains { $0 > 0 },
                      "the cut came while a step was in flight: a survivor abandoned it\n\(workers[0].output)\n\(workers[1].output)")
        let isolated = workers[2].wait(timeout: 30)
        XCTAssertNotNil(isolated)
        XCTAssertNotEqual(isolated, 0, workers[2].output)
        let final = try finalParameters(dir)
        XCTAssertEqual(final.state.stepCount, multiHostSteps, "Adam applied every step exactly once")
        let diff = maxAbsDifference(final.parameters, try oneWorkerReference())
        XCTAssertLessThan(diff, 1e-5, "3 then 2 workers against W=1: max |difference| \(diff)")
        print("multi-host: link of host 3 cut; declared lost after \(detected.map { String(format: "%.2f", $0) } ?? "-") s "
              + "(heartbeat timeout 1 s), run finished \(String(format: "%.1f", Date().timeIntervalSince(cut))) s after the cut; max |W - W1| = \(diff)")
    }
}

/// Seconds until `text` appears in the output (nil: not within `timeout`).
func secondsUntil(_ process: ChildProcess, shows text: String, timeout: Double) -> Double? {
    let start = Date()
    return process.waitForLine(containing: text, timeout: timeout) == nil ? nil : Date().timeIntervalSince(start)
}
