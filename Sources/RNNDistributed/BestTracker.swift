// --keep-best and --early-stopping: which epoch's validation result is the best so far, and
// how many epochs have passed without improving it. A value whose state every checkpoint
// stores (`best_tracker`, JSON), so a resumed run keeps counting.
import Foundation
import RNNCore

/// The validation metric that decides the best epoch.
public enum BestMetric: String, Codable, Sendable, CaseIterable {
    /// Lower is better.
    case valLoss = "val_loss"
    /// Higher is better (classifiers only).
    case valAccuracy = "val_accuracy"
}

public struct BestTracker: Codable, Sendable, Equatable {
    public var metric: BestMetric
    /// The best value so far and its 1-based epoch (nil before the first validation).
    public private(set) var bestValue: Double?
    public private(set) var bestEpoch: Int?
    /// Validated epochs since the best one.
    public private(set) var epochsWithoutImprovement = 0

    public init(metric: BestMetric) { self.metric = metric }

    /// Records epoch `epoch`'s validation; returns whether it is a new best (strictly better;
    /// a NaN never is).
    public mutating func observe(epoch: Int, validation: EvalResult) -> Bool {
        let value: Double? = metric == .valLoss ? validation.loss : validation.accuracy
        guard let value, !value.isNaN else {
            epochsWithoutImprovement += 1
            return false
        }
        let better = bestValue.map { metric == .valLoss ? value < $0 : value > $0 } ?? true
        if better {
            bestValue = value
            bestEpoch = epoch
            epochsWithoutImprovement = 0
        } else {
            epochsWithoutImprovement += 1
        }
        return better
    }

    func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}

/// Dataset rows of a shard of epoch positions: `trainRows[p]` with --val-split, else `p`.
func trainingRows(_ positions: [Int], _ trainRows: [Int]?) -> [Int] {
    guard let trainRows else { return positions }
    return positions.map { trainRows[$0] }
}
