// --val-split F: a seeded fraction of the training rows held out as validation data. The
// held-out rows are the first round(F * N) of a Fisher-Yates shuffle of [0, N) driven by
// SeededGenerator(seed, stream 0x7A11D); both lists are returned in ascending row order, so
// the epoch plan runs over the training rows as it would over a file of just those rows.
import RNNCore

public struct ValidationSplit: Sendable, Equatable {
    /// Training rows (ascending): epoch position p is dataset row `train[p]`.
    public let train: [Int]
    /// Validation rows (ascending).
    public let validation: [Int]

    /// Splits `count` rows; `fraction` in (0, 1); at least one row on each side.
    public init(count: Int, fraction: Double, seed: UInt64) throws(DataError) {
        guard fraction > 0 && fraction < 1 else {
            throw DataError(.badRequest, file: "training data", expected: "--val-split in (0, 1)", found: "\(fraction)")
        }
        let held = Int((fraction * Double(count)).rounded())
        guard held >= 1 && held < count else {
            throw DataError(.badRequest, file: "training data", expected: "--val-split \(fraction) of \(count) samples to hold out at least one sample and keep at least one",
                            found: "\(held) held out")
        }
        var order = Array(0..<count)
        var generator = SeededGenerator(seed: seed, stream: 0x7A11D)
        var i = count - 1
        while i > 0 {
            let j = Int(EpochPlan.uniform(below: UInt64(i + 1), using: &generator))
            order.swapAt(i, j)
            i -= 1
        }
        validation = order[..<held].sorted()
        train = order[held...].sorted()
    }
}
