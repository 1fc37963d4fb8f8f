// `rnn-bench scaling`: the alpha-beta model of docs/SCALING.md (RNNReport/ScalingModel.swift).
// Measures the per-row compute of the four benchmark configurations here (1 thread, `--rows`
// rows per step, best of the steps in `--seconds`), takes alpha (and the measured link's beta)
// from a W = 2 fit of scripts/bench_netns.sh's JSON lines (`--fit FILE`) or from `--alpha-us`,
// and prints predicted samples/s and efficiency for W = 1 .. 256 on 1, 10 and 25 Gbit/s links;
// `--png FILE` draws efficiency against W. `--validate FILE` fits alpha and beta on the file's
// W = 2 rows and prints the prediction beside every W > 2 measurement, with the error.
import ArgumentParser
import Foundation
import RNNCore
import RNNReport

struct ScalingOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: ArgumentHelp("Configurations, comma-separated (default: seed-small,lstm-med,gru-med,lstm-large).", valueName: "name[,name]"),
            transform: { $0.split(separator: ",").map(String.init) })
    var configs = ["seed-small", "lstm-med", "gru-med", "lstm-large"]
    @Option(parsing: .unconditional, help: "Rows per worker per step.") var rows = 32.0
    @Option(parsing: .unconditional, help: "Fraction of the all-reduce hidden behind compute, in [0, 1].") var overlap = 0.0
    @Option(help: "Gradients on the wire: none (float32) or bf16 (2 bytes per parameter; the count stays float32).") var compress = "none"
    /// `--compress bf16`: the gradient travels as 2 bytes per parameter.
    var bf16: Bool { compress == "bf16" }
    @Option(parsing: .unconditional, help: ArgumentHelp("Worlds W of the tables (default: 1,2,4,8,16,32,64,128,256).", valueName: "w[,w]"),
            transform: { try numberList($0, flag: "--worlds") })
    var worlds = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    @Option(name: .customLong("links"), parsing: .unconditional, help: ArgumentHelp("Link rates in Gbit/s (default: 1,10,25).", valueName: "gbit[,gbit]"),
            transform: { try numberList($0, flag: "--links") })
    var linksGbit = [1.0, 10.0, 25.0]
    @Option(name: .customLong("alpha-us"), parsing: .unconditional, help: ArgumentHelp("Latency alpha in microseconds (default: the --fit value, else 60).", valueName: "us"),
            transform: { try nonNegative($0, flag: "--alpha-us") * 1e-6 })
    var alpha: Double? = nil  // seconds
    @Option(name: .customLong("fit"), help: ArgumentHelp("Fit alpha (and the link's beta) on the W = 2 rows of this scripts/bench_netns.sh JSON-lines file.", valueName: "file"))
    var fitFile: String? = nil
    @Option(name: .customLong("fit-impl"), help: "The rows' impl of --fit and --validate.") var fitImpl = "swift-auto"
    @Option(name: .customLong("validate"), help: ArgumentHelp("Fit on the W = 2 rows of this file and print the prediction beside every W > 2 row.", valueName: "file"))
    var validateFile: String? = nil
    @Option(help: ArgumentHelp("Draw efficiency against W into this PNG.", valueName: "file")) var png: String? = nil
    @Option(parsing: .unconditional, help: "Seconds of steps measuring each configuration's compute (the median counts).") var seconds = 2.0
    @Option(name: .customLong("compute-ms"), parsing: .singleValue,
            help: ArgumentHelp("Compute per row given instead of measured, in ms (may be repeated).", valueName: "name=ms[,name=ms]"),
            transform: { try computeMilliseconds($0) })
    var computeOverrides: [[String: Double]] = []
    var computeOverride: [String: Double] { computeOverrides.reduce(into: [:]) { $0.merge($1) { $1 } } }  // seconds per row

    func validate() throws {
        try requireKnownConfigs(configs.joined(separator: ","))
        if !(rows >= 0) { throw ValidationError("Please specify '--rows' of 0 or more, found \(rows).") }
        if !(overlap >= 0 && overlap <= 1) { throw ValidationError("Please specify '--overlap' as a fraction in [0, 1], found \(overlap).") }
        if !(seconds >= 0) { throw ValidationError("Please specify '--seconds' of 0 or more, found \(seconds).") }
        if !["none", "bf16"].contains(compress) { throw ValidationError("Please specify '--compress' as none or bf16, found '\(compress)'.") }
    }
}

/// `1,2,4` as numbers.
private func numberList<N: LosslessStringConvertible>(_ text: String, flag: String) throws -> [N] {
    try text.split(separator: ",").map {
        guard let n = N(String($0)) else { throw ValidationError("Please specify '\(flag)' as comma-separated numbers, found '\($0)'.") }
        return n
    }
}

private func nonNegative(_ text: String, flag: String) throws -> Double {
    guard let d = Double(text), d >= 0 else { throw ValidationError("Please specify '\(flag)' of 0 or more, found '\(text)'.") }
    return d
}

/// `lstm-med=0.4,gru-med=0.35` (milliseconds per row) as seconds per row by name.
private func computeMilliseconds(_ text: String) throws -> [String: Double] {
    var result: [String: Double] = [:]
    for part in text.split(separator: ",") {
        let kv = part.split(separator: "=")
        guard kv.count == 2, let ms = Double(kv[1]) else { throw ValidationError("Please specify '--compute-ms' as NAME=MS_PER_ROW[,...], found '\(part)'.") }
        result[String(kv[0])] = ms * 1e-3
    }
    return result
}

struct ScalingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Predicted samples/s and efficiency of W workers from the alpha-beta model of docs/SCALING.md.")

    @OptionGroup var options: ScalingOptions

    func run() throws {
        let status = runScalingCommand(options)
        if status != 0 { throw ExitCode(status) }
    }
}

private struct BenchRow: Decodable {
    var impl: String
    var world: Int
    var bytes: Int
    var us_per_op: Double
}

private func readRows(_ path: String) throws -> [BenchRow] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    return text.split(separator: "\n").compactMap { line in
        try? JSONDecoder().decode(BenchRow.self, from: Data(line.utf8))
    }
}

/// Median seconds per (world, bytes) of one implementation.
private func medians(_ rows: [BenchRow], impl: String) -> [Int: [Int: Double]] {
    var groups: [Int: [Int: [Double]]] = [:]
    for r in rows where r.impl == impl { groups[r.world, default: [:]][r.bytes, default: []].append(r.us_per_op * 1e-6) }
    return groups.mapValues { bySize in
        bySize.mapValues { xs in
            let s = xs.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
    }
}

func runScalingCommand(_ o: ScalingOptions) -> Int32 {
    if let file = o.validateFile {
        do { try validate(file: file, impl: o.fitImpl) } catch {
            print("rnn-bench scaling: \(error)")
            return 1
        }
        if o.fitFile == nil && o.alpha == nil { return 0 }
    }

    // alpha (and the measured link's beta) from the W = 2 rows of a bench_netns.sh file.
    var fitted: AlphaBeta? = nil
    if let file = o.fitFile {
        do {
            let m = medians(try readRows(file), impl: o.fitImpl)
            guard let w2 = m[2], let ab = AlphaBeta.fitRing(world: 2, samples: w2.map { (Double($0.key), $0.value) }) else {
                print("rnn-bench scaling: no W = 2 rows of \(o.fitImpl) in \(file)")
                return 1
            }
            fitted = ab
        } catch {
            print("rnn-bench scaling: \(error)")
            return 1
        }
    }
    let alpha = o.alpha ?? fitted?.alpha ?? 60e-6
    print("# rnn-bench scaling: alpha-beta model, ring all-reduce 2(W-1)*alpha + 2(W-1)/W*S*beta")
    if let f = fitted {
        print(String(format: "# fitted on W = 2 (%@): alpha %.1f us, beta %.3f ns/byte (%.0f Mbit/s effective)",
                     o.fitFile!, f.alpha * 1e6, f.beta * 1e9, 8 / f.beta / 1e6))
    }
    print(String(format: "# alpha %.1f us; beta = 8 / link rate; overlap fraction %.2f; %.0f rows per worker per step; gradients as %@",
                 alpha * 1e6, o.overlap, o.rows, o.bf16 ? "bf16" : "float32"))

    // Per-row compute, measured here (or given).
    var workloads: [ScalingWorkload] = []
    print("config        params     grad MB   compute ms/row  (1 thread, \(Int(o.rows)) rows per step)")
    for name in o.configs {
        guard var bench = trainBenchConfigs.first(where: { $0.name == name }) else {
            print("rnn-bench scaling: unknown configuration '\(name)'")
            return 1
        }
        bench.batch = max(1, Int(o.rows))
        let config = ModelConfig(cell: bench.cell, inputSize: bench.input, hiddenSize: bench.hidden, layers: bench.layers,
                                 outputSize: bench.classes, head: .lastStep, loss: .crossEntropy)
        let count = ParameterTable.initialParameters(config: config, seed: 1).count
        let perRow: Double
        if let given = o.computeOverride[name] {
            perRow = given
        } else {
            do { perRow = try measureStepSeconds(bench, config: config, seconds: o.seconds) / Double(bench.batch) } catch {
                print("rnn-bench scaling: \(name): \(error)")
                return 1
            }
        }
        // float32 (or bf16) gradient sums plus the float32 scored-element count
        let bytes = Double((o.bf16 ? 2 : 4) * count + 4)
        workloads.append(ScalingWorkload(name: name, gradientBytes: bytes, computeSecondsPerRow: perRow,
                                         rowsPerWorker: o.rows, overlap: o.overlap))
        print(padTo(name, 12) + padTo("\(count)", 10, right: true) + padTo(String(format: "%.2f", bytes / 1e6), 12, right: true)
              + padTo(String(format: "%.4f", perRow * 1e3), 17, right: true))
    }

    var series: [EfficiencySeries] = []
    for gbit in o.linksGbit {
        let cost = AlphaBeta(alpha: alpha, beta: AlphaBeta.beta(bitsPerSecond: gbit * 1e9))
        print("\n## \(formatRate(gbit)) links: predicted samples/s (efficiency)")
        print("| W | " + workloads.map(\.name).joined(separator: " | ") + " |")
        print("|---|" + String(repeating: "---|", count: workloads.count))
        for w in o.worlds {
            let cells = workloads.map { wl in
                String(format: "%@ (%.1f %%)", grouped(wl.samplesPerSecond(world: w, cost: cost)), 100 * wl.efficiency(world: w, cost: cost))
            }
            print("| \(w) | " + cells.joined(separator: " | ") + " |")
        }
        for wl in workloads {
            series.append(EfficiencySeries(label: "\(wl.name) \(formatRate(gbit))",
                                           points: o.worlds.filter { $0 >= 1 }.map { ($0, wl.efficiency(world: $0, cost: cost)) }))
        }
    }
    if let png = o.png {
        do {
            try writeEfficiencyPNG(series, title: String(format: "Predicted scaling efficiency, alpha %.0f us, %.0f rows/worker, overlap %.2f", alpha * 1e6, o.rows, o.overlap), to: png)
            print("\nPNG: \(png)")
        } catch {
            print("rnn-bench scaling: cannot write \(png): \(error)")
            return 1
        }
    }
    return 0
}

/// Fits alpha and beta on the W = 2 medians of `impl` and prints measured against predicted for
/// every W > 2 (`swift-auto` rows with the automatic shape, the fastest of recursive doubling,
/// halving-doubling and the ring for W >= 3; `swift-auto-fixed` with the fixed crossover,
/// recursive doubling up to 256 KiB; `swift-ring` rows and gloo with the ring formula).
private func validate(file: String, impl: String) throws {
    let rows = try readRows(file)
    let m = medians(rows, impl: impl)
    guard let w2 = m[2], let cost = AlphaBeta.fitRing(world: 2, samples: w2.map { (Double($0.key), $0.value) }) else {
        throw BenchError("no W = 2 rows of \(impl) in \(file)")
    }
    print(String(format: "# validation: alpha %.1f us, beta %.3f ns/byte (%.0f Mbit/s) fitted on W = 2 of %@ in %@",
                 cost.alpha * 1e6, cost.beta * 1e9, 8 / cost.beta / 1e6, impl, file))
    print("| W | size | measured ms | model ms | error |")
    print("|---|---|---|---|---|")
    for w in m.keys.sorted() {
        for (bytes, t) in m[w]!.sorted(by: { $0.key < $1.key }) {
            let shape: AllReduceShape = impl.hasPrefix("swift-ring") ? .ring
                : impl.hasPrefix("swift-auto-fixed") ? .fixedCrossover : impl.hasPrefix("swift-auto") ? .automatic : .ring
            let p = ScalingModel.allReduceSeconds(world: w, bytes: Double(bytes), cost: cost, shape: shape)
            print(String(format: "| %d | %@ | %.3f | %.3f | %+.1f %% |", w, sizeLabel(bytes), t * 1e3, p * 1e3, 100 * (p - t) / t))
        }
    }
}

/// Best seconds of one full step (forward, loss, backward, Adam) on `bench.batch` rows, 1 thread.
private func measureStepSeconds(_ bench: TrainBenchConfig, config: ModelConfig, seconds: Double) throws -> Double {
    let network = try RNNNetwork(config: config, threads: 1)
    var parameters = ParameterTable.initialParameters(config: config, seed: 1)
    var gradient = [Float](repeating: 0, count: parameters.count)
    var optimizer = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 1e-3), parameterCount: parameters.count)
    var rng = SeededGenerator(seed: 2)
    let x = (0..<(bench.batch * bench.steps * bench.input)).map { _ in rng.nextFloat(in: -1, 1) }
    let targets = Targets.classIds((0..<bench.batch).map { _ in Int32(rng.next() % UInt64(bench.classes)) })
    let clock = ContinuousClock()
    func step() throws -> Double {
        let start = clock.now
        for k in gradient.indices { gradient[k] = 0 }
        _ = try network.accumulateGradients(parameters: parameters, input: x, batch: bench.batch, steps: bench.steps,
                                            targets: targets, gradient: &gradient)
        optimizer.step(parameters: &parameters, gradient: &gradient)
        let d = clock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
    _ = try step()  // warm-up
    var times: [Double] = []
    let begin = clock.now
    repeat {
        times.append(try step())
        let d = clock.now - begin
        if Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 >= seconds && times.count >= 3 { break }
    } while true
    // The median: a shared machine's best step is luckier than its training run.
    times.sort()
    return times[times.count / 2]
}

private func sizeLabel(_ b: Int) -> String { b >= 1 << 20 ? "\(b >> 20) MiB" : "\(b >> 10) KiB" }
private func formatRate(_ gbit: Double) -> String { gbit >= 1 ? String(format: "%g Gbit/s", gbit) : String(format: "%g Mbit/s", gbit * 1000) }
private func grouped(_ v: Double) -> String {
    if v >= 1000 {
        let n = Int(v.rounded())
        var s = String(n), out = ""
        while s.count > 3 { out = "," + s.suffix(3) + out; s = String(s.dropLast(3)) }
        return s + out
    }
    return String(format: v >= 100 ? "%.0f" : "%.1f", v)
}
private func padTo(_ t: String, _ w: Int, right: Bool = false) -> String {
    t.count >= w ? t : (right ? String(repeating: " ", count: w - t.count) + t : t + String(repeating: " ", count: w - t.count))
}
