import RNNCore
import XCTest

/// GemmEngine against the scalar `gemmReference` on odd sizes, all transposes, alpha/beta,
/// padded leading dimensions, the packed-weight path and threads.
///
/// Tolerance for each element of C: |got - ref| <= atol + rtol * |ref| with
/// atol = 2.5e-7 * (k + 1) * maxProduct (two float sums of k products of magnitude at most
/// maxProduct = max|a| * max|b|, each off by at most k * eps of the total) and rtol = 1e-6.
/// Operands are uniform in [-1, 1], so a wrong element is off by O(1) and fails clearly.
final class GemmTests: XCTestCase {
    struct Problem {
        var transA: Bool, transB: Bool
        var m: Int, n: Int, k: Int
        var alpha: Float = 1, beta: Float = 0
        var padA = 0, padB = 0, padC = 0
        var lda: Int { (transA ? m : k) + padA }
        var ldb: Int { (transB ? k : n) + padB }
        var ldc: Int { n + padC }
        var rowsA: Int { transA ? k : m }
        var rowsB: Int { transB ? n : k }
    }

    struct Operands {
        var a: [Float], b: [Float], c: [Float]
    }

    static let sentinel: Float = -777

    func makeOperands(_ p: Problem, seed: UInt64, nanC: Bool = false) -> Operands {
        var rng = SeededGenerator(seed: seed)
        let a = (0..<max(1, p.rowsA * p.lda)).map { _ in Float.random(in: -1...1, using: &rng) }
        let b = (0..<max(1, p.rowsB * p.ldb)).map { _ in Float.random(in: -1...1, using: &rng) }
        var c = [Float](repeating: GemmTests.sentinel, count: max(1, p.m * p.ldc))
        for i in 0..<p.m {
            for j in 0..<p.n { c[i * p.ldc + j] = nanC ? .nan : Float.random(in: -1...1, using: &rng) }
        }
        return Operands(a: a, b: b, c: c)
    }

    func reference(_ p: Problem, _ ops: Operands) -> [Float] {
        var c = ops.c
        ops.a.withUnsafeBufferPointer { a in
            ops.b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    gemmReference(transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k, alpha: p.alpha,
                                  a: a.baseAddress!, lda: p.lda, b: b.baseAddress!, ldb: p.ldb,
                                  beta: p.beta, c: c.baseAddress!, ldc: p.ldc)
                }
            }
        }
        return c
    }

    func run(_ engine: GemmEngine, _ p: Problem, _ ops: Operands, packed: PackedMatrix? = nil) -> [Float] {
        var c = ops.c
        ops.a.withUnsafeBufferPointer { a in
            ops.b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    if let packed {
                        packed.pack(transB: p.transB, k: p.k, n: p.n, b: b.baseAddress!, ldb: p.ldb)
                        engine.multiply(transA: p.transA, m: p.m, alpha: p.alpha, a: a.baseAddress!, lda: p.lda,
                                        packedB: packed, beta: p.beta, c: c.baseAddress!, ldc: p.ldc)
                    } else {
                        engine.multiply(transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k, alpha: p.alpha,
                                        a: a.baseAddress!, lda: p.lda, b: b.baseAddress!, ldb: p.ldb,
                                        beta: p.beta, c: c.baseAddress!, ldc: p.ldc)
                    }
                }
            }
        }
        return c
    }

    /// Asserts closeness inside the (m, n) window and untouched padding outside it; reports
    /// the first mismatch and the largest difference.
    func assertClose(_ got: [Float], _ want: [Float], _ p: Problem, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let atol = 2.5e-7 * Double(p.k + 1) * Double(max(abs(p.alpha), 1)) + 1e-7
        let rtol = 1e-6
        var worst = 0.0
        var firstBad: String?
        for i in 0..<p.m {
            for j in 0..<p.ldc {
                let g = got[i * p.ldc + j], w = want[i * p.ldc + j]
                if j >= p.n {
                    if g != GemmTests.sentinel, firstBad == nil { firstBad = "padding C[\(i), \(j)] changed to \(g)" }
                    continue
                }
                let d = abs(Double(g) - Double(w))
                if !(d <= atol + rtol * abs(Double(w))) {
                    if firstBad == nil { firstBad = "C[\(i), \(j)] = \(g), reference \(w)" }
                }
                if d > worst || d.isNaN { worst = d }
            }
        }
        if let firstBad {
            XCTFail("\(label): \(firstBad); largest difference \(worst) (atol \(atol), rtol \(rtol))", file: file, line: line)
        }
    }

    static let oddSizes = [1, 3, 7, 17, 33, 65, 129]

    /// Every combination of odd sizes in m, n, k, all four transposes, packed and in-place
    /// A, one seed per case.
    func testAllTransposesOnOddSizes() {
        let engine = GemmEngine()
        var seed: UInt64 = 1
        for transA in [false, true] {
            for transB in [false, true] {
                for m in Self.oddSizes {
                    for n in Self.oddSizes {
                        for k in Self.oddSizes {
                            let p = Problem(transA: transA, transB: transB, m: m, n: n, k: k)
                            let ops = makeOperands(p, seed: seed)
                            seed += 1
                            let want = reference(p, ops)
                            engine.directAMaxColumns = 256
                            assertClose(run(engine, p, ops), want, p, "tA=\(transA) tB=\(transB) m=\(m) n=\(n) k=\(k)")
                            engine.directAMaxColumns = 0
                            for rowsOuter in [0, Int.max] {
                                engine.rowsOuterMaxSlice = rowsOuter
                                assertClose(run(engine, p, ops), want, p, "packed A, rows outer \(rowsOuter > 0), tA=\(transA) tB=\(transB) m=\(m) n=\(n) k=\(k)")
                            }
                            engine.rowsOuterMaxSlice = GemmBlocking.rowsOuterMaxSlice
                        }
                    }
                }
            }
        }
    }

    /// Transposed A packed by rows (whole 6-row panels as overlapping 8-float vectors, the
    /// last K step of each slice by scalars): M at and around multiples of 6 and of MC (with
    /// the split tails 4+3, 4+4, 5+4+4, 6+...+4+4), K of 1, 2, 3 and past KC, unpadded A (so
    /// an over-read past the last row would be caught by the address sanitizer / show as
    /// garbage) and padded A.
    func testTransposedAPackingShapes() {
        let engine = GemmEngine()
        engine.directAMaxColumns = 0
        var seed: UInt64 = 9000
        for m in [6, 7, 8, 12, 13, 17, 19, 32, GemmBlocking.mc, GemmBlocking.mc + 5] {
            for k in [1, 2, 3, GemmBlocking.kc + 1] {
                for padA in [0, 3] {
                    let p = Problem(transA: true, transB: false, m: m, n: 19, k: k, padA: padA)
                    let ops = makeOperands(p, seed: seed)
                    seed += 1
                    assertClose(run(engine, p, ops), reference(p, ops), p, "tA m=\(m) k=\(k) padA=\(padA)")
                }
            }
        }
    }

    /// In-place A splits the last 7, 8 or 9 rows into two tiles (4+3, 4+4, 5+4): every M
    /// remainder, with and without a packed B.
    func testInPlaceARowSplits() {
        let engine = GemmEngine()
        engine.directAMaxColumns = 256
        var seed: UInt64 = 9500
        for m in [7, 8, 9, 13, 14, 15, 20, 32, 33] {
            for packed in [false, true] {
                let p = Problem(transA: false, transB: true, m: m, n: 37, k: 29, beta: 1, padA: 2, padC: 1)
                let ops = makeOperands(p, seed: seed)
                seed += 1
                assertClose(run(engine, p, ops, packed: packed ? PackedMatrix() : nil), reference(p, ops), p,
                            "direct A m=\(m) packedB=\(packed)")
            }
        }
    }

    /// Packed A splits the last 7, 8 or 9 rows of a row block into two panels (4+3, 4+4, 5+4)
    /// and the last 13 into three (5+4+4): every M remainder, transposed and row-major A, packed and unpacked B, beta 0 and 1,
    /// both packed-A loop orders, K below and past KC, N below, at and past 16 columns.
    func testPackedARowSplits() {
        let engine = GemmEngine()
        engine.directAMaxColumns = 0
        var seed: UInt64 = 9700
        for m in [7, 8, 9, 13, 14, 15, 19, 20, 25, 32, 33] {
            for transA in [false, true] {
                for packed in [false, true] {
                    for beta: Float in [0, 1] {
                        for (n, k) in [(16, 3), (21, 29), (48, GemmBlocking.kc + 3), (37, 8)] {
                            let p = Problem(transA: transA, transB: true, m: m, n: n, k: k, beta: beta,
                                            padA: Int(seed % 3), padC: 1)
                            let ops = makeOperands(p, seed: seed)
                            seed += 1
                            let want = reference(p, ops)
                            for rowsOuter in [0, Int.max] {
                                engine.rowsOuterMaxSlice = rowsOuter
                                assertClose(run(engine, p, ops, packed: packed ? PackedMatrix() : nil), want, p,
                                            "packed A m=\(m) n=\(n) k=\(k) tA=\(transA) packedB=\(packed) beta=\(beta) rowsOuter=\(rowsOuter > 0)")
                            }
                        }
                    }
                }
            }
        }
        // The lstm-med shape of one of 2 workers: 32 rows, packed W_hh^T, default engine.
        let p = Problem(transA: false, transB: true, m: 32, n: 1024, k: 256, beta: 1)
        let ops = makeOperands(p, seed: 9999)
        assertClose(run(GemmEngine(), p, ops, packed: PackedMatrix()), reference(p, ops), p, "lstm-med 32x1024x256")
    }

    /// A row block followed by only 1-3 rows is shortened by 6 so that the last block holds
    /// 7-9 rows and splits: M just past one and two MC blocks (small and default MC, MC = 6
    /// where no shortening is possible), packed and in-place A.
    func testRowBlocksAvoidShortLastBlock() {
        let engine = GemmEngine()
        var seed: UInt64 = 9800
        for (rowBlock, ms) in [(6, [7, 9, 13, 15]), (12, [13, 14, 15, 19, 25, 27]), (GemmBlocking.mc, [GemmBlocking.mc + 1, GemmBlocking.mc + 3, 2 * GemmBlocking.mc + 2])] {
            engine.rowBlock = rowBlock
            for m in ms {
                for transA in [false, true] {
                    for direct in [0, 1000] {
                        engine.directAMaxColumns = direct
                        let p = Problem(transA: transA, transB: false, m: m, n: 35, k: 40, beta: 1, padA: 1, padB: 2, padC: 1)
                        let ops = makeOperands(p, seed: seed)
                        seed += 1
                        assertClose(run(engine, p, ops, packed: PackedMatrix()), reference(p, ops), p,
                                    "MC=\(rowBlock) m=\(m) tA=\(transA) direct=\(direct)")
                    }
                }
            }
        }
    }

    /// Sizes past the cache blocks: K > KC (several K slices, beta applied once), M > MC,
    /// N > NC, with padded leading dimensions.
    func testSizesBeyondCacheBlocks() {
        let engine = GemmEngine()
        let shapes: [(Int, Int, Int)] = [
            (GemmBlocking.mc + 7, 40, GemmBlocking.kc + 45),
            (2 * GemmBlocking.mc + 1, 33, 2 * GemmBlocking.kc + 3),
            (5, GemmBlocking.nc + 21, 11),
            (13, 300, 3 * GemmBlocking.kc),
        ]
        var seed: UInt64 = 900
        for (m, n, k) in shapes {
            for transA in [false, true] {
                for transB in [false, true] {
                    for beta: Float in [0, 1, -0.5] {
                        let p = Problem(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.75, beta: beta,
                                        padA: 3, padB: 5, padC: 2)
                        let ops = makeOperands(p, seed: seed)
                        seed += 1
                        assertClose(run(engine, p, ops), reference(p, ops), p, "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) beta=\(beta)")
                    }
                }
            }
        }
    }

    /// Both loop orders (C-resident for M > K, B-slice-resident otherwise) with tiny blocks,
    /// so that every product crosses many MC, NC and KC boundaries and the packed-B budget.
    func testLoopOrdersWithSmallBlocks() {
        let engine = GemmEngine()
        engine.rowBlock = 12
        engine.columnBlock = 32
        engine.packedBBudget = 20 * GemmBlocking.kc
        var seed: UInt64 = 3000
        for (m, n, k) in [(601, 71, 2 * GemmBlocking.kc + 9), (61, 90, 3 * GemmBlocking.kc + 1), (97, 200, 20), (20, 97, 140)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    for usePacked in [false, true] {
                        for (direct, rowsOuter) in [(0, 0), (0, Int.max), (1000, 0)] {
                            engine.directAMaxColumns = direct
                            engine.rowsOuterMaxSlice = rowsOuter
                            let p = Problem(transA: transA, transB: transB, m: m, n: n, k: k, alpha: -0.5, beta: 0.5,
                                            padA: 2, padB: 1, padC: 3)
                            let ops = makeOperands(p, seed: seed)
                            seed += 1
                            assertClose(run(engine, p, ops, packed: usePacked ? PackedMatrix() : nil), reference(p, ops), p,
                                        "small blocks m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) packed=\(usePacked) direct=\(direct) rowsOuter=\(rowsOuter)")
                        }
                    }
                }
            }
        }
    }

    /// alpha and beta values (with padded leading dimensions) over several seeds; beta == 0
    /// must ignore NaN already in C.
    func testAlphaBetaAndLeadingDimensions() {
        let engine = GemmEngine()
        var seed: UInt64 = 5000
        for alpha: Float in [1, -1, 0.5, 2.25] {
            for beta: Float in [0, 1, 0.3, -2] {
                for (m, n, k) in [(7, 17, 33), (33, 7, 17), (65, 129, 3), (6, 16, 1)] {
                    for transA in [false, true] {
                        for transB in [false, true] {
                            let p = Problem(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
                                            padA: 1 + Int(seed % 5), padB: 2 + Int(seed % 3), padC: 3)
                            let ops = makeOperands(p, seed: seed)
                            seed += 1
                            assertClose(run(engine, p, ops), reference(p, ops), p, "alpha=\(alpha) beta=\(beta) m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB)")
                        }
                    }
                }
            }
        }
        for transB in [false, true] {
            let p = Problem(transA: false, transB: transB, m: 19, n: 35, k: 300, beta: 0, padC: 4)
            let ops = makeOperands(p, seed: 77, nanC: true)
            let got = run(engine, p, ops)
            XCTAssertFalse(got.contains { $0.isNaN }, "beta = 0 must overwrite NaN in C")
            assertClose(got, reference(p, ops), p, "NaN C, beta 0")
        }
    }

    /// k == 0 or alpha == 0 scales C by beta; empty products leave C alone.
    func testDegenerateSizes() {
        let engine = GemmEngine()
        for (k, alpha) in [(0, Float(1)), (5, Float(0))] {
            for beta: Float in [0, 1, 3] {
                let p = Problem(transA: false, transB: true, m: 9, n: 20, k: k, alpha: alpha, beta: beta, padA: 1, padB: 1, padC: 1)
                let ops = makeOperands(p, seed: 3)
                let got = run(engine, p, ops)
                for i in 0..<p.m {
                    for j in 0..<p.n {
                        XCTAssertEqual(got[i * p.ldc + j], beta * ops.c[i * p.ldc + j], "k=\(k) alpha=\(alpha) beta=\(beta)")
                    }
                    XCTAssertEqual(got[i * p.ldc + p.n], GemmTests.sentinel)
                }
            }
        }
        for (m, n) in [(0, 5), (5, 0)] {
            let p = Problem(transA: false, transB: false, m: m, n: n, k: 4, beta: 0, padB: 1, padC: 1)
            let ops = makeOperands(p, seed: 4)
            XCTAssertEqual(run(engine, p, ops), ops.c)
        }
    }

    /// The packed-weight path: one PackedMatrix serves many products with different A (the
    /// recurrent step), is re-packed with new values and new sizes, and matches the reference.
    func testPackedMatrixReuse() {
        let engine = GemmEngine()
        let packed = PackedMatrix()
        var seed: UInt64 = 7000
        for (m, n, k) in [(32, 256, 64), (64, 1024, 257), (3, 17, 7), (129, 65, 300), (1, 1, 1)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let p = Problem(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, beta: 1, padA: 2, padB: 3, padC: 1)
                    let ops = makeOperands(p, seed: seed)
                    seed += 1
                    assertClose(run(engine, p, ops, packed: packed), reference(p, ops), p, "packed m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB)")
                    XCTAssertEqual(packed.k, k)
                    XCTAssertEqual(packed.n, n)
                }
            }
        }
        // Same packed weights, T different inputs, as in a recurrent forward pass.
        let p = Problem(transA: false, transB: true, m: 33, n: 4 * 48, k: 48, beta: 1)
        var rng = SeededGenerator(seed: 99)
        let w = (0..<(p.n * p.k)).map { _ in Float.random(in: -1...1, using: &rng) }
        w.withUnsafeBufferPointer { packed.pack(transB: true, k: p.k, n: p.n, b: $0.baseAddress!, ldb: p.k) }
        for step in 0..<10 {
            var ops = makeOperands(p, seed: 100 + UInt64(step))
            ops.b = w
            var got = ops.c
            ops.a.withUnsafeBufferPointer { a in
                got.withUnsafeMutableBufferPointer { c in
                    engine.multiply(transA: false, m: p.m, a: a.baseAddress!, lda: p.lda, packedB: packed,
                                    beta: 1, c: c.baseAddress!, ldc: p.ldc)
                }
            }
            assertClose(got, reference(p, ops), p, "recurrent step \(step)")
        }
    }

    /// threads = 2 splits along M or N (and over packed panels) and agrees with one thread.
    func testTwoThreadsMatchOneThread() {
        let one = GemmEngine(threads: 1)
        let two = GemmEngine(threads: 2)
        two.minFlopsPerThread = 1  // force the split even for small test products
        var seed: UInt64 = 8000
        for (m, n, k) in [(300, 40, 70), (40, 300, 70), (7, 1000, 33), (1000, 7, 33), (64, 2048, 64), (13, 17, 300)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    for usePacked in [false, true] {
                        let p = Problem(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1.5, beta: 0.5, padA: 1, padB: 1, padC: 2)
                        let ops = makeOperands(p, seed: seed)
                        seed += 1
                        let a = run(one, p, ops, packed: usePacked ? PackedMatrix() : nil)
                        let b = run(two, p, ops, packed: usePacked ? PackedMatrix() : nil)
                        assertClose(b, a, p, "2 vs 1 thread m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) packed=\(usePacked)")
                        assertClose(b, reference(p, ops), p, "2 threads vs reference m=\(m) n=\(n) k=\(k)")
                    }
                }
            }
        }
    }

    /// Packing buffers grow to the largest product seen and are then reused: the same or a
    /// smaller product does not grow them again.
    func testPackingBuffersAreReused() {
        let engine = GemmEngine()
        let big = Problem(transA: false, transB: true, m: 200, n: 300, k: 280)
        let ops = makeOperands(big, seed: 1)
        _ = run(engine, big, ops)
        let warmed = engine.packingBufferBytes
        XCTAssertGreaterThan(warmed, 0)
        _ = run(engine, big, ops)
        let small = Problem(transA: true, transB: false, m: 50, n: 60, k: 70)
        _ = run(engine, small, makeOperands(small, seed: 2))
        XCTAssertEqual(engine.packingBufferBytes, warmed)

        let packed = PackedMatrix()
        _ = run(engine, big, ops, packed: packed)
        let capacity = packed.capacityBytes
        _ = run(engine, small, makeOperands(small, seed: 3), packed: packed)
        XCTAssertEqual(packed.capacityBytes, capacity)
    }
}
