// `rnn-bench train`: samples/s and GFLOP/s of a full training step (forward, loss, backward,
// Adam) for the configurations of issue 2; scripts/bench_torch_train.py runs the same steps
// with PyTorch and scripts/bench_train.sh prints the ratios side by side.
import RNNCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU time of this process in seconds (all threads): on a busy shared machine it shows the
/// work a step really costs when wall time includes waiting for a core.
func processCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// One benchmark configuration (sequence classification: last-step head, cross-entropy).
/// Options of issue 15: `vocabulary` V makes X token ids (with `embedding` E through
/// nn.Embedding, without it the gather of W_ih's columns, or with `denseOneHot` today's one-hot
/// float matrix of V columns); `lengths` draws each sequence's length uniformly from the range.
struct TrainBenchConfig {
    var name: String
    var cell: CellKind
    var input: Int
    var hidden: Int
    var layers: Int
    var steps: Int
    var batch: Int
    var classes: Int
    var bidirectional = false
    var vocabulary: Int? = nil
    var embedding: Int? = nil
    var denseOneHot = false
    var lengths: ClosedRange<Int>? = nil
}

let trainBenchConfigs: [TrainBenchConfig] = [
    TrainBenchConfig(name: "seed-small", cell: .rnnTanh, input: 5, hidden: 64, layers: 1, steps: 10, batch: 32, classes: 2),
    TrainBenchConfig(name: "lstm-med", cell: .lstm, input: 64, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10),
    TrainBenchConfig(name: "gru-med", cell: .gru, input: 64, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10),
    TrainBenchConfig(name: "lstm-large", cell: .lstm, input: 128, hidden: 512, layers: 2, steps: 100, batch: 64, classes: 10),
    TrainBenchConfig(name: "bi-lstm-med", cell: .lstm, input: 64, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10,
                     bidirectional: true),
    TrainBenchConfig(name: "embed-lstm", cell: .lstm, input: 20000, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10,
                     vocabulary: 20000, embedding: 128),
    TrainBenchConfig(name: "onehot-20k", cell: .lstm, input: 20000, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10,
                     vocabulary: 20000),
    TrainBenchConfig(name: "onehot-20k-dense", cell: .lstm, input: 20000, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10,
                     vocabulary: 20000, denseOneHot: true),
    // The issue's case: a 62 MB checkpoint, LSTM H=64 over V=20000 one-hot ids.
    TrainBenchConfig(name: "onehot-20k-h64", cell: .lstm, input: 20000, hidden: 64, layers: 1, steps: 50, batch: 64, classes: 10,
                     vocabulary: 20000),
    TrainBenchConfig(name: "onehot-20k-h64-dense", cell: .lstm, input: 20000, hidden: 64, layers: 1, steps: 50, batch: 64, classes: 10,
                     vocabulary: 20000, denseOneHot: true),
    TrainBenchConfig(name: "lstm-med-len", cell: .lstm, input: 64, hidden: 256, layers: 1, steps: 50, batch: 64, classes: 10,
                     lengths: 5...50),
]

/// Runs every configuration (or only `only`, a comma-separated list of names) for about
/// `seconds` each after a warm-up step, and prints one row per configuration:
/// `name  samples/s  GFLOP/s  ms/step  steps  cpu-ms/step  of-probe` (cpu-ms/step is process
/// CPU time; of-probe is GFLOP/s as a percentage of the FMA probe run just before).
/// `fixedSteps` runs exactly that many timed steps instead (e.g. to count allocations under
/// valgrind: the count must not grow with the steps). `batch` overrides every configuration's
/// batch size (e.g. 32: the rows one of 2 data-parallel workers runs of a global batch of 64).
func runTrainBenchmark(threads: Int, only: String? = nil, seconds: Double = 3, fixedSteps: Int? = nil, batch: Int? = nil) {
    let wanted = only.map { Set($0.split(separator: ",").map(String.init)) }
    let known = Set(trainBenchConfigs.map(\.name))
    if let unknown = wanted?.subtracting(known).sorted(), !unknown.isEmpty {
        print("rnn-bench train: unknown configuration \(unknown.joined(separator: ", ")); known: \(trainBenchConfigs.map(\.name).joined(separator: ", "))")
        return
    }
    print("# rnn-bench train: full step (forward, loss, backward, Adam), threads=\(threads)" + (batch.map { ", batch=\($0)" } ?? ""))
    print("config             samples/s    GFLOP/s    ms/step  steps  cpu-ms/step  of-probe")
    for var bench in trainBenchConfigs where wanted?.contains(bench.name) ?? true {
        if let batch { bench.batch = batch }
        // This core's FMA rate right now (`rnn-bench probe`), taken before each configuration
        // since the host's speed drifts: the step's GFLOP/s as a fraction of it is what does not
        // move with the CPU model (issue 18). Not under --steps (valgrind runs).
        let probe = fixedSteps == nil ? fmaProbe(seconds: 0.4) : 0
        let tokenInput = bench.vocabulary != nil && !bench.denseOneHot
        let config = ModelConfig(cell: bench.cell, inputSize: bench.input, hiddenSize: bench.hidden,
                                 layers: bench.layers, outputSize: bench.classes, head: .lastStep, loss: .crossEntropy,
                                 tokenInput: tokenInput, embeddingSize: bench.embedding, bidirectional: bench.bidirectional)
        let network: RNNNetwork
        do {
            network = try RNNNetwork(config: config, threads: threads)
        } catch {
            print("\(bench.name): cannot build the network: \(error)")
            continue
        }
        var parameters = ParameterTable.initialParameters(config: config, seed: 1)
        var gradient = [Float](repeating: 0, count: parameters.count)
        var optimizer = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 1e-3), parameterCount: parameters.count)
        var previous = TrainingState()
        var rng = SeededGenerator(seed: 2)
        var x: [Float]
        if let v = bench.vocabulary {
            let ids = (0..<(bench.batch * bench.steps)).map { _ in Int(rng.next() % UInt64(v)) }
            if bench.denseOneHot {
                x = [Float](repeating: 0, count: bench.batch * bench.steps * v)
                for (i, id) in ids.enumerated() { x[i * v + id] = 1 }
            } else {
                x = ids.map { Float($0) }
            }
        } else {
            x = (0..<(bench.batch * bench.steps * bench.input)).map { _ in rng.nextFloat(in: -1, 1) }
        }
        let targets = Targets.classIds((0..<bench.batch).map { _ in Int32(rng.next() % UInt64(bench.classes)) })
        let lengths = bench.lengths.map { r in
            (0..<bench.batch).map { _ in r.lowerBound + Int(rng.next() % UInt64(r.count)) }
        }

        // The worker's step (Replica.step in Worker.swift, without the all-reduce): the gradient
        // sum of the batch, then Adam on sum / scored count with the scale formed in registers,
        // out of place (the state before it kept, as for a rollback), zeroing the sums as it
        // reads them, so no step has a separate scale, norm or zeroing pass.
        func trainStep() -> Bool {
            do {
                let stats = try network.accumulateGradients(parameters: parameters, input: x, batch: bench.batch,
                                                            steps: bench.steps, targets: targets, lengths: lengths, gradient: &gradient)
                gradient.withUnsafeMutableBufferPointer { sums in
                    _ = optimizer.step(parameters: &parameters, clearingGradientSum: sums, scale: 1 / Float(stats.scoredCount),
                                       keepingPreviousIn: &previous)
                }
            } catch {
                print("\(bench.name): \(error)")
                return false
            }
            return true
        }

        guard trainStep() else { continue } // warm-up: workspace allocation, first touch
        let clock = ContinuousClock()
        let start = clock.now
        let cpuStart = processCPUSeconds()
        var done = 0
        var elapsed = 0.0
        repeat {
            guard trainStep() else { break }
            done += 1
            let d = clock.now - start
            elapsed = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        } while fixedSteps.map { done < $0 } ?? (elapsed < seconds)
        let perStep = elapsed / Double(done)
        let cpuPerStep = (processCPUSeconds() - cpuStart) / Double(done)
        let samples = Double(bench.batch) / perStep
        let gflops = network.trainingFlops(batch: bench.batch, steps: bench.steps, lengths: lengths) / perStep / 1e9
        print(padColumn(bench.name, 17) + padColumn(fixed(samples, 1), 11, right: true) + padColumn(fixed(gflops, 2), 11, right: true)
              + padColumn(fixed(perStep * 1e3, 2), 11, right: true) + padColumn("\(done)", 7, right: true) + padColumn(fixed(cpuPerStep * 1e3, 2), 13, right: true)
              + padColumn(probe > 0 ? fixed(100 * gflops / probe, 1) + "%" : "-", 10, right: true))
    }
}

private func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = "\(rounded)"
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
    }
    return text
}

private func padColumn(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}
