import XCTest
@testable import RNNReport

final class ConfigMetricsEvalTests: XCTestCase {
    func testYAMLConfigBecomesFlagsAndTypedFlagsWin() throws {
        let yaml = """
            data: [a.h5, b.h5]
            batch_size: 32
            shuffle: true
            drop-last: false
            lr: 0.01
            bind: "tcp://127.0.0.1:*"
            """
        let known: Set = ["data", "batch-size", "shuffle", "drop-last", "lr", "bind", "epochs"]
        let entries = try ConfigFile.parse(yaml, source: "run.yaml", known: known)
        XCTAssertEqual(entries.map(\.0), ["data", "batch-size", "shuffle", "drop-last", "lr", "bind"])
        let args = try ConfigFile.arguments(for: entries, overridden: ["lr"], booleanFlags: ["shuffle", "drop-last"])
        XCTAssertEqual(args, ["--data", "a.h5", "b.h5", "--batch-size", "32", "--shuffle", "--bind", "tcp://127.0.0.1:*"])
        XCTAssertThrowsError(try ConfigFile.parse("bach-size: 3", source: "run.yaml", known: known)) { error in
            XCTAssertEqual("\(error)", "run.yaml: unknown key 'bach-size' (did you mean 'batch-size'?); keys are the long flag names of the command")
        }
        XCTAssertThrowsError(try ConfigFile.parse("- a\n- b", source: "x.yaml")) { XCTAssertTrue("\($0)".contains("expected a mapping")) }
        XCTAssertThrowsError(try ConfigFile.parse("a: [", source: "x.yaml")) { XCTAssertTrue("\($0)".contains("not valid YAML")) }
        XCTAssertThrowsError(try ConfigFile.arguments(for: [("shuffle", .scalar("maybe"))], overridden: [], booleanFlags: ["shuffle"]))
    }

    func testEffectiveConfigYAMLReadsBack() throws {
        let text = ConfigFile.yaml([("data", .list(["/d/x y.h5"])), ("hidden", .scalar("64")), ("shuffle", .flag(true)), ("max-steps", nil),
                                    ("bind", .scalar("tcp://127.0.0.1:*"))])
        let entries = try ConfigFile.parse(text, source: "config.yaml")
        XCTAssertEqual(entries.count, 4)
        XCTAssertEqual(entries[0].1, .list(["/d/x y.h5"]))
        XCTAssertEqual(entries[2].1, .flag(true))
        XCTAssertEqual(entries[3].1, .scalar("tcp://127.0.0.1:*"))
    }

    func testMetricsJSONLinesKeepTheLatestHistory() throws {
        let text = """
            {"kind":"step","global_step":1,"epoch":1,"step":1,"loss":2.0,"accuracy":0.1}
            {"kind":"step","global_step":2,"epoch":1,"step":2,"loss":1.0,"accuracy":0.5}
            {"kind":"epoch","epoch":1,"global_step":2,"loss":1.5,"accuracy":0.3,"val_loss":1.4}
            {"kind":"step","global_step":3,"epoch":2,"step":1,"loss":0.9,"accuracy":0.6}
            {"kind":"step","global_step":2,"epoch":1,"step":2,"loss":1.1,"accuracy":0.4}
            {"kind":"step","global_step":3,"epoch":2,"step":1,"loss":0.8,"accuracy":0.7}
            """
        let curves = try RunCurves.parseJSONLines(text)
        XCTAssertEqual(curves.steps, [1, 2, 3])
        XCTAssertEqual(curves.stepLoss, [2.0, 1.1, 0.8])
        XCTAssertEqual(curves.stepAccuracy, [0.1, 0.4, 0.7])
        XCTAssertTrue(curves.epochs.isEmpty, "the epoch ending at step 2 was cut by the restart at step 2")
        XCTAssertThrowsError(try RunCurves.parseJSONLines("{\"kind\":\"step\"}\nnot json", source: "m.jsonl")) {
            XCTAssertTrue("\($0)".hasPrefix("m.jsonl:2:"))
        }
        let thin = RunCurves(steps: Array(1...10), stepLoss: (1...10).map(Double.init)).thinned(maxPoints: 5)
        XCTAssertEqual(thin.steps, [2, 4, 6, 8, 10])
        XCTAssertEqual(thin.stepLoss, [1.5, 3.5, 5.5, 7.5, 9.5])
    }

    func testConfusionMatrix() {
        var m = ConfusionMatrix(classes: 3)
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0), (2, 2), (2, 2)] { m.add(truth: t, predicted: p) }
        m.add(truth: 3, predicted: 0)  // outside: ignored
        XCTAssertEqual(m.counts, [[2, 1, 0], [0, 1, 0], [1, 0, 2]])
        XCTAssertEqual(m.total, 7)
        XCTAssertEqual(m.accuracy, 5.0 / 7.0, accuracy: 1e-12)
        XCTAssertEqual(m.recall(0)!, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(m.precision(0)!, 2.0 / 3.0, accuracy: 1e-12)
        let lines = m.table().split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[1].hasSuffix(" 66.7%"), String(lines[1]))
        XCTAssertEqual(lines[1].split(separator: " ").map(String.init), ["0", "2", "1", "0", "66.7%"])
    }

    func testFlagSuggestions() {
        XCTAssertEqual(CommandRunner.unknownOption(in: "Unknown option '--batchsize'"), "batchsize")
        XCTAssertEqual(closest(to: "batchsize", in: ["batch-size", "bind", "epochs"]), "batch-size")
        XCTAssertNil(closest(to: "zzzzzz", in: ["batch-size", "bind"]))
    }
}
