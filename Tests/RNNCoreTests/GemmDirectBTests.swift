@testable import RNNCore
import XCTest

/// The in-place B path of `GemmEngine` (op(B) = B untransposed, whole 16-column panels, at
/// most MR = 6 rows of C: B is read where it lies instead of being packed). It must give the
/// same bits as the packed path (same fused multiply-adds in the same order) and match the
/// scalar reference; products that do not qualify must be unaffected.
final class GemmDirectBTests: XCTestCase {
    /// C after `body` ran on pointers to A, B and a copy of C.
    func computed(a: [Float], b: [Float], c: [Float],
                  _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        var out = c
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { o in body(a.baseAddress!, b.baseAddress!, o.baseAddress!) }
            }
        }
        return out
    }

    func product(
        _ engine: GemmEngine, transA: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float,
        a: [Float], lda: Int, b: [Float], ldb: Int, c: [Float], ldc: Int
    ) -> [Float] {
        computed(a: a, b: b, c: c) { a, b, c in
            engine.multiply(transA: transA, transB: false, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                            beta: beta, c: c, ldc: ldc)
        }
    }

    func reference(
        transA: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float,
        a: [Float], lda: Int, b: [Float], ldb: Int, c: [Float], ldc: Int
    ) -> [Float] {
        computed(a: a, b: b, c: c) { a, b, c in
            gemmReference(transA: transA, transB: false, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                          beta: beta, c: c, ldc: ldc)
        }
    }

    /// m = 1...7 (7 is past the in-place limit), n = 16, 32, 64, 80 with and without a padded
    /// ldb, k across one and two K slices (KC = 256), A in place and packed, transposed A,
    /// alpha/beta, one and two threads: bitwise equal with the in-place path on and off,
    /// within the GemmTests tolerance of the reference, C's padding untouched.
    func testInPlaceBIsBitwiseEqualToPackedB() {
        var rng = SeededGenerator(seed: 4242)
        let sentinel: Float = -777
        var checked = 0
        for m in 1...7 {
            for n in [16, 32, 64, 80] {
                for k in [1, 5, 33, GemmBlocking.kc + 64] {
                    for (transA, padB, beta) in [(false, 0, Float(0)), (true, 3, Float(1)), (true, 0, Float(0.5)), (false, 16, Float(1))] {
                        let lda = (transA ? m : k) + 1
                        let ldb = n + padB
                        let ldc = n + 2
                        let a = randomArray((transA ? k : m) * lda, &rng)
                        let b = randomArray(k * ldb, &rng)
                        var c = [Float](repeating: sentinel, count: m * ldc)
                        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = Float.random(in: -1...1, using: &rng) } }
                        let alpha: Float = beta == 0.5 ? -1.5 : 1
                        for threads in [1, 2] {
                            for directAColumns in [0, 256] {
                                let engine = GemmEngine(threads: threads)
                                engine.minFlopsPerThread = 1
                                engine.directAMaxColumns = directAColumns
                                let direct = product(engine, transA: transA, m: m, n: n, k: k, alpha: alpha, beta: beta,
                                                     a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
                                engine.directBMaxRows = 0
                                let packed = product(engine, transA: transA, m: m, n: n, k: k, alpha: alpha, beta: beta,
                                                     a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
                                let label = "m=\(m) n=\(n) k=\(k) tA=\(transA) ldb=\(ldb) beta=\(beta) threads=\(threads) directA=\(directAColumns)"
                                XCTAssertEqual(direct.map(\.bitPattern), packed.map(\.bitPattern), label)
                                let want = reference(transA: transA, m: m, n: n, k: k, alpha: alpha, beta: beta,
                                                     a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
                                let atol = 2.5e-7 * Double(k + 1) * 1.5 + 1e-7
                                for i in 0..<m {
                                    for j in 0..<ldc {
                                        let got = direct[i * ldc + j]
                                        if j >= n {
                                            XCTAssertEqual(got, sentinel, "padding of C changed, \(label)")
                                        } else {
                                            let w = Double(want[i * ldc + j])
                                            XCTAssertLessThanOrEqual(abs(Double(got) - w), atol + 1e-6 * abs(w), "C[\(i), \(j)], \(label)")
                                        }
                                    }
                                }
                                checked += 1
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(checked, 7 * 4 * 4 * 4 * 4)
    }
}
