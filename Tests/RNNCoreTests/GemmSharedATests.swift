@testable import RNNCore
import XCTest

/// `GemmEngine.multiply(transA:m:k:alpha:a:lda:_:_:beta:)`: two products of one op(A). Where
/// the packed blocks of op(A) are shared, each C must hold exactly the bits of a `multiply`
/// call of its own (same packing, same fused multiply-adds in the same order); everywhere it
/// must match the scalar reference and leave the padding of C alone.
final class GemmSharedATests: XCTestCase {
    struct Pair {
        var transA: Bool
        var m: Int, k: Int
        var n1: Int, n2: Int
        var transB1 = false, transB2 = false
        var alpha: Float = 1, beta: Float = 1
        var pad = 1
        var lda: Int { (transA ? m : k) + pad }
        func ldb(_ n: Int, _ transB: Bool) -> Int { (transB ? k : n) + pad + 1 }
    }

    static let sentinel: Float = -777

    /// C (m, n) with leading dimension n + 2; padding holds the sentinel.
    func randomC(m: Int, n: Int, _ rng: inout SeededGenerator) -> [Float] {
        var c = [Float](repeating: Self.sentinel, count: max(1, m * (n + 2)))
        for i in 0..<m {
            for j in 0..<n { c[i * (n + 2) + j] = Float.random(in: -1...1, using: &rng) }
        }
        return c
    }

    /// (C1, C2) after the pair call (`shared`) or after two single calls.
    func products(
        _ engine: GemmEngine, _ p: Pair, a: [Float], b1: [Float], b2: [Float], c1: [Float], c2: [Float], shared: Bool
    ) -> ([Float], [Float]) {
        var out1 = c1, out2 = c2
        let ldb1 = p.ldb(p.n1, p.transB1), ldb2 = p.ldb(p.n2, p.transB2)
        a.withUnsafeBufferPointer { a in
            b1.withUnsafeBufferPointer { b1 in
                b2.withUnsafeBufferPointer { b2 in
                    out1.withUnsafeMutableBufferPointer { o1 in
                        out2.withUnsafeMutableBufferPointer { o2 in
                            let a = a.baseAddress!, b1 = b1.baseAddress!, b2 = b2.baseAddress!
                            let o1 = o1.baseAddress!, o2 = o2.baseAddress!
                            if shared {
                                engine.multiply(transA: p.transA, m: p.m, k: p.k, alpha: p.alpha, a: a, lda: p.lda,
                                                GemmRightOperand(n: p.n1, b: b1, ldb: ldb1, transB: p.transB1, c: o1, ldc: p.n1 + 2),
                                                GemmRightOperand(n: p.n2, b: b2, ldb: ldb2, transB: p.transB2, c: o2, ldc: p.n2 + 2),
                                                beta: p.beta)
                            } else {
                                engine.multiply(transA: p.transA, transB: p.transB1, m: p.m, n: p.n1, k: p.k, alpha: p.alpha,
                                                a: a, lda: p.lda, b: b1, ldb: ldb1, beta: p.beta, c: o1, ldc: p.n1 + 2)
                                engine.multiply(transA: p.transA, transB: p.transB2, m: p.m, n: p.n2, k: p.k, alpha: p.alpha,
                                                a: a, lda: p.lda, b: b2, ldb: ldb2, beta: p.beta, c: o2, ldc: p.n2 + 2)
                            }
                        }
                    }
                }
            }
        }
        return (out1, out2)
    }

    func reference(_ p: Pair, a: [Float], b: [Float], n: Int, transB: Bool, c: [Float]) -> [Float] {
        var out = c
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { o in
                    gemmReference(transA: p.transA, transB: transB, m: p.m, n: n, k: p.k, alpha: p.alpha,
                                  a: a.baseAddress!, lda: p.lda, b: b.baseAddress!, ldb: p.ldb(n, transB),
                                  beta: p.beta, c: o.baseAddress!, ldc: n + 2)
                }
            }
        }
        return out
    }

    /// Runs one pair: bitwise against two single calls, close to the reference (tolerance of
    /// GemmTests), padding untouched. Returns the number of failed checks.
    @discardableResult
    func check(_ engine: GemmEngine, _ p: Pair, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) -> Int {
        var rng = SeededGenerator(seed: seed)
        let a = randomArray((p.transA ? p.k : p.m) * p.lda, &rng)
        let b1 = randomArray((p.transB1 ? p.n1 : p.k) * p.ldb(p.n1, p.transB1), &rng)
        let b2 = randomArray((p.transB2 ? p.n2 : p.k) * p.ldb(p.n2, p.transB2), &rng)
        let c1 = randomC(m: p.m, n: p.n1, &rng), c2 = randomC(m: p.m, n: p.n2, &rng)
        let (got1, got2) = products(engine, p, a: a, b1: b1, b2: b2, c1: c1, c2: c2, shared: true)
        let (single1, single2) = products(engine, p, a: a, b1: b1, b2: b2, c1: c1, c2: c2, shared: false)
        var failures = 0
        for (got, single, b, n, transB, c, name) in [(got1, single1, b1, p.n1, p.transB1, c1, "C1"),
                                                      (got2, single2, b2, p.n2, p.transB2, c2, "C2")] {
            let want = reference(p, a: a, b: b, n: n, transB: transB, c: c)
            var here = 0
            let atol = 2.5e-7 * Float(p.k + 1) * max(1, abs(p.alpha)) + 2.5e-7
            for i in 0..<p.m {
                for j in 0..<(n + 2) {
                    let idx = i * (n + 2) + j
                    if j >= n {
                        if got[idx] != Self.sentinel { here += 1 }
                        continue
                    }
                    if got[idx].bitPattern != single[idx].bitPattern { here += 1 }
                    if abs(got[idx] - want[idx]) > atol + 1e-6 * abs(want[idx]) { here += 1 }
                }
            }
            failures += here
            XCTAssertEqual(here, 0, "\(name) of \(p)", file: file, line: line)
        }
        return failures
    }

    /// Shapes that share the packed op(A): odd M around the panel splits, K below, at and
    /// past KC, N below and past 16 columns, transposed and plain B, beta 0 and 1, alpha,
    /// both packed-A loop orders, the MC block boundary.
    func testSharedProductsMatchSingleCallsBitwise() {
        let engine = GemmEngine()
        var seed: UInt64 = 12_000
        for m in [7, 9, 13, 32, GemmBlocking.mc + 3] {
            for (k, n1, n2) in [(m, 5, 16), (GemmBlocking.kc + 19, 64, 37), (2 * GemmBlocking.kc, 16, 48)] where m <= k {
                for (transB1, transB2) in [(false, false), (true, false), (false, true)] {
                    for beta: Float in [0, 1] {
                        for rowsOuter in [0, Int.max] {
                            engine.rowsOuterMaxSlice = rowsOuter
                            let p = Pair(transA: true, m: m, k: k, n1: n1, n2: n2, transB1: transB1, transB2: transB2,
                                         alpha: seed % 5 == 0 ? 0.5 : 1, beta: beta, pad: Int(seed % 3))
                            XCTAssertTrue(engine.sharesPackedA(transA: true, m: m, k: k, alpha: p.alpha, n1, n2), "\(p)")
                            check(engine, p, seed: seed)
                            seed += 1
                        }
                    }
                }
            }
        }
    }

    /// The lstm-med weight gradients of one of two workers: A = dGates^T (1024 x 1568),
    /// dW_ih (n = 64) and dW_hh (n = 256), default engine.
    func testLSTMWeightGradientShape() {
        let engine = GemmEngine()
        let p = Pair(transA: true, m: 1024, k: 1568, n1: 64, n2: 256, pad: 0)
        XCTAssertTrue(engine.sharesPackedA(transA: true, m: p.m, k: p.k, alpha: 1, p.n1, p.n2))
        check(engine, p, seed: 12_500)
    }

    /// Pairs that do not qualify run as two single calls and are still right: untransposed A,
    /// M <= MR, M > K, N past the column block, a product big enough to split across threads.
    func testPairsThatDoNotShareFallBack() {
        let engine = GemmEngine()
        engine.columnBlock = 32
        let split = GemmEngine(threads: 2)
        split.minFlopsPerThread = 1000
        let cases: [(GemmEngine, Pair)] = [
            (engine, Pair(transA: false, m: 20, k: 40, n1: 17, n2: 16)),
            (engine, Pair(transA: true, m: 6, k: 40, n1: 16, n2: 32)),
            (engine, Pair(transA: true, m: 50, k: 40, n1: 16, n2: 32)),
            (engine, Pair(transA: true, m: 20, k: 40, n1: 16, n2: 33)),
            (split, Pair(transA: true, m: 30, k: 70, n1: 24, n2: 40)),
        ]
        for (i, (e, p)) in cases.enumerated() {
            XCTAssertFalse(e.sharesPackedA(transA: p.transA, m: p.m, k: p.k, alpha: p.alpha, p.n1, p.n2), "\(p)")
            check(e, p, seed: 12_600 + UInt64(i))
        }
    }

    /// The shared path does not allocate once its buffers have grown, like single calls.
    func testSharedPathReusesPackingBuffers() {
        let engine = GemmEngine()
        let p = Pair(transA: true, m: 40, k: 300, n1: 24, n2: 64)
        check(engine, p, seed: 12_700)
        let bytes = engine.packingBufferBytes
        check(engine, p, seed: 12_701)
        XCTAssertEqual(engine.packingBufferBytes, bytes)
    }
}
