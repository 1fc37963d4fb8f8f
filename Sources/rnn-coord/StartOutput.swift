// What `rnn-coord start` shows and leaves behind: progress (live bar, plain lines, JSON, quiet),
// the effective config (printed at start, saved as config.yaml next to the checkpoints), the
// final summary and the loss/accuracy curve (loss.png).
import ArgumentParser
import Foundation
import Logging
import RNNCheckpoint
import RNNDistributed
import RNNReport

extension LogFormat: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The reporter, logger and console of one run.
struct RunOutput {
    let console: Console
    let logger: Logger
    let events: @Sendable (TrainingEvent) -> Void
    let quiet: Bool
    let format: LogFormat

    /// Local workers print like the coordinator: silent (but for errors) under --quiet, JSON lines under --log-format json.
    var localWorkerArguments: [String] { quiet ? ["--quiet"] : format == .json ? ["--log-format", "json"] : [] }

    /// Prints the effective config and saves it as config.yaml in the checkpoint folder.
    func announce(_ settings: [(String, ConfigValue?)], checkpointDir: String?, resuming: Bool = false) {
        if let dir = checkpointDir, !resuming {
            let old = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".h5") }.sorted()
            // One metrics.jsonl per run: an earlier run's file is kept under a numbered name.
            let metrics = (dir as NSString).appendingPathComponent("metrics.jsonl")
            if let size = (try? FileManager.default.attributesOfItem(atPath: metrics))?[.size] as? Int, size > 0 {
                var n = 1
                while FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("metrics.\(n).jsonl")) { n += 1 }
                let kept = (dir as NSString).appendingPathComponent("metrics.\(n).jsonl")
                if (try? FileManager.default.moveItem(atPath: metrics, toPath: kept)) != nil {
                    logger.info("The earlier run's metrics.jsonl is kept as \(kept)")
                }
            }
            if !old.isEmpty {
                let names = old.joined(separator: ", ")
                logger.warning("\(dir) already holds \(names) from an earlier run; this run's checkpoints join them (use a new --checkpoint-dir, or --resume \(dir) to continue that run)")
            }
        }
        let yaml = ConfigFile.yaml(settings)
        if format == .json {
            var object: [String: Any?] = ["event": "config"]
            for (k, v) in settings {
                switch v {
                case .flag(let b)?: object[k] = b
                case .scalar(let s)?: object[k] = Int(s) ?? (s.contains(where: { ".eE".contains($0) }) ? Double(s) : nil) ?? s
                case .list(let l)?: object[k] = l
                case nil: object[k] = nil
                }
            }
            if !quiet { console.line(jsonLine(object)) }
        } else {
            logger.debug("Effective config:\n\(yaml)")
            if !quiet {
                let brief = settings.compactMap { k, v -> String? in
                    switch v {
                    case .flag(let b)?: return b ? k : nil
                    case .scalar(let s)?: return "\(k)=\(s)"
                    case .list(let l)?: return l.isEmpty ? nil : "\(k)=\(l.joined(separator: ","))"
                    case nil: return nil
                    }
                }
                console.line("Config: " + brief.joined(separator: " "))
            }
        }
        if let dir = checkpointDir {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let path = (dir as NSString).appendingPathComponent("config.yaml")
            do {
                try Data(("# Effective config of the last run; rerun with: rnn-coord start --config \(path)\n" + yaml).utf8)
                    .write(to: URL(fileURLWithPath: path), options: .atomic)
            } catch {
                logger.warning("cannot write \(path): \(error)")
            }
        }
    }

    /// The final summary line(s) and the curve PNG.
    /// `logScale` true forces a log10 loss axis in loss.png (nil: automatic).
    func finish(_ summary: TrainingSummary, config: TrainingConfig, checkpointDir: String?, plot: Bool, logScale: Bool? = nil) {
        var plotPath: String?
        if plot, let dir = checkpointDir {
            let metrics = (dir as NSString).appendingPathComponent("metrics.jsonl")
            let path = (dir as NSString).appendingPathComponent("loss.png")
            do {
                var curves = try RunCurves.load(jsonLinesAt: metrics).thinned()
                curves.title = curveTitle(dir: dir, config: config)
                if let logScale { curves.logScale = logScale }
                try writeCurvePNG(curves, to: path)
                plotPath = path
            } catch {
                logger.warning("cannot draw the loss curve: \(error)")
            }
        }
        if format == .json {
            if !quiet {
                console.line(jsonLine(["event": "done", "epochs": summary.epochsCompleted, "global_steps": summary.globalSteps,
                                       "loss": summary.train.loss, "accuracy": summary.train.accuracy,
                                       "val_loss": summary.validation?.loss, "val_accuracy": summary.validation?.accuracy,
                                       "samples_per_s": summary.samplesPerSecond, "checkpoint": summary.checkpoints.last,
                                       "plot": plotPath, "rejected_frames": summary.rejectedFrames,
                                       "best_epoch": summary.best?.bestEpoch, "best_checkpoint": summary.bestCheckpoint,
                                       "stopped_early": summary.stoppedEarly]))
            }
            return
        }
        if quiet { return }
        // A resume of a finished run trains no epoch: there is no loss of this run to show.
        let trained = summary.train.loss.isNaN ? "nothing left to train" : "loss \(lossText(summary.train.loss))"
        var line = "Done: \(summary.epochsCompleted) epoch(s), \(summary.globalSteps) steps, \(trained)"
        if let a = summary.train.accuracy { line += ", accuracy \(String(format: "%.2f", a * 100))%" }
        if let v = summary.validation {
            line += ", val loss \(lossText(v.loss))"
            if let a = v.accuracy { line += ", val accuracy \(String(format: "%.2f", a * 100))%" }
        }
        if let best = summary.best, let epoch = best.bestEpoch, let value = best.bestValue {
            let shown = best.metric == .valLoss ? lossText(value) : "\(fixed(value * 100, 2))%"
            line += ", best epoch \(epoch) (\(best.metric.rawValue) \(shown))"
        }
        if summary.stoppedEarly { line += ", stopped early" }
        line += ", \(Int(summary.samplesPerSecond)) samples/s"
        if let last = summary.checkpoints.last { line += ", checkpoint \(last)" }
        if summary.rejectedFrames > 0 { line += ", \(summary.rejectedFrames) frames rejected" }
        console.line(line)
        if let v = summary.validation {
            var test = "Test loss (--val): \(lossText(v.loss))"
            if let a = v.accuracy { test += ", Test Accuracy: \(String(format: "%.2f", a * 100))%" }
            console.line(test)
        }
        if let last = summary.checkpoints.last { console.line("Checkpoint: \(last)") }
        if let best = summary.bestCheckpoint { console.line("Best checkpoint: \(best)") }
        if let plotPath { console.line("Loss curve: \(plotPath)") }
        if let dir = checkpointDir { console.line("Metrics: \((dir as NSString).appendingPathComponent("metrics.jsonl"))") }
    }
}

/// A title for a run's curve from its config.yaml-free facts: the folder name.
func curveTitle(dir: String, config: TrainingConfig? = nil) -> String {
    let name = (dir as NSString).lastPathComponent
    guard let config else { return "RUN \(name)" }
    let data = ((config.dataFiles.first ?? "") as NSString).lastPathComponent
    return "\(config.model.cell.rawValue) H=\(config.model.hiddenSize) L=\(config.model.layers) - \(data) - run \(name)"
}

/// A console, a swift-log logger on it and the event reporter for the chosen format.
func makeRunOutput(format: LogFormat, quiet: Bool, level: Logger.Level, logEvery: Int) -> RunOutput {
    let console = Console.standard()
    var logger = Logger(label: "rnn-coord") { label in
        ConsoleLogHandler(label: label, console: console, format: format, level: level)
    }
    logger.logLevel = quiet ? max(level, .warning) : level
    let events = progressReporter(options: ProgressOptions(format: format, quiet: quiet, logEvery: logEvery), console: console, logger: logger)
    return RunOutput(console: console, logger: logger, events: events, quiet: quiet, format: format)
}

extension Start {
    func makeOutput() -> RunOutput {
        makeRunOutput(format: output.logFormat, quiet: output.quiet, level: output.logLevel, logEvery: output.logEvery)
    }

    /// Every flag's effective value, in the config file's key names (so config.yaml reruns the run).
    func effectiveConfig(_ config: TrainingConfig) -> [(String, ConfigValue?)] {
        func s<T>(_ v: T?) -> ConfigValue? { v.map { .scalar("\($0)") } }
        let (d, m, o, t, n, sec, out) = (data, model, optimizer, training, network, security, output)
        return [
            ("data", .list(config.dataFiles)), ("val", .list(config.valFiles)), ("x-name", s(d.xName)), ("y-name", s(d.yName)),
            ("cell", s(m.cell.rawValue)), ("hidden", s(m.hidden)), ("layers", s(m.layers)),
            ("embedding", s(m.options.embedding)), ("padding-idx", s(m.options.paddingIdx)),
            ("bidirectional", .flag(m.options.bidirectional)), ("dropout", s(m.options.dropout)),
            ("lengths-name", s(m.options.lengthsName)),
            ("batch-size", s(t.batchSize)), ("epochs", s(t.epochs)), ("max-steps", s(t.maxSteps)), ("seed", s(t.seed)),
            ("shuffle", .flag(t.shuffle)), ("drop-last", .flag(t.dropLast)),
            ("optimizer", s(o.optimizer.rawValue)), ("lr", s(o.lr)), ("beta1", s(o.beta1)), ("beta2", s(o.beta2)), ("eps", s(o.eps)),
            ("weight-decay", s(config.optimizer.weightDecay)), ("clip-norm", s(o.clipNorm)),
            ("workers", s(n.workers)), ("local-workers", s(n.localWorkers)), ("threads", s(n.threads)), ("bind", s(n.bind)),
            ("checkpoint-dir", s(t.checkpointDir.map(absolute))), ("checkpoint-every", s(t.checkpointEvery)), ("keep", s(t.keep)),
            ("resume", s(t.resume)), ("log-every", s(out.logEvery)), ("join-timeout", s(n.joinTimeout)), ("step-timeout", s(n.stepTimeout)),
            ("spin", s(n.spin)), ("steps-per-message", s(n.stepsPerMessage)), ("balance", .flag(n.balance)), ("compress", s(n.compress.rawValue)),
            ("flat-allreduce", .flag(n.flatAllreduce)), ("no-overlap", .flag(n.noOverlap)),
            ("allreduce-crossover", s(n.allreduceCrossover.description)),
            ("quiet", .flag(out.quiet)), ("log-format", s(out.logFormat.rawValue)), ("log-level", s(out.logLevel.rawValue)), ("no-plot", .flag(out.noPlot)),
            ("heartbeat-interval", s(n.heartbeatInterval)), ("heartbeat-timeout", s(n.heartbeatTimeout)), ("min-workers", s(n.minWorkers)),
            // Paths, not secrets: a resumed run (`--resume DIR` reads this file) keeps its encryption.
            ("curve-key", s(sec.curveKey.map(absolute))), ("allow", s(sec.allow.map(absolute))), ("insecure", .flag(sec.insecure)),
            // The token is a secret: never written here (a resumed run draws a new one).
        ] + schedule.effectiveConfig + report.effectiveConfig + selection.effectiveConfig
    }
}

func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
}
