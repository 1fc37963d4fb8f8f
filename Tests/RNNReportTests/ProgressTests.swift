import Logging
@testable import RNNDistributed
import XCTest
@testable import RNNReport

final class Captured: @unchecked Sendable {
    private let lock = NSLock()
    private var out = "", err = ""
    func appendOut(_ s: String) { lock.lock(); out += s; lock.unlock() }
    func appendErr(_ s: String) { lock.lock(); err += s; lock.unlock() }
    var stdout: String { lock.lock(); defer { lock.unlock() }; return out }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return err }
}

final class ProgressTests: XCTestCase {
    let step = StepProgress(epoch: 1, epochs: 10, step: 5, stepsPerEpoch: 10, globalStep: 5, loss: 0.693147, accuracy: 0.5,
                            samplesPerSecond: 1234.5, etaSeconds: 65, reduceSeconds: 0.001)
    let epoch = EpochProgress(epoch: 1, epochs: 10, globalStep: 10, loss: 0.693147, accuracy: 0.5, validationLoss: 0.7,
                              validationAccuracy: 0.25, seconds: 1.5, samplesPerSecond: 1000)

    private func run(_ format: LogFormat, terminal: Bool, quiet: Bool = false, logEvery: Int = 0, level: Logger.Level = .info) -> Captured {
        let captured = Captured()
        let console = Console(isTerminal: terminal, out: { captured.appendOut($0) }, err: { captured.appendErr($0) })
        let logger = Logger(label: "rnn-coord") { ConsoleLogHandler(label: $0, console: console, format: format, level: level) }
        let report = progressReporter(options: ProgressOptions(format: format, quiet: quiet, logEvery: logEvery, refreshSeconds: 0), console: console, logger: logger)
        report(.message(.info, "Coordinator listening"))
        report(.step(step))
        report(.epoch(epoch))
        report(.message(.warning, "worker lost"))
        return captured
    }

    func testPlainLinesFollowTheTutorial() {
        let c = run(.text, terminal: false, logEvery: 5)
        XCTAssertEqual(c.stdout, """
            Coordinator listening
            Epoch [1/10], Step [5/10], Loss: 0.6931, Accuracy: 50.00%, 1234 samples/s, ETA 1m05s
            Epoch [1/10], Loss: 0.6931, Accuracy: 50.00%, Val Loss: 0.7000, Val Accuracy: 25.00%

            """)
        XCTAssertEqual(c.stderr, "warning: worker lost\n")
        XCTAssertFalse(run(.text, terminal: false).stdout.contains("Step ["), "no step lines without --log-every")
    }

    func testTerminalDrawsALiveBarThenClearsIt() {
        let c = run(.text, terminal: true)
        XCTAssertTrue(c.stdout.contains("\r\u{1B}[2KEpoch 1/10 [############------------] 5/10 loss 0.6931 acc 50.00% 1234 samples/s ETA 1m05s (run 20m35s)"), c.stdout)
        XCTAssertTrue(c.stdout.contains("\r\u{1B}[2KEpoch [1/10], Loss: 0.6931"), "the epoch line replaces the bar")
    }

    func testJSONLinesParse() throws {
        let c = run(.json, terminal: true)
        let lines = c.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        let objects = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(objects.map { $0["event"] as? String }, ["log", "step", "epoch", "log"])
        XCTAssertEqual(objects[1]["global_step"] as? Int, 5)
        XCTAssertEqual(objects[2]["val_accuracy"] as? Double, 0.25)
        XCTAssertEqual(objects[3]["level"] as? String, "warning")
    }

    func testQuietKeepsOnlyWarnings() {
        let c = run(.text, terminal: true, quiet: true, level: .warning)
        XCTAssertEqual(c.stdout, "")
        XCTAssertEqual(c.stderr, "warning: worker lost\n")
    }

    func testDurations() {
        XCTAssertEqual(duration(4.4), "4s")
        XCTAssertEqual(duration(125), "2m05s")
        XCTAssertEqual(duration(3720), "1h02m")
        XCTAssertEqual(duration(.nan), "?")
    }
}
