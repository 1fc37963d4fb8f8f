// The epoch plan: which samples each global step consumes, and which of them each worker
// reads. Legend: N samples, B global batch size, W workers, e epoch, s step, pi_e the
// epoch's permutation of [0, N).
//
// Global step s of epoch e consumes positions [s*B, min((s+1)*B, N)) of pi_e (the last
// batch may be short; with drop-last a short last batch is skipped). The block is split
// among the W workers contiguously and near-equally: the first (count % W) ranks get one
// extra row. The set of samples of a step is therefore independent of W.

import RNNCore

/// Which samples every global step of every epoch uses. A value: the same inputs always
/// give the same plan, in every process.
public struct EpochPlan: Sendable, Equatable {
    /// N.
    public let sampleCount: Int
    /// B, the global batch size.
    public let batchSize: Int
    /// Without shuffle every epoch uses the identity order.
    public let shuffle: Bool
    public let seed: UInt64
    /// Skip a short last batch.
    public let dropLast: Bool

    public init(sampleCount: Int, batchSize: Int, shuffle: Bool, seed: UInt64, dropLast: Bool = false) throws(DataError) {
        if sampleCount < 1 {
            throw DataError(.badRequest, file: "", expected: "at least one sample to plan epochs over", found: "\(sampleCount)")
        }
        if batchSize < 1 {
            throw DataError(.badRequest, file: "", expected: "a batch size of at least 1", found: "\(batchSize)")
        }
        if dropLast && batchSize > sampleCount {
            throw DataError(.badRequest, file: "", expected: "a batch size <= \(sampleCount) samples with drop-last (or no drop-last)", found: "\(batchSize)")
        }
        self.sampleCount = sampleCount
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
    }

    /// Global steps per epoch: ceil(N / B), or floor(N / B) with drop-last.
    public var stepsPerEpoch: Int {
        dropLast ? sampleCount / batchSize : (sampleCount + batchSize - 1) / batchSize
    }

    /// Samples consumed per epoch (N, or fewer with drop-last).
    public var samplesPerEpoch: Int { stepsPerEpoch == 0 ? 0 : min(sampleCount, stepsPerEpoch * batchSize) }

    /// pi_e: identity without shuffle, else a Fisher-Yates shuffle driven by
    /// `SeededGenerator(seed: seed, stream: e)`.
    public func permutation(epoch: Int) -> [Int] {
        var order = Array(0..<sampleCount)
        guard shuffle, sampleCount > 1 else { return order }
        var generator = SeededGenerator(seed: seed, stream: UInt64(truncatingIfNeeded: epoch))
        var i = sampleCount - 1
        while i > 0 {
            let j = Int(EpochPlan.uniform(below: UInt64(i + 1), using: &generator))
            order.swapAt(i, j)
            i -= 1
        }
        return order
    }

    /// An unbiased integer in [0, bound) (Lemire's multiply-shift with rejection), written
    /// out so the plan does not depend on the standard library's sampling algorithm.
    static func uniform(below bound: UInt64, using generator: inout SeededGenerator) -> UInt64 {
        var product = generator.next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = generator.next().multipliedFullWidth(by: bound)
            }
        }
        return product.high
    }

    /// The plan of one epoch (computes pi_e once).
    public func epoch(_ e: Int) -> EpochOrder {
        EpochOrder(plan: self, epoch: e, permutation: permutation(epoch: e))
    }

    /// Rows [lower, upper) of a block of `count` rows that `rank` of `worldSize` takes:
    /// contiguous near-equal parts, the first `count % worldSize` ranks one row longer.
    public static func shardRange(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
        precondition(worldSize >= 1 && rank >= 0 && rank < worldSize, "rank \(rank) outside world of \(worldSize)")
        let base = count / worldSize
        let extra = count % worldSize
        let lower = rank * base + min(rank, extra)
        return lower..<(lower + base + (rank < extra ? 1 : 0))
    }

    /// A block of `count` rows split into contiguous parts in rank order, part r sized in
    /// proportion to `weights[r]` (largest remainder, ties to the lower rank), every part at
    /// least min(`minimum`, count / W) rows. Equal weights give `shardRange`'s split; weights
    /// that are not all positive and finite count as equal. The same weights always give the
    /// same parts.
    public static func shardRanges(count: Int, weights: [Double], minimum: Int = 0) -> [Range<Int>] {
        let world = weights.count
        precondition(world >= 1 && count >= 0, "cannot split \(count) rows among \(world) ranks")
        let usable = weights.allSatisfy { $0 > 0 && $0.isFinite }
        let w = usable ? weights : [Double](repeating: 1, count: world)
        let total = w.reduce(0, +)
        let quotas = w.map { Double(count) * $0 / total }
        var sizes = quotas.map { Int($0.rounded(.down)) }
        // Rounding may leave rows over; the largest fractional parts take one each.
        let left = count - sizes.reduce(0, +)
        let byFraction = (0..<world).sorted { a, b in
            let fa = quotas[a] - Double(sizes[a]), fb = quotas[b] - Double(sizes[b])
            return fa != fb ? fa > fb : a < b
        }
        for r in byFraction.prefix(max(0, left)) { sizes[r] += 1 }
        let floor = min(minimum, count / world)
        for r in 0..<world where sizes[r] < floor {
            while sizes[r] < floor {
                // The largest part (lowest rank on ties) gives a row.
                let donor = sizes.indices.max { sizes[$0] != sizes[$1] ? sizes[$0] < sizes[$1] : $0 > $1 }!
                sizes[donor] -= 1
                sizes[r] += 1
            }
        }
        var lower = 0
        return sizes.map { n in
            defer { lower += n }
            return lower..<(lower + n)
        }
    }
}

/// One epoch's order and its global batches.
public struct EpochOrder: Sendable, Equatable {
    public let plan: EpochPlan
    public let epoch: Int
    /// pi_e.
    public let permutation: [Int]

    public var steps: Int { plan.stepsPerEpoch }

    /// The positions of pi_e that global step `step` consumes.
    public func positions(step: Int) -> Range<Int> {
        precondition(step >= 0 && step < steps, "step \(step) outside 0..<\(steps)")
        let lower = step * plan.batchSize
        return lower..<min(lower + plan.batchSize, plan.sampleCount)
    }

    /// The sample indices of global step `step`, in plan order.
    public func batch(step: Int) -> [Int] {
        Array(permutation[positions(step: step)])
    }

    /// The sample indices `rank` of `worldSize` reads for global step `step`.
    public func shard(step: Int, rank: Int, worldSize: Int) -> [Int] {
        shard(step: step, part: EpochPlan.shardRange(count: positions(step: step).count, rank: rank, worldSize: worldSize))
    }

    /// The sample indices of rows `part` (offsets into the step's block, e.g. one of
    /// `EpochPlan.shardRanges`) of global step `step`.
    public func shard(step: Int, part: Range<Int>) -> [Int] {
        let block = positions(step: step)
        precondition(part.lowerBound >= 0 && part.upperBound <= block.count, "part \(part) outside the step's \(block.count) rows")
        return Array(permutation[(block.lowerBound + part.lowerBound)..<(block.lowerBound + part.upperBound)])
    }
}
