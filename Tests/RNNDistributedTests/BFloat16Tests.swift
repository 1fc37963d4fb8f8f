// --compress bf16: the float32 -> bfloat16 rounding (nearest, ties to even) against values
// worked out by hand and against a reference written differently (pick the nearer of the two
// neighbouring bf16 values); the compressed all-reduce against its definition
// bf16(sum over ranks in rank order of bf16(x_r)), with float32 scalars summed exactly, the
// same bits on every rank and run after run, for W = 2 ... 5.
import Foundation
import XCTest
@testable import RNNDistributed
import RNNTransport

final class BFloat16Tests: XCTestCase {
    /// The nearer of the bf16 values just below and above x (truncation and truncation + one
    /// ulp, in magnitude); on a tie the one whose last mantissa bit is 0.
    func referenceBits(_ x: Float) -> UInt16 {
        if x.isNaN { return 0x7FC0 }
        let down = UInt16(x.bitPattern >> 16)
        if x.bitPattern & 0xFFFF == 0 { return down }
        let up = down &+ 1
        let low = Double(Float(bitPattern: UInt32(down) << 16)), high = Double(Float(bitPattern: UInt32(up) << 16))
        let dLow = abs(Double(x) - low), dHigh = high.isInfinite ? Double.infinity : abs(high - Double(x))
        if high.isInfinite {
            // Past the largest finite bf16: IEEE rounding overflows when x is at least halfway
            // to the next power of two's worth of ulp.
            let maxBF = low, ulp = Double(Float(bitPattern: 0x7F7F_0000)) - Double(Float(bitPattern: 0x7F7E_0000))
            return abs(Double(x)) >= abs(maxBF) + ulp / 2 ? up : down
        }
        if dLow < dHigh { return down }
        if dHigh < dLow { return up }
        return down & 1 == 0 ? down : up
    }

    func testRoundingByHand() {
        XCTAssertEqual(BFloat16.bits(1), 0x3F80)
        XCTAssertEqual(BFloat16.bits(-2), 0xC000)
        XCTAssertEqual(BFloat16.bits(0), 0x0000)
        XCTAssertEqual(BFloat16.bits(-0.0), 0x8000)
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: the tie goes to the even 1.
        XCTAssertEqual(BFloat16.bits(1 + 0x1p-8), 0x3F80)
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up.
        XCTAssertEqual(BFloat16.bits(1 + 3 * 0x1p-8), 0x3F82)
        // Just above the halfway point: up.
        XCTAssertEqual(BFloat16.bits((1 + 0x1p-8).nextUp), 0x3F81)
        XCTAssertEqual(BFloat16.bits(.infinity), 0x7F80)
        XCTAssertEqual(BFloat16.bits(-.infinity), 0xFF80)
        XCTAssertEqual(BFloat16.bits(.greatestFiniteMagnitude), 0x7F80, "rounds past the largest bf16 to infinity")
        XCTAssertTrue(BFloat16.float(BFloat16.bits(.nan)).isNaN)
        XCTAssertTrue(BFloat16.float(BFloat16.bits(Float(bitPattern: 0x7F80_0001))).isNaN, "a NaN whose payload is in the low bits stays NaN")
        XCTAssertEqual(BFloat16.float(0x4049), 3.140625)
    }

    /// The SIMD loop, its scalar tail and the reference agree on random bit patterns and on
    /// every tie near 1; expand is exact.
    func testVectorRoundingMatchesTheReference() {
        var g = SeededBits(seed: 5)
        var values = (0..<100_003).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: g.next())) }
        values += (0..<4096).map { Float(bitPattern: 0x3F80_0000 | UInt32($0) << 4 | 0x8000 >> ($0 % 2 == 0 ? 0 : 1)) }
        values += [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, Float(bitPattern: 0x7F7F_7FFF), Float(bitPattern: 0x7F7F_8000)]
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { BFloat16.round(src.baseAddress!, $0.baseAddress!, values.count) }
        }
        var mismatches = 0
        for (i, x) in values.enumerated() {
            let want = referenceBits(x)
            if x.isNaN {
                if !BFloat16.float(out[i]).isNaN { mismatches += 1 }
            } else if out[i] != want || BFloat16.bits(x) != want {
                if mismatches < 5 { XCTFail("x = \(x) (0x\(String(x.bitPattern, radix: 16))): got 0x\(String(out[i], radix: 16)), expected 0x\(String(want, radix: 16))") }
                mismatches += 1
            }
        }
        XCTAssertEqual(mismatches, 0)
        var back = [Float](repeating: 0, count: out.count)
        out.withUnsafeBytes { src in back.withUnsafeMutableBufferPointer { BFloat16.expand(src.baseAddress!, $0.baseAddress!, out.count, add: false) } }
        for i in stride(from: 0, to: out.count, by: 7) where !back[i].isNaN {
            XCTAssertEqual(back[i].bitPattern, UInt32(out[i]) << 16)
        }
    }

    /// W ranks, buffers of gradients + 2 scalars: every rank ends with
    /// bf16(((bf16(x_0) + bf16(x_1)) + ...)) per gradient and the exact float32 scalar sums.
    func testCompressedAllReduceMatchesItsDefinition() throws {
        for world in 2...5 {
            for gradients in [1, 7, 16, 33, 1000, 65_539] {
                var g = SeededBits(seed: UInt64(world * 1000 + gradients))
                let inputs = (0..<world).map { r -> [Float] in
                    (0..<gradients).map { _ in Float(g.unit() * 2 - 1) * Float(1 << Int(g.next() % 12)) } + [Float(10 + r), Float(r) * 0.25]
                }
                let first = try reduce(inputs, world: world, gradients: gradients)
                let second = try reduce(inputs, world: world, gradients: gradients)
                var bad: String?
                for i in 0..<gradients {
                    var acc: Float = 0
                    for r in 0..<world { acc = r == 0 ? BFloat16.float(referenceBits(inputs[0][i])) : acc + BFloat16.float(referenceBits(inputs[r][i])) }
                    let want = BFloat16.float(referenceBits(acc))
                    if first[0][i].bitPattern != want.bitPattern { bad = "index \(i): got \(first[0][i]), expected \(want)"; break }
                }
                XCTAssertNil(bad, "W=\(world) n=\(gradients)")
                XCTAssertEqual(first[0][gradients], Float((0..<world).reduce(0) { $0 + 10 + $1 }), "the sample-count scalar is exact")
                XCTAssertEqual(first[0][gradients + 1], Float((0..<world).reduce(0) { $0 + $1 }) * 0.25)
                for r in 0..<world {
                    XCTAssertTrue(first[r].elementsEqual(first[0]) { $0.bitPattern == $1.bitPattern }, "W=\(world) n=\(gradients) rank \(r)")
                    XCTAssertTrue(second[r].elementsEqual(first[0]) { $0.bitPattern == $1.bitPattern }, "W=\(world) n=\(gradients) rank \(r): run to run")
                }
            }
        }
    }

    /// Half the gradient bytes cross the wire: the bf16 result differs from the float32 sum
    /// (the compression really happened), by at most bf16 rounding.
    func testCompressedDiffersFromFloat32OnlyByRounding() throws {
        let world = 3, n = 50_000
        var g = SeededBits(seed: 9)
        let inputs = (0..<world).map { _ in (0..<n).map { _ in Float(g.unit() * 2 - 1) } + [1] }
        let out = try reduce(inputs, world: world, gradients: n)[0]
        var differing = 0
        for i in 0..<n {
            let exact = (0..<world).reduce(0.0) { $0 + Double(inputs[$1][i]) }
            if Double(out[i]) != exact { differing += 1 }
            // Each of the W roundings of the inputs and the final one: at most 2^-9 relative each.
            let bound = (0..<world).reduce(0.0) { $0 + abs(Double(inputs[$1][i])) } * 0x1p-9 * Double(world + 1) + 1e-30
            XCTAssertLessThanOrEqual(abs(Double(out[i]) - exact), bound, "index \(i)")
        }
        XCTAssertGreaterThan(differing, n / 2)
    }

    private func reduce(_ inputs: [[Float]], world: Int, gradients: Int) throws -> [[Float]] {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: world, wire: .tcp, runID: UInt64.random(in: 1 ... .max))
        defer { rings.forEach { $0.close() } }
        for r in rings { r.compression = .bf16 }
        let outputs = Box([[Float]](repeating: [], count: world))
        let errors = Box([String]())
        XCTAssertTrue(runOnThreads(world, timeoutSeconds: 30) { rank in
            let buffer = AllReduceBuffer(gradientCount: gradients, scalarCount: inputs[rank].count - gradients)
            buffer.withUnsafeMutableBufferPointer { b in for i in 0..<b.count { b[i] = inputs[rank][i] } }
            do { try buffer.allReduce(with: rings[rank], step: 11) } catch {
                errors.update { $0.append("rank \(rank): \(error)") }
                return
            }
            let result = buffer.withUnsafeMutableBufferPointer { Array($0) }
            outputs.update { $0[rank] = result }
        })
        XCTAssertEqual(errors.get, [])
        let out = outputs.get
        guard out.allSatisfy({ $0.count == inputs[0].count }) else { throw XCTSkip("missing outputs (see the failures above)") }
        return out
    }
}
