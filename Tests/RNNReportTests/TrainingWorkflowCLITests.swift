// The training-workflow flags of issue 16 through the real binaries: every bad value gets one
// clear line and a non-zero exit; a scheduled SGD run writes `lr` into metrics.jsonl.
import Foundation
import RNNData
import XCTest

final class TrainingWorkflowCLITests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rnnflow-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testBadScheduleAndSGDFlagsGetOneLine() throws {
        XCTAssertEqual(try runBinary("rnn-data", ["make", "hello", "--output", "hello.h5"], in: dir).status, 0)
        let start = ["start", "--data", "hello.h5", "--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--epochs", "1"]
        let cases: [([String], String)] = [
            (["--lr-schedule", "linear"], "--lr-schedule"),
            (["--lr-step-size", "0"], "'--lr-step-size' of at least 1"),
            (["--lr-gamma=-1"], "'--lr-gamma'"),
            (["--lr-schedule", "plateau", "--lr-gamma", "2", "--val", "hello.h5"], "'--lr-gamma' below 1"),
            (["--lr-min=-0.1"], "'--lr-min' of 0 or more"),
            (["--lr-patience=-1"], "'--lr-patience' of 0 or more"),
            (["--warmup-steps=-3"], "'--warmup-steps' of 0 or more"),
            (["--momentum", "1.5", "--optimizer", "sgd"], "'--momentum' in [0, 1)"),
            (["--nesterov", "--optimizer", "sgd"], "'--momentum' above 0 with '--nesterov'"),
            (["--optimizer", "sgdd"], "--optimizer"),
            (["--momentum", "0.9"], "--momentum and --nesterov belong to --optimizer sgd"),
            (["--lr-schedule", "plateau"], "needs validation data (--val or --val-split)"),
            (["--val-split", "1.5"], "'--val-split' as a fraction in (0, 1)"),
            (["--accumulate", "0"], "'--accumulate' of at least 1 batch"),
            (["--tensorboard", "/proc/no-such/tb"], "--tensorboard /proc/no-such/tb: cannot create the folder"),
            (["--keep-best", "val_acc"], "--keep-best"),
            (["--early-stopping", "0"], "'--early-stopping' of at least 1"),
            (["--early-stopping", "3"], "--early-stopping needs validation data"),
            (["--keep-best", "val_loss", "--checkpoint-dir", "ck"], "--keep-best val_loss needs validation data"),
            (["--keep-best", "val_loss", "--val-split", "0.2"], "writes best.h5 into '--checkpoint-dir'"),
            (["--val-split", "0.2", "--val", "hello.h5"], "--val-split holds out training data when there is no --val"),
        ]
        for (extra, expected) in cases {
            assertOneErrorLine(try runBinary("rnn-coord", start + extra, in: dir), contains: expected, "\(extra)")
        }
    }

    func testKeepBestNamesTheBestEpochInTheSummary() throws {
        XCTAssertEqual(try runBinary("rnn-data", ["make", "random", "--output", "r.h5", "-n", "60", "-c", "3"], in: dir).status, 0)
        let r = try runBinary("rnn-coord", ["start", "--data", "r.h5", "--val-split", "0.25", "--keep-best", "val_accuracy", "--cell", "gru",
                                            "--hidden", "6", "--batch-size", "9", "--epochs", "4", "--keep", "1",
                                            "--local-workers", "2", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", "run"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let done = r.out.split(separator: "\n").first { $0.hasPrefix("Done: ") } ?? ""
        XCTAssertNotNil(done.range(of: #", best epoch [1-4] \(val_accuracy \d+\.\d\d%\)"#, options: .regularExpression), String(done))
        XCTAssertTrue(r.out.contains("Best checkpoint: run/best.h5"), r.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/best.h5"))
    }

    func testScheduledSGDRunWritesTheLearningRateOfEveryStep() throws {
        XCTAssertEqual(try runBinary("rnn-data", ["make", "hello", "--output", "hello.h5", "--copies", "2"], in: dir).status, 0)
        let r = try runBinary("rnn-coord", ["start", "--data", "hello.h5", "--cell", "rnn_tanh", "--hidden", "8", "--batch-size", "2",
                                            "--epochs", "4", "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.9",
                                            "--lr-schedule", "step", "--lr-step-size", "2", "--lr-gamma", "0.5",
                                            "--local-workers", "2", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", "run", "--quiet"],
                              in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let text = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)
        let steps = text.split(separator: "\n").filter { $0.contains("\"kind\":\"step\"") }
        XCTAssertEqual(steps.count, 4)  // 2 samples, batch 2: one step per epoch
        let lrs = steps.compactMap { line in line.range(of: "\"lr\":").flatMap { Double(line[$0.upperBound...].prefix { $0 != "," && $0 != "}" }) } }
        XCTAssertEqual(lrs, [0.5, 0.5, 0.25, 0.25])
        // A character model: each epoch record has perplexity = exp(loss) and bits per character.
        for line in text.split(separator: "\n") where line.contains("\"kind\":\"epoch\"") {
            let r = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            XCTAssertEqual(r["perplexity"] as! Double, exp(r["loss"] as! Double), accuracy: 1e-9 * exp(r["loss"] as! Double))
            XCTAssertEqual(r["bpc"] as! Double, (r["loss"] as! Double) / log(2), accuracy: 1e-9)
        }
        let plot = try runBinary("rnn-coord", ["plot", "--checkpoint", "run", "--log-scale", "--output", "p.png"], in: dir)
        XCTAssertEqual(plot.status, 0, plot.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/p.png"))
        let config = try String(contentsOfFile: dir + "/run/config.yaml", encoding: .utf8)
        XCTAssertTrue(config.contains("lr-schedule: step"), config)
        XCTAssertTrue(config.contains("momentum: 0.9"), config)
    }
}

final class TextDataOptionsTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rnntext-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testValFractionWritesTrainAndValidationWithOneVocabularyAndVocabFromReusesIt() throws {
        // The tail has a character ('z') the head lacks: the shared vocabulary still holds it.
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 8) + "zzz zzz zzz zzz zzz"
        try text.write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        let r = try runBinary("rnn-data", ["make", "text", "--from", "t.txt", "--seq-len", "10", "--output", "train.h5", "--val-fraction", "0.2"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("train-val.h5"), r.out)
        let train = try TensorDataset.open(path: dir + "/train.h5")
        let val = try TensorDataset.open(path: dir + "/train-val.h5")
        XCTAssertEqual(train.vocabulary, val.vocabulary)
        XCTAssertEqual(train.inputSize, val.inputSize)
        XCTAssertEqual(train.count, (Int((Double(text.count) * 0.8).rounded()) - 1 - 10) / 10 + 1)
        XCTAssertGreaterThan(val.count, 0)
        // A second text with the training file's vocabulary; a character outside it is named.
        try "dog fox over".write(toFile: dir + "/u.txt", atomically: true, encoding: .utf8)
        let u = try runBinary("rnn-data", ["make", "text", "--from", "u.txt", "--seq-len", "4", "--output", "u.h5", "--vocab-from", "train.h5"], in: dir)
        XCTAssertEqual(u.status, 0, u.err)
        XCTAssertEqual(try TensorDataset.open(path: dir + "/u.h5").vocabulary, train.vocabulary)
        try "dog fox QQQQQ".write(toFile: dir + "/w.txt", atomically: true, encoding: .utf8)
        assertOneErrorLine(try runBinary("rnn-data", ["make", "text", "--from", "w.txt", "--seq-len", "4", "--output", "w.h5", "--vocab-from", "train.h5"], in: dir),
                           contains: "'Q'", "unknown character")
        assertOneErrorLine(try runBinary("rnn-data", ["make", "text", "--from", "t.txt", "--output", "x.h5", "--val-output", "v.h5"], in: dir),
                           contains: "'--val-output' needs '--val-fraction'", "val-output alone")
        assertOneErrorLine(try runBinary("rnn-data", ["make", "text", "--from", "t.txt", "--output", "x.h5", "--val-fraction", "1"], in: dir),
                           contains: "'--val-fraction' as a fraction in (0, 1)", "bad fraction")
        assertOneErrorLine(try runBinary("rnn-data", ["make", "text", "--from", "t.txt", "--output", "x.h5", "--vocab-from", "t.txt"], in: dir),
                           contains: "t.txt", "vocab from a text file")
        // The pair trains with --val (same inputs and classes).
        let run = try runBinary("rnn-coord", ["start", "--data", "train.h5", "--val", "train-val.h5", "--cell", "gru", "--hidden", "8",
                                              "--batch-size", "8", "--epochs", "1", "--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--quiet"], in: dir)
        XCTAssertEqual(run.status, 0, run.err)
    }
}
