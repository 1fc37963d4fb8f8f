// rnn-bench hdf5: read throughput of a TensorDataset (full, batched and random-row reads of
// a ~200 MB chunked dataset) and checkpoint write time for lstm-large (parameters + Adam
// moments), each side by side with h5py (scripts/bench_h5py.py) in the same run, on the same
// files and the same row indices. Prints medians and Swift/h5py ratios (> 1 = Swift faster).

import ArgumentParser
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNHDF5

struct HDF5BenchmarkOptions: ParsableArguments {
    @Option(name: .customLong("dir"), help: "Folder of the files (default: a temporary folder, removed afterwards).") var directory: String?
    @Option(parsing: .unconditional, help: "Size of the chunked dataset: MB of float32 X.") var megabytes = 200
    @Option(parsing: .unconditional, help: "Size of the shuffle+gzip dataset: MB of float32 X.") var gzipMegabytes = 50
    @Option(parsing: .unconditional, help: "Time steps T of X (N, T, I).") var steps = 50
    @Option(parsing: .unconditional, help: "Features I of X (N, T, I).") var features = 64
    @Option(parsing: .unconditional, help: "Rows per random-read batch.") var batch = 64
    @Option(parsing: .unconditional, help: "Random-read batches (the first of a shuffled epoch).") var randomBatches = 200
    @Option(parsing: .unconditional, help: "Timed repetitions (medians are printed).") var repeats = 3
    @Option(name: .customLong("chunk-cache-mb"), parsing: .unconditional, help: "HDF5 chunk cache of the readers, MiB.") var chunkCacheMB = 32
    @Option(help: "Python of the h5py side.") var python = "python3"
    @Option(help: "The h5py side.") var script = "scripts/bench_h5py.py"
    @Flag(help: "Keep the temporary folder.") var keepFiles = false

    func validate() throws {
        for (flag, value) in [("--megabytes", megabytes), ("--gzip-megabytes", gzipMegabytes), ("--steps", steps), ("--features", features),
                              ("--batch", batch), ("--random-batches", randomBatches), ("--repeats", repeats), ("--chunk-cache-mb", chunkCacheMB)] {
            try requireAtLeast(1, flag, value)
        }
    }
}

struct HDF5Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hdf5",
        abstract: "TensorDataset read throughput and checkpoint write time, side by side with h5py on the same files.")

    @OptionGroup var options: HDF5BenchmarkOptions

    func run() throws {
        let status = runHDF5Benchmark(options)
        if status != 0 { throw ExitCode(status) }
    }
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
func runHDF5Benchmark(_ options: HDF5BenchmarkOptions) -> Int32 {
    do {
        try hdf5Benchmark(options)
        return 0
    } catch {
        FileHandle.standardError.write(Data("rnn-bench hdf5: error: \(error)\n".utf8))
        return 1
    }
}

/// Writes the benchmark dataset: float32 X (N, T, I) chunked (64, T, I), int64 labels. With
/// `gzip`, shuffle + gzip level 4 and values on a 1/16 grid (compressible like real data).
private func writeBenchmarkFile(path: String, n: Int, o: HDF5BenchmarkOptions, gzip: Bool) throws {
    let rowElements = o.steps * o.features
    let file = try HDF5File.create(path)
    let root = try file.root()
    let x = try root.createDataset("X", shape: [n, o.steps, o.features], type: .float32,
                                   options: HDF5DatasetOptions(chunks: [64, o.steps, o.features], gzipLevel: gzip ? 4 : nil, shuffle: gzip))
    var generator = SeededGenerator(seed: 1)
    let block = 1024
    var values = [Float](repeating: 0, count: block * rowElements)
    var start = 0
    while start < n {
        let rows = min(block, n - start)
        for k in 0..<(rows * rowElements) {
            let v = generator.nextFloat(in: -1, 1)
            values[k] = gzip ? (v * 16).rounded() / 16 : v
        }
        try x.write(rows: start..<(start + rows), values: Array(values[0..<(rows * rowElements)]))
        start += rows
    }
    try root.writeDataset("Y", shape: [n], values: (0..<n).map { Int64($0 % 10) })
    try root.setAttribute("classes", Int64(10))
    try file.close()
}

private func hdf5Benchmark(_ o: HDF5BenchmarkOptions) throws {
    let fm = FileManager.default
    let dir = o.directory ?? fm.temporaryDirectory.appendingPathComponent("rnn-bench-hdf5-\(getpid())").path
    try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { if !o.keepFiles && o.directory == nil { try? fm.removeItem(atPath: dir) } }

    let rowElements = o.steps * o.features
    let rowBytes = rowElements * 4
    let n = o.megabytes * 1_000_000 / rowBytes
    let nGzip = max(64, o.gzipMegabytes * 1_000_000 / rowBytes)
    let files = [("chunked", dir + "/bench.h5", n, false), ("gzip", dir + "/bench-gzip.h5", nGzip, true)]
    for (name, path, rows, gzip) in files {
        try writeBenchmarkFile(path: path, n: rows, o: o, gzip: gzip)
        let size = (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        print(String(format: "%@: %@  X float32 (%d, %d, %d) chunked (64, %d, %d)%@, %.1f MB as float32, %.1f MB on disk",
                     name, path, rows, o.steps, o.features, o.steps, o.features, gzip ? " shuffle+gzip(4)" : "",
                     Double(rows * rowBytes) / 1e6, Double(size) / 1e6))
    }

    // Row indices of the random reads, per file: the first batches of a shuffled epoch.
    var randomIndices: [String: [Int]] = [:]
    for (name, _, rows, _) in files {
        let plan = try EpochPlan(sampleCount: rows, batchSize: o.batch, shuffle: true, seed: 7)
        let indices = Array(plan.epoch(0).permutation[0..<min(rows, o.batch * o.randomBatches)])
        randomIndices[name] = indices
        try indices.map { Int64($0).littleEndian }.withUnsafeBytes { Data($0) }
            .write(to: URL(fileURLWithPath: dir + "/indices-\(name).bin"))
    }

    let cache = o.chunkCacheMB << 20
    var swift: [String: Double] = [:]
    var batch = Batch()
    func randomReads(_ dataset: TensorDataset, _ indices: [Int]) throws {
        var start = 0
        while start < indices.count {
            try dataset.read(rows: Array(indices[start..<min(indices.count, start + o.batch)]), into: &batch)
            start += o.batch
        }
    }
    var preloadSeconds = 0.0
    for (name, path, rows, gzip) in files {
        let p = name + "."
        do {
            let file = try HDF5File.open(path)
            // As TensorDataset does: no chunk cache for unfiltered chunks.
            let x = try file.root().openDataset("X", chunkCacheBytes: gzip ? cache : 0)
            var whole = [Float](repeating: 0, count: rows * rowElements)
            try x.readRows(0..<rows, into: &whole)  // warm up the buffer and the page cache
            swift[p + "full_read_s"] = try medianSeconds(o.repeats) { try x.readRows(0..<rows, into: &whole) }
            swift[p + "full_read_fresh_s"] = try medianSeconds(o.repeats) { _ = try x.read(as: Float.self) }
        }
        let disk = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 0, chunkCacheBytes: cache, validateValues: false))
        swift[p + "batched_read_s"] = try medianSeconds(o.repeats) {
            var start = 0
            while start < rows {
                try disk.read(rows: Array(start..<min(rows, start + 1024)), into: &batch)
                start += 1024
            }
        }
        let indices = randomIndices[name]!
        swift[p + "random_read_s"] = try medianSeconds(o.repeats) { try randomReads(disk, indices) }
        if !gzip {
            let openStart = DispatchTime.now().uptimeNanoseconds
            let memory = try TensorDataset.open(path: path, options: TensorDatasetOptions(memoryBudgetBytes: 1 << 40))
            preloadSeconds = Double(DispatchTime.now().uptimeNanoseconds - openStart) / 1e9
            swift[p + "random_preloaded_s"] = try medianSeconds(o.repeats) { try randomReads(memory, indices) }
        }
    }

    // Checkpoint of lstm-large: parameters + exp_avg + exp_avg_sq.
    let model = ModelConfig(cell: .lstm, inputSize: 128, hiddenSize: 512, layers: 2, outputSize: 10)
    let table = ParameterTable(config: model)
    var generator = SeededGenerator(seed: 3)
    let flat = (0..<table.totalCount).map { _ in generator.nextFloat(in: -1, 1) }
    let checkpoint = Checkpoint(
        metadata: CheckpointMetadata(globalStep: 1, epoch: 0, stepInEpoch: 1, seed: 3, worldSize: 1, configJSON: try CheckpointMetadata.encodeConfig(model)),
        optimizer: OptimizerConfig(), state: TrainingState(parameters: flat, expAvg: flat, expAvgSq: flat, stepCount: 1))
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

    // h5py on the same files and indices.
    let config: [String: Any] = [
        "files": files.map { ["name": $0.0, "file": $0.1, "indices": dir + "/indices-\($0.0).bin"] }, "x": "X", "y": "Y",
        "batch": o.batch, "repeats": o.repeats, "chunk_cache": cache, "ckpt_dir": dir,
        "tensors": table.entries.map { [$0.name, $0.shape] as [Any] },
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
    var versions = ""
    if process.terminationStatus == 0, let parsed = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
        for (key, value) in parsed {
            if let number = value as? Double { h5py[key] = number }
        }
        versions = "h5py \(parsed["h5py_version"] ?? "?") with HDF5 \(parsed["hdf5_version"] ?? "?")"
    } else {
        print("h5py side failed (status \(process.terminationStatus)); showing Swift numbers only")
    }

    // Report.
    func line(_ name: String, rows: Int, swiftKey: String, h5pyKey: String) {
        guard let s = swift[swiftKey] else { return }
        let mb = Double(rows * rowBytes) / 1e6
        var text = "  " + name.padding(toLength: 40, withPad: " ", startingAt: 0)
        text += String(format: " swift %8.0f rows/s %7.0f MB/s", Double(rows) / s, mb / s)
        if let h = h5py[h5pyKey] {
            text += String(format: " | h5py %8.0f rows/s %7.0f MB/s | ratio %6.2f", Double(rows) / h, mb / h, h / s)
        }
        print(text)
    }
    print("Swift uses the system libhdf5 1.10.8; \(versions.isEmpty ? "h5py not run" : versions).")
    print("Medians of \(o.repeats); MB/s of float32 X; ratio = h5py time / Swift time (> 1: Swift faster).")
    for (name, _, rows, gzip) in files {
        let p = name + "."
        let randomCount = randomIndices[name]!.count
        print("\(name) dataset\(gzip ? " (shuffle+gzip)" : ""):")
        line("full read into a reused buffer", rows: rows, swiftKey: p + "full_read_s", h5pyKey: p + "full_read_s")
        line("full read into a new array", rows: rows, swiftKey: p + "full_read_fresh_s", h5pyKey: p + "full_read_fresh_s")
        line("sequential batches of 1024 rows", rows: rows, swiftKey: p + "batched_read_s", h5pyKey: p + "batched_read_s")
        line("random rows, batches of \(o.batch)", rows: randomCount, swiftKey: p + "random_read_s", h5pyKey: p + "random_read_s")
        line("  (h5py with its default 1 MiB cache)", rows: randomCount, swiftKey: p + "random_read_s", h5pyKey: p + "random_read_default_cache_s")
        if !gzip {
            line("random rows, preloaded at open", rows: randomCount, swiftKey: p + "random_preloaded_s", h5pyKey: p + "random_read_s")
            print(String(format: "    (preloading %.0f MB at open took %.3f s)", Double(n * rowBytes) / 1e6, preloadSeconds))
        }
    }
    print(String(format: "checkpoint write, lstm-large, %d parameters x 3 = %.1f MB, with fsync + rename:", table.totalCount, checkpointMB))
    for (name, key) in [("contiguous tensors", "ckpt_write_s"), ("one chunk per tensor + fletcher32", "ckpt_write_fletcher_s")] {
        guard let s = swift[key] else { continue }
        var text = "  " + name.padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: " swift %7.1f ms", s * 1000)
        if let h = h5py[key] { text += String(format: " | h5py %7.1f ms | ratio %6.2f", h * 1000, h / s) }
        print(text)
    }
}
