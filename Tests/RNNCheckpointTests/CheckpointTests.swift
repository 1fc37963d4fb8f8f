import Foundation
import XCTest
import RNNCore
import RNNHDF5
@testable import RNNCheckpoint

final class CheckpointTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-tests-\(UUID().uuidString)").path
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let config = ModelConfig(cell: .lstm, inputSize: 3, hiddenSize: 4, layers: 2, outputSize: 5)

    func makeCheckpoint(step: Int, table: ParameterTable, accuracy: Bool = true) -> Checkpoint {
        var generator = SeededGenerator(seed: UInt64(step), stream: 9)
        let n = table.totalCount
        let parameters = (0..<n).map { _ in generator.nextFloat(in: -1, 1) }
        let m = (0..<n).map { _ in generator.nextFloat(in: -0.1, 0.1) }
        let v = (0..<n).map { _ in generator.nextFloat(in: 0, 0.01) }
        let json = (try? CheckpointMetadata.encodeConfig(config)) ?? "{}"
        return Checkpoint(
            metadata: CheckpointMetadata(globalStep: step, epoch: step / 10, stepInEpoch: step % 10, seed: UInt64.max - 5,
                                         worldSize: 3, configJSON: json, rngState: [generator.next(), UInt64.max]),
            optimizer: OptimizerConfig(kind: .adamw, lr: 3e-4, weightDecay: 0.05, clipNorm: 1.0),
            state: TrainingState(parameters: parameters, expAvg: m, expAvgSq: v, stepCount: step),
            metrics: MetricsHistory(steps: Array(1...step), loss: (1...step).map { 1 / Float($0) },
                                    accuracy: accuracy ? (1...step).map { Float($0) / Float(step) } : nil))
    }

    func testRoundTripEveryCell() throws {
        let store = try CheckpointStore(directory: dir, keep: 10)
        for cell in CellKind.allCases {
            let table = ParameterTable(config: ModelConfig(cell: cell, inputSize: 3, hiddenSize: 4, layers: 2, outputSize: 5))
            for accuracy in [true, false] {
                let written = makeCheckpoint(step: 7, table: table, accuracy: accuracy)
                let path = try store.write(written, table: table)
                XCTAssertEqual((path as NSString).lastPathComponent, "ckpt-7.h5")
                let read = try CheckpointStore.read(path: path, table: table)
                XCTAssertEqual(read, written)
                XCTAssertEqual(try read.metadata.decodeConfig(ModelConfig.self), config)
            }
        }
        // No temporary file is left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        XCTAssertEqual(names, ["ckpt-7.h5"])
    }

    func testKeepsTheLastK() throws {
        let table = ParameterTable(config: config)
        let store = try CheckpointStore(directory: dir, keep: 2)
        // A temporary file of a writer that died (no such pid) is cleaned up; a foreign file stays.
        let stale = dir + "/.ckpt-5.h5.tmp-2147483000-17"
        let other = dir + "/notes.txt"
        try Data("partial".utf8).write(to: URL(fileURLWithPath: stale))
        try Data("mine".utf8).write(to: URL(fileURLWithPath: other))
        for step in [3, 10, 7, 12, 20] { try store.write(makeCheckpoint(step: step, table: table), table: table) }
        XCTAssertEqual(store.list().map { $0.step }, [12, 20])
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertTrue(FileManager.default.fileExists(atPath: other))
    }

    func testWrongSizesAreRejectedBeforeWriting() throws {
        let table = ParameterTable(config: config)
        let store = try CheckpointStore(directory: dir)
        var c = makeCheckpoint(step: 1, table: table)
        c.state.parameters.removeLast()
        XCTAssertThrowsError(try store.write(c, table: table)) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .badRequest)
            XCTAssertTrue("\(error)".contains("\(table.totalCount)"), "\(error)")
        }
        XCTAssertEqual(store.list().count, 0)
    }

    func testShapeMismatchNamesTheTensor() throws {
        let table = ParameterTable(config: config)
        let store = try CheckpointStore(directory: dir)
        let path = try store.write(makeCheckpoint(step: 2, table: table), table: table)
        var other = config
        other.hiddenSize = 6
        XCTAssertThrowsError(try CheckpointStore.read(path: path, table: ParameterTable(config: other))) { error in
            let e = error as! CheckpointError
            XCTAssertEqual(e.kind, .mismatch)
            XCTAssertTrue(e.description.contains("/model/rnn.weight_ih_l0 of shape [24, 3]") && e.description.contains("[16, 3]"), e.description)
        }
        var gru = config
        gru.layers = 1
        XCTAssertThrowsError(try CheckpointStore.read(path: path, table: ParameterTable(config: gru))) { error in
            XCTAssertTrue("\(error)".contains("unexpected /model/rnn.bias_hh_l1"), "\(error)")
        }
    }

    func testForeignVersionTruncatedAndDamagedFiles() throws {
        let table = ParameterTable(config: config)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // An HDF5 file that is not a checkpoint.
        let foreign = dir + "/foreign.h5"
        do {
            let f = try HDF5File.create(foreign)
            try f.root().setAttribute("format", "something-else")
            try f.close()
        }
        XCTAssertThrowsError(try CheckpointStore.read(path: foreign, table: table)) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .foreign)
            XCTAssertTrue("\(error)".contains("something-else") && "\(error)".contains(foreign), "\(error)")
        }
        // A newer format version.
        let store = try CheckpointStore(directory: dir, keep: 10)
        let versioned = try store.write(makeCheckpoint(step: 4, table: table), table: table)
        do {
            let f = try HDF5File.open(versioned, mode: .readWrite)
            try f.root().setAttribute("format_version", Int64(2))
            try f.close()
        }
        XCTAssertThrowsError(try CheckpointStore.read(path: versioned, table: table)) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .unsupportedVersion)
            XCTAssertTrue("\(error)".contains("format_version 2"), "\(error)")
        }
        // Truncated.
        let good = try store.write(makeCheckpoint(step: 5, table: table), table: table)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let truncated = dir + "/ckpt-6.h5"
        try bytes.prefix(bytes.count * 2 / 3).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try CheckpointStore.read(path: truncated, table: table)) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .damaged)
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        // Flipped bytes inside a tensor's data: caught by the Fletcher-32 checksum.
        let c = makeCheckpoint(step: 8, table: table)
        let flippedPath = try store.write(c, table: table)
        var data = try Data(contentsOf: URL(fileURLWithPath: flippedPath))
        let needle = c.parameters[10..<14].withUnsafeBytes { Data($0) }
        let at = try XCTUnwrap(data.range(of: needle))
        data[at.lowerBound + 1] ^= 0xFF
        try data.write(to: URL(fileURLWithPath: flippedPath))
        XCTAssertThrowsError(try CheckpointStore.read(path: flippedPath, table: table)) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .damaged, "\(error)")
        }
        // The newest valid one is step 5: 8 (damaged) and 6 (truncated) are skipped with warnings; 4 is older.
        let search = store.newest(table: table)
        XCTAssertEqual(search.checkpoint?.metadata.globalStep, 5)
        XCTAssertEqual(search.path, good)
        XCTAssertEqual(search.warnings.count, 2)
        XCTAssertTrue(search.warnings[0].contains("ckpt-8.h5") && search.warnings[1].contains("ckpt-6.h5"), "\(search.warnings)")
        // An empty or missing folder finds nothing.
        XCTAssertNil(CheckpointStore.newest(in: dir + "/none", table: table).checkpoint)
    }

    /// h5py reads the checkpoint written by Swift: names, shapes, values and attributes.
    func testH5pyReadsTheCheckpoint() throws {
        let table = ParameterTable(config: config)
        let store = try CheckpointStore(directory: dir)
        let c = makeCheckpoint(step: 3, table: table)
        let path = try store.write(c, table: table)
        let script = """
        import json, sys
        import h5py
        with h5py.File(sys.argv[1], "r") as f:
            def attrs(o):
                return {k: (v.decode() if isinstance(v, bytes) else (v.tolist() if hasattr(v, "tolist") else v)) for k, v in o.attrs.items()}
            def tensors(g):
                return {k: {"shape": list(v.shape), "dtype": str(v.dtype), "values": v[()].ravel().tolist()} for k, v in g.items()}
            print(json.dumps({"attrs": attrs(f), "model": tensors(f["model"]), "optimizer": attrs(f["optimizer"]),
                              "exp_avg": tensors(f["optimizer/exp_avg"]), "exp_avg_sq": tensors(f["optimizer/exp_avg_sq"]),
                              "metrics": {k: v[()].tolist() for k, v in f["metrics"].items()}}))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, path]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw XCTSkip("python3 is not available: \(error)") }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 && (errText.contains("No module named 'h5py'") || errText.contains("No such file")) {
            throw XCTSkip("python3 with h5py is not available: \(errText)")
        }
        XCTAssertEqual(process.terminationStatus, 0, errText)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: outData) as? [String: Any])
        let attrs = try XCTUnwrap(json["attrs"] as? [String: Any])
        XCTAssertEqual(attrs["format"] as? String, "rnn-trainer-checkpoint")
        XCTAssertEqual(attrs["format_version"] as? Int, 1)
        XCTAssertEqual(attrs["global_step"] as? Int, 3)
        XCTAssertEqual(attrs["world_size"] as? Int, 3)
        XCTAssertEqual((attrs["seed"] as? NSNumber)?.uint64Value, UInt64.max - 5)
        XCTAssertEqual(attrs["config"] as? String, c.metadata.configJSON)
        let optimizer = try XCTUnwrap(json["optimizer"] as? [String: Any])
        XCTAssertEqual(optimizer["kind"] as? String, "adamw")
        XCTAssertEqual(optimizer["step"] as? Int, 3)
        XCTAssertEqual((optimizer["lr"] as? Double).map(Float.init), 3e-4)
        for (group, flat) in [("model", c.parameters), ("exp_avg", c.state.expAvg), ("exp_avg_sq", c.state.expAvgSq)] {
            let tensors = try XCTUnwrap(json[group] as? [String: [String: Any]])
            XCTAssertEqual(Set(tensors.keys), Set(table.entries.map { $0.name }))
            for entry in table.entries {
                let t = try XCTUnwrap(tensors[entry.name])
                XCTAssertEqual(t["shape"] as? [Int], entry.shape, "\(group)/\(entry.name)")
                XCTAssertEqual(t["dtype"] as? String, "float32")
                let values = try XCTUnwrap(t["values"] as? [Double]).map { Float($0) }
                XCTAssertEqual(values, Array(flat[entry.range]), "\(group)/\(entry.name)")
            }
        }
        let metrics = try XCTUnwrap(json["metrics"] as? [String: [Double]])
        XCTAssertEqual(metrics["step"], [1, 2, 3])
        XCTAssertEqual(metrics["loss"]?.map { Float($0) }, c.metrics.loss)
        XCTAssertEqual(metrics["accuracy"]?.map { Float($0) }, c.metrics.accuracy)
    }
}
