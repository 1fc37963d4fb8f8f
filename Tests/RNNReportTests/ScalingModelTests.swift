// The scaling model's arithmetic against hand-computed values (no timing).
import XCTest
@testable import RNNReport

final class ScalingModelTests: XCTestCase {
    let cost = AlphaBeta(alpha: 10e-6, beta: 8e-9)  // 10 us per message, 1 Gbit/s

    func testBetaOfALink() {
        XCTAssertEqual(AlphaBeta.beta(bitsPerSecond: 1e9), 8e-9, accuracy: 1e-21)
        XCTAssertEqual(AlphaBeta.beta(bitsPerSecond: 25e9), 0.32e-9, accuracy: 1e-21)
    }

    func testRingFormula() {
        // W = 4, S = 1 MB: 2*3*10 us + 2*3/4 * 1e6 B * 8 ns = 60 us + 12 ms.
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 4, bytes: 1e6, cost: cost), 0.012060, accuracy: 1e-12)
        // W = 2: 2 alpha + S beta.
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 2, bytes: 1e6, cost: cost), 0.008020, accuracy: 1e-12)
        // W = 256, S = 13.6 MB: 510 * 10 us + 2*255/256 * 13.6e6 * 8 ns = 5.1 ms + 1.9921875 * 108.8 ms = 5.1 + 216.75 ms.
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 256, bytes: 13.6e6, cost: cost), 0.0051 + 0.21675, accuracy: 1e-9)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 1, bytes: 1e6, cost: cost), 0)
    }

    func testRecursiveDoublingAndAutomatic() {
        // ceil(log2 W) rounds of (alpha + S beta): W = 8 -> 3, W = 5 -> 3, W = 4 -> 2.
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 8, bytes: 1000, cost: cost, shape: .recursiveDoubling), 3 * 18e-6, accuracy: 1e-15)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 5, bytes: 1000, cost: cost, shape: .recursiveDoubling), 3 * 18e-6, accuracy: 1e-15)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 4, bytes: 1000, cost: cost, shape: .recursiveDoubling), 2 * 18e-6, accuracy: 1e-15)
        // fixed: recursive doubling up to 256 KiB for W >= 3, the ring above and at W = 2.
        let s = 262_144.0
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 4, bytes: s, cost: cost, shape: .fixedCrossover), 2 * (10e-6 + s * 8e-9), accuracy: 1e-15)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 4, bytes: s + 4, cost: cost, shape: .fixedCrossover),
                       6 * 10e-6 + 1.5 * (s + 4) * 8e-9, accuracy: 1e-15)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 2, bytes: 4096, cost: cost, shape: .fixedCrossover), 2 * 10e-6 + 4096 * 8e-9, accuracy: 1e-15)
        // halving-doubling: W = 8: 6 alpha + 1.75 S beta; W = 6 (P = 4): 2 (alpha + S beta) + 4 alpha + 1.5 S beta.
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 8, bytes: 1000, cost: cost, shape: .halvingDoubling), 6 * 10e-6 + 1.75 * 1000 * 8e-9, accuracy: 1e-15)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 6, bytes: 1000, cost: cost, shape: .halvingDoubling),
                       2 * (10e-6 + 1000 * 8e-9) + 4 * 10e-6 + 1.5 * 1000 * 8e-9, accuracy: 1e-15)
        // automatic (a measured crossover): the least of the three. W = 8, 1000 bytes: recursive
        // doubling 3 * 18 us = 54 us against halving-doubling 74 us and the ring 154 us.
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 8, bytes: 1000, cost: cost, shape: .automatic), 3 * 18e-6, accuracy: 1e-15)
        // W = 8, 1 MB: halving-doubling (6 alpha) beats the ring (14 alpha) and recursive doubling (3 S beta).
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 8, bytes: 1e6, cost: cost, shape: .automatic), 6 * 10e-6 + 1.75 * 1e6 * 8e-9, accuracy: 1e-12)
        // W = 6, 1 MB: the ring (10 alpha + 1.667 S beta) beats halving-doubling's hand-over (+2 S beta).
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 6, bytes: 1e6, cost: cost, shape: .automatic), 10 * 10e-6 + 10.0 / 6 * 1e6 * 8e-9, accuracy: 1e-12)
        XCTAssertEqual(ScalingModel.allReduceSeconds(world: 2, bytes: 1e6, cost: cost, shape: .automatic), 2 * 10e-6 + 1e6 * 8e-9, accuracy: 1e-12)
    }

    func testBound() {
        // 2(W-1)/W * S / B: W = 8, 64 MiB at 125 MB/s.
        XCTAssertEqual(ScalingModel.boundSeconds(world: 8, bytes: 67_108_864, bytesPerSecond: 125e6), 1.75 * 67_108_864 / 125e6, accuracy: 1e-12)
    }

    func testWorkloadThroughputAndEfficiency() {
        // 32 rows of 1 ms: 32 ms compute; W = 2, 1 MB: all-reduce 8.02 ms; step 40.02 ms.
        var wl = ScalingWorkload(name: "x", gradientBytes: 1e6, computeSecondsPerRow: 1e-3, rowsPerWorker: 32)
        XCTAssertEqual(wl.stepSeconds(world: 2, cost: cost), 0.04002, accuracy: 1e-12)
        XCTAssertEqual(wl.samplesPerSecond(world: 2, cost: cost), 64 / 0.04002, accuracy: 1e-9)
        XCTAssertEqual(wl.efficiency(world: 2, cost: cost), 0.032 / 0.04002, accuracy: 1e-12)
        XCTAssertEqual(wl.efficiency(world: 1, cost: cost), 1)
        XCTAssertEqual(wl.samplesPerSecond(world: 1, cost: cost), 1000, accuracy: 1e-9)
        // Half the all-reduce hidden: 32 + 4.01 ms.
        wl.overlap = 0.5
        XCTAssertEqual(wl.efficiency(world: 2, cost: cost), 0.032 / 0.03601, accuracy: 1e-12)
        wl.overlap = 1
        XCTAssertEqual(wl.efficiency(world: 256, cost: cost), 1, accuracy: 1e-12)
    }

    func testFitRecoversAlphaAndBeta() {
        // Exact W = 2 ring times from alpha 50 us, beta 8.5 ns/byte: the fit returns them.
        let truth = AlphaBeta(alpha: 50e-6, beta: 8.5e-9)
        let sizes: [Double] = [4096, 65536, 1_048_576, 67_108_864]
        let samples: [(bytes: Double, seconds: Double)] = sizes.map { b in
            (bytes: b, seconds: ScalingModel.allReduceSeconds(world: 2, bytes: b, cost: truth))
        }
        let fit = AlphaBeta.fitRing(world: 2, samples: samples)!
        XCTAssertEqual(fit.alpha, 50e-6, accuracy: 1e-12)
        XCTAssertEqual(fit.beta, 8.5e-9, accuracy: 1e-16)
        // At W = 4 the coefficients are 6 and 1.5 S.
        let sizes4: [Double] = [4096, 1_048_576]
        let s4: [(bytes: Double, seconds: Double)] = sizes4.map { b in
            let t: Double = 6 * 20e-6 + 1.5 * b * 4e-9
            return (bytes: b, seconds: t)
        }
        let f4 = AlphaBeta.fitRing(world: 4, samples: s4)!
        XCTAssertEqual(f4.alpha, 20e-6, accuracy: 1e-12)
        XCTAssertEqual(f4.beta, 4e-9, accuracy: 1e-16)
        XCTAssertNil(AlphaBeta.fitRing(world: 2, samples: [(bytes: 4096, seconds: 1e-4)]))
    }

    func testChartRenders() {
        let img = renderEfficiencyChart([EfficiencySeries(label: "a", points: [(1, 1), (2, 0.9), (256, 0.2)])], title: "t", width: 600, height: 400)
        XCTAssertEqual(img.width, 600)
        XCTAssertEqual(Array(img.pngData().prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }
}
