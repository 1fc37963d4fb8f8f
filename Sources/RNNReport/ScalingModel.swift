// The alpha-beta scaling model of docs/SCALING.md (`rnn-bench scaling`).
//
// All-reduce of S bytes over W ranks:
//   ring:               2(W-1) * alpha + 2(W-1)/W * S * beta
//   recursive doubling: ceil(log2 W) * (alpha + S * beta)  (whole buffers each round)
//   halving-doubling:   2 log2 P * alpha + 2(P-1)/P * S * beta, P the largest power of two
//                       <= W, plus 2 (alpha + S * beta) for the hand-over and hand-back when W > P
//   automatic:          the least of the three for W >= 3 (RingAllReduce measures its
//                       crossover over each new ring and so runs the fastest); the ring at W = 2
//   fixed:              recursive doubling up to 256 KiB for W >= 3, the ring above
//                       (`--allreduce-crossover fixed`)
// A data-parallel step with b rows per worker, compute c seconds per row and an overlap
// fraction f of the all-reduce hidden behind backward:
//   step(W) = b * c + (1 - f) * allReduce(W, S)
//   samples/s(W) = W * b / step(W),  efficiency(W) = b * c / step(W)
// (efficiency against W independent workers of the same speed; 1 at W = 1).
// Pure arithmetic, no timing: Tests/RNNReportTests/ScalingModelTests.swift checks it by hand.

import Foundation

/// The link and software cost of one message (alpha, seconds) and of one byte (beta, s/byte).
public struct AlphaBeta: Sendable, Equatable {
    public var alpha: Double
    public var beta: Double
    public init(alpha: Double, beta: Double) {
        self.alpha = alpha
        self.beta = beta
    }

    /// beta of a link of `bitsPerSecond` (1 Gbit/s: 8e-9 s per byte).
    public static func beta(bitsPerSecond: Double) -> Double { 8 / bitsPerSecond }

    /// Least squares on the relative error, sum(((model - t) / t)^2), of measured
    /// (bytes, seconds) pairs at one world size with the ring formula: t = a * 2(W-1) + b * 2(W-1)/W * S.
    /// Relative weights keep the small sizes (which fix alpha) from being drowned by the large ones.
    public static func fitRing(world: Int, samples: [(bytes: Double, seconds: Double)]) -> AlphaBeta? {
        guard world >= 2, samples.count >= 2 else { return nil }
        let w = Double(world)
        var saa = 0.0, sab = 0.0, sbb = 0.0, sat = 0.0, sbt = 0.0
        for s in samples where s.seconds > 0 {
            let a = 2 * (w - 1) / s.seconds            // coefficient of alpha, divided by t
            let b = 2 * (w - 1) / w * s.bytes / s.seconds  // coefficient of beta, divided by t
            saa += a * a; sab += a * b; sbb += b * b
            sat += a; sbt += b                       // right-hand side: t / t = 1
        }
        let det = saa * sbb - sab * sab
        guard abs(det) > 0 else { return nil }
        return AlphaBeta(alpha: (sat * sbb - sbt * sab) / det, beta: (saa * sbt - sab * sat) / det)
    }
}

public enum AllReduceShape: String, Sendable {
    case ring
    case recursiveDoubling = "recursive-doubling"
    case halvingDoubling = "halving-doubling"
    /// RingAllReduce's automatic choice with a measured crossover: the fastest of the three for W >= 3.
    case automatic = "auto"
    /// The documented constants (`--allreduce-crossover fixed`): recursive doubling up to
    /// `automaticCrossoverBytes` for W >= 3, the ring above.
    case fixedCrossover = "fixed"
}

public enum ScalingModel {
    /// RingAllReduce's documented crossover (AllReduceCrossover): recursive doubling at or below it for W >= 3.
    public static let automaticCrossoverBytes = 256 << 10

    /// Seconds of one all-reduce of `bytes` over `world` ranks.
    public static func allReduceSeconds(world: Int, bytes: Double, cost: AlphaBeta, shape: AllReduceShape = .ring) -> Double {
        guard world >= 2 else { return 0 }
        let w = Double(world)
        switch shape {
        case .ring:
            return 2 * (w - 1) * cost.alpha + 2 * (w - 1) / w * bytes * cost.beta
        case .recursiveDoubling:
            let rounds = Double(Int.bitWidth - (world - 1).leadingZeroBitCount)  // ceil(log2 W)
            return rounds * (cost.alpha + bytes * cost.beta)
        case .halvingDoubling:
            guard world >= 3 else { return allReduceSeconds(world: world, bytes: bytes, cost: cost, shape: .ring) }
            let log2P = Int.bitWidth - 1 - world.leadingZeroBitCount
            let p = Double(1 << log2P)
            let extra = world > 1 << log2P ? 2 * (cost.alpha + bytes * cost.beta) : 0
            return extra + 2 * Double(log2P) * cost.alpha + 2 * (p - 1) / p * bytes * cost.beta
        case .automatic:
            guard world >= 3 else { return allReduceSeconds(world: world, bytes: bytes, cost: cost, shape: .ring) }
            return [AllReduceShape.recursiveDoubling, .halvingDoubling, .ring]
                .map { allReduceSeconds(world: world, bytes: bytes, cost: cost, shape: $0) }.min()!
        case .fixedCrossover:
            let rd = world >= 3 && bytes <= Double(automaticCrossoverBytes)
            return allReduceSeconds(world: world, bytes: bytes, cost: cost, shape: rd ? .recursiveDoubling : .ring)
        }
    }

    /// The lower bound of any all-reduce's transfer time on links of `bytesPerSecond`: 2(W-1)/W * S / B.
    public static func boundSeconds(world: Int, bytes: Double, bytesPerSecond: Double) -> Double {
        world < 2 ? 0 : 2 * Double(world - 1) / Double(world) * bytes / bytesPerSecond
    }
}

/// One benchmark configuration as the model sees it.
public struct ScalingWorkload: Sendable, Equatable {
    public var name: String
    /// Bytes of the gradient every step all-reduces (float32: 4 x parameters, plus the count).
    public var gradientBytes: Double
    /// Measured compute (forward, loss, backward, update) per row, seconds.
    public var computeSecondsPerRow: Double
    /// Rows each worker computes per step.
    public var rowsPerWorker: Double
    /// Fraction of the all-reduce hidden behind backward (0: no overlap, today's path).
    public var overlap: Double

    public init(name: String, gradientBytes: Double, computeSecondsPerRow: Double, rowsPerWorker: Double, overlap: Double = 0) {
        self.name = name
        self.gradientBytes = gradientBytes
        self.computeSecondsPerRow = computeSecondsPerRow
        self.rowsPerWorker = rowsPerWorker
        self.overlap = overlap
    }

    public func stepSeconds(world: Int, cost: AlphaBeta, shape: AllReduceShape = .ring) -> Double {
        rowsPerWorker * computeSecondsPerRow
            + (1 - overlap) * ScalingModel.allReduceSeconds(world: world, bytes: gradientBytes, cost: cost, shape: shape)
    }

    public func samplesPerSecond(world: Int, cost: AlphaBeta, shape: AllReduceShape = .ring) -> Double {
        Double(world) * rowsPerWorker / stepSeconds(world: world, cost: cost, shape: shape)
    }

    public func efficiency(world: Int, cost: AlphaBeta, shape: AllReduceShape = .ring) -> Double {
        rowsPerWorker * computeSecondsPerRow / stepSeconds(world: world, cost: cost, shape: shape)
    }
}

/// Efficiency against W on a log2 axis, one line per (workload, link): the PNG of `rnn-bench scaling`.
public struct EfficiencySeries: Sendable {
    public var label: String
    public var points: [(world: Int, efficiency: Double)]
    public init(label: String, points: [(world: Int, efficiency: Double)]) {
        self.label = label
        self.points = points
    }
}

public func renderEfficiencyChart(_ series: [EfficiencySeries], title: String, width: Int = 1000, height: Int = 620) -> RGBImage {
    var image = RGBImage(width: width, height: height)
    let left = 80, right = width - 300, top = 50, bottom = height - 60
    let palette: [RGB] = [RGB(31, 119, 180), RGB(255, 127, 14), RGB(44, 160, 44), RGB(214, 39, 40),
                          RGB(148, 103, 189), RGB(140, 86, 75), RGB(227, 119, 194), RGB(127, 127, 127),
                          RGB(188, 189, 34), RGB(23, 190, 207), RGB(0, 0, 128), RGB(128, 0, 0)]
    let maxW = max(2, series.flatMap { $0.points.map(\.world) }.max() ?? 2)
    let x1 = log2(Double(maxW))
    func px(_ w: Int) -> Int { left + Int((log2(Double(max(w, 1))) / x1 * Double(right - left)).rounded()) }
    func py(_ e: Double) -> Int { bottom - Int((min(max(e, 0), 1) * Double(bottom - top)).rounded()) }
    image.draw(text: title, x: left, y: 12, scale: 2)
    let grid = RGB(220, 220, 220)
    for k in 0...10 {
        let y = py(Double(k) / 10)
        image.fill(x: left, y: y, width: right - left, height: 1, k == 0 ? .black : grid)
        if k % 2 == 0 { image.draw(text: "\(k * 10)%", x: 20, y: y - 6, scale: 2) }
    }
    var w = 1
    while w <= maxW {
        let x = px(w)
        image.fill(x: x, y: top, width: 1, height: bottom - top, w == 1 ? .black : grid)
        image.draw(text: "\(w)", x: x - RGBImage.textWidth("\(w)", scale: 2) / 2, y: bottom + 8, scale: 2)
        w *= 2
    }
    image.draw(text: "workers W (log2)", x: (left + right) / 2 - 100, y: bottom + 32, scale: 2)
    for (i, s) in series.enumerated() {
        let color = palette[i % palette.count]
        let pts = s.points.sorted { $0.world < $1.world }.map { (px($0.world), py($0.efficiency)) }
        for (a, b) in zip(pts, pts.dropFirst()) { line(&image, a, b, color) }
        for p in pts { image.fill(x: p.0 - 2, y: p.1 - 2, width: 5, height: 5, color) }
        let ly = top + 4 + i * 22
        image.fill(x: right + 16, y: ly + 5, width: 24, height: 4, color)
        image.draw(text: s.label, x: right + 46, y: ly, scale: 2)
    }
    return image
}

private func line(_ image: inout RGBImage, _ a: (Int, Int), _ b: (Int, Int), _ color: RGB) {
    let n = max(abs(b.0 - a.0), abs(b.1 - a.1), 1)
    for k in 0...n {
        let x = a.0 + (b.0 - a.0) * k / n, y = a.1 + (b.1 - a.1) * k / n
        image.fill(x: x - 1, y: y - 1, width: 3, height: 3, color)
    }
}

public func writeEfficiencyPNG(_ series: [EfficiencySeries], title: String, to path: String) throws {
    try Data(renderEfficiencyChart(series, title: title).pngData()).write(to: URL(fileURLWithPath: path))
}
