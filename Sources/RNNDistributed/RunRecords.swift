// Where the coordinator's step and epoch records go. The coordinator only produces them;
// RNNReport's `MetricsLog` writes them as metrics.jsonl (next to the code that reads it back).
/// A sink for the coordinator's records: one dictionary per step and per epoch, values Int,
/// Double, Float, Bool, String, [Int] or [Double] (nil and non-finite values left out).
public protocol RunRecordLog: AnyObject {
    func append(_ record: [String: Any?])
    /// Makes every record so far durable: called before each checkpoint is written, so that a
    /// resume from that checkpoint finds each of its steps logged.
    func flush()
}

/// Where a resumed run continues: records past `globalStep` (and the partial record of
/// `continuingEpoch`, 1-based) are redone and must go.
public struct RunResumePoint: Sendable, Equatable {
    public var globalStep: Int
    public var continuingEpoch: Int?
}

/// Opens the record log of a run folder (`CoordinatorOptions.recordLog`).
public typealias RunRecordLogOpener = @Sendable (_ directory: String, _ resume: RunResumePoint?) throws -> any RunRecordLog
