// deploy/slurm.sbatch on a real Slurm cluster: the single-node one that
// `scripts/slurm-cluster.sh up` starts (munged, slurmctld, slurmd from Debian's packages).
// Without sbatch or a responding controller the test skips, unless RNN_REQUIRE_SLURM=1 (set by
// .ci/run, which brings the cluster up), where that is a failure.
import Foundation
import RNNCheckpoint
import XCTest

final class SlurmClusterTests: XCTestCase {
    /// Runs a Slurm client tool; nil when it is not installed.
    private func slurm(_ tool: String, _ args: [String], environment: [String: String]? = nil) -> (status: Int32, output: String)? {
        guard let path = ["/usr/bin", "/usr/local/bin", "/usr/sbin"].map({ "\($0)/\(tool)" })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        return runToCompletion(path, args, environment: environment)
    }

    private func requireCluster() throws {
        let reason: String
        if slurm("sbatch", ["--version"]) == nil {
            reason = "sbatch is not installed (apt-get install slurmctld slurmd slurm-client munge)"
        } else if let ping = slurm("scontrol", ["ping"]), ping.status == 0, ping.output.contains("UP") {
            return
        } else {
            reason = "no Slurm controller answers `scontrol ping` (start one: sudo scripts/slurm-cluster.sh up)"
        }
        if ProcessInfo.processInfo.environment["RNN_REQUIRE_SLURM"] == "1" {
            XCTFail("Slurm test: \(reason), and RNN_REQUIRE_SLURM=1 requires a cluster")
        }
        throw XCTSkip("Slurm test skipped: \(reason)")
    }

    /// `Key=Value` from `scontrol show job` output.
    private func field(_ key: String, in text: String) -> String? {
        for token in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) where token.hasPrefix(key + "=") {
            return String(token.dropFirst(key.count + 1))
        }
        return nil
    }

    func testTheSbatchScriptTrainsDigitsToACheckpoint() throws {
        try requireCluster()
        let dir = try makeTemporaryDirectory("slurm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = (dir as NSString).appendingPathComponent("keys")
        for name in ["coordinator", "worker"] {
            let keygen = try ChildProcess("rnn-coord", ["keygen", "--out", keys, "--name", name])
            XCTAssertEqual(keygen.wait(timeout: 30), 0, keygen.output)
        }
        try FileManager.default.copyItem(atPath: "\(keys)/worker.pub", toPath: "\(keys)/workers.allow")
        let runDir = (dir as NSString).appendingPathComponent("run")
        let log = (dir as NSString).appendingPathComponent("job.out")
        let env = ["BIN": productsDirectory.path,
                   "DATA": repositoryRoot.appendingPathComponent("datasets/digits").path,
                   "RUN_DIR": runDir, "KEYS": keys, "PORT": "\(Int.random(in: 20_000..<40_000))"]
        // One node, two workers on it (--ntasks-per-node=2) and the coordinator: more tasks than
        // cores, so --overcommit.
        let script = repositoryRoot.appendingPathComponent("deploy/slurm.sbatch").path
        let submit = try XCTUnwrap(slurm("sbatch", ["--parsable", "--nodes=1", "--ntasks-per-node=2", "--overcommit", "--cpus-per-task=1",
                                                    "--job-name=rnn-ci-\(UUID().uuidString.prefix(6))",
                                                    "--output=\(log)", "--chdir=\(dir)", script], environment: env))
        XCTAssertEqual(submit.status, 0, "sbatch failed: \(submit.output)")
        let jobID = try XCTUnwrap(submit.output.split(separator: "\n").last.flatMap { $0.split(separator: ";").first }.map(String.init),
                                  submit.output)
        XCTAssertNotNil(Int(jobID), "sbatch --parsable printed \(submit.output)")
        let started = Date()
        var state = "?"
        var shown = ""
        // `sbatch --wait` is slow to notice the end; poll the controller.
        while Date().timeIntervalSince(started) < 300 {
            guard let show = slurm("scontrol", ["show", "job", jobID]) else { break }
            shown = show.output
            state = field("JobState", in: shown) ?? "?"
            if ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"].contains(state) { break }
            usleep(500_000)
        }
        let seconds = Date().timeIntervalSince(started)
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? "(no job output at \(log))"
        if !["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"].contains(state) { _ = slurm("scancel", [jobID]) }
        XCTAssertEqual(state, "COMPLETED", "job \(jobID): \(shown)\n--- job output ---\n\(output.suffix(4000))")
        XCTAssertEqual(field("ExitCode", in: shown), "0:0", shown)

        // The run's final line names its checkpoint; the checkpoint holds every step of 20 epochs.
        let done = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("Done: ") }.map(String.init), output)
        let steps = try XCTUnwrap(done.split(separator: ",").compactMap { part -> Int? in
            let words = part.split(separator: " ")
            return words.count == 2 && words[1] == "steps" ? Int(words[0]) : nil
        }.first, done)
        XCTAssertTrue(done.hasPrefix("Done: 20 epoch(s)"), done)
        // Two workers trained (both ranks report their end), over the ring of one node.
        let workerEnds = output.split(separator: "\n").filter { $0.contains("worker: rank") && $0.contains("done after \(steps) steps") }
        XCTAssertEqual(workerEnds.count, 2, "--ntasks-per-node=2 starts 2 workers on the node: \(output.suffix(4000))")
        for rank in 0..<2 {
            XCTAssertTrue(workerEnds.contains { $0.contains("rank \(rank) done after") }, "rank \(rank) of 2: \(workerEnds)")
        }
        let checkpoint = (runDir as NSString).appendingPathComponent("ckpt-\(steps).h5")
        let ckpt = try CheckpointStore.read(path: checkpoint, table: digitsTable(hidden: 64))
        XCTAssertEqual(ckpt.state.stepCount, steps, "Adam state of \(checkpoint)")
        XCTAssertTrue(ckpt.parameters.allSatisfy { $0.isFinite })
        let accuracy = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("Test loss") }
            .flatMap { percentage(after: "Test Accuracy", in: String($0)) }, output)
        XCTAssertGreaterThan(accuracy, 90, output)
        for file in ["metrics.jsonl", "loss.png", "config.yaml"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: (runDir as NSString).appendingPathComponent(file)), file)
        }
        print("slurm: job \(jobID) \(state) in \(String(format: "%.1f", seconds)) s, \(steps) steps, test accuracy \(accuracy)%")
    }
}
