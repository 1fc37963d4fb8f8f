// Using a trained checkpoint: load it (its config tells the model), evaluate it on a dataset
// (loss, accuracy, confusion matrix), and predict classes or characters.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RNNCheckpoint
import RNNCore
import RNNData
import RNNDistributed
import RNNHDF5

public struct ReportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A checkpoint ready for inference: its run config, a network and the parameters.
public struct LoadedModel {
    public let path: String
    public let config: TrainingConfig
    public let checkpoint: Checkpoint
    public let network: RNNNetwork

    /// Reads `path`: the config from the root attribute `config`, then the tensors checked
    /// against that model's parameter table.
    public static func load(checkpoint path: String) throws -> LoadedModel {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ReportError("--checkpoint \(path): no such file (checkpoints are named ckpt-<step>.h5 in the run's --checkpoint-dir)")
        }
        let configJSON: String
        do {
            guard try HDF5File.isHDF5(path: path) else {
                throw ReportError("--checkpoint \(path): expected an HDF5 checkpoint, found a file without the HDF5 signature")
            }
            let file = try HDF5File.open(path)
            let root = try file.root()
            guard try root.hasAttribute("config") else {
                throw ReportError("--checkpoint \(path): expected a root attribute 'config' (an rnn-trainer checkpoint), found none")
            }
            configJSON = try root.stringAttribute("config")
        } catch let e as ReportError {
            throw e
        } catch {
            throw ReportError("--checkpoint \(path): cannot read it as an HDF5 checkpoint: \(error)")
        }
        let config: TrainingConfig
        do {
            config = try TrainingConfig.fromJSON(configJSON)
        } catch {
            throw ReportError("--checkpoint \(path): its 'config' attribute is not a training config this version reads: \(error)")
        }
        let network = try RNNNetwork(config: config.model, threads: 1)
        let checkpoint = try CheckpointStore.read(path: path, table: network.table)
        return LoadedModel(path: path, config: config, checkpoint: checkpoint, network: network)
    }

    /// A short description: `lstm H=64 L=1, 10 classes, step 340`.
    public var summary: String {
        let m = config.model
        let out = m.loss == .crossEntropy ? "\(m.outputSize) classes" : "\(m.outputSize) outputs"
        return "\(m.cell.rawValue) H=\(m.hiddenSize) L=\(m.layers), input \(m.inputSize), \(out) (\(m.head.rawValue)), global step \(checkpoint.metadata.globalStep)"
    }

    /// Opens a dataset with this model's X/Y names and checks it fits the model.
    public func open(dataset paths: [String]) throws -> TensorDataset {
        let data = try TensorDataset.open(paths: paths, options: config.datasetOptions(memoryBudgetBytes: 0))
        let m = config.model
        if data.inputSize != m.inputSize {
            throw ReportError("\(paths.joined(separator: ", ")): the model takes \(m.inputSize) input features per step, the dataset has \(data.inputSize)")
        }
        if data.deliversTokenIds != m.tokenInput {
            throw ReportError("\(paths.joined(separator: ", ")): the model takes \(m.tokenInput ? "token ids" : "float features"), the dataset has \(data.inputEncoding == .dense ? "float features" : "token ids")")
        }
        return data
    }
}

/// A confusion matrix: `counts[truth][predicted]`.
public struct ConfusionMatrix: Sendable, Equatable {
    public var classes: Int
    public var counts: [[Int]]

    public init(classes: Int) {
        self.classes = classes
        counts = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    public mutating func add(truth: Int, predicted: Int) {
        guard truth >= 0, truth < classes, predicted >= 0, predicted < classes else { return }
        counts[truth][predicted] += 1
    }

    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }
    public var correct: Int { (0..<classes).reduce(0) { $0 + counts[$1][$1] } }
    public var accuracy: Double { total > 0 ? Double(correct) / Double(total) : 0 }

    /// Recall of class c (correct / true count), nil for a class without samples.
    public func recall(_ c: Int) -> Double? {
        let n = counts[c].reduce(0, +)
        return n > 0 ? Double(counts[c][c]) / Double(n) : nil
    }

    /// Precision of class c (correct / predicted count), nil if never predicted.
    public func precision(_ c: Int) -> Double? {
        let n = (0..<classes).reduce(0) { $0 + counts[$1][c] }
        return n > 0 ? Double(counts[c][c]) / Double(n) : nil
    }

    /// The matrix as a text table: rows are true classes, columns predictions, plus recall.
    public func table(labels: [String]? = nil) -> String {
        let names = (0..<classes).map { c in labels.flatMap { c < $0.count ? $0[c] : nil } ?? String(c) }
        let cell = max(4, names.map(\.count).max() ?? 1, String(counts.flatMap { $0 }.max() ?? 0).count) + 1
        func pad(_ s: String) -> String { String(repeating: " ", count: max(0, cell - s.count)) + s }
        var lines: [String] = []
        lines.append(pad("true\\pred") .padding(toLength: max(cell, 10), withPad: " ", startingAt: 0) + names.map(pad).joined() + "  recall")
        for r in 0..<classes {
            let rec = recall(r).map { String(format: "%.1f%%", $0 * 100) } ?? "-"
            lines.append(pad(names[r]).padding(toLength: max(cell, 10), withPad: " ", startingAt: 0)
                         + counts[r].map { pad(String($0)) }.joined() + "  " + String(repeating: " ", count: max(0, 6 - rec.count)) + rec)
        }
        return lines.joined(separator: "\n")
    }
}

/// Regression metrics over every predicted value (all outputs, all scored steps): MSE, RMSE,
/// MAE and R² = 1 - SS_res / SS_tot per output, averaged over the outputs (scikit-learn's
/// `r2_score` default, "uniform_average").
public struct RegressionMetrics: Sendable, Equatable {
    public var mse: Double
    public var rmse: Double
    public var mae: Double
    public var r2: Double
}

/// Sums for `RegressionMetrics`, per output column.
struct RegressionSums {
    var count = 0
    var squared = 0.0, absolute = 0.0
    var sum: [Double], sumSquares: [Double], residual: [Double]
    var perOutput: [Int]

    init(outputs: Int) {
        sum = [Double](repeating: 0, count: outputs)
        sumSquares = sum
        residual = sum
        perOutput = [Int](repeating: 0, count: outputs)
    }

    /// `predicted` and `truth` laid out alike, output index fastest.
    mutating func add(predicted: [Float], truth: [Float]) {
        let O = sum.count
        for i in 0..<min(predicted.count, truth.count) {
            let y = Double(truth[i]), d = Double(predicted[i]) - y
            squared += d * d
            absolute += abs(d)
            let k = i % O
            sum[k] += y
            sumSquares[k] += y * y
            residual[k] += d * d
            perOutput[k] += 1
            count += 1
        }
    }

    var metrics: RegressionMetrics {
        let n = Double(max(count, 1))
        var r2 = 0.0
        for k in sum.indices {
            let m = Double(max(perOutput[k], 1))
            let total = sumSquares[k] - sum[k] * sum[k] / m
            // A constant target: R² is 1 for a perfect fit, else 0 (scikit-learn's convention).
            r2 += total > 0 ? 1 - residual[k] / total : (residual[k] == 0 ? 1 : 0)
        }
        return RegressionMetrics(mse: squared / n, rmse: (squared / n).squareRoot(), mae: absolute / n, r2: r2 / Double(max(sum.count, 1)))
    }
}

/// What `rnn-coord eval` prints.
public struct EvaluationReport: Sendable {
    public var samples: Int
    public var loss: Double
    public var accuracy: Double?
    public var confusion: ConfusionMatrix?
    /// Character/token models: perplexity and bits per character of the loss.
    public var perplexity: Double?
    public var bitsPerCharacter: Double?
    /// Regression models.
    public var regression: RegressionMetrics?

    /// The confusion matrix is printed up to this many classes; above, the most frequent confusions.
    public static let largestPrintedMatrix = 20

    public func text(labels: [String]? = nil) -> String {
        var lines = ["Samples: \(samples)", "Loss: \(lossText(loss))"]
        if let a = accuracy { lines.append("Accuracy: \(fixed(a * 100, 2))%") }
        if let p = perplexity, let b = bitsPerCharacter {
            lines.append("Perplexity: \(fixed(p, 3))")
            lines.append("Bits per character: \(fixed(b, 4))")
        }
        if let r = regression {
            lines.append("MSE: \(lossText(r.mse))")
            lines.append("RMSE: \(lossText(r.rmse))")
            lines.append("MAE: \(lossText(r.mae))")
            lines.append("R²: \(fixed(r.r2, 4))")
        }
        if let c = confusion {
            if c.classes <= Self.largestPrintedMatrix {
                lines.append("Confusion matrix (rows: true class, columns: predicted class):")
                lines.append(c.table(labels: labels))
            } else {
                lines.append("Most frequent confusions (\(c.classes) classes, too many for a matrix; true -> predicted: count, share of the true class):")
                lines.append(contentsOf: c.topConfusions(10).map { t, p, n in
                    func name(_ k: Int) -> String {
                        let s = labels.flatMap { k < $0.count ? $0[k] : nil } ?? String(k)
                        return "'\(s == "\n" ? "\\n" : s)'"
                    }
                    let share = Double(n) / Double(max(1, c.counts[t].reduce(0, +))) * 100
                    return "  \(name(t)) -> \(name(p)): \(n) (\(fixed(share, 1))%)"
                })
            }
        }
        return lines.joined(separator: "\n")
    }

    public func json() -> String {
        jsonLine(["samples": samples, "loss": loss, "accuracy": accuracy, "confusion": confusion?.counts,
                  "perplexity": perplexity, "bpc": bitsPerCharacter, "mse": regression?.mse, "rmse": regression?.rmse,
                  "mae": regression?.mae, "r2": regression?.r2])
    }
}

extension ConfusionMatrix {
    /// The `n` largest off-diagonal counts as (true, predicted, count), largest first.
    public func topConfusions(_ n: Int) -> [(Int, Int, Int)] {
        var all: [(Int, Int, Int)] = []
        for t in 0..<classes { for p in 0..<classes where p != t && counts[t][p] > 0 { all.append((t, p, counts[t][p])) } }
        return Array(all.sorted { $0.2 != $1.2 ? $0.2 > $1.2 : ($0.0, $0.1) < ($1.0, $1.1) }.prefix(n))
    }
}

/// Index of the largest of `count` values starting at `offset`.
func argmax(_ v: [Float], offset: Int, count: Int) -> Int {
    var best = 0
    for k in 1..<max(1, count) where v[offset + k] > v[offset + best] { best = k }
    return best
}

extension LoadedModel {
    /// Loss, accuracy and (for classifiers) the confusion matrix of the model on `data`.
    public func evaluate(on data: TensorDataset, batchSize: Int = evaluationBatchSize) throws -> EvaluationReport {
        let m = config.model
        var stats = LossStats()
        var confusion = m.loss == .crossEntropy ? ConfusionMatrix(classes: m.outputSize) : nil
        var regression = m.loss == .mse ? RegressionSums(outputs: m.outputSize) : nil
        try data.forEachBatch(batchSize: batchSize) { batch in
            stats = stats + (try network.evaluate(parameters: checkpoint.parameters, input: batch.x, batch: batch.count,
                                                  steps: data.steps, targets: batch.targets, lengths: batch.lengths))
            if case .classIds(let ids) = batch.targets, confusion != nil {
                let out = try network.predict(parameters: checkpoint.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                              lengths: batch.lengths).outputs
                let O = m.outputSize
                for i in 0..<ids.count {
                    // Per-step targets past a sequence's length are padding, not scored.
                    if m.head == .everyStep, let lengths = batch.lengths, i % data.steps >= lengths[i / data.steps] { continue }
                    confusion!.add(truth: Int(ids[i]), predicted: argmax(out, offset: i * O, count: O))
                }
            }
            if case .values(let truth) = batch.targets, regression != nil {
                let out = try network.predict(parameters: checkpoint.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                              lengths: batch.lengths).outputs
                if m.head == .everyStep, let lengths = batch.lengths {
                    // Per-step values past a sequence's length are padding, not scored.
                    let O = m.outputSize
                    for b in 0..<batch.count {
                        let range = (b * data.steps * O)..<((b * data.steps + lengths[b]) * O)
                        regression!.add(predicted: Array(out[range]), truth: Array(truth[range]))
                    }
                } else {
                    regression!.add(predicted: out, truth: truth)
                }
            }
        }
        let language = isLanguageModel(m)
        return EvaluationReport(samples: data.count, loss: stats.meanLoss,
                                accuracy: m.loss == .crossEntropy ? stats.accuracy : nil, confusion: confusion,
                                perplexity: language ? perplexity(stats.meanLoss) : nil,
                                bitsPerCharacter: language ? bitsPerCharacter(stats.meanLoss) : nil,
                                regression: regression?.metrics)
    }

    /// The predicted class of every sequence (last-step head) or of every step (per-step head).
    public func predictClasses(on data: TensorDataset, batchSize: Int = evaluationBatchSize) throws -> [[Int]] {
        let m = config.model
        guard m.loss == .crossEntropy else { throw ReportError("the model is a regression model (MSE); it predicts values, not classes") }
        var result: [[Int]] = []
        let O = m.outputSize
        try data.forEachBatch(batchSize: batchSize) { batch in
            let out = try network.predict(parameters: checkpoint.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                          lengths: batch.lengths).outputs
            let perSample = m.head == .lastStep ? 1 : data.steps
            for b in 0..<batch.count {
                // With lengths a per-step model predicts only the real steps.
                let shown = m.head == .lastStep ? 1 : (batch.lengths?[b] ?? data.steps)
                result.append((0..<shown).map { t in argmax(out, offset: (b * perSample + t) * O, count: O) })
            }
        }
        return result
    }

    /// Throws unless the model is a character model: per-step class targets over token inputs
    /// (what `predict --text` feeds), naming what the checkpoint holds instead.
    public func requireCharacterModel(flag: String = "--text") throws {
        let m = config.model
        guard m.head == .everyStep, m.loss == .crossEntropy else {
            let kind = m.loss == .mse ? "a regression model (MSE, \(m.head == .lastStep ? "one output per sequence" : "outputs per step"))"
                                      : "a sequence classifier (one class per sequence)"
            throw ReportError("\(flag) needs a character model (token ids in, the next character out at every step); this checkpoint is \(kind)")
        }
    }

    /// Writes the inputs exactly as the network saw them and its outputs to an HDF5 file, so
    /// another framework can replay them: `/X` float32 (N, T, I) (token ids: int64 (N, T)),
    /// `/lengths` int64 (N) when the data has lengths, and `/outputs` float32 (N, O) or
    /// (N, T, O), batch-first like PyTorch's `model(X)`. Written to a temporary file, then
    /// renamed, so `path` never holds a half-written file.
    public func writeOutputs(on data: TensorDataset, to path: String, batchSize: Int = evaluationBatchSize) throws {
        let m = config.model
        let perSample = (m.head == .lastStep ? 1 : data.steps) * m.outputSize
        var x: [Float] = []
        var outputs: [Float] = []
        var lengths: [Int] = []
        x.reserveCapacity(data.count * data.sampleElements)
        outputs.reserveCapacity(data.count * perSample)
        try data.forEachBatch(batchSize: batchSize) { batch in
            x.append(contentsOf: batch.x)
            if let l = batch.lengths { lengths.append(contentsOf: l) }
            outputs.append(contentsOf: try network.predict(parameters: checkpoint.parameters, input: batch.x,
                                                           batch: batch.count, steps: data.steps, lengths: batch.lengths).outputs)
        }
        let outputShape = m.head == .lastStep ? [data.count, m.outputSize] : [data.count, data.steps, m.outputSize]
        let temporary = path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
        do {
            let file = try HDF5File.create(temporary)
            let root = try file.root()
            if data.deliversTokenIds {
                _ = try root.writeDataset("X", shape: [data.count, data.steps], values: x.map { Int64($0) })
            } else {
                _ = try root.writeDataset("X", shape: [data.count, data.steps, data.inputSize], values: x)
            }
            if data.hasLengths { _ = try root.writeDataset("lengths", shape: [data.count], values: lengths.map { Int64($0) }) }
            _ = try root.writeDataset("outputs", shape: outputShape, values: outputs)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ReportError("cannot write outputs to \(path): \(error)")
        }
        if rename(temporary, path) != 0 {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ReportError("cannot move the outputs file into place at \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Character model: feeds `text` one-hot through the network and returns the predicted
    /// next character at every position (the tutorial's "hello" -> "elloh").
    public func predictText(_ text: String, vocabulary: [Unicode.Scalar]) throws -> String {
        let m = config.model
        try checkCharacterModel(vocabulary: vocabulary, flag: "--text")
        let ids = try tokenIds(text, vocabulary: vocabulary, flag: "--text")
        let T = ids.count
        let out = try network.predict(parameters: checkpoint.parameters, input: networkInput(ids), batch: 1, steps: T).outputs
        var predicted = String.UnicodeScalarView()
        for t in 0..<T {
            let k = argmax(out, offset: t * m.outputSize, count: m.outputSize)
            predicted.append(k < vocabulary.count ? vocabulary[k] : "?")
        }
        return String(predicted)
    }
}
