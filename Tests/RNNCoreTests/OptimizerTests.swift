// Adam/AdamW and clipping on hand-checkable values (the 3-step PyTorch comparison is in ParityTests).
import RealModule
import XCTest
@testable import RNNCore

final class OptimizerTests: XCTestCase {
    func testFirstAdamStepMovesEachParameterByLearningRate() {
        var adam = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 0.01), parameterCount: 4)
        var p: [Float] = [1, -2, 0.5, 3]
        var g: [Float] = [0.3, -0.02, 4, 0]
        adam.step(parameters: &p, gradient: &g)
        // m_hat = g, v_hat = g^2: update = lr * g / (|g| + eps); zero gradient leaves the value.
        XCTAssertEqual(p[0], 0.99, accuracy: 1e-6)
        XCTAssertEqual(p[1], -1.99, accuracy: 1e-6)
        XCTAssertEqual(p[2], 0.49, accuracy: 1e-6)
        XCTAssertEqual(p[3], 3)
        XCTAssertEqual(adam.stepCount, 1)
        XCTAssertEqual(adam.expAvg[0], 0.03, accuracy: 1e-7)
        XCTAssertEqual(adam.expAvgSq[2], 0.016, accuracy: 1e-6) // (1 - 0.999) in Float is 0.00099999
    }

    func testAdamWDecaysDecoupledAndAdamAddsL2() {
        var adamw = AdamOptimizer(config: OptimizerConfig(kind: .adamw, lr: 0.1, weightDecay: 0.5), parameterCount: 2)
        var p: [Float] = [2, -4]
        var g: [Float] = [0, 0]
        adamw.step(parameters: &p, gradient: &g)
        XCTAssertEqual(p, [2 * 0.95, -4 * 0.95])
        var adam = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 0.1, weightDecay: 0.5), parameterCount: 2)
        p = [2, -4]
        adam.step(parameters: &p, gradient: &g)
        // L2 turns the zero gradient into 0.5 * p, so the first step is -lr * sign(p).
        XCTAssertEqual(p[0], 1.9, accuracy: 1e-6)
        XCTAssertEqual(p[1], -3.9, accuracy: 1e-6)
    }

    func testClippingScalesToMaxNormOnlyWhenAbove() {
        var g: [Float] = [3, 4]
        let norm = g.withUnsafeMutableBufferPointer { clipGradientNorm($0, maxNorm: 1) }
        XCTAssertEqual(norm, 5)
        XCTAssertEqual(g[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(g[1], 0.8, accuracy: 1e-6)
        var small: [Float] = [0.3, 0.4]
        _ = small.withUnsafeMutableBufferPointer { clipGradientNorm($0, maxNorm: 1) }
        XCTAssertEqual(small, [0.3, 0.4])
    }

    func testRestoredStateContinuesBitwise() throws {
        let config = OptimizerConfig(kind: .adamw, lr: 0.01, weightDecay: 0.1, clipNorm: 1)
        var rng = SeededGenerator(seed: 1)
        var a = AdamOptimizer(config: config, parameterCount: 37)
        var pa = (0..<37).map { _ in rng.nextFloat(in: -1, 1) }
        let grads = (0..<4).map { _ in (0..<37).map { _ in rng.nextFloat(in: -2, 2) } }
        for s in 0..<2 { var g = grads[s]; a.step(parameters: &pa, gradient: &g) }
        var b = try AdamOptimizer(config: config, expAvg: a.expAvg, expAvgSq: a.expAvgSq, stepCount: a.stepCount)
        var pb = pa
        for s in 2..<4 {
            var g1 = grads[s], g2 = grads[s]
            a.step(parameters: &pa, gradient: &g1)
            b.step(parameters: &pb, gradient: &g2)
        }
        XCTAssertEqual(pa, pb)
        XCTAssertEqual(a, b)
        XCTAssertThrowsError(try AdamOptimizer(config: config, expAvg: [0], expAvgSq: [0, 0], stepCount: 1))
    }

    func testOutOfPlaceStepOnASumEqualsInPlaceOnTheMeanAndKeepsThePreviousState() {
        for config in [OptimizerConfig(lr: 0.01, weightDecay: 0.01), OptimizerConfig(kind: .adamw, lr: 0.02, weightDecay: 0.1, clipNorm: 0.5)] {
            var rng = SeededGenerator(seed: 9)
            let n = 53  // not a multiple of the 8 lanes
            let scale: Float = 1 / 7
            var a = AdamOptimizer(config: config, parameterCount: n), b = a
            var pa = (0..<n).map { _ in rng.nextFloat(in: -1, 1) }, pb = pa
            var previous = TrainingState()
            for _ in 0..<5 {
                // A sum over 7 scored elements; the in-place step gets the mean materialised.
                let sum = (0..<n).map { _ in rng.nextFloat(in: -14, 14) }
                let before = TrainingState(parameters: pb, expAvg: b.expAvg, expAvgSq: b.expAvgSq, stepCount: b.stepCount)
                var mean = sum.map { $0 * scale }
                let n1 = a.step(parameters: &pa, gradient: &mean)
                let n2 = sum.withUnsafeBufferPointer { b.step(parameters: &pb, gradientSum: $0, scale: scale, keepingPreviousIn: &previous) }
                if config.clipNorm != nil {
                    XCTAssertEqual(n2, n1, "the norm of the mean differs")
                    XCTAssertGreaterThan(n1, 0.5, "the test should clip")
                } else {
                    XCTAssertNil(n2, "no clipping, so no norm")
                }
                XCTAssertEqual(pa, pb, "out-of-place parameters differ from in-place")
                XCTAssertEqual(a, b, "out-of-place moments or step count differ from in-place")
                XCTAssertEqual(previous, before, "the previous state is not the state before the step")
                XCTAssertNotEqual(pb, before.parameters)
            }
        }
    }

    /// The step that zeroes the sums as it reads them (the worker's, which then needs no
    /// zeroing pass) is bitwise the step that only reads them, for Adam, AdamW with clipping
    /// and SGD with momentum, tails included; afterwards every sum is +0.0.
    func testClearingStepEqualsTheReadingStepBitwiseAndLeavesZeros() {
        let configs = [OptimizerConfig(lr: 0.01, weightDecay: 0.01), OptimizerConfig(kind: .adamw, lr: 0.02, weightDecay: 0.1, clipNorm: 0.5),
                       OptimizerConfig(kind: .sgd, lr: 0.1, weightDecay: 1e-3, momentum: 0.9, nesterov: true)]
        for config in configs {
            for n in [1, 8, 53, 1000] {
                var rng = SeededGenerator(seed: UInt64(n))
                var a = AdamOptimizer(config: config, parameterCount: n), b = a
                var pa = (0..<n).map { _ in rng.nextFloat(in: -1, 1) }, pb = pa
                var previousA = TrainingState(), previousB = TrainingState()
                for _ in 0..<4 {
                    let sum = (0..<n).map { _ in rng.nextFloat(in: -14, 14) }
                    var cleared = sum
                    let na = sum.withUnsafeBufferPointer { a.step(parameters: &pa, gradientSum: $0, scale: 1 / 7, keepingPreviousIn: &previousA) }
                    let nb = cleared.withUnsafeMutableBufferPointer {
                        b.step(parameters: &pb, clearingGradientSum: $0, scale: 1 / 7, keepingPreviousIn: &previousB)
                    }
                    XCTAssertEqual(na, nb, "\(config.kind) n=\(n): the clipping norms differ")
                    XCTAssertEqual(pa.map(\.bitPattern), pb.map(\.bitPattern), "\(config.kind) n=\(n): parameters differ")
                    XCTAssertEqual(a, b, "\(config.kind) n=\(n): moments or step count differ")
                    XCTAssertEqual(previousA, previousB, "\(config.kind) n=\(n): the kept states differ")
                    XCTAssertTrue(cleared.allSatisfy { $0.bitPattern == 0 }, "\(config.kind) n=\(n): sums not cleared")
                }
            }
        }
    }

    /// A NaN or Inf anywhere in the gradient (also in the lanes of a tail) is flagged by both
    /// step variants, and so is an update that overflows; a finite step is not.
    func testNonFiniteGradientsAreFlagged() {
        let n = 53
        for bad in [Float.nan, .infinity, -.infinity] {
            for position in [0, 7, 8, 47, 48, 52] {
                var a = AdamOptimizer(config: OptimizerConfig(lr: 0.01), parameterCount: n), b = a
                var p = [Float](repeating: 0.5, count: n), q = p
                var g = [Float](repeating: 1e15, count: n)
                a.step(parameters: &p, gradient: &g)
                XCTAssertTrue(a.lastStepWasFinite, "1e15 is finite, and so is its square")
                g[position] = bad
                var sum = g
                a.step(parameters: &p, gradient: &g)
                XCTAssertFalse(a.lastStepWasFinite, "\(bad) at \(position) not flagged (in place)")
                var previous = TrainingState()
                sum.withUnsafeBufferPointer { _ = b.step(parameters: &q, gradientSum: $0, scale: 0.5, keepingPreviousIn: &previous) }
                XCTAssertFalse(b.lastStepWasFinite, "\(bad) at \(position) not flagged (on a sum)")
                // The flag is per step: a finite step from finite parameters clears it.
                sum[position] = 1
                var fresh = AdamOptimizer(config: OptimizerConfig(lr: 0.01), parameterCount: n)
                var r = [Float](repeating: 0.5, count: n)
                sum.withUnsafeBufferPointer { _ = fresh.step(parameters: &r, gradientSum: $0, scale: 0.5, keepingPreviousIn: &previous) }
                XCTAssertTrue(fresh.lastStepWasFinite)
            }
        }
        // A finite gradient whose update is not: lr 1e38 makes the first bias-corrected step
        // size lr / (1 - beta1) overflow to Inf.
        var c = AdamOptimizer(config: OptimizerConfig(lr: 1e38), parameterCount: n)
        var p = [Float](repeating: 0.5, count: n), g = [Float](repeating: 1, count: n)
        c.step(parameters: &p, gradient: &g)
        XCTAssertFalse(c.lastStepWasFinite, "Inf parameters from a finite gradient not flagged")
    }

    func testVectorSquareRootIsWithinOneUlp() {
        var rng = SeededGenerator(seed: 3)
        var worstUlps: Float = 0
        for _ in 0..<20_000 {
            // Magnitudes from 1e-30 to 1e30, the range of Adam's second moments and beyond.
            let exponent = rng.nextFloat(in: -30, 30)
            let lanes = SIMD8<Float>((0..<8).map { _ in rng.nextFloat(in: 1, 10) * Float.pow(10, exponent) })
            let y = vectorSquareRoot(lanes)
            for k in 0..<8 {
                let exact = lanes[k].squareRoot()
                worstUlps = max(worstUlps, abs(y[k] - exact) / exact.ulp)
            }
        }
        XCTAssertLessThanOrEqual(worstUlps, 1)
        XCTAssertEqual(vectorSquareRoot(SIMD8(repeating: 0)), SIMD8(repeating: 0))
        XCTAssertEqual(vectorSquareRoot(SIMD8(repeating: 4))[3], 2)
        print("vectorSquareRoot: worst error \(worstUlps) ulp over 160,000 values")
    }
}
