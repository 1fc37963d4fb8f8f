// What the coordinator reports while it trains. A reporter (RNNReport's `progressReporter`)
// turns the events into terminal output (plain lines, a live progress bar, JSON); the
// coordinator itself prints nothing.

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
    /// The learning rate this step used.
    public var lr: Double? = nil
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
    /// A character/token model (per-step class targets): the line adds perplexity and bits
    /// per character (TaskMetrics.swift) of the losses.
    public var languageModel = false
}

public enum TrainingEvent: Sendable, Equatable {
    /// A sentence for the log: listening, a worker joined, resuming, a checkpoint written.
    case message(EventLevel, String)
    case step(StepProgress)
    case epoch(EpochProgress)
}
