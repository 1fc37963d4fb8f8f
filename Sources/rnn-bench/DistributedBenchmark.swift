// `rnn-bench distributed`: global samples/s of real multi-process training (the release
// `rnn-coord start --local-workers W --threads 1`) for the configurations of `rnn-bench train`,
// with W = 1 and W = 2, and the scaling efficiency s/s(2) / (2 * s/s(1)).
// scripts/bench_ddp.py runs PyTorch DDP (gloo, 2 x 1 thread) on the same configurations and
// scripts/bench_distributed.sh prints both side by side.
//
// Method: each configuration gets a synthetic dataset (SyntheticData.random, uncompressed,
// N a multiple of B so every step is a full global batch) in a temporary folder. Each run goes
// with --checkpoint-dir, so the coordinator writes metrics.jsonl; its step records carry the
// epoch's cumulative `samples_per_s` (samples of the epoch so far / time since the epoch
// started), from which the duration of every single step follows:
//   t_k = k * B / rate_k (k-th step of the epoch), step k took t_k - t_{k-1}
// (short steps arrive several per message, so their median is taken over 16-step windows).
// The first `warmup` steps of the run (buffer first touch, ring connection, page faults of
// the dataset) are dropped; samples/s = B * (timed steps) / (sum of their durations). The
// all-reduce time per step is the mean of the records' `reduce_s` (slowest rank) over the same
// steps. Steps per run are calibrated so a run lasts about `--seconds`: one in-process step
// of the same model (1 thread) estimates the 1-worker step time.
import Foundation
import RNNCore
import RNNData

struct DistributedRun {
    /// B / median step time (robust to other processes stealing the CPU now and then).
    var samplesPerSecond: Double
    /// B * steps / total time of the timed steps.
    var meanSamplesPerSecond: Double
    var reduceMilliseconds: Double
    var stepMilliseconds: Double
    var timedSteps: Int
}

struct DistributedBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs every configuration (or only the comma-separated `only`) with 1 and `workers` local
/// worker processes, `repeats` times each (the best run counts: the machine is shared), and
/// prints `config  1w-samples/s  Nw-samples/s  efficiency  allreduce-ms  ...`.
/// `extraArguments` go to every `rnn-coord start` (e.g. --spin 0).
func runDistributedBenchmark(only: String?, seconds: Double, workers: Int, repeats: Int, binDirectory: String?,
                             extraArguments: [String] = []) {
    let wanted = only.map { Set($0.split(separator: ",").map(String.init)) }
    let bin = binDirectory ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().path
    let coord = (bin as NSString).appendingPathComponent("rnn-coord")
    for tool in [coord, (bin as NSString).appendingPathComponent("rnn-worker")] where !FileManager.default.isExecutableFile(atPath: tool) {
        say("rnn-bench distributed: no executable at \(tool); build with `swift build -c release` (or pass --bin DIR)")
        exit(1)
    }
    let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("rnn-bench-distributed-\(getpid())")
    do {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    } catch {
        say("rnn-bench distributed: cannot create \(folder): \(error)")
        exit(1)
    }
    defer { try? FileManager.default.removeItem(atPath: folder) }

    say("# rnn-bench distributed: rnn-coord start --local-workers W --threads 1 (\(coord)), ~\(seconds) s per run, best of \(repeats)" + (extraArguments.isEmpty ? "" : " " + extraArguments.joined(separator: " ")))
    say("# samples/s = B / median step duration (16-step windows for steps under 1 ms; from metrics.jsonl, warm-up steps excluded); mean-s/s = B * steps / their total time;")
    say("# allreduce = median reduce_s of the slowest rank; each figure is the best of the repeats")
    say(dPad("config", 12) + dPad("1w-samples/s", 14, right: true) + dPad("\(workers)w-samples/s", 14, right: true)
          + dPad("efficiency", 12, right: true) + dPad("1w-ms/step", 12, right: true) + dPad("\(workers)w-ms/step", 12, right: true)
          + dPad("\(workers)w-allreduce-ms", 18, right: true) + dPad("steps(1w/\(workers)w)", 15, right: true)
          + dPad("1w-mean-s/s", 14, right: true) + dPad("\(workers)w-mean-s/s", 14, right: true))
    var breakdown: [String] = []
    for bench in trainBenchConfigs where wanted?.contains(bench.name) ?? true {
        do {
            let stepSeconds = try estimateStepSeconds(bench)
            // Forward + backward of one worker's shard (B / W rows), in process: the compute
            // part of a W-worker step.
            let shardSeconds = try estimateStepSeconds(bench, batch: (bench.batch + workers - 1) / workers)
            // Steps for ~`seconds` at 1 worker; the W-worker run does W times as many (same time).
            let steps1 = max(8, min(3000, Int(seconds / max(stepSeconds, 1e-6))))
            let stepsW = max(8, min(6000, steps1 * workers))
            let data = try writeDataset(bench, steps: stepsW, folder: folder)
            var best1: DistributedRun?
            var bestW: DistributedRun?
            for r in 0..<repeats {
                let one = try runCoordinator(coord, bench: bench, data: data, workers: 1, steps: steps1, extra: extraArguments,
                                             folder: (folder as NSString).appendingPathComponent("\(bench.name)-1w-\(r)"))
                if one.samplesPerSecond > best1?.samplesPerSecond ?? 0 { best1 = one }
                let many = try runCoordinator(coord, bench: bench, data: data, workers: workers, steps: stepsW, extra: extraArguments,
                                              folder: (folder as NSString).appendingPathComponent("\(bench.name)-\(workers)w-\(r)"))
                if many.samplesPerSecond > bestW?.samplesPerSecond ?? 0 { bestW = many }
            }
            guard let a = best1, let b = bestW else { continue }
            let efficiency = b.samplesPerSecond / (Double(workers) * a.samplesPerSecond)
            say(dPad(bench.name, 12) + dPad(dFormat(a.samplesPerSecond, 1), 14, right: true)
                  + dPad(dFormat(b.samplesPerSecond, 1), 14, right: true)
                  + dPad(dFormat(efficiency * 100, 1) + "%", 12, right: true)
                  + dPad(dFormat(a.stepMilliseconds, 2), 12, right: true)
                  + dPad(dFormat(b.stepMilliseconds, 2), 12, right: true)
                  + dPad(dFormat(b.reduceMilliseconds, 3), 18, right: true)
                  + dPad("\(a.timedSteps)/\(b.timedSteps)", 15, right: true)
                  + dPad(dFormat(a.meanSamplesPerSecond, 1), 14, right: true)
                  + dPad(dFormat(b.meanSamplesPerSecond, 1), 14, right: true))
            breakdown.append(dPad(bench.name, 12) + dPad(dFormat(b.stepMilliseconds, 2), 12, right: true)
                             + dPad(dFormat(shardSeconds * 1e3, 2), 16, right: true)
                             + dPad(dFormat(b.reduceMilliseconds, 3), 14, right: true)
                             + dPad(dFormat(b.stepMilliseconds - shardSeconds * 1e3 - b.reduceMilliseconds, 2), 12, right: true)
                             + dPad(dFormat(stepSeconds * 1e3, 2), 16, right: true)
                             + dPad(dFormat(a.stepMilliseconds - stepSeconds * 1e3, 2), 12, right: true))
        } catch {
            say("\(bench.name): \(error)")
        }
    }
    say("# where a step's time goes: compute = in-process forward+backward of one worker's rows (1 thread, best of 3);")
    say("# allreduce = reduce_s (includes waiting for the slower rank); other = the rest (step/metrics round trip")
    say("# through the coordinator, data read, mean + Adam, hash every 10 steps)")
    say(dPad("breakdown", 12) + dPad("\(workers)w-ms/step", 12, right: true) + dPad("\(workers)w-compute-ms", 16, right: true)
          + dPad("allreduce-ms", 14, right: true) + dPad("other-ms", 12, right: true) + dPad("1w-compute-ms", 16, right: true)
          + dPad("1w-other-ms", 12, right: true))
    for line in breakdown { say(line) }
}

/// Seconds of one in-process training step (1 thread, after a warm-up step).
private func estimateStepSeconds(_ bench: TrainBenchConfig, batch: Int? = nil) throws -> Double {
    var bench = bench
    if let batch { bench.batch = batch }
    let config = modelConfig(bench)
    let network = try RNNNetwork(config: config, threads: 1)
    let parameters = ParameterTable.initialParameters(config: config, seed: 1)
    var gradient = [Float](repeating: 0, count: parameters.count)
    let x = [Float](repeating: 0.1, count: bench.batch * bench.steps * bench.input)
    let targets = Targets.classIds([Int32](repeating: 0, count: bench.batch))
    let clock = ContinuousClock()
    var best = Double.infinity
    for _ in 0..<3 {
        let start = clock.now
        _ = try network.accumulateGradients(parameters: parameters, input: x, batch: bench.batch, steps: bench.steps,
                                            targets: targets, gradient: &gradient)
        let d = clock.now - start
        best = min(best, Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }
    return best
}

private func modelConfig(_ bench: TrainBenchConfig) -> ModelConfig {
    ModelConfig(cell: bench.cell, inputSize: bench.input, hiddenSize: bench.hidden, layers: bench.layers,
                outputSize: bench.classes, head: .lastStep, loss: .crossEntropy)
}

/// A synthetic dataset of full batches, at most ~64 MB (epochs wrap; the per-step durations
/// do not care) and at least one batch.
private func writeDataset(_ bench: TrainBenchConfig, steps: Int, folder: String) throws -> String {
    let sampleBytes = bench.steps * bench.input * 4
    let batchesInBudget = max(1, (64 << 20) / (sampleBytes * bench.batch))
    let count = bench.batch * min(steps, batchesInBudget)
    let path = (folder as NSString).appendingPathComponent("\(bench.name).h5")
    try SyntheticData.random(count: count, steps: bench.steps, features: bench.input, classes: bench.classes, seed: 7)
        .write(to: path, compress: false)
    return path
}

/// One real run of `rnn-coord start`; parses its metrics.jsonl.
private func runCoordinator(_ coord: String, bench: TrainBenchConfig, data: String, workers: Int, steps: Int,
                            extra: [String], folder: String) throws -> DistributedRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: coord)
    process.arguments = ["start", "--data", data, "--cell", bench.cell.rawValue, "--hidden", "\(bench.hidden)",
                         "--layers", "\(bench.layers)", "--batch-size", "\(bench.batch)", "--epochs", "1000000",
                         "--max-steps", "\(steps)", "--threads", "1", "--local-workers", "\(workers)",
                         "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", folder, "--keep", "1"]
        + extra
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw DistributedBenchError("rnn-coord (\(workers) worker(s)) exited with status \(process.terminationStatus):\n\(text)")
    }
    let metrics = (folder as NSString).appendingPathComponent("metrics.jsonl")
    guard let contents = try? String(contentsOfFile: metrics, encoding: .utf8) else {
        throw DistributedBenchError("no \(metrics) after the run:\n\(text)")
    }
    // Per-step durations from the epochs' cumulative rates.
    var durations: [Double] = []
    var reduces: [Double] = []
    var epoch = -1
    var epochSamples = 0
    var previous = 0.0
    for line in contents.split(separator: "\n") {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              object["kind"] as? String == "step",
              let e = object["epoch"] as? Int, let rate = object["samples_per_s"] as? Double, rate > 0 else { continue }
        if e != epoch { epoch = e; epochSamples = 0; previous = 0 }
        epochSamples += bench.batch
        let t = Double(epochSamples) / rate
        durations.append(t - previous)
        previous = t
        reduces.append(object["reduce_s"] as? Double ?? 0)
    }
    let warmup = min(max(2, durations.count / 10), durations.count - 1)
    guard durations.count >= 2 else {
        throw DistributedBenchError("only \(durations.count) step records in \(metrics)")
    }
    let timed = Array(durations[warmup...])
    let seconds = timed.reduce(0, +)
    // Short steps travel up to 8 per message (`rnn-coord start --steps-per-message`), so the
    // coordinator sees them in bunches: the median is taken over windows of 16 consecutive
    // steps (two messages' worth) when the run has enough of them. Steps of 1 ms or more
    // travel one per message (a group is ~1 ms of steps), so each duration is measured on
    // its own and the median is per step, as scripts/bench_ddp.py takes DDP's.
    let perStepMedian = timed.sorted()[timed.count / 2]
    let window = timed.count >= 64 && perStepMedian < 1e-3 ? 16 : 1
    let windows = stride(from: 0, to: timed.count - window + 1, by: window).map { timed[$0..<$0 + window].reduce(0, +) / Double(window) }
    let median = windows.sorted()[windows.count / 2]
    let medianReduce = reduces[warmup...].sorted()[timed.count / 2]
    return DistributedRun(samplesPerSecond: Double(bench.batch) / median,
                          meanSamplesPerSecond: Double(bench.batch * timed.count) / seconds,
                          reduceMilliseconds: medianReduce * 1e3, stepMilliseconds: median * 1e3,
                          timedSteps: timed.count)
}

private func dFormat(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

private func dPad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}

/// print + flush: rows appear as they are measured, also through a pipe.
private func say(_ line: String) {
    print(line)
    fflush(nil)
}
