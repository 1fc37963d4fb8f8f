// Halving-doubling and recursive doubling (W >= 3): exact sums for every W from 3 to 8 (powers
// of two and not), TCP and inproc, sizes that leave empty segments; every rank the same bits on
// random floats, and the same bits run after run; the automatic choice by size; steps whose
// algorithm changes from one to the next (frames of the next step arrive early and wait).
import Foundation
import XCTest
@testable import RNNDistributed
import RNNTransport

final class HalvingDoublingTests: XCTestCase {
    let sizes = [1, 2, 3, 5, 15, 16, 17, 31, 100, 1000, 4097, 65_537, 262_147]

    /// The test of AllReduceTests (integer contributions: exact sums, equal bits on every rank).
    func exact(_ world: Int, _ wire: Wire, _ algorithm: AllReduceAlgorithm, sizes: [Int]? = nil) throws {
        // Failures are recorded against the running test (XCTest reports to the current case).
        try AllReduceTests(name: "checkExactSums", testClosure: { _ in }).checkExactSums(world: world, wire: wire, algorithm: algorithm, sizes: sizes ?? self.sizes)
    }

    func testHalvingDoublingExactForThreeToEightRanksTCP() throws {
        for w in 3...8 { try exact(w, .tcp, .halvingDoubling) }
    }
    func testRecursiveDoublingExactForThreeToEightRanksTCP() throws {
        for w in 3...8 { try exact(w, .tcp, .recursiveDoubling, sizes: Array(sizes.prefix(11))) }
    }
    func testBothExactInproc() throws {
        for w in [3, 4, 6] {
            try exact(w, .inproc, .halvingDoubling)
            try exact(w, .inproc, .recursiveDoubling, sizes: Array(sizes.prefix(11)))
        }
    }
    /// Automatic over sizes that cross both crossovers: consecutive steps run different
    /// algorithms, so a fast rank's frames of the next step reach ranks still in this one.
    func testAutomaticAcrossCrossoversTCP() throws {
        let mixed = [1, 300_000, 3, 5000, 70_000, 2, 1_000_003, 17, 9000, 65_536]
        for w in [3, 4, 5, 8] { try exact(w, .tcp, .automatic, sizes: mixed) }
    }

    func testAutomaticChoiceBySize() throws {
        let ctx = try ZMQContext()
        let rd = AllReduceCrossover.recursiveDoublingMaxBytes / 4, hd = AllReduceCrossover.halvingDoublingMaxBytes / 4
        for world in [3, 4, 8] {
            let rings = try makeRing(ctx, world: world, wire: .inproc, runID: UInt64(100 + world))
            let r = rings[0]
            XCTAssertEqual(r.chosenAlgorithm(count: 1), .recursiveDoubling)
            XCTAssertEqual(r.chosenAlgorithm(count: rd), .recursiveDoubling)
            XCTAssertEqual(r.chosenAlgorithm(count: rd + 1), hd > rd ? .halvingDoubling : .ring)
            XCTAssertEqual(r.chosenAlgorithm(count: max(rd + 1, hd)), hd > rd ? .halvingDoubling : .ring)
            XCTAssertEqual(r.chosenAlgorithm(count: hd + 1), .ring)
            r.halvingDoublingMaxBytes = 4 * (rd + 100)
            XCTAssertEqual(r.chosenAlgorithm(count: rd + 50), .halvingDoubling, "between the two crossovers")
            r.halvingDoublingMaxBytes = AllReduceCrossover.halvingDoublingMaxBytes
            r.algorithm = .halvingDoubling
            XCTAssertEqual(r.chosenAlgorithm(count: 10_000_000), .halvingDoubling, "an explicit choice holds at every size")
            rings.forEach { $0.close() }
        }
        let two = try makeRing(ctx, world: 2, wire: .inproc, runID: 99)
        two[0].algorithm = .halvingDoubling
        XCTAssertEqual(two[0].chosenAlgorithm(count: 10), .exchange, "W = 2 is one exchange whatever the choice")
        XCTAssertEqual(two[1].chosenAlgorithm(count: 10_000_000), .exchange)
        two.forEach { $0.close() }
    }

    /// Random floats of mixed magnitudes (summation order matters): every rank holds the same
    /// bits, a second run with the same inputs gives the same bits again, and the sums are
    /// right to float accuracy.
    func testSameBitsOnEveryRankAndRunToRun() throws {
        for world in [3, 4, 5, 7, 8] {
            for algorithm in [AllReduceAlgorithm.halvingDoubling, .recursiveDoubling] {
                let n = 10_007
                var g = SeededBits(seed: UInt64(world * 31 + (algorithm == .halvingDoubling ? 1 : 2)))
                let inputs = (0..<world).map { _ in
                    (0..<n).map { _ in Float(g.unit() * 2 - 1) * Float(1 << Int(g.next() % 21)) }
                }
                let first = try reduce(inputs, world: world, algorithm: algorithm)
                let second = try reduce(inputs, world: world, algorithm: algorithm)
                for r in 0..<world {
                    XCTAssertTrue(first[r].elementsEqual(first[0]) { $0.bitPattern == $1.bitPattern }, "W=\(world) \(algorithm) rank \(r)")
                    XCTAssertTrue(second[r].elementsEqual(first[0]) { $0.bitPattern == $1.bitPattern },
                                  "W=\(world) \(algorithm) rank \(r): another run gave other bits")
                }
                var orderMatters = false
                for i in 0..<n {
                    let exact = (0..<world).reduce(0.0) { $0 + Double(inputs[$1][i]) }
                    XCTAssertEqual(Double(first[0][i]), exact, accuracy: 1e-6 * Double(1 << 21) * Double(world))
                    let rankOrder = (1..<world).reduce(inputs[0][i]) { $0 + inputs[$1][i] }
                    if rankOrder.bitPattern != first[0][i].bitPattern { orderMatters = true }
                }
                XCTAssertTrue(orderMatters || world == 3, "W=\(world): the inputs should expose the summation order")
            }
        }
    }

    private func reduce(_ inputs: [[Float]], world: Int, algorithm: AllReduceAlgorithm) throws -> [[Float]] {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: world, wire: .tcp, runID: UInt64.random(in: 1 ... .max))
        defer { rings.forEach { $0.close() } }
        for r in rings { r.algorithm = algorithm }
        let outputs = Box([[Float]](repeating: [], count: world))
        let errors = Box([String]())
        XCTAssertTrue(runOnThreads(world, timeoutSeconds: 30) { rank in
            var buf = inputs[rank]
            do { try rings[rank].allReduceSum(&buf, step: 3) } catch {
                errors.update { $0.append("rank \(rank): \(error)") }
                return
            }
            outputs.update { $0[rank] = buf }
        })
        XCTAssertEqual(errors.get, [])
        let out = outputs.get
        guard out.allSatisfy({ $0.count == inputs[0].count }) else { throw XCTSkip("missing outputs (see the failures above)") }
        return out
    }

    /// A rank that stays silent: its partners time out naming a rank, nobody hangs.
    func testSilentRankTimesOut() throws {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: 5, wire: .tcp, runID: 77, timeoutMilliseconds: 400)
        defer { rings.forEach { $0.close(discardPending: true) } }
        for r in rings { r.algorithm = .halvingDoubling }
        let errors = Box([Int: String]())
        let started = Date()
        XCTAssertTrue(runOnThreads(4, timeoutSeconds: 20) { rank in
            var buf = [Float](repeating: 1, count: 1000)
            do { try rings[rank].allReduceSum(&buf, step: 0) } catch { errors.update { $0[rank] = "\(error)" } }
        })
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertEqual(errors.get.count, 4, "every rank waits, directly or not, for the silent rank 4: \(errors.get)")
        XCTAssertTrue(errors.get.values.allSatisfy { $0.contains("timed out") && $0.contains("waiting for rank") }, "\(errors.get)")
    }
}

/// splitmix64: reproducible test inputs.
struct SeededBits {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
