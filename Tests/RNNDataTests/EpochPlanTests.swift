import XCTest
@testable import RNNData
import RNNCore

final class EpochPlanTests: XCTestCase {
    func testEverySampleExactlyOncePerEpoch() throws {
        for (n, b) in [(1, 1), (10, 3), (97, 8), (64, 64), (5, 100)] {
            for shuffle in [false, true] {
                let plan = try EpochPlan(sampleCount: n, batchSize: b, shuffle: shuffle, seed: 42)
                for e in 0..<3 {
                    let order = plan.epoch(e)
                    var seen = [Int](repeating: 0, count: n)
                    for s in 0..<order.steps {
                        for w in 1...3 {
                            var fromShards: [Int] = []
                            for r in 0..<w { fromShards += order.shard(step: s, rank: r, worldSize: w) }
                            XCTAssertEqual(fromShards, order.batch(step: s), "n \(n) b \(b) step \(s) W \(w)")
                        }
                        for i in order.batch(step: s) { seen[i] += 1 }
                    }
                    XCTAssertEqual(seen, [Int](repeating: 1, count: n))
                    if !shuffle { XCTAssertEqual(order.permutation, Array(0..<n)) }
                }
            }
        }
    }

    func testSameStepSameSamplesForOneTwoThreeWorkers() throws {
        let plan = try EpochPlan(sampleCount: 23, batchSize: 7, shuffle: true, seed: 5)
        let order = plan.epoch(2)
        for s in 0..<order.steps {
            let sets = (1...3).map { w in Set((0..<w).flatMap { order.shard(step: s, rank: $0, worldSize: w) }) }
            XCTAssertEqual(sets[0], sets[1]); XCTAssertEqual(sets[0], sets[2])
        }
    }

    func testSeedDeterminesThePlan() throws {
        let a = try EpochPlan(sampleCount: 50, batchSize: 8, shuffle: true, seed: 11)
        let b = try EpochPlan(sampleCount: 50, batchSize: 8, shuffle: true, seed: 11)
        let c = try EpochPlan(sampleCount: 50, batchSize: 8, shuffle: true, seed: 12)
        XCTAssertEqual(a.permutation(epoch: 3), b.permutation(epoch: 3))
        XCTAssertNotEqual(a.permutation(epoch: 3), c.permutation(epoch: 3))
        XCTAssertNotEqual(a.permutation(epoch: 3), a.permutation(epoch: 4))
        XCTAssertNotEqual(a.permutation(epoch: 0), Array(0..<50))
    }

    func testUnevenLastBatchAndDropLast() throws {
        let plan = try EpochPlan(sampleCount: 10, batchSize: 4, shuffle: false, seed: 0)
        XCTAssertEqual(plan.stepsPerEpoch, 3)
        XCTAssertEqual(plan.epoch(0).batch(step: 2), [8, 9])
        // The short block of 2 rows among 3 workers: ranks 0 and 1 get one row, rank 2 none.
        XCTAssertEqual((0..<3).map { plan.epoch(0).shard(step: 2, rank: $0, worldSize: 3) }, [[8], [9], []])
        let dropping = try EpochPlan(sampleCount: 10, batchSize: 4, shuffle: false, seed: 0, dropLast: true)
        XCTAssertEqual(dropping.stepsPerEpoch, 2)
        XCTAssertEqual(dropping.samplesPerEpoch, 8)
        XCTAssertEqual(dropping.epoch(0).batch(step: 1), [4, 5, 6, 7])
    }

    func testNearEqualSplitFirstRanksGetExtra() {
        XCTAssertEqual((0..<3).map { EpochPlan.shardRange(count: 8, rank: $0, worldSize: 3) }, [0..<3, 3..<6, 6..<8])
        XCTAssertEqual((0..<4).map { EpochPlan.shardRange(count: 2, rank: $0, worldSize: 4) }, [0..<1, 1..<2, 2..<2, 2..<2])
    }

    func testWeightedSplitCoversTheBlockInProportion() {
        // Equal (or unusable) weights: exactly the near-equal split.
        for (count, world) in [(8, 3), (2, 4), (64, 2), (0, 2), (33, 5)] {
            let equal = (0..<world).map { EpochPlan.shardRange(count: count, rank: $0, worldSize: world) }
            XCTAssertEqual(EpochPlan.shardRanges(count: count, weights: [Double](repeating: 2.5, count: world)), equal)
            XCTAssertEqual(EpochPlan.shardRanges(count: count, weights: [Double](repeating: 0, count: world)), equal)
            XCTAssertEqual(EpochPlan.shardRanges(count: count, weights: [1] + [Double](repeating: .nan, count: world - 1)), equal)
        }
        // In proportion, contiguous, every row once.
        XCTAssertEqual(EpochPlan.shardRanges(count: 64, weights: [3, 1]), [0..<48, 48..<64])
        XCTAssertEqual(EpochPlan.shardRanges(count: 10, weights: [1, 1, 2]), [0..<3, 3..<5, 5..<10])
        var rng = SeededGenerator(seed: 11, stream: 0)
        for _ in 0..<500 {
            let world = Int(rng.next() % 5) + 1
            let count = Int(rng.next() % 200)
            let weights = (0..<world).map { _ in Double(rng.next() % 1000 + 1) / 100 }
            let minimum = Int(rng.next() % 20)
            let parts = EpochPlan.shardRanges(count: count, weights: weights, minimum: minimum)
            XCTAssertEqual(parts.count, world)
            XCTAssertEqual(parts.first?.lowerBound, 0)
            XCTAssertEqual(parts.last?.upperBound, count)
            for r in 1..<world { XCTAssertEqual(parts[r].lowerBound, parts[r - 1].upperBound) }
            let floor = min(minimum, count / world)
            let total = weights.reduce(0, +)
            for r in 0..<world {
                XCTAssertGreaterThanOrEqual(parts[r].count, floor, "\(parts) for \(weights), minimum \(minimum)")
                // Off its exact quota by less than one row, unless raised to the floor or giving to it.
                if floor == 0 {
                    XCTAssertEqual(Double(parts[r].count), Double(count) * weights[r] / total, accuracy: 1, "\(parts) for \(weights)")
                }
            }
        }
        // A 4x slower rank keeps its floor.
        XCTAssertEqual(EpochPlan.shardRanges(count: 64, weights: [100, 1], minimum: 8), [0..<56, 56..<64])
    }

    func testShuffleIsUniformEnough() throws {
        // Position of sample 0 over many epochs is spread over all positions.
        let plan = try EpochPlan(sampleCount: 4, batchSize: 4, shuffle: true, seed: 1)
        var counts = [Int](repeating: 0, count: 4)
        for e in 0..<4000 { counts[plan.permutation(epoch: e).firstIndex(of: 0)!] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 1000, accuracy: 120, "\(counts)") }
    }

    func testBadPlansAreErrors() {
        XCTAssertThrowsError(try EpochPlan(sampleCount: 0, batchSize: 1, shuffle: false, seed: 0))
        XCTAssertThrowsError(try EpochPlan(sampleCount: 5, batchSize: 0, shuffle: false, seed: 0))
        XCTAssertThrowsError(try EpochPlan(sampleCount: 5, batchSize: 6, shuffle: false, seed: 0, dropLast: true))
    }
}

/// The plan and the dataset together: W workers reading their shards of every step see
/// every sample of the (two-file) dataset exactly once per epoch.
final class PlanWithDatasetTests: XCTestCase {
    func testWorkersReadEverySampleOncePerEpoch() throws {
        let ds = try TensorDataset.open(paths: [Fixture.path("chunked_gzip.h5"), Fixture.path("chunked_gzip_part2.h5")],
                                        options: TensorDatasetOptions(memoryBudgetBytes: 0))
        let plan = try EpochPlan(sampleCount: ds.count, batchSize: 8, shuffle: true, seed: 99)
        for w in 1...3 {
            let order = plan.epoch(w)
            var seen: [Int] = []
            for step in 0..<order.steps {
                for rank in 0..<w {
                    let rows = order.shard(step: step, rank: rank, worldSize: w)
                    let batch = try ds.read(rows: rows)
                    // x(g, 0, 0) = (7 g mod 64) / 8 - 4 identifies g for g < 64.
                    for b in 0..<rows.count {
                        let value = batch.x[b * ds.sampleElements]
                        let g = (0..<ds.count).first { Fixture.feature($0, 0, 0) == value && Fixture.feature($0, 1, 0) == batch.x[b * ds.sampleElements + 3] }!
                        XCTAssertEqual(g, rows[b])
                        seen.append(g)
                    }
                }
            }
            XCTAssertEqual(seen.sorted(), Array(0..<ds.count), "W = \(w)")
        }
    }
}
