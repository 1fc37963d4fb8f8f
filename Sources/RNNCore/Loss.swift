// Losses on the head's outputs: cross-entropy on class ids and mean squared error on floats.
//
// Dimension legend: R scored rows of logits (B for a last-step head, T*B for a per-step head,
// time-major: row t*B + b), O outputs / classes. `TargetRows` maps a logits row to the row of
// the batch-first target tensor.
import RealModule

/// Loss totals of one batch (or shard): everything a data-parallel step needs to all-reduce.
public struct LossStats: Equatable, Sendable {
    /// Sum of the per-element losses (not the mean).
    public var lossSum: Double
    /// Elements the loss averages over: B (last-step cross-entropy), B*T (per-step
    /// cross-entropy), or the number of target values (MSE).
    public var scoredCount: Int
    /// Rows whose arg-max equals the class id (cross-entropy); always 0 for MSE.
    public var correct: Int

    public init(lossSum: Double = 0, scoredCount: Int = 0, correct: Int = 0) {
        self.lossSum = lossSum
        self.scoredCount = scoredCount
        self.correct = correct
    }

    /// lossSum / scoredCount, the value PyTorch's mean-reduced loss reports.
    public var meanLoss: Double { scoredCount > 0 ? lossSum / Double(scoredCount) : 0 }
    /// correct / scoredCount (cross-entropy only).
    public var accuracy: Double { scoredCount > 0 ? Double(correct) / Double(scoredCount) : 0 }

    /// Totals of two shards (what an all-reduce of the three numbers produces).
    public static func + (a: LossStats, b: LossStats) -> LossStats {
        LossStats(lossSum: a.lossSum + b.lossSum, scoredCount: a.scoredCount + b.scoredCount,
                  correct: a.correct + b.correct)
    }
}

/// Maps logits rows to target rows: identity for a last-step head; for a per-step head the
/// logits are time-major (row t*B + b) and the targets batch-first (row b*T + t).
/// With variable lengths (or a reordered batch) `map` gives each logits row's target row.
struct TargetRows {
    var perStep: Bool
    var batch: Int
    var steps: Int
    var map: UnsafePointer<Int32>? = nil

    @inline(__always)
    func callAsFunction(_ r: Int) -> Int {
        if let map { return Int(map[r]) }
        return perStep ? (r % batch) * steps + r / batch : r
    }
}

enum LossKernels {
    /// Cross-entropy of each logits row (R, O) against its class id; writes
    /// dLogits (R, O) = scale * (softmax - onehot) when dLogits is non-nil.
    static func crossEntropy(
        logits: UnsafePointer<Float>, rows: Int, classes O: Int, ids: UnsafePointer<Int32>,
        targetIndex: TargetRows, scale: Float, dLogits: UnsafeMutablePointer<Float>?
    ) -> LossStats {
        var stats = LossStats(scoredCount: rows)
        for r in 0..<rows {
            let z = logits + r * O
            let target = Int(ids[targetIndex(r)])
            var maxValue = z[0]
            var argMax = 0
            for k in 1..<max(O, 1) where z[k] > maxValue {
                maxValue = z[k]
                argMax = k
            }
            var sum: Float = 0
            for k in 0..<O { sum += Float.exp(z[k] - maxValue) }
            let logSum = Float.log(sum)
            stats.lossSum += Double(logSum + maxValue - z[target])
            if argMax == target { stats.correct += 1 }
            if let d = dLogits?.advanced(by: r * O) {
                let inverse = scale / sum
                for k in 0..<O { d[k] = Float.exp(z[k] - maxValue) * inverse }
                d[target] -= scale
            }
        }
        return stats
    }

    /// Squared error of predictions (R, O) against targets; writes
    /// dLogits (R, O) = scale * 2 * (y - target) when dLogits is non-nil.
    static func meanSquaredError(
        predictions: UnsafePointer<Float>, rows: Int, outputs O: Int, targets: UnsafePointer<Float>,
        targetIndex: TargetRows, scale: Float, dLogits: UnsafeMutablePointer<Float>?
    ) -> LossStats {
        var stats = LossStats(scoredCount: rows * O)
        for r in 0..<rows {
            let y = predictions + r * O
            let t = targets + targetIndex(r) * O
            var rowSum: Float = 0
            for k in 0..<O {
                let e = y[k] - t[k]
                rowSum += e * e
                if let d = dLogits { d[r * O + k] = 2 * scale * e }
            }
            stats.lossSum += Double(rowSum)
        }
        return stats
    }
}
