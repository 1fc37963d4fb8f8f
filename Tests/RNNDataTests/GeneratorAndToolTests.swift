// Synthetic datasets written by RNNData and the rnn-data executable end to end.

import Foundation
import XCTest
@testable import RNNData

final class GeneratorAndToolTests: XCTestCase {
    func testHelloRoundTrip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("hello.h5").path
        try SyntheticData.hello(copies: 2).write(to: path)
        let ds = try TensorDataset.open(path: path)
        XCTAssertEqual([ds.count, ds.steps, ds.inputSize], [2, 5, 4])
        XCTAssertEqual(ds.targetKind, .stepClasses(classes: 4))
        let batch = try ds.read(rows: [1])
        guard case .classIds(let y) = batch.targets else { return XCTFail("class targets expected") }
        XCTAssertEqual(ds.decode(y), "elloh")
        var ids: [Int32] = []
        for t in 0..<5 {
            let hot: Int = batch.x[(t * 4)..<(t * 4 + 4)].firstIndex(of: 1)! - t * 4
            ids.append(Int32(hot))
        }
        XCTAssertEqual(ds.decode(ids), "hello")
    }

    func testRandomLabelsFollowTheSumRule() throws {
        let contents = SyntheticData.random(count: 200, steps: 6, features: 5, classes: 4, seed: 3)
        guard case .dense(let x, _, _, _) = contents.x, case .classes(let y, _) = contents.y else { return XCTFail() }
        XCTAssertEqual((0..<4).map { c in y.filter { $0 == c }.count }, [50, 50, 50, 50])
        let sums = (0..<200).map { n in x[(n * 30)..<(n * 30 + 30)].reduce(0, +) }
        // Every sample of a higher class has a larger sum than every sample of a lower one.
        for c in 0..<3 {
            let top = (0..<200).filter { y[$0] == c }.map { sums[$0] }.max()!
            let bottom = (0..<200).filter { y[$0] == c + 1 }.map { sums[$0] }.min()!
            XCTAssertLessThan(top, bottom)
        }
        let mean = x.reduce(0, +) / Float(x.count)
        XCTAssertEqual(mean, 0, accuracy: 0.05)
        let again = SyntheticData.random(count: 200, steps: 6, features: 5, classes: 4, seed: 3)
        guard case .dense(let x2, _, _, _) = again.x else { return XCTFail() }
        XCTAssertEqual(x, x2)
    }

    func testTextWindowsPredictNextCharacter() throws {
        let contents = try SyntheticData.text("abracadabra!", steps: 4)
        XCTAssertEqual(contents.count, 2)
        XCTAssertEqual(contents.vocabulary, "!abcdr")
        guard case .tokens(let x, _, _, let v) = contents.x, case .classes(let y, _) = contents.y else { return XCTFail() }
        XCTAssertEqual(v, 6)
        let vocab = Array("!abcdr")
        XCTAssertEqual(String(x.map { vocab[Int($0)] }), "abracada")
        XCTAssertEqual(String(y.map { vocab[Int($0)] }), "bracadab")
        XCTAssertThrowsError(try SyntheticData.text("abc", steps: 4))
    }

    /// Runs the rnn-data executable built next to the test bundle.
    func runTool(_ arguments: [String]) throws -> (status: Int32, output: String, error: String)? {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var tool = folder.appendingPathComponent("rnn-data")
        if !FileManager.default.fileExists(atPath: tool.path) {
            tool = folder.deletingLastPathComponent().appendingPathComponent("rnn-data")
        }
        guard FileManager.default.isExecutableFile(atPath: tool.path) else { return nil }
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    func testToolMakesAndInspectsAndFailsOnBadFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("t.txt").path
        try "to be or not to be, that is the question\n".write(toFile: text, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("t.h5").path
        guard let made = try runTool(["make", "text", "--from", text, "--seq-len", "8", "-o", out]) else {
            throw XCTSkip("rnn-data executable not built next to the tests (run `swift build` first)")
        }
        XCTAssertEqual(made.status, 0, made.error)
        let inspected = try XCTUnwrap(try runTool(["inspect", out]))
        XCTAssertEqual(inspected.status, 0, inspected.error)
        XCTAssertTrue(inspected.output.contains("N = 5, T = 8"), inspected.output)
        XCTAssertTrue(inspected.output.contains("sample 0 x: \"to be or\""), inspected.output)
        XCTAssertTrue(inspected.output.contains("sample 0 y: \"o be or \""), inspected.output)
        XCTAssertTrue(inspected.output.contains("filters shuffle+gzip(4)"), inspected.output)

        let hello = dir.appendingPathComponent("hello.h5").path
        let madeHello = try XCTUnwrap(try runTool(["make", "hello", "-o", hello, "--copies", "3"]))
        XCTAssertEqual(madeHello.status, 0, madeHello.error)
        let helloReport = try XCTUnwrap(try runTool(["inspect", hello]))
        XCTAssertTrue(helloReport.output.contains("sample 0 x: \"hello\"") && helloReport.output.contains("sample 0 y: \"elloh\""), helloReport.output)
        let random = dir.appendingPathComponent("random.h5").path
        let madeRandom = try XCTUnwrap(try runTool(["make", "random", "-o", random, "-n", "60", "-t", "4", "-i", "3", "-c", "3", "--seed", "5", "--no-compress"]))
        XCTAssertEqual(madeRandom.status, 0, madeRandom.error)
        let randomData = try TensorDataset.open(path: random)
        XCTAssertEqual([randomData.count, randomData.steps, randomData.inputSize], [60, 4, 3])
        XCTAssertEqual(randomData.targetKind, .sequenceClasses(classes: 3))
        let randomReport = try XCTUnwrap(try runTool(["inspect", random]))
        XCTAssertTrue(randomReport.output.contains("2:       20 ( 33.3%)"), randomReport.output)
        XCTAssertTrue(randomReport.output.contains("float32, contiguous"), randomReport.output)

        let bad = try XCTUnwrap(try runTool(["inspect", Fixture.path("bad_label.h5")]))
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.error.contains("bad_label.h5") && bad.error.contains("[0, 3)"), bad.error)
        let notH5 = try XCTUnwrap(try runTool(["inspect", Fixture.path("bad_not_hdf5.h5")]))
        XCTAssertNotEqual(notH5.status, 0)
        XCTAssertTrue(notH5.error.contains("expected an HDF5 file"), notH5.error)
        let badFlag = try XCTUnwrap(try runTool(["make", "random", "-o", out, "--classes", "1"]))
        XCTAssertNotEqual(badFlag.status, 0)
        XCTAssertTrue(badFlag.error.contains("'--classes'"), badFlag.error)
    }
}
