// TensorBoard event files: CRC-32C on known vectors, and the files read back by the
// `tensorboard` PyPI package (its EventAccumulator checks both record CRCs) with the right tags,
// steps and values, from the writer and from a real `rnn-coord start --tensorboard` run. The
// read-back tests skip, saying so, when python3 or tensorboard is missing (CI installs it).
import Foundation
import RNNCore
import RNNData
import XCTest
@testable import RNNReport

final class TensorBoardTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rnntb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testCRC32COfKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)  // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    }

    /// Every scalar in the event files of `folder` as tag -> [(step, value)], read by tensorboard.
    private func readBack(_ folder: String) throws -> [String: [(Int, Double)]] {
        let script = """
            import json, sys
            try:
                from tensorboard.backend.event_processing import event_accumulator as ea
            except Exception as e:
                print("MISSING", e); sys.exit(0)
            acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})
            acc.Reload()
            print(json.dumps({t: [[s.step, s.value] for s in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, folder]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw XCTSkip("python3 is not available: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if p.terminationStatus != 0 { throw XCTSkip("python3 could not run the read-back (\(p.terminationStatus)): \(errText)") }
        if text.hasPrefix("MISSING") { throw XCTSkip("the tensorboard package is not installed (pip install tensorboard): \(text)") }
        XCTAssertFalse(errText.contains("crc"), errText)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: [[Double]]] ?? [:]
        return object.mapValues { $0.map { (Int($0[0]), $0[1]) } }
    }

    func testWriterScalarsReadBackWithTagsStepsAndValues() throws {
        let folder = dir + "/tb"
        do {
            let w = try TensorBoardWriter(directory: folder)
            for step in 1...25 { w.add(step: step, scalars: [("loss", 1 / Double(step)), ("lr", 0.01 * Double(step)), ("skip", .nan), ("none", nil)]) }
            w.add(step: 25, scalars: [("val_loss", 0.125)])
            w.flush()
        }
        let back = try readBack(folder)
        XCTAssertEqual(Set(back.keys), ["loss", "lr", "val_loss"])
        XCTAssertEqual(back["loss"]?.map(\.0), Array(1...25))
        // As float32 (simple_value is a float; Foundation's JSON parser may round the double's last digit).
        for (step, value) in back["loss"] ?? [] { XCTAssertEqual(Float(value), Float(1 / Double(step))) }
        for (step, value) in back["lr"] ?? [] { XCTAssertEqual(Float(value), Float(0.01 * Double(step))) }
        XCTAssertEqual(back["val_loss"]?.first?.1, 0.125)
    }

    func testTrainingRunWritesTheMetricsAsTensorBoardScalars() throws {
        XCTAssertEqual(try runBinary("rnn-data", ["make", "hello", "--output", "hello.h5", "--copies", "4"], in: dir).status, 0)
        let r = try runBinary("rnn-coord", ["start", "--data", "hello.h5", "--val", "hello.h5", "--cell", "gru", "--hidden", "6",
                                            "--batch-size", "2", "--epochs", "3", "--lr", "0.05", "--lr-schedule", "cosine",
                                            "--local-workers", "2", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", "run",
                                            "--tensorboard", "tb", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let back = try readBack(dir + "/tb")
        for tag in ["loss", "accuracy", "lr", "samples_per_s", "reduce_s", "val_loss", "val_accuracy", "epoch_loss"] {
            XCTAssertNotNil(back[tag], "tag \(tag) missing: \(back.keys.sorted())")
        }
        // The same steps and values as metrics.jsonl (as float32).
        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let records = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        let steps = records.filter { $0["kind"] as? String == "step" }
        XCTAssertEqual(back["loss"]?.map(\.0), steps.map { $0["global_step"] as! Int })
        for (tb, record) in zip(back["loss"] ?? [], steps) {
            XCTAssertEqual(tb.1, Double(Float(record["loss"] as! Double)), accuracy: 1e-6)
        }
        for (tb, record) in zip(back["lr"] ?? [], steps) {
            XCTAssertEqual(tb.1, Double(Float(record["lr"] as! Double)), accuracy: 1e-9)
        }
        let epochs = records.filter { $0["kind"] as? String == "epoch" }
        XCTAssertEqual(back["val_loss"]?.map(\.0), epochs.map { $0["global_step"] as! Int })
        for (tb, record) in zip(back["val_loss"] ?? [], epochs) {
            XCTAssertEqual(tb.1, Double(Float(record["val_loss"] as! Double)), accuracy: 1e-6)
        }
        // metrics.jsonl records carry an ISO-8601 UTC time.
        for record in records {
            let time = record["time"] as? String ?? ""
            XCTAssertNotNil(time.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), time)
        }
    }

    /// A per-step token model with lengths (targets past each length -100), a validation file,
    /// --accumulate 2 and a cosine schedule: TensorBoard's val_loss is metrics.jsonl's, which
    /// is `eval`'s loss over the real steps of the final checkpoint; the epoch records'
    /// perplexity is exp(loss).
    func testLengthsRunWritesRealStepLossesToTensorBoardAndMetrics() throws {
        var rng = SeededGenerator(seed: 9)
        func write(_ name: String, _ n: Int) throws {
            let t = 7, v = 6
            let lengths = (0..<n).map { _ in Int32(1 + rng.next() % UInt64(t)) }
            var x = [Int32](repeating: 0, count: n * t), y = [Int32](repeating: -100, count: n * t)
            for i in 0..<n {
                for s in 0..<t { x[i * t + s] = Int32(rng.next() % UInt64(v)) }
                for s in 0..<Int(lengths[i]) { y[i * t + s] = (x[i * t + s] + (s > 0 ? x[i * t + s - 1] : 0)) % 3 }
            }
            try DatasetContents(x: .tokens(x, count: n, steps: t, vocabularySize: v), y: .classes(y, shape: [n, t]), classes: 3,
                                lengths: lengths).write(to: dir + "/" + name)
        }
        try write("train.h5", 40)
        try write("val.h5", 24)
        let r = try runBinary("rnn-coord", ["start", "--data", "train.h5", "--val", "val.h5", "--cell", "gru", "--hidden", "8",
                                            "--embedding", "4", "--batch-size", "4", "--accumulate", "2", "--epochs", "3", "--lr", "0.05",
                                            "--lr-schedule", "cosine", "--local-workers", "2", "--bind", "tcp://127.0.0.1:*",
                                            "--checkpoint-dir", "run", "--tensorboard", "tb", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let records = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        let steps = records.filter { $0["kind"] as? String == "step" }
        let epochs = records.filter { $0["kind"] as? String == "epoch" }
        XCTAssertEqual(steps.count, 15)  // 40 rows, 8 per optimizer step
        XCTAssertEqual(epochs.count, 3)
        for e in epochs {
            XCTAssertEqual(e["perplexity"] as! Double, exp(e["loss"] as! Double), accuracy: 1e-9)
            XCTAssertEqual(e["val_perplexity"] as! Double, exp(e["val_loss"] as! Double), accuracy: 1e-9)
        }
        // The last validation equals eval over the real steps of the final checkpoint.
        let eval = try runBinary("rnn-coord", ["eval", "--checkpoint", "run", "--data", "val.h5", "--log-format", "json"], in: dir)
        XCTAssertEqual(eval.status, 0, eval.err)
        let json = try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as! [String: Any]
        let valLoss = epochs.last!["val_loss"] as! Double
        XCTAssertEqual(json["loss"] as! Double, valLoss, accuracy: 1e-6)
        XCTAssertEqual(json["perplexity"] as! Double, exp(valLoss), accuracy: 1e-5)
        XCTAssertEqual(json["accuracy"] as! Double, epochs.last!["val_accuracy"] as! Double, accuracy: 1e-9)
        let back = try readBack(dir + "/tb")
        XCTAssertEqual(back["loss"]?.map(\.0), steps.map { $0["global_step"] as! Int })
        for (tb, record) in zip(back["loss"] ?? [], steps) { XCTAssertEqual(tb.1, Double(Float(record["loss"] as! Double)), accuracy: 1e-6) }
        XCTAssertEqual(back["val_loss"]?.map(\.0), epochs.map { $0["global_step"] as! Int })
        for (tb, record) in zip(back["val_loss"] ?? [], epochs) {
            XCTAssertEqual(tb.1, Double(Float(record["val_loss"] as! Double)), accuracy: 1e-6)
        }
        for (tb, record) in zip(back["epoch_loss"] ?? [], epochs) {
            XCTAssertEqual(tb.1, Double(Float(record["loss"] as! Double)), accuracy: 1e-6)
        }
        XCTAssertEqual(back["lr"]?.count, 15)
    }
}
