import RealModule
@testable import RNNCore
import XCTest

/// VectorMath against Double-precision RealModule. Errors are measured against the exact
/// (Double) value: absolute |y - f(x)|, relative |y - f(x)| / |f(x)| in units of 2^-23 (ulp of
/// 1). The bounds asserted here are the ones documented in VectorMath.swift.
final class VectorMathTests: XCTestCase {
    static let ulp: Double = 1.0 / 8_388_608  // 2^-23

    struct ErrorStats {
        var maxAbs = 0.0, maxRelUlp = 0.0
        var worstAbsX: Float = 0, worstRelX: Float = 0
        mutating func add(x: Float, y: Float, exact: Double, relativeFloor: Double = 0) {
            let err = abs(Double(y) - exact)
            if err > maxAbs { maxAbs = err; worstAbsX = x }
            if abs(exact) > relativeFloor {
                let rel = err / abs(exact) / VectorMathTests.ulp
                if rel > maxRelUlp { maxRelUlp = rel; worstRelX = x }
            }
        }
    }

    /// Dense grid: 4,000,001 points with step 1e-5 over [-20, 20], run through the buffer API.
    func grid() -> [Float] {
        (0...4_000_000).map { Float(-20 + Double($0) * 1e-5) }
    }

    /// Every 61st float bit pattern in (0, 1], both signs: the region where tanh must keep
    /// its relative accuracy.
    func smallFloats() -> [Float] {
        var xs: [Float] = []
        var bits: UInt32 = 1
        while bits <= 0x3F80_0000 {
            let x = Float(bitPattern: bits)
            xs.append(x)
            xs.append(-x)
            bits += 61
        }
        return xs
    }

    func apply(_ xs: [Float], _ f: (UnsafeMutablePointer<Float>, Int) -> Void) -> [Float] {
        var ys = xs
        ys.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
        return ys
    }

    func testTanhMaximumErrorOnDenseGridAndNearZero() {
        var stats = ErrorStats()
        for xs in [grid(), smallFloats()] {
            let ys = apply(xs) { VectorMath.tanh($0, count: $1) }
            for (x, y) in zip(xs, ys) {
                stats.add(x: x, y: y, exact: Double.tanh(Double(x)))
            }
        }
        print("tanh: max abs error \(stats.maxAbs) at \(stats.worstAbsX), max rel error \(stats.maxRelUlp) ulp at \(stats.worstRelX)")
        XCTAssertLessThanOrEqual(stats.maxAbs, 3.2e-7)
        XCTAssertLessThanOrEqual(stats.maxRelUlp, 2.7)
    }

    /// Every float in [4, 9.2] and its negative (about 2.4 million each): where tanh nears 1
    /// the rational form's rounding error is largest, and it must never pass +-1.
    func testTanhOnEveryFloatNearSaturation() {
        var xs: [Float] = []
        var bits = Float(4).bitPattern
        while bits <= Float(9.2).bitPattern {
            xs.append(Float(bitPattern: bits))
            bits += 1
        }
        var stats = ErrorStats()
        let ys = apply(xs) { VectorMath.tanh($0, count: $1) }
        let negatives = apply(xs.map { -$0 }) { VectorMath.tanh($0, count: $1) }
        var beyondOne = 0, asymmetric = 0
        for i in xs.indices {
            stats.add(x: xs[i], y: ys[i], exact: Double.tanh(Double(xs[i])))
            if ys[i] > 1 { beyondOne += 1 }
            if negatives[i] != -ys[i] { asymmetric += 1 }
        }
        print("tanh on [4, 9.2]: max abs error \(stats.maxAbs) at \(stats.worstAbsX), max rel error \(stats.maxRelUlp) ulp at \(stats.worstRelX)")
        XCTAssertLessThanOrEqual(stats.maxAbs, 3.2e-7)
        XCTAssertLessThanOrEqual(stats.maxRelUlp, 2.7)
        XCTAssertEqual(beyondOne, 0, "tanh above 1")
        XCTAssertEqual(asymmetric, 0, "tanh(-x) != -tanh(x)")
    }

    /// Where tanh(x) rounds to x (|x| <= 2^-12, subnormals included) the kernel returns x
    /// itself: every 7th float up to 2^-12, both signs.
    func testTanhIsIdentityForTinyInputs() {
        var mismatches = 0
        var bits: UInt32 = 0
        while bits <= Float(0x1p-12).bitPattern {
            let x = Float(bitPattern: bits)
            if VectorMath.tanh(x).bitPattern != x.bitPattern { mismatches += 1 }
            if VectorMath.tanh(-x).bitPattern != (-x).bitPattern { mismatches += 1 }
            bits += 7
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testSigmoidMaximumErrorOnDenseGrid() {
        var stats = ErrorStats()
        let xs = grid() + smallFloats()
        let ys = apply(xs) { VectorMath.sigmoid($0, count: $1) }
        for (x, y) in zip(xs, ys) {
            stats.add(x: x, y: y, exact: 1 / (1 + Double.exp(-Double(x))))
        }
        // The far negative tail, where sigmoid(x) ~ e^x is tiny but must stay relatively exact.
        let tail = (0...87_000).map { Float(-87 + Double($0) * 1e-3) }
        let tailY = apply(tail) { VectorMath.sigmoid($0, count: $1) }
        for (x, y) in zip(tail, tailY) {
            stats.add(x: x, y: y, exact: 1 / (1 + Double.exp(-Double(x))))
        }
        print("sigmoid: max abs error \(stats.maxAbs) at \(stats.worstAbsX), max rel error \(stats.maxRelUlp) ulp at \(stats.worstRelX)")
        XCTAssertLessThanOrEqual(stats.maxAbs, 1.2e-7)
        XCTAssertLessThanOrEqual(stats.maxRelUlp, 3.0)
    }

    func testExpMaximumRelativeError() {
        var stats = ErrorStats()
        let xs = (0...1_760_000).map { Float(-87.3 + Double($0) * 1e-4) }
        let ys = apply(xs) { VectorMath.exp($0, count: $1) }
        for (x, y) in zip(xs, ys) {
            stats.add(x: x, y: y, exact: Double.exp(Double(x)))
        }
        print("exp: max rel error \(stats.maxRelUlp) ulp at \(stats.worstRelX)")
        XCTAssertLessThanOrEqual(stats.maxRelUlp, 2.0)
        // Subnormal results keep an absolute error below half the smallest subnormal step.
        for x: Float in [-88, -90, -95, -100, -103] {
            let exact = Double.exp(Double(x))
            XCTAssertLessThanOrEqual(abs(Double(VectorMath.exp(x)) - exact), 1.5e-45, "exp(\(x))")
        }
    }

    func testExtremesSaturateExactlyAndNaNPropagates() {
        XCTAssertEqual(VectorMath.sigmoid(Float.infinity), 1)
        XCTAssertEqual(VectorMath.sigmoid(-Float.infinity), 0)
        XCTAssertEqual(VectorMath.sigmoid(Float(0)), 0.5)
        XCTAssertEqual(VectorMath.sigmoid(Float.greatestFiniteMagnitude), 1)
        XCTAssertEqual(VectorMath.sigmoid(-Float.greatestFiniteMagnitude), 0)
        XCTAssertEqual(VectorMath.tanh(Float.infinity), 1)
        XCTAssertEqual(VectorMath.tanh(-Float.infinity), -1)
        XCTAssertEqual(VectorMath.tanh(Float.greatestFiniteMagnitude), 1)
        XCTAssertEqual(VectorMath.tanh(-Float.greatestFiniteMagnitude), -1)
        XCTAssertEqual(VectorMath.tanh(Float(0)).bitPattern, Float(0).bitPattern)
        XCTAssertEqual(VectorMath.tanh(-Float(0)).bitPattern, (-Float(0)).bitPattern)
        XCTAssertEqual(VectorMath.exp(Float.infinity), .infinity)
        XCTAssertEqual(VectorMath.exp(-Float.infinity), 0)
        XCTAssertEqual(VectorMath.exp(Float(89)), .infinity)
        XCTAssertEqual(VectorMath.exp(Float(0)), 1)
        XCTAssertTrue(VectorMath.sigmoid(Float.nan).isNaN)
        XCTAssertTrue(VectorMath.tanh(Float.nan).isNaN)
        XCTAssertTrue(VectorMath.exp(Float.nan).isNaN)
        XCTAssertTrue(VectorMath.sigmoid(-Float.nan).isNaN)
        // Saturation is exact, not merely close: sigmoid hits 1 from 17 on, tanh +-1 from 8.8.
        var x: Float = 17
        while x < 200 {
            XCTAssertEqual(VectorMath.sigmoid(x), 1, "sigmoid(\(x))")
            x += 0.37
        }
        x = 8.8
        while x < 200 {
            XCTAssertEqual(VectorMath.tanh(x), 1, "tanh(\(x))")
            XCTAssertEqual(VectorMath.tanh(-x), -1, "tanh(\(-x))")
            x += 0.37
        }
        // Outputs stay inside their ranges on the whole grid.
        let g = grid()
        XCTAssertTrue(apply(g) { VectorMath.sigmoid($0, count: $1) }.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertTrue(apply(g) { VectorMath.tanh($0, count: $1) }.allSatisfy { $0 >= -1 && $0 <= 1 })
        // NaN among other lanes stays in its lane.
        let v = VectorMath.tanh(SIMD8<Float>(1, .nan, -1, 0, 3, -3, .infinity, 0.1))
        XCTAssertTrue(v[1].isNaN)
        XCTAssertFalse(v[0].isNaN || v[2].isNaN || v[7].isNaN)
    }

    /// tanh's one-factor exponential gives the same bits as the general two-factor one over
    /// its whole domain [-86, 0]: every 1009th float (about 1.1 million values, subnormals
    /// included) and the ends.
    func testNormalRangeExpCoreIsBitIdenticalToExpCore() {
        let last = Float(-86).bitPattern
        var bits = (-Float(0)).bitPattern
        var v = SIMD8<Float>()
        var lane = 0
        while bits <= last {
            v[lane] = Float(bitPattern: bits)
            lane += 1
            if lane == 8 {
                let a = VectorMath.expCoreNormal(v), b = VectorMath.expCore(v)
                if a != b {
                    for l in 0..<8 { XCTAssertEqual(a[l].bitPattern, b[l].bitPattern, "expCoreNormal(\(v[l]))") }
                }
                lane = 0
            }
            bits += 1009
        }
        let ends = SIMD8<Float>(-86, -0.0, 0, -1e-30, -43.5, -85.999, -1e-7, -0.5)
        XCTAssertEqual(VectorMath.expCoreNormal(ends), VectorMath.expCore(ends))
    }

    func testSIMD16MatchesSIMD8Lanes() {
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<1000 {
            var x = SIMD16<Float>()
            for l in 0..<16 { x[l] = Float.random(in: -30...30, using: &rng) }
            XCTAssertEqual(VectorMath.sigmoid(x), SIMD16(lowHalf: VectorMath.sigmoid(x.lowHalf), highHalf: VectorMath.sigmoid(x.highHalf)))
            XCTAssertEqual(VectorMath.tanh(x), SIMD16(lowHalf: VectorMath.tanh(x.lowHalf), highHalf: VectorMath.tanh(x.highHalf)))
            XCTAssertEqual(VectorMath.exp(x), SIMD16(lowHalf: VectorMath.exp(x.lowHalf), highHalf: VectorMath.exp(x.highHalf)))
        }
    }

    /// Buffers of every length 0...40 (so every tail length), at odd offsets: each element
    /// equals the scalar version, elements outside the range are untouched.
    func testBufferHelpersHandleTailsAndLeaveNeighboursAlone() {
        var rng = SeededGenerator(seed: 11)
        for count in 0...40 {
            let sentinel: Float = 12345
            var buf = [Float](repeating: sentinel, count: count + 6)
            for i in 3..<(3 + count) { buf[i] = Float.random(in: -12...12, using: &rng) }
            if count > 2 { buf[4] = -0.0; buf[5] = .nan }
            let input = buf
            for op in ["sigmoid", "tanh", "exp", "relu"] {
                var out = input
                out.withUnsafeMutableBufferPointer { p in
                    let start = p.baseAddress! + 3
                    switch op {
                    case "sigmoid": VectorMath.sigmoid(start, count: count)
                    case "tanh": VectorMath.tanh(start, count: count)
                    case "exp": VectorMath.exp(start, count: count)
                    default: VectorMath.relu(start, count: count)
                    }
                }
                for i in 0..<3 { XCTAssertEqual(out[i], sentinel, "\(op) count \(count) wrote before the range") }
                for i in (3 + count)..<(6 + count) { XCTAssertEqual(out[i], sentinel, "\(op) count \(count) wrote past the range") }
                for i in 3..<(3 + count) {
                    let x = input[i]
                    let expected: Float
                    switch op {
                    case "sigmoid": expected = VectorMath.sigmoid(x)
                    case "tanh": expected = VectorMath.tanh(x)
                    case "exp": expected = VectorMath.exp(x)
                    default: expected = x < 0 ? 0 : x
                    }
                    if x.isNaN {
                        XCTAssertTrue(out[i].isNaN, "\(op) NaN at \(i)")
                    } else {
                        XCTAssertEqual(out[i].bitPattern, expected.bitPattern, "\(op)(\(x)) count \(count) index \(i)")
                    }
                }
            }
        }
    }
}
