// rnn-bench hdf5: read throughput of a TensorDataset (full, batched and random-row reads of
// a ~200 MB chunked dataset) and checkpoint write time for lstm-large (parameters + Adam
// moments), each side by side with h5py (scripts/bench_h5py.py) in the same run, on the same
// files and the same row indices. Prints medians and Swift/h5py ratios (> 1 = Swift faster).

import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNHDF5

struct HDF5BenchmarkOptions {
    var directory: String?
    var megabytes = 200
    var steps = 50
    var features = 64
    var batch = 64
    var randomBatches = 200
    var repeats = 3
    var chunkCacheMB = 32
    var python = "python3"
    var script = "scripts/bench_h5py.py"
    var keepFiles = false
    /// Run only the random-row Swift reads (for profiling).
    var onlyRandom = false

    static let usage = """
    usage: rnn-bench hdf5 [--dir DIR] [--megabytes 200] [--steps 50] [--features 64] [--batch 64]
                          [--random-batches 200] [--repeats 3] [--chunk-cache-mb 32]
                          [--python python3] [--script scripts/bench_h5py.py] [--keep-files]
    """

    init(arguments: [String]) throws {
        var i = 0
        func value() throws -> String {
            i += 1
            guard i < arguments.count else { throw BenchmarkError("missing value for '\(arguments[i - 1])'\n" + HDF5BenchmarkOptions.usage) }
            return arguments[i]
        }
        func int() throws -> Int {
            let text = try value()
            guard let n = Int(text), n > 0 else { throw BenchmarkError("'\(arguments[i - 1])' needs a positive integer, found '\(text)'") }
            return n
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--dir": directory = try value()
            case "--megabytes": megabytes = try int()
            case "--steps": steps = try int()
            case "--features": features = try int()
            case "--batch": batch = try int()
            case "--random-batches": randomBatches = try int()
            case "--repeats": repeats = try int()
            case "--chunk-cache-mb": chunkCacheMB = try int()
            case "--python": python = try value()
            case "--script": script = try value()
            case "--keep-files": keepFiles = true
            case "--only-random": onlyRandom = true
            case "--help", "-h": throw BenchmarkError(HDF5BenchmarkOptions.usage)
            default: throw BenchmarkError("unknown option '\(arguments[i])'\n" + HDF5BenchmarkOptions.usage)
            }
            i += 1
        }
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Median wall time of `repeats` runs of `body`, in seconds.
func medianSeconds(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    var times: [Double] = []
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    times.sort()
    return times[times.count / 2]
}

/// Entry point of `rnn-bench hdf5`; returns the process exit status.
func runHDF5Benchmark(arguments: [String]) -> Int32 {
    do {
        try hdf5Benchmark(HDF5BenchmarkOptions(arguments: arguments))
        return 0
    } catch {
        FileHandle.standardError.write(Data("rnn-bench hdf5: error: \(error)\n".utf8))
        return 1
    }
}

private func hdf5Benchmark(_ o: HDF5BenchmarkOptions) throws {
    let fm = FileManager.default
    let dir = o.directory ?? fm.temporaryDirectory.appendingPathComponent("rnn-bench-hdf5-\(getpid())").path
    try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { if !o.keepFiles && o.directory == nil { try? fm.removeItem(atPath: dir) } }

    // 1. The dataset: float32 X (N, T, I) chunked (64, T, I), int64 labels.
    let rowElements = o.steps * o.features
    let rowBytes = rowElements * 4
    let n = o.megabytes * 1_000_000 / rowBytes
    let path = dir + "/bench.h5"
    do {
        let file = try HDF5File.create(path)
        let root = try file.root()
        let x = try root.createDataset("X", shape: [n, o.steps, o.features], type: .float32,
                                       options: HDF5DatasetOptions(chunks: [64, o.steps, o.features]))
        var generator = SeededGenerator(seed: 1)
        let block = 1024
        var values = [Float](repeating: 0, count: block * rowElements)
        var start = 0
        while start < n {
            let rows = min(block, n - start)
            for k in 0..<(rows * rowElements) { values[k] = generator.nextFloat(in: -1, 1) }
            try x.write(rows: start..<(start + rows), values: Array(values[0..<(rows * rowElements)]))
            start += rows
        }
        try root.writeDataset("Y", shape: [n], values: (0..<n).map { Int64($0 % 10) })
        try root.setAttribute("classes", Int64(10))
        try file.close()
    }
    let megabytes = Double(n * rowBytes) / 1e6
    print(String(format: "dataset: %@  X float32 (%d, %d, %d) chunked (64, %d, %d), %.1f MB", path, n, o.steps, o.features, o.steps, o.features, megabytes))

    // Row indices of the random reads: the first batches of a shuffled epoch.
    let plan = try EpochPlan(sampleCount: n, batchSize: o.batch, shuffle: true, seed: 7)
    let order = plan.epoch(0)
    let randomCount = min(n, o.batch * o.randomBatches)
    let indices = Array(order.permutation[0..<randomCount])
    let indexPath = dir + "/indices.bin"
    let indexData = indices.map { Int64($0).littleEndian }.withUnsafeBytes { Data($0) }
    try indexData.write(to: URL(fileURLWithPath: indexPath))

    // 2. Swift reads.
    let cache = o.chunkCacheMB << 20
    var swift: [String: Double] = [:]
    if o.onlyRandom {
        let disk = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0, chunkCacheBytes: cache, validateValues: false))
        var batch = Batch()
        let file = try HDF5File.open(path)
        let x = try file.root().openDataset("X", chunkCacheBytes: 0)
        var row = [Float](repeating: 0, count: rowElements)
        for _ in 0..<o.repeats {
            var start = DispatchTime.now().uptimeNanoseconds
            for i in indices { try x.readRows(i..<(i + 1), into: &row) }
            print("single-row HDF5Dataset reads: \(Double(indices.count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) rows/s")
            start = DispatchTime.now().uptimeNanoseconds
            var k = 0
            while k < randomCount {
                try disk.read(rows: Array(indices[k..<min(randomCount, k + o.batch)]), into: &batch)
                k += o.batch
            }
            print("TensorDataset random batches: \(Double(indices.count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) rows/s")
        }
        return
    }
    do {
        let file = try HDF5File.open(path)
        // As TensorDataset does for unfiltered chunks: no chunk cache, HDF5 reads into the buffer.
        let x = try file.root().openDataset("X", chunkCacheBytes: 0)
        var whole = [Float](repeating: 0, count: n * rowElements)
        try x.readRows(0..<n, into: &whole)  // warm up the buffer and the page cache
        swift["full_read_s"] = try medianSeconds(o.repeats) { try x.readRows(0..<n, into: &whole) }
        swift["full_read_fresh_s"] = try medianSeconds(o.repeats) { _ = try x.read(as: Float.self) }
    }
    let disk = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0, chunkCacheBytes: cache, validateValues: false))
    var batch = Batch()
    swift["batched_read_s"] = try medianSeconds(o.repeats) {
        var start = 0
        while start < n {
            try disk.read(rows: Array(start..<min(n, start + 1024)), into: &batch)
            start += 1024
        }
    }
    func randomReads(_ dataset: TensorDataset) throws {
        var start = 0
        while start < randomCount {
            try dataset.read(rows: Array(indices[start..<min(randomCount, start + o.batch)]), into: &batch)
            start += o.batch
        }
    }
    swift["random_read_s"] = try medianSeconds(o.repeats) { try randomReads(disk) }
    let openStart = DispatchTime.now().uptimeNanoseconds
    let memory = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 1 << 40))
    let preloadSeconds = Double(DispatchTime.now().uptimeNanoseconds - openStart) / 1e9
    swift["random_preloaded_s"] = try medianSeconds(o.repeats) { try randomReads(memory) }

    // 3. Checkpoint of lstm-large: parameters + exp_avg + exp_avg_sq.
    let table = ParameterTable(config: ModelConfig(cell: .lstm, inputSize: 128, hiddenSize: 512, layers: 2, outputSize: 10))
    var generator = SeededGenerator(seed: 3)
    let flat = (0..<table.totalCount).map { _ in generator.nextFloat(in: -1, 1) }
    let checkpoint = Checkpoint(
        metadata: CheckpointMetadata(globalStep: 1, epoch: 0, stepInEpoch: 1, seed: 3, worldSize: 1, configJSON: "{}"),
        parameters: flat, optimizer: OptimizerState(config: OptimizerConfig(), step: 1, expAvg: flat, expAvgSq: flat))
    let checkpointMB = Double(3 * table.totalCount * 4) / 1e6
    var step = 1
    for (key, checksums) in [("ckpt_write_s", false), ("ckpt_write_fletcher_s", true)] {
        let store = try CheckpointStore(directory: dir + "/ckpt-" + key, keep: 1, checksums: checksums)
        try store.write(checkpoint, table: table)  // warm up
        swift[key] = try medianSeconds(o.repeats) {
            var c = checkpoint
            step += 1
            c.metadata.globalStep = step
            try store.write(c, table: table)
        }
    }

    // 4. h5py on the same files and indices.
    let config: [String: Any] = [
        "file": path, "x": "X", "y": "Y", "indices": indexPath, "batch": o.batch, "repeats": o.repeats,
        "chunk_cache": cache, "ckpt_dir": dir, "tensors": table.entries.map { [$0.name, $0.shape] as [Any] },
    ]
    let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [o.python, o.script, json]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    var h5py: [String: Double] = [:]
    if process.terminationStatus == 0, let parsed = try? JSONSerialization.jsonObject(with: data) as? [String: Double] {
        h5py = parsed
    } else {
        print("h5py side failed (status \(process.terminationStatus)); showing Swift numbers only")
    }

    // 5. Report.
    func line(_ name: String, rows: Int, mb: Double, swiftKey: String, h5pyKey: String) {
        guard let s = swift[swiftKey] else { return }
        var text = String(format: "%-44@ swift %9.0f rows/s %8.1f MB/s", name as NSString, Double(rows) / s, mb / s)
        if let h = h5py[h5pyKey] {
            text += String(format: " | h5py %9.0f rows/s %8.1f MB/s | ratio %.2f", Double(rows) / h, mb / h, h / s)
        }
        print(text)
    }
    let randomMB = Double(randomCount * rowBytes) / 1e6
    print("read throughput (median of \(o.repeats); ratio = h5py time / swift time, > 1 means Swift is faster)")
    line("full read into a reused buffer (read_direct)", rows: n, mb: megabytes, swiftKey: "full_read_s", h5pyKey: "full_read_direct_s")
    line("full read into a new array (x[()])", rows: n, mb: megabytes, swiftKey: "full_read_fresh_s", h5pyKey: "full_read_s")
    line("sequential batches of 1024 rows", rows: n, mb: megabytes, swiftKey: "batched_read_s", h5pyKey: "batched_read_s")
    line("random rows, batches of \(o.batch), from disk", rows: randomCount, mb: randomMB, swiftKey: "random_read_s", h5pyKey: "random_read_s")
    line("  vs h5py with its default 1 MiB chunk cache", rows: randomCount, mb: randomMB, swiftKey: "random_read_s", h5pyKey: "random_read_default_cache_s")
    line("random rows, preloaded (budget >= file)", rows: randomCount, mb: randomMB, swiftKey: "random_preloaded_s", h5pyKey: "random_read_s")
    print(String(format: "  (preloading %.1f MB at open took %.3f s)", megabytes, preloadSeconds))
    print(String(format: "checkpoint write, lstm-large, %d parameters x 3 = %.1f MB, with fsync + rename:", table.totalCount, checkpointMB))
    for (name, key) in [("contiguous tensors", "ckpt_write_s"), ("one chunk per tensor + fletcher32", "ckpt_write_fletcher_s")] {
        guard let s = swift[key] else { continue }
        var text = String(format: "  %-36@ swift %7.1f ms", name as NSString, s * 1000)
        if let h = h5py[key] { text += String(format: " | h5py %7.1f ms | ratio %.2f", h * 1000, h / s) }
        print(text)
    }
}
