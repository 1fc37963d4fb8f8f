// `rnn-coord eval`, `rnn-coord predict`, `rnn-coord plot`: use a trained checkpoint.
import ArgumentParser
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNDistributed
import RNNReport

/// Prints `error` as one line on standard error and exits 1.
func fail(_ command: String, _ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("rnn-coord \(command): error: \(error)\n".utf8))
    return ExitCode(1)
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint on a dataset: loss, accuracy and the confusion matrix.",
        discussion: """
            Example:
              rnn-coord eval --checkpoint runs/digits/ckpt-340.h5 --data datasets/digits/digits-test.h5
            """
    )

    @Option(help: "The checkpoint file (ckpt-<step>.h5) or a run folder (its newest valid checkpoint).")
    var checkpoint: String
    @Option(parsing: .upToNextOption, help: "HDF5 file(s) with X and Y (the names the run was trained with).")
    var data: [String] = []
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Samples per forward pass.")
    var batchSize = 256
    @Option(name: .customLong("log-format"), help: "text or json.")
    var logFormat: LogFormat = .text

    func validate() throws {
        if data.isEmpty { throw ValidationError("Please specify '--data' with the HDF5 file(s) to evaluate on.") }
        if batchSize < 1 { throw ValidationError("Please specify '--batch-size' of at least 1.") }
    }

    func run() throws {
        do {
            let model = try LoadedModel.load(checkpoint: try resolveCheckpoint(checkpoint))
            let dataset = try model.open(dataset: data)
            let report = try model.evaluate(on: dataset, batchSize: batchSize)
            if logFormat == .json {
                printLine(report.json())
            } else {
                printLine("Checkpoint: \(model.path) (\(model.summary))")
                printLine("Data: \(data.joined(separator: ", "))")
                printLine(report.text(labels: dataset.vocabulary.map { $0.map { String($0) } }))
            }
        } catch {
            throw fail("eval", error)
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict with a checkpoint: the next characters of --text, or the class of each sequence in --data.",
        discussion: """
            Examples:
              rnn-coord predict --checkpoint runs/hello/ckpt-100.h5 --text hello     (prints the predicted sequence, e.g. elloh)
              rnn-coord predict --checkpoint runs/digits/ckpt-340.h5 --data datasets/digits/digits-test.h5 --limit 5
            """
    )

    @Option(help: "The checkpoint file (ckpt-<step>.h5) or a run folder (its newest valid checkpoint).")
    var checkpoint: String
    @Option(help: "Text for a character model; each character is fed in turn and the predicted next character printed.")
    var text: String?
    @Option(parsing: .upToNextOption, help: "HDF5 file(s) whose sequences to classify (X; Y, if present, is shown as 'true').")
    var data: [String] = []
    @Option(name: .customLong("vocab-from"), help: "HDF5 file with the 'vocab' attribute for --text (default: the run's training file).")
    var vocabFrom: String?
    @Option(parsing: .unconditional, help: "Print at most this many predictions (0: all).")
    var limit = 0
    @Option(help: "Also write the inputs (/X) and the raw outputs (/outputs) of --data to this HDF5 file (for checking against PyTorch).")
    var outputs: String?
    @Flag(help: "With --data and a classifier: also print each class's probability (softmax; per-step models: of the last step). With --text: the 10 most likely next characters.")
    var probabilities = false

    func validate() throws {
        if text == nil && data.isEmpty { throw ValidationError("Please specify '--text' (character model) or '--data' (sequences to classify).") }
        if text != nil && !data.isEmpty { throw ValidationError("Please specify only one of '--text' and '--data'.") }
        if limit < 0 { throw ValidationError("Please specify '--limit' of 0 or more.") }
        if outputs != nil && data.isEmpty { throw ValidationError("'--outputs' needs '--data' (the sequences whose outputs to write).") }

    }

    func run() throws {
        do {
            let model = try LoadedModel.load(checkpoint: try resolveCheckpoint(checkpoint))
            if let text {
                try model.requireCharacterModel()
                let vocabFile = vocabFrom ?? model.config.dataFiles.first ?? ""
                let source = try TensorDataset.open(path: vocabFile, options: TensorDatasetOptions(xName: model.config.xName, yName: model.config.yName, memoryBudgetBytes: 0))
                guard let vocabulary = source.vocabulary else {
                    throw ReportError("\(vocabFile) has no 'vocab' attribute; pass --vocab-from FILE with the training file's vocabulary")
                }
                printLine(try model.predictText(text, vocabulary: vocabulary))
                if probabilities {
                    printLine("next,probability")
                    for (c, p) in try model.nextCharacterProbabilities(text, vocabulary: vocabulary).prefix(10) {
                        let shown = c == "\n" ? "\\n" : c == "\"" ? "\"\"" : String(c)
                        printLine("\"\(shown)\",\(String(format: "%.6f", p))")
                    }
                }
                return
            }
            let dataset = try model.open(dataset: data)
            if let outputs {
                try model.writeOutputs(on: dataset, to: outputs)
                printLine("Outputs of \(dataset.count) sequences written to \(outputs)")
            }
            if model.config.model.loss == .mse {
                try printValues(model, dataset)
                return
            }
            let predictions = try model.predictClasses(on: dataset)
            let probs = probabilities ? try model.probabilities(on: dataset) : nil
            let truth = dataset.allClassIds()
            let n = limit > 0 ? min(limit, predictions.count) : predictions.count
            let perStep = model.config.model.head == .everyStep
            var header = truth == nil ? "sample,predicted" : "sample,predicted,true"
            if probs != nil { header += (0..<model.config.model.outputSize).map { ",p_\($0)" }.joined() }
            printLine(header)
            for i in 0..<n {
                let p = predictions[i]
                var shown: String
                var trueShown: String?
                if perStep {
                    shown = dataset.decode(p.map(Int32.init)) ?? p.map(String.init).joined(separator: " ")
                    if let truth {
                        // With lengths, only the real steps (p holds one prediction per real step).
                        let row = Array(truth[(i * dataset.steps)..<(i * dataset.steps + p.count)])
                        trueShown = dataset.decode(row) ?? row.map(String.init).joined(separator: " ")
                    }
                    shown = "\"\(shown.replacingOccurrences(of: "\"", with: "\"\""))\""
                    trueShown = trueShown.map { "\"\($0.replacingOccurrences(of: "\"", with: "\"\""))\"" }
                } else {
                    shown = String(p[0])
                    trueShown = truth.map { String($0[i]) }
                }
                let probText = probs.map { $0[i].map { "," + String(format: "%.6f", $0) }.joined() } ?? ""
                printLine((trueShown.map { "\(i),\(shown),\($0)" } ?? "\(i),\(shown)") + probText)
            }
        } catch {
            throw fail("predict", error)
        }
    }
}

extension Predict {
    /// A regression model: `sample,predicted,true` with the values (several: space-separated, quoted).
    func printValues(_ model: LoadedModel, _ dataset: TensorDataset) throws {
        if probabilities { throw ReportError("--probabilities needs a classifier; this checkpoint is a regression (MSE) model") }
        let predicted = try model.outputs(on: dataset)
        let n = limit > 0 ? min(limit, predicted.count) : predicted.count
        var truth: [Float]?
        if case .values(let v) = try dataset.read(rows: Array(0..<n)).targets { truth = v }
        func show(_ v: ArraySlice<Float>) -> String {
            v.count == 1 ? valueText(v.first!) : "\"" + v.map(valueText).joined(separator: " ") + "\""
        }
        printLine(truth == nil ? "sample,predicted" : "sample,predicted,true")
        // A sample's true values: (O), or (T, O) per step, of which the real steps are shown
        // (predicted[i] holds those only).
        let stride = (model.config.model.head == .lastStep ? 1 : dataset.steps) * model.config.model.outputSize
        for i in 0..<n {
            let p = show(predicted[i][...])
            let shown = predicted[i].count
            printLine(truth.map { "\(i),\(p),\(show($0[(i * stride)..<(i * stride + shown)]))" } ?? "\(i),\(p)")
        }
    }
}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the loss/accuracy curve of a run as a PNG, from a checkpoint or a run folder.",
        discussion: """
            From a checkpoint file the per-step history stored in it is drawn, with the epoch and
            validation points of metrics.jsonl in the same folder when present. From a folder,
            its metrics.jsonl (or else its newest checkpoint) is drawn.
            Example:
              rnn-coord plot --checkpoint runs/digits --output digits.png
            """
    )

    @Option(help: "A checkpoint file (ckpt-<step>.h5) or a run folder (--checkpoint-dir of the run).")
    var checkpoint: String
    @Option(help: "A metrics.jsonl file to draw instead of the one next to the checkpoint.")
    var metrics: String?
    @Option(help: "PNG file to write (default: loss.png next to the checkpoint).")
    var output: String?
    @Option(help: "Title of the picture (default: model, data file and run folder).")
    var title: String?
    @Flag(name: .customLong("log-scale"), help: "A log10 loss axis (default: when the loss spans more than a decade).")
    var logScale = false

    func run() throws {
        do {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDirectory) else {
                throw ReportError("--checkpoint \(checkpoint): no such file or folder")
            }
            let folder = isDirectory.boolValue ? checkpoint : (checkpoint as NSString).deletingLastPathComponent
            let dir = folder.isEmpty ? "." : folder
            let jsonl = metrics ?? (dir as NSString).appendingPathComponent("metrics.jsonl")
            let fromFile = FileManager.default.fileExists(atPath: jsonl) ? try RunCurves.load(jsonLinesAt: jsonl) : nil
            var curves: RunCurves
            var config: TrainingConfig?
            if isDirectory.boolValue, let fromFile, metrics != nil || !fromFile.isEmpty {
                curves = fromFile
                if let newest = try? resolveCheckpoint(dir) { config = try? LoadedModel.load(checkpoint: newest).config }
            } else {
                let model = try LoadedModel.load(checkpoint: try resolveCheckpoint(checkpoint))
                config = model.config
                curves = RunCurves(history: model.checkpoint.metrics, epochs: fromFile?.epochs ?? [])
            }
            if curves.isEmpty { throw ReportError("\(checkpoint): no metrics recorded yet (no steps in the checkpoint or metrics.jsonl)") }
            curves = curves.thinned()
            if logScale { curves.logScale = true }
            curves.title = title ?? curveTitle(dir: (dir as NSString).standardizingPath, config: config)
            let out = output ?? (dir as NSString).appendingPathComponent("loss.png")
            try writeCurvePNG(curves, to: out)
            printLine("Loss curve: \(out) (\(curves.steps.count) step points, \(curves.epochs.count) epoch points)")
        } catch {
            throw fail("plot", error)
        }
    }
}

/// A checkpoint file as given, or the newest valid checkpoint of a folder.
func resolveCheckpoint(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw ReportError("--checkpoint \(path): no such file or folder")
    }
    guard isDirectory.boolValue else { return path }
    let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    // The most recently written checkpoint (a folder reused by a new run may still hold the
    // higher-numbered checkpoints of an earlier one).
    let found = files.compactMap { name -> (Date, Int, String)? in
        guard name.hasPrefix("ckpt-"), name.hasSuffix(".h5"), let n = Int(name.dropFirst(5).dropLast(3)) else { return nil }
        let full = (path as NSString).appendingPathComponent(name)
        let date = (try? FileManager.default.attributesOfItem(atPath: full)[.modificationDate] as? Date) ?? .distantPast
        return (date, n, full)
    }.sorted { ($0.0, $0.1) > ($1.0, $1.1) }
    guard let newest = found.first else { throw ReportError("--checkpoint \(path): the folder holds no ckpt-<step>.h5 file") }
    return newest.2
}
