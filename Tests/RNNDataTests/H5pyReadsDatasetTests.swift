// h5py reads the dataset files RNNData writes (`rnn-data make`): names, dtypes, shapes,
// attributes and values. Skipped with a message when python3 or h5py is missing.

import Foundation
import XCTest
@testable import RNNData

final class H5pyReadsDatasetTests: XCTestCase {
    func python(_ script: String, _ arguments: [String]) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw XCTSkip("python3 is not available: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 && (errText.contains("No module named") || errText.contains("No such file")) {
            throw XCTSkip("python3 with h5py and numpy is not available: \(errText)")
        }
        XCTAssertEqual(process.terminationStatus, 0, errText)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testH5pyReadsWrittenDatasets() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("text.h5").path
        let random = dir.appendingPathComponent("random.h5").path
        let textContents = try SyntheticData.text("the quick brown fox jumps over the lazy dog", steps: 6)
        try textContents.write(to: text)
        let randomContents = SyntheticData.random(count: 12, steps: 3, features: 2, classes: 3, seed: 4)
        try randomContents.write(to: random, compress: false)
        let script = """
        import json, sys
        import h5py
        out = {}
        for path in sys.argv[1:]:
            with h5py.File(path, "r") as f:
                out[path] = {
                    "attrs": {k: (v.decode() if isinstance(v, bytes) else (v.tolist() if hasattr(v, "tolist") else v)) for k, v in f.attrs.items()},
                    "X": {"shape": list(f["X"].shape), "dtype": str(f["X"].dtype), "values": f["X"][()].ravel().tolist(),
                          "vocab_size": int(f["X"].attrs["vocab_size"]) if "vocab_size" in f["X"].attrs else None,
                          "compression": f["X"].compression, "shuffle": f["X"].shuffle},
                    "Y": {"shape": list(f["Y"].shape), "dtype": str(f["Y"].dtype), "values": f["Y"][()].ravel().tolist()},
                }
        print(json.dumps(out))
        """
        let json = try python(script, [text, random])
        let t = try XCTUnwrap(json[text] as? [String: Any])
        let tAttrs = try XCTUnwrap(t["attrs"] as? [String: Any])
        XCTAssertEqual(tAttrs["vocab"] as? String, textContents.vocabulary)
        XCTAssertEqual(tAttrs["classes"] as? Int, textContents.classes)
        XCTAssertNotNil(tAttrs["description"] as? String)
        let tx = try XCTUnwrap(t["X"] as? [String: Any])
        guard case .tokens(let ids, let n, let steps, let v) = textContents.x, case .classes(let next, _) = textContents.y else { return XCTFail() }
        XCTAssertEqual(tx["shape"] as? [Int], [n, steps])
        XCTAssertEqual(tx["dtype"] as? String, "uint8")
        XCTAssertEqual(tx["vocab_size"] as? Int, v)
        XCTAssertEqual(tx["compression"] as? String, "gzip")
        XCTAssertEqual(tx["shuffle"] as? Bool, true)
        XCTAssertEqual(tx["values"] as? [Int], ids.map { Int($0) })
        let ty = try XCTUnwrap(t["Y"] as? [String: Any])
        XCTAssertEqual(ty["dtype"] as? String, "int64")
        XCTAssertEqual(ty["values"] as? [Int], next.map { Int($0) })

        let r = try XCTUnwrap(json[random] as? [String: Any])
        let rx = try XCTUnwrap(r["X"] as? [String: Any])
        guard case .dense(let x, _, _, _) = randomContents.x, case .classes(let y, _) = randomContents.y else { return XCTFail() }
        XCTAssertEqual(rx["shape"] as? [Int], [12, 3, 2])
        XCTAssertEqual(rx["dtype"] as? String, "float32")
        XCTAssertTrue(rx["compression"] is NSNull)
        XCTAssertEqual((rx["values"] as? [Double])?.map { Float($0) }, x)
        XCTAssertEqual((r["Y"] as? [String: Any])?["values"] as? [Int], y.map { Int($0) })
    }
}
