// The user's path through the real binaries: train with JSON output, then eval, predict, plot,
// a config file, and wrong flags (one line of error, one of hint).
import Foundation
import XCTest
@testable import RNNReport

final class CLITests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rnncli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Runs a binary to completion in this test's folder (at most `timeout` s); returns status, stdout, stderr.
    private func run(_ name: String, _ args: [String], timeout: Double = 120) throws -> (Int32, String, String) {
        let r = try runBinary(name, args, in: dir, timeout: timeout)
        return (r.status, r.out, r.err)
    }

    func testTrainEvalPredictPlotFromTheCommandLine() throws {
        XCTAssertEqual(try run("rnn-data", ["make", "hello", "--output", "hello.h5", "--copies", "2"]).0, 0)
        let (status, out, err) = try run("rnn-coord", ["start", "--data", "hello.h5", "--cell", "rnn_tanh", "--hidden", "8", "--batch-size", "2",
                                                       "--epochs", "40", "--lr", "0.05", "--local-workers", "2", "--bind", "tcp://127.0.0.1:*",
                                                       "--checkpoint-dir", "run", "--log-format", "json"])
        XCTAssertEqual(status, 0, out + err)
        var events: [String: Int] = [:]
        var done: [String: Any] = [:]
        for line in out.split(separator: "\n") {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            let event = object["event"] as? String ?? "?"
            events[event, default: 0] += 1
            if event == "done" { done = object }
        }
        XCTAssertEqual(events["epoch"], 40)
        XCTAssertEqual(events["step"], 40)
        XCTAssertEqual(events["config"], 1)
        XCTAssertEqual(done["accuracy"] as? Double, 1)
        let plot = try XCTUnwrap(done["plot"] as? String)
        XCTAssertEqual(plot, "run/loss.png")
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + plot)).prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/config.yaml"))
        XCTAssertEqual(try RunCurves.load(jsonLinesAt: dir + "/run/metrics.jsonl").steps.count, 40)

        let predict = try run("rnn-coord", ["predict", "--checkpoint", "run", "--text", "hello"])
        XCTAssertEqual(predict.1, "elloh\n", predict.2)
        let eval = try run("rnn-coord", ["eval", "--checkpoint", "run/ckpt-40.h5", "--data", "hello.h5"])
        XCTAssertEqual(eval.0, 0, eval.2)
        XCTAssertTrue(eval.1.contains("Accuracy: 100.00%"), eval.1)
        XCTAssertTrue(eval.1.contains("Confusion matrix"), eval.1)
        let replot = try run("rnn-coord", ["plot", "--checkpoint", "run/ckpt-40.h5", "--output", "again.png"])
        XCTAssertEqual(replot.0, 0, replot.2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/again.png"))

        // The saved effective config reruns the run; a typed flag overrides it.
        let rerun = try run("rnn-coord", ["start", "--config", "run/config.yaml", "--epochs", "2", "--checkpoint-dir", "rerun", "--quiet"])
        XCTAssertEqual(rerun.0, 0, rerun.2)
        XCTAssertEqual(rerun.1, "", "quiet")
        let rerunCurves = try RunCurves.load(jsonLinesAt: dir + "/rerun/metrics.jsonl")
        XCTAssertEqual(rerunCurves.epochs.count, 2)
    }

    func testWrongFlagsGetOneLineAndAHint() throws {
        let cases: [(String, [String], String)] = [
            ("rnn-coord", ["start", "--data", "x.h5", "--batchsize", "3", "--local-workers", "1"], "'--batch-size'"),
            ("rnn-worker", ["--conect", "tcp://127.0.0.1:1"], "'--connect'"),
            ("rnn-coord", ["strat"], "'start'"),
            ("rnn-coord", ["eval", "--checkpoint", "none.h5", "--data", "x.h5"], "no such file"),
            ("rnn-coord", ["start", "--data", "x.h5", "--local-workers", "1", "--spin=-5"], "'--spin' of 0 or more microseconds, found -5"),
            ("rnn-worker", ["--connect", "tcp://127.0.0.1:1", "--spin=-1"], "'--spin' of 0 or more microseconds, found -1"),
            ("rnn-coord", ["start", "--data", "x.h5", "--local-workers", "1", "--steps-per-message", "65"], "'--steps-per-message' from 1 to 64, found 65"),
            ("rnn-coord", ["start", "--data", "x.h5", "--local-workers", "1", "--allreduce-crossover", "2,1"],
             "expected measured, fixed or two byte counts RD,HD with RD <= HD (such as 65536,1048576), found '2,1'"),
        ]
        for (name, args, expected) in cases {
            let (status, out, err) = try run(name, args)
            XCTAssertNotEqual(status, 0)
            XCTAssertEqual(out, "")
            let lines = err.split(separator: "\n")
            XCTAssertTrue(lines.count == 1 || (lines.count == 2 && lines[1].hasPrefix("Hint: ")), err)
            XCTAssertTrue(lines[0].contains("error: ") && lines[0].contains(expected), err)
        }
        try "hiden: 3\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let (status, _, err) = try run("rnn-coord", ["start", "--config", "bad.yaml"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(err.contains("unknown key 'hiden' (did you mean 'hidden'?)"), err)
    }

    func testBenchBadValuesGetOneLineAndAHint() throws {
        let cases: [([String], String)] = [
            (["train", "--seconds", "-1"], "a positive '--seconds', found -1.0"),
            (["gemm", "--threads", "0"], "'--threads' of at least 1, found 0"),
            (["allreduce", "--algorithm", "tree"], "'--algorithm' as auto, ring"),
            (["allreduce", "--crossover", "fast"], "expected measured, fixed or two byte counts RD,HD with RD <= HD, found 'fast'"),
            (["scaling", "--overlap", "2"], "'--overlap' as a fraction in [0, 1], found 2.0"),
            (["train", "--config", "lstm-huge"], "found 'lstm-huge'"),
            (["probe", "--secnds", "1"], "'--secnds'"),
            (["nosuch"], "'nosuch'"),
        ]
        for (args, expected) in cases {
            let r = try runBinary("rnn-bench", args, in: dir)
            XCTAssertEqual(r.out, "", "rnn-bench \(args)")
            assertOneErrorLine(r, contains: expected, "rnn-bench \(args)")
        }
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
