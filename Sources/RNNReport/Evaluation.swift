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

/// What `rnn-coord eval` prints.
public struct EvaluationReport: Sendable {
    public var samples: Int
    public var loss: Double
    public var accuracy: Double?
    public var confusion: ConfusionMatrix?

    public func text(labels: [String]? = nil) -> String {
        var lines = ["Samples: \(samples)", "Loss: \(fixed(loss, 4))"]
        if let a = accuracy { lines.append("Accuracy: \(fixed(a * 100, 2))%") }
        if let c = confusion {
            lines.append("Confusion matrix (rows: true class, columns: predicted class):")
            lines.append(c.table(labels: labels))
        }
        return lines.joined(separator: "\n")
    }

    public func json() -> String {
        jsonLine(["samples": samples, "loss": loss, "accuracy": accuracy, "confusion": confusion?.counts])
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
    public func evaluate(on data: TensorDataset, batchSize: Int = 256) throws -> EvaluationReport {
        let m = config.model
        var stats = LossStats()
        var confusion = m.loss == .crossEntropy ? ConfusionMatrix(classes: m.outputSize) : nil
        var batch = Batch()
        var start = 0
        while start < data.count {
            let rows = Array(start..<min(start + batchSize, data.count))
            try data.read(rows: rows, into: &batch)
            let targets = batch.targets.networkTargets
            stats = stats + (try network.evaluate(parameters: checkpoint.parameters, input: batch.x, batch: batch.count,
                                                  steps: data.steps, targets: targets, lengths: batch.lengths))
            if case .classes(let ids) = batch.targets, confusion != nil {
                let out = try network.predict(parameters: checkpoint.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                              lengths: batch.lengths).outputs
                let O = m.outputSize
                for i in 0..<ids.count {
                    // Per-step targets past a sequence's length are padding, not scored.
                    if m.head == .everyStep, let lengths = batch.lengths, i % data.steps >= lengths[i / data.steps] { continue }
                    confusion!.add(truth: Int(ids[i]), predicted: argmax(out, offset: i * O, count: O))
                }
            }
            start += batchSize
        }
        return EvaluationReport(samples: data.count, loss: stats.meanLoss,
                                accuracy: m.loss == .crossEntropy ? stats.accuracy : nil, confusion: confusion)
    }

    /// The predicted class of every sequence (last-step head) or of every step (per-step head).
    public func predictClasses(on data: TensorDataset, batchSize: Int = 256) throws -> [[Int]] {
        let m = config.model
        guard m.loss == .crossEntropy else { throw ReportError("the model is a regression model (MSE); it predicts values, not classes") }
        var result: [[Int]] = []
        var batch = Batch()
        var start = 0
        let O = m.outputSize
        while start < data.count {
            let rows = Array(start..<min(start + batchSize, data.count))
            try data.read(rows: rows, into: &batch)
            let out = try network.predict(parameters: checkpoint.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                          lengths: batch.lengths).outputs
            let perSample = m.head == .lastStep ? 1 : data.steps
            for b in 0..<batch.count {
                // With lengths a per-step model predicts only the real steps.
                let shown = m.head == .lastStep ? 1 : (batch.lengths?[b] ?? data.steps)
                result.append((0..<shown).map { t in argmax(out, offset: (b * perSample + t) * O, count: O) })
            }
            start += batchSize
        }
        return result
    }

    /// Writes the inputs exactly as the network saw them and its outputs to an HDF5 file, so
    /// another framework can replay them: `/X` float32 (N, T, I) (token ids: int64 (N, T)),
    /// `/lengths` int64 (N) when the data has lengths, and `/outputs` float32 (N, O) or
    /// (N, T, O), batch-first like PyTorch's `model(X)`. Written to a temporary file, then
    /// renamed, so `path` never holds a half-written file.
    public func writeOutputs(on data: TensorDataset, to path: String, batchSize: Int = 256) throws {
        let m = config.model
        let perSample = (m.head == .lastStep ? 1 : data.steps) * m.outputSize
        var x: [Float] = []
        var outputs: [Float] = []
        var lengths: [Int] = []
        x.reserveCapacity(data.count * data.sampleElements)
        outputs.reserveCapacity(data.count * perSample)
        var batch = Batch()
        var start = 0
        while start < data.count {
            let rows = Array(start..<min(start + batchSize, data.count))
            try data.read(rows: rows, into: &batch)
            x.append(contentsOf: batch.x)
            if let l = batch.lengths { lengths.append(contentsOf: l) }
            outputs.append(contentsOf: try network.predict(parameters: checkpoint.parameters, input: batch.x,
                                                           batch: batch.count, steps: data.steps, lengths: batch.lengths).outputs)
            start += batchSize
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
        guard m.head == .everyStep, m.loss == .crossEntropy else {
            throw ReportError("--text needs a character model (per-step class targets); this checkpoint is a \(m.head.rawValue) \(m.loss.rawValue) model")
        }
        guard vocabulary.count == m.inputSize else {
            throw ReportError("the vocabulary has \(vocabulary.count) characters, the model takes \(m.inputSize) inputs")
        }
        var index: [Unicode.Scalar: Int] = [:]
        for (i, c) in vocabulary.enumerated() where index[c] == nil { index[c] = i }
        var ids: [Int] = []
        for c in text.unicodeScalars {
            guard let i = index[c] else {
                let shown = vocabulary.map { $0 == "\n" ? "\\n" : String($0) }.joined()
                throw ReportError("--text: the character '\(c)' is not in the model's vocabulary (\(shown))")
            }
            ids.append(i)
        }
        guard !ids.isEmpty else { throw ReportError("--text: expected at least one character") }
        let T = ids.count, I = m.inputSize
        var x: [Float]
        if m.tokenInput {
            x = ids.map { Float($0) }
        } else {
            x = [Float](repeating: 0, count: T * I)
            for (t, id) in ids.enumerated() { x[t * I + id] = 1 }
        }
        let out = try network.predict(parameters: checkpoint.parameters, input: x, batch: 1, steps: T).outputs
        var predicted = String.UnicodeScalarView()
        for t in 0..<T {
            let k = argmax(out, offset: t * m.outputSize, count: m.outputSize)
            predicted.append(k < vocabulary.count ? vocabulary[k] : "?")
        }
        return String(predicted)
    }
}
