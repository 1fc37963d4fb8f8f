// Where the automatic all-reduce switches algorithm for W >= 3 (RingAllReduce.chosenAlgorithm):
// recursive doubling up to `recursiveDoublingMaxBytes`, halving-doubling up to
// `halvingDoublingMaxBytes`, the ring above.
//
// The best crossover depends on the links, not only on W: on loopback TCP (CPU bound, per
// message cost high) recursive doubling won up to 256 KiB; over 1 Gbit/s test hosts the ring
// already won from 64 KiB at W = 4 (recursive doubling 0.77x there, sending log2 W whole
// buffers). So a run measures it when a ring forms (`measureCrossover`, called by the worker
// before the first step of every ring generation, and by `rnn-bench allreduce`):
//
//  1. For each size of a fixed grid (4 KiB, 16 KiB, ... up to the first one at or above the
//     largest buffer the run reduces, at most 1 MiB: above that the bandwidth-optimal,
//     pipelined ring is kept), each rank times recursive doubling, halving-doubling and the
//     ring: one warm-up, then two blocks of n back-to-back operations (n = 1 MiB / size, 2 to
//     32), each block's time per operation, the faster block kept. Blocks, not single
//     operations: a link that lets a burst through at once (tc tbf's bucket, a switch's
//     buffer) makes one small operation look faster than a step's sustained rate; over
//     1 Gbit/s test hosts the best single operation chose recursive doubling at 64 KiB for W = 4,
//     where the ring sustains 0.85x its time.
//  2. The ranks sum their times with one more all-reduce (every algorithm leaves the same bits
//     on every rank), so every rank decides from the same numbers.
//  3. `CrossoverMeasurement.choose` picks the two thresholds (recursive doubling below a,
//     halving-doubling up to b, the ring above) whose total time over the grid, each size's
//     time relative to its fastest algorithm, is least; the thresholds sit half-way (in log
//     scale) between the grid sizes either side.
//
// Every rank then runs the same algorithm for every buffer, so results stay bitwise identical
// on every rank. Rank 0 reports the thresholds to the coordinator, which hands them to every
// later ring of the same (leader) world in the run (RING), so a ring re-formed after a failure
// sums in the same order as before and a redone step gives the same bits. Two runs (and a
// resumed run, which measures again) may measure different thresholds and so sum in different
// orders (the results then differ by float rounding, as with a different W);
// `--allreduce-crossover fixed` (the constants below) or explicit thresholds, which the
// worker's log line names, make runs repeat their bits. The measurement's all-reduces carry the tags 0, 1, ... below every
// training tag (`GradientBuckets.tag`), so stale and early frames are told apart as usual.
import Foundation
import RNNTransport

/// The documented constants (`--allreduce-crossover fixed`), from `scripts/bench_allreduce_algorithms.sh 3`
/// (`rnn-bench allreduce`, loopback TCP, 2-core Zen 1 VM under load 4-5, 2026-12-04; medians,
/// docs/BENCHMARKS.md "All-reduce by size"). Recursive doubling beat the ring at every size from
/// 4 KiB to 256 KiB at both W = 4 (1.18x-2.05x) and W = 8 (1.76x-2.74x) and beat
/// halving-doubling there too; from 1 MiB the ring won at W = 4 (halving-doubling 0.50x-1.00x)
/// and tied at W = 8 (1.05x-1.08x). Over shaped 1 Gbit/s links they are too high
/// (docs/BENCHMARKS.md): hence the measurement.
public enum AllReduceCrossover {
    public static let recursiveDoublingMaxBytes = 256 * 1024
    public static let halvingDoublingMaxBytes = 256 * 1024
    /// The sizes a measurement may time.
    public static let grid = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20]

    /// Operations per timed block at `bytes` (AllReduceCrossover.swift's header).
    public static func operationsPerBlock(bytes: Int, blockBytes: Int) -> Int {
        min(32, max(2, blockBytes / max(1, bytes)))
    }

    /// The grid sizes a run whose largest buffer has `maxBytes` bytes needs: up to the first at
    /// or above it (all of them for buffers over 1 MiB).
    public static func sizes(upTo maxBytes: Int) -> [Int] {
        var sizes: [Int] = []
        for s in grid {
            sizes.append(s)
            if s >= maxBytes { break }
        }
        return sizes
    }
}

/// How a run picks the automatic all-reduce's crossover (`--allreduce-crossover`).
public enum CrossoverChoice: Codable, Equatable, Sendable, CustomStringConvertible {
    /// Measured over each new ring before its first step (the default).
    case measured
    /// These thresholds, in bytes (`fixed`: `AllReduceCrossover`'s constants).
    case thresholds(recursiveDoublingMaxBytes: Int, halvingDoublingMaxBytes: Int)

    public static let fixed = CrossoverChoice.thresholds(recursiveDoublingMaxBytes: AllReduceCrossover.recursiveDoublingMaxBytes,
                                                         halvingDoublingMaxBytes: AllReduceCrossover.halvingDoublingMaxBytes)

    /// `measured`, `fixed`, or `RD,HD` (bytes; RD <= HD).
    public init?(argument: String) {
        switch argument {
        case "measured": self = .measured
        case "fixed": self = .fixed
        default:
            let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 0, b >= a else { return nil }
            self = .thresholds(recursiveDoublingMaxBytes: a, halvingDoublingMaxBytes: b)
        }
    }

    public var description: String {
        switch self {
        case .measured: return "measured"
        case .thresholds(let a, let b): return "\(a),\(b)"
        }
    }
}

/// The thresholds measured over a ring whose flat algorithms ran over `world` ranks (the
/// leaders' count on the hierarchical path). Rank 0 reports them with its step's METRICS; the
/// coordinator hands every later ring of the run the ones it knows (RING), so a ring of a world
/// already measured reuses them: a re-formed ring of the same size sums in the same order.
public struct CrossoverThresholds: Codable, Equatable, Sendable {
    public var world: Int
    public var recursiveDoublingMaxBytes: Int
    public var halvingDoublingMaxBytes: Int

    public init(world: Int, recursiveDoublingMaxBytes: Int, halvingDoublingMaxBytes: Int) {
        self.world = world
        self.recursiveDoublingMaxBytes = recursiveDoublingMaxBytes
        self.halvingDoublingMaxBytes = halvingDoublingMaxBytes
    }
}

/// One measurement's times and the thresholds chosen from them (the same on every rank).
public struct CrossoverMeasurement: Equatable, Sendable {
    /// The candidates, in the order of `microseconds`' columns.
    public static let algorithms: [AllReduceAlgorithm] = [.recursiveDoubling, .halvingDoubling, .ring]
    /// The world the algorithms ran over (the leaders' count on the hierarchical path).
    public let world: Int
    /// Buffer sizes timed, ascending.
    public let sizes: [Int]
    /// Microseconds per operation, summed over the ranks: `[size][algorithm]`.
    public let microseconds: [[Float]]
    public let recursiveDoublingMaxBytes: Int
    public let halvingDoublingMaxBytes: Int

    public init(world: Int, sizes: [Int], microseconds: [[Float]]) {
        precondition(!sizes.isEmpty && microseconds.count == sizes.count && microseconds.allSatisfy { $0.count == 3 })
        self.world = world
        self.sizes = sizes
        self.microseconds = microseconds
        (recursiveDoublingMaxBytes, halvingDoublingMaxBytes) = Self.choose(sizes: sizes, microseconds: microseconds)
    }

    public var thresholds: CrossoverThresholds {
        CrossoverThresholds(world: world, recursiveDoublingMaxBytes: recursiveDoublingMaxBytes, halvingDoublingMaxBytes: halvingDoublingMaxBytes)
    }

    /// Recursive doubling for sizes[0 ..< a], halving-doubling for sizes[a ..< b], the ring for
    /// the rest: the (a, b) of least total relative time (ties: the larger ring share), as
    /// byte thresholds half-way in log scale between neighbouring sizes.
    static func choose(sizes: [Int], microseconds t: [[Float]]) -> (Int, Int) {
        let m = sizes.count
        let relative = t.map { row -> [Double] in
            let best = Double(max(row.min()!, 1e-3))
            return row.map { Double($0) / best }
        }
        var best = (a: 0, b: 0, cost: Double.infinity)
        for a in stride(from: m, through: 0, by: -1) {
            for b in stride(from: m, through: a, by: -1) {
                var cost = 0.0
                for i in 0..<m { cost += relative[i][i < a ? 0 : (i < b ? 1 : 2)] }
                if cost < best.cost * (1 - 1e-9) || (cost <= best.cost && a <= best.a && b <= best.b) { best = (a, b, cost) }
            }
        }
        func bound(_ i: Int) -> Int {
            if i == 0 { return 0 }
            if i == m { return 2 * sizes[m - 1] }
            return Int((Double(sizes[i - 1]) * Double(sizes[i])).squareRoot())
        }
        return (bound(best.a), bound(best.b))
    }

    /// One line for the log: the thresholds and each size's times.
    public var summary: String {
        func kib(_ b: Int) -> String { b >= 1 << 20 && b % (1 << 20) == 0 ? "\(b >> 20) MiB" : "\(b >> 10) KiB" }
        let times = zip(sizes, microseconds).map { s, row in
            "\(kib(s)) " + row.map { String(format: "%.0f", Double($0) / Double(world)) }.joined(separator: "/")
        }.joined(separator: ", ")
        return "recursive doubling up to \(recursiveDoublingMaxBytes) bytes, halving-doubling up to \(halvingDoublingMaxBytes), "
            + "the ring above (W = \(world); us per op, recursive doubling/halving-doubling/ring, mean of the ranks' faster block: \(times); "
            + "to repeat: --allreduce-crossover \(recursiveDoublingMaxBytes),\(halvingDoublingMaxBytes))"
    }
}

extension RingAllReduce {
    /// The world the flat algorithms run over: the leaders' count on the hierarchical path.
    public var algorithmWorld: Int { activeHierarchy?.leaders.count ?? world }

    /// Times the three algorithms on `sizes` over this connected ring, agrees the thresholds
    /// with the other ranks and sets them (see the file's header); every rank must call it with
    /// the same arguments at the same point. Frames are tagged `tag`, `tag + 1`, ... (`tag`
    /// returns one past the last). nil (nothing run) when the algorithm is not automatic, or
    /// fewer than 3 ranks (leaders) take part. A block runs `blockBytes / size` operations
    /// (2 to 32).
    public func measureCrossover(sizes: [Int], tag: inout UInt64, blockBytes: Int = 1 << 20) throws(AllReduceError) -> CrossoverMeasurement? {
        guard algorithm == .automatic, algorithmWorld >= 3, !sizes.isEmpty else { return nil }
        let count = sizes.max()! / 4
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 3 * sizes.count))
        defer { scratch.deallocate() }
        defer { algorithm = .automatic }
        var times: [Float] = []
        for bytes in sizes {
            let buffer = UnsafeMutableBufferPointer(rebasing: scratch[0..<max(1, bytes / 4)])
            for candidate in CrossoverMeasurement.algorithms {
                algorithm = candidate
                buffer.update(repeating: 0)
                try allReduceSum(buffer, step: tag); tag += 1
                let n = AllReduceCrossover.operationsPerBlock(bytes: bytes, blockBytes: blockBytes)
                var fastest = UInt64.max
                for _ in 0..<2 {
                    let t0 = monotonicNanoseconds()
                    for _ in 0..<n {
                        try allReduceSum(buffer, step: tag); tag += 1
                    }
                    fastest = min(fastest, monotonicNanoseconds() - t0)
                }
                times.append(Float(Double(fastest) / 1000 / Double(n)))
            }
        }
        let sums = UnsafeMutableBufferPointer(rebasing: scratch[0..<times.count])
        _ = sums.initialize(from: times)
        algorithm = .ring
        try allReduceSum(sums, step: tag); tag += 1
        let rows = sizes.indices.map { i in Array(sums[(3 * i)..<(3 * i + 3)]) }
        let measured = CrossoverMeasurement(world: algorithmWorld, sizes: sizes, microseconds: rows)
        recursiveDoublingMaxBytes = measured.recursiveDoublingMaxBytes
        halvingDoublingMaxBytes = measured.halvingDoublingMaxBytes
        return measured
    }
}
