// What the coordinator reports while it trains. A reporter turns the events into terminal
// output (plain lines, a live progress bar, JSON); the coordinator itself prints nothing.

public enum EventLevel: String, Sendable {
    case info, warning
}

/// Progress after one global step.
public struct StepProgress: Sendable, Equatable {
    /// 1-based epoch and its total.
    public var epoch: Int
    public var epochs: Int
    /// 1-based step within the epoch and the epoch's step count.
    public var step: Int
    public var stepsPerEpoch: Int
    /// Global steps completed.
    public var globalStep: Int
    /// Mean loss of this step's global batch, and its accuracy (nil for regression).
    public var loss: Double
    public var accuracy: Double?
    /// Samples per second over the epoch so far.
    public var samplesPerSecond: Double
    /// Seconds left in this epoch at the current rate.
    public var etaSeconds: Double
    /// The slowest worker's all-reduce time in this step.
    public var reduceSeconds: Double
}

/// Summary of one epoch.
public struct EpochProgress: Sendable, Equatable {
    public var epoch: Int
    public var epochs: Int
    public var globalStep: Int
    /// Mean training loss and accuracy over the epoch's samples.
    public var loss: Double
    public var accuracy: Double?
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var seconds: Double
    public var samplesPerSecond: Double
}

public enum TrainingEvent: Sendable, Equatable {
    /// A sentence for the log: listening, a worker joined, resuming, a checkpoint written.
    case message(EventLevel, String)
    case step(StepProgress)
    case epoch(EpochProgress)
}

/// Lines in the tutorial's style (`Epoch [1/10], Loss: 0.6931, Accuracy: 50.00%`): every
/// message, one line per epoch, and a step line every `logEvery` steps (0: none).
public func plainLineReporter(logEvery: Int = 0, write: @escaping @Sendable (String) -> Void) -> @Sendable (TrainingEvent) -> Void {
    return { event in
        switch event {
        case .message(let level, let text):
            write(level == .warning ? "warning: \(text)" : text)
        case .step(let p):
            guard logEvery > 0, p.step % logEvery == 0, p.step < p.stepsPerEpoch else { return }
            write("Epoch [\(p.epoch)/\(p.epochs)], Step [\(p.step)/\(p.stepsPerEpoch)], Loss: \(fmt(p.loss))"
                  + (p.accuracy.map { ", Accuracy: \(percent($0))" } ?? "")
                  + ", \(Int(p.samplesPerSecond)) samples/s, ETA \(Int(p.etaSeconds.rounded())) s")
        case .epoch(let e):
            var line = "Epoch [\(e.epoch)/\(e.epochs)], Loss: \(fmt(e.loss))" + (e.accuracy.map { ", Accuracy: \(percent($0))" } ?? "")
            if let v = e.validationLoss { line += ", Val Loss: \(fmt(v))" }
            if let v = e.validationAccuracy { line += ", Val Accuracy: \(percent(v))" }
            write(line)
        }
    }
}

func percent(_ fraction: Double) -> String {
    let hundredths = Int((fraction * 10_000).rounded())
    let frac = hundredths % 100
    return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)%"
}
