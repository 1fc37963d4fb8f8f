// Progress output: a live bar on a terminal, tutorial-style lines without one, JSON lines for
// machines, or nothing (--quiet). Messages go through swift-log (levels) to the same console so
// a live bar is cleared before a log line is printed.
import Foundation
import Logging
import RNNDistributed

/// How progress and log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// Human text: a live bar on a terminal, plain lines otherwise.
    case text
    /// One JSON object per line (events and log records).
    case json
}

/// Serialises writes to standard output and standard error and remembers whether a live
/// (carriage-return) line is showing, so other lines first clear it.
public final class Console: @unchecked Sendable {
    private let lock = NSLock()
    private var liveShown = false
    private let writeOut: @Sendable (String) -> Void
    private let writeErr: @Sendable (String) -> Void
    /// Whether standard output is a terminal (a live bar is drawn only then).
    public let isTerminal: Bool

    public init(isTerminal: Bool, out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void) {
        self.isTerminal = isTerminal
        writeOut = out
        writeErr = err
    }

    /// Standard output and standard error of this process.
    public static func standard() -> Console {
        Console(isTerminal: isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb",
                out: { FileHandle.standardOutput.write(Data($0.utf8)) },
                err: { FileHandle.standardError.write(Data($0.utf8)) })
    }

    /// A full line on standard output (or standard error).
    public func line(_ text: String, toError: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        if liveShown {
            writeOut("\r\u{1B}[2K")
            liveShown = false
        }
        if toError { writeErr(text + "\n") } else { writeOut(text + "\n") }
    }

    /// Replaces the live line (no newline).
    public func live(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        writeOut("\r\u{1B}[2K" + text)
        liveShown = true
    }
}

/// A swift-log handler printing to a `Console`: text (`warning: ...`, info bare) or JSON lines.
public struct ConsoleLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let console: Console
    let format: LogFormat
    let label: String

    public init(label: String, console: Console, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.console = console
        self.format = format
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        let toError = level >= .warning
        switch format {
        case .json:
            var object: [String: Any] = ["event": "log", "level": level.rawValue, "message": message.description, "logger": label]
            let all = metadata.merging(extra ?? [:]) { $1 }
            for (k, v) in all { object[k] = v.description }
            console.line(jsonLine(object), toError: false)
        case .text:
            let prefix: String
            switch level {
            case .info, .notice: prefix = ""
            case .error, .critical: prefix = "\(label): \(level.rawValue): "
            default: prefix = "\(level.rawValue): "
            }
            console.line(prefix + message.description, toError: toError)
        }
    }
}

/// One JSON object, keys sorted, non-finite numbers as null.
public func jsonLine(_ object: [String: Any?]) -> String {
    let clean: [String: Any] = object.mapValues { v -> Any in
        guard let v else { return NSNull() }
        if let d = v as? Double, !d.isFinite { return NSNull() }
        return v
    }
    guard let data = try? JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

/// What the reporter shows.
public struct ProgressOptions: Sendable {
    public var format: LogFormat
    /// Only warnings and errors (no progress, no info messages).
    public var quiet: Bool
    /// In plain-line mode, a step line every N steps (0: none).
    public var logEvery: Int
    /// Redraw the live bar at most this often.
    public var refreshSeconds: Double

    public init(format: LogFormat = .text, quiet: Bool = false, logEvery: Int = 0, refreshSeconds: Double = 0.1) {
        self.format = format
        self.quiet = quiet
        self.logEvery = logEvery
        self.refreshSeconds = refreshSeconds
    }
}

/// A training-event sink for `Coordinator(options:events:)`: messages go to `logger` at info or
/// warning level; steps and epochs become a live bar (terminal), plain tutorial-style lines,
/// JSON lines, or nothing when quiet.
public func progressReporter(options: ProgressOptions, console: Console, logger: Logger) -> @Sendable (TrainingEvent) -> Void {
    let live = LiveState()
    return { event in
        switch event {
        case .message(let level, let text):
            if level == .warning { logger.warning("\(text)") } else { logger.info("\(text)") }
        case .step(let p):
            if options.quiet { return }
            switch options.format {
            case .json:
                console.line(jsonLine(["event": "step", "epoch": p.epoch, "epochs": p.epochs, "step": p.step,
                                       "steps_per_epoch": p.stepsPerEpoch, "global_step": p.globalStep, "loss": p.loss,
                                       "accuracy": p.accuracy, "samples_per_s": p.samplesPerSecond, "eta_s": p.etaSeconds,
                                       "reduce_s": p.reduceSeconds, "lr": p.lr]))
            case .text where console.isTerminal:
                if live.due(every: options.refreshSeconds) || p.step == p.stepsPerEpoch {
                    console.live(liveLine(p, runETA: live.runETA(p)))
                }
            case .text:
                guard options.logEvery > 0, p.step % options.logEvery == 0, p.step < p.stepsPerEpoch else { return }
                console.line(stepLine(p))
            }
        case .epoch(let e):
            live.finished(epochSeconds: e.seconds)
            if options.quiet { return }
            switch options.format {
            case .json:
                console.line(jsonLine(["event": "epoch", "epoch": e.epoch, "epochs": e.epochs, "global_step": e.globalStep,
                                       "loss": e.loss, "accuracy": e.accuracy, "val_loss": e.validationLoss,
                                       "val_accuracy": e.validationAccuracy, "seconds": e.seconds,
                                       "samples_per_s": e.samplesPerSecond,
                                       "perplexity": e.languageModel ? perplexity(e.loss) : nil,
                                       "bpc": e.languageModel ? bitsPerCharacter(e.loss) : nil,
                                       "val_perplexity": e.languageModel ? e.validationLoss.map(perplexity) : nil,
                                       "val_bpc": e.languageModel ? e.validationLoss.map(bitsPerCharacter) : nil]))
            case .text:
                console.line(epochLine(e) + (console.isTerminal ? String(format: ", %.1f s, %@ samples/s", e.seconds, "\(Int(e.samplesPerSecond))") : ""))
            }
        }
    }
}

private final class LiveState: @unchecked Sendable {
    private let lock = NSLock()
    private var last: UInt64 = 0
    private var epochSeconds: [Double] = []

    func finished(epochSeconds seconds: Double) {
        lock.lock()
        epochSeconds.append(seconds)
        lock.unlock()
    }

    /// Seconds left in the whole run: this epoch's ETA plus the remaining epochs at the mean
    /// duration of the finished ones (or of this one, estimated from its progress).
    func runETA(_ p: StepProgress) -> Double? {
        lock.lock()
        defer { lock.unlock() }
        let remainingSteps = p.stepsPerEpoch - p.step
        let perEpoch: Double
        if !epochSeconds.isEmpty {
            perEpoch = epochSeconds.reduce(0, +) / Double(epochSeconds.count)
        } else if remainingSteps > 0 {
            perEpoch = p.etaSeconds * Double(p.step) / Double(remainingSteps) + p.etaSeconds
        } else {
            return nil
        }
        return p.etaSeconds + Double(p.epochs - p.epoch) * perEpoch
    }

    func due(every seconds: Double) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let now = DispatchTime.now().uptimeNanoseconds
        if last == 0 || Double(now - last) / 1e9 >= seconds {
            last = now
            return true
        }
        return false
    }
}

/// `Epoch [1/10], Loss: 0.6931, Accuracy: 50.00%` (+ validation when present).
/// A character/token model's epoch also shows perplexity and bits per character.
public func epochLine(_ e: EpochProgress) -> String {
    var line = "Epoch [\(e.epoch)/\(e.epochs)], Loss: \(lossText(e.loss))" + (e.accuracy.map { ", Accuracy: \(fixed($0 * 100, 2))%" } ?? "")
    if e.languageModel { line += ", Perplexity: \(fixed(perplexity(e.loss), 2)), BPC: \(fixed(bitsPerCharacter(e.loss), 3))" }
    if let v = e.validationLoss { line += ", Val Loss: \(lossText(v))" }
    if let v = e.validationAccuracy { line += ", Val Accuracy: \(fixed(v * 100, 2))%" }
    if e.languageModel, let v = e.validationLoss {
        line += ", Val Perplexity: \(fixed(perplexity(v), 2)), Val BPC: \(fixed(bitsPerCharacter(v), 3))"
    }
    return line
}

/// `Epoch [1/10], Step [5/40], Loss: ..., Accuracy: ..., 1234 samples/s, ETA 3 s`.
public func stepLine(_ p: StepProgress) -> String {
    "Epoch [\(p.epoch)/\(p.epochs)], Step [\(p.step)/\(p.stepsPerEpoch)], Loss: \(lossText(p.loss))"
        + (p.accuracy.map { ", Accuracy: \(fixed($0 * 100, 2))%" } ?? "")
        + ", \(Int(p.samplesPerSecond)) samples/s, ETA \(duration(p.etaSeconds))"
}

/// `Epoch 3/10 [########------------] 12/30 loss 0.1234 acc 96.50% 5400 samples/s ETA 2s (run 20s)`.
public func liveLine(_ p: StepProgress, runETA: Double? = nil, barWidth: Int = 24) -> String {
    let fraction = p.stepsPerEpoch > 0 ? Double(p.step) / Double(p.stepsPerEpoch) : 0
    let filled = max(0, min(barWidth, Int((fraction * Double(barWidth)).rounded(.down))))
    let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled)
    return "Epoch \(p.epoch)/\(p.epochs) [\(bar)] \(p.step)/\(p.stepsPerEpoch) loss \(lossText(p.loss))"
        + (p.accuracy.map { " acc \(fixed($0 * 100, 2))%" } ?? "")
        + " \(Int(p.samplesPerSecond)) samples/s ETA \(duration(p.etaSeconds))"
        + (runETA.map { p.epoch < p.epochs ? " (run \(duration($0)))" : "" } ?? "")
}

public func fixed(_ v: Double, _ decimals: Int) -> String {
    v.isFinite ? String(format: "%.\(decimals)f", v) : "nan"
}

/// A loss with enough digits to see progress at any size: `0.6931` from 0.001 up, `3.4567e-05` below.
public func lossText(_ v: Double) -> String {
    guard v.isFinite else { return "nan" }
    return v == 0 || abs(v) >= 1e-3 ? String(format: "%.4f", v) : String(format: "%.4e", v)
}

/// `42s`, `3m05s`, `1h02m`.
public func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s < 60 { return "\(s)s" }
    if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
}

/// A console on this process's standard output/error and a swift-log logger writing to it.
public func makeConsoleLogger(label: String, format: LogFormat, level: Logger.Level) -> (Console, Logger) {
    let console = Console.standard()
    var logger = Logger(label: label) { label in
        ConsoleLogHandler(label: label, console: console, format: format, level: level)
    }
    logger.logLevel = level
    return (console, logger)
}
