// Hierarchical all-reduce: ranks in host groups (given explicitly here, as the ring derives them
// from the TCP endpoints' hosts in a real run) sum into their group's leader over local
// endpoints, the leaders all-reduce, the leaders copy back. Uneven groups (3+1, 2+2+1, groups
// that interleave ranks, a group of one among larger ones), inproc and TCP with ipc inside a
// group: exact sums, the same bits on every rank and run after run, and only the leaders
// send to the announced (TCP) endpoints.
import Foundation
import XCTest
@testable import RNNDistributed
import RNNTransport

final class HierarchicalAllReduceTests: XCTestCase {
    let sizes = [1, 2, 3, 17, 100, 4097, 65_537, 262_147, 1_000_003]

    /// A connected world whose ranks belong to `groups`.
    func makeGroups(_ ctx: ZMQContext, _ groups: [Int], wire: Wire, runID: UInt64) throws -> [RingAllReduce] {
        let rings = try groups.indices.map { r in
            try RingAllReduce(context: ctx, rank: r, world: groups.count, runID: runID,
                              bindEndpoint: wire == .tcp ? "tcp://127.0.0.1:*" : "inproc://hier-\(runID)-\(r)",
                              timeoutMilliseconds: 10_000)
        }
        let endpoints = rings.map(\.localEndpoint)
        for r in rings { try r.connect(peerEndpoints: endpoints, hostGroups: groups) }
        return rings
    }

    /// Runs `inputs[rank]` through the all-reduce step after step; returns [rank][step] outputs.
    func run(_ rings: [RingAllReduce], _ inputs: @escaping @Sendable (Int, Int) -> [Float], steps: Int,
             algorithm: AllReduceAlgorithm = .automatic) -> [[[Float]]] {
        for r in rings { r.algorithm = algorithm; r.subChunkBytes = 256 * 1024 }
        let world = rings.count
        let outputs = Box([[[Float]]](repeating: [], count: world))
        let errors = Box([String]())
        let finished = runOnThreads(world, timeoutSeconds: 120) { rank in
            for k in 0..<steps {
                var buf = inputs(rank, k)
                do { try rings[rank].allReduceSum(&buf, step: UInt64(k)) } catch {
                    errors.update { $0.append("rank \(rank) step \(k): \(error)") }
                    return
                }
                outputs.update { $0[rank].append(buf) }
            }
        }
        XCTAssertTrue(finished, "ranks did not finish")
        XCTAssertEqual(errors.get, [])
        return outputs.get
    }

    func checkExact(_ groups: [Int], wire: Wire, algorithm: AllReduceAlgorithm = .automatic) throws {
        let ctx = try ZMQContext()
        let rings = try makeGroups(ctx, groups, wire: wire, runID: UInt64.random(in: 1 ... .max))
        defer { rings.forEach { $0.close() } }
        XCTAssertNotNil(rings[0].activeHierarchy, "groups \(groups) take the hierarchical path")
        let sizes = self.sizes
        let out = run(rings, { rank, k in (0..<sizes[k]).map { contribution(rank, $0) } }, steps: sizes.count, algorithm: algorithm)
        let world = groups.count
        for (k, n) in sizes.enumerated() {
            guard out.allSatisfy({ $0.count > k }) else { return XCTFail("missing results for n=\(n)") }
            let ref = out[0][k]
            var bad: String?
            for i in 0..<n {
                let exact = (0..<world).reduce(0) { $0 + Int(contribution($1, i)) }
                if ref[i] != Float(exact) { bad = "index \(i): \(ref[i]) instead of \(exact)"; break }
            }
            XCTAssertNil(bad, "groups \(groups) \(wire) \(algorithm) n=\(n)")
            for r in 1..<world {
                XCTAssertTrue(out[r][k].elementsEqual(ref) { $0.bitPattern == $1.bitPattern }, "rank \(r) differs (groups \(groups) n=\(n))")
            }
        }
        // Only leaders (the lowest rank of each group) send to announced endpoints; members send
        // only locally, each one copy of every buffer.
        let total = sizes.reduce(0, +) * 4
        let frames = sizes.reduce(0) { $0 + max(1, ($1 * 4 + 256 * 1024 - 1) / (256 * 1024)) }
        for r in 0..<world {
            let leader = groups.firstIndex(of: groups[r])!
            if r != leader {
                XCTAssertEqual(rings[r].endpointBytesSent, 0, "rank \(r) is not a leader (groups \(groups))")
                XCTAssertEqual(rings[r].localBytesSent, total + frames * FrameHeader.size, "rank \(r): one copy of each buffer to its leader")
            } else {
                XCTAssertGreaterThan(rings[r].endpointBytesSent, total / 2, "leader \(r) takes part in the leaders' all-reduce")
            }
        }
        XCTAssertEqual(rings.map { $0.rejects.total }, Array(repeating: 0, count: world))
    }

    func testThreePlusOneInproc() throws { try checkExact([0, 0, 0, 1], wire: .inproc) }
    func testTwoPlusTwoPlusOneInproc() throws { try checkExact([0, 0, 1, 1, 2], wire: .inproc) }
    func testInterleavedGroupsRingAndHalvingDoublingInproc() throws {
        try checkExact([1, 0, 1, 0, 2, 2, 0], wire: .inproc, algorithm: .ring)
        try checkExact([1, 0, 1, 0, 2, 2, 0], wire: .inproc, algorithm: .halvingDoubling)
        try checkExact([0, 1, 2, 3, 3], wire: .inproc, algorithm: .recursiveDoubling)
    }
    /// TCP between leaders, ipc inside a group.
    func testThreePlusOneAndTwoPlusTwoPlusOneTCPWithIPCInside() throws {
        try checkExact([0, 0, 0, 1], wire: .tcp)
        try checkExact([0, 0, 1, 1, 2], wire: .tcp)
    }

    /// Random floats of mixed magnitudes: every rank holds the same bits, a second run gives
    /// the same bits, and the sum is the leaders' flat sum of the group sums (each group summed
    /// leader first, then its members in rank order).
    func testSameBitsEveryRankRunToRunAndTheDocumentedOrder() throws {
        for groups in [[0, 0, 0, 1], [0, 0, 1, 1, 2]] {
            let world = groups.count, n = 10_007
            var g = SeededBits(seed: UInt64(world * 977))
            let inputs = (0..<world).map { _ in (0..<n).map { _ in Float(g.unit() * 2 - 1) * Float(1 << Int(g.next() % 21)) } }
            var results: [[[Float]]] = []
            for _ in 0..<2 {
                let ctx = try ZMQContext()
                let rings = try makeGroups(ctx, groups, wire: .tcp, runID: UInt64.random(in: 1 ... .max))
                results.append(run(rings, { r, _ in inputs[r] }, steps: 1).map { $0.first ?? [] })
                rings.forEach { $0.close() }
            }
            for r in 0..<world {
                XCTAssertTrue(results[0][r].elementsEqual(results[0][0]) { $0.bitPattern == $1.bitPattern }, "groups \(groups) rank \(r)")
                XCTAssertTrue(results[1][r].elementsEqual(results[0][0]) { $0.bitPattern == $1.bitPattern }, "groups \(groups) rank \(r): run to run")
            }
            // The leaders (W = 2 of them here, or 3 with recursive doubling) sum their group
            // sums; with 2 leaders that is a + b, with 3 the flat algorithm's order. Check 2.
            if Set(groups).count == 2 {
                var mismatch = 0, orderMatters = false
                for i in 0..<n {
                    let a = (1..<3).reduce(inputs[0][i]) { $0 + inputs[$1][i] }
                    let expected = a + inputs[3][i]
                    if expected.bitPattern != results[0][0][i].bitPattern { mismatch += 1 }
                    let flat = (1..<4).reduce(inputs[0][i]) { $0 + inputs[$1][i] }
                    if inputs[3][i] + inputs[0][i] + inputs[1][i] + inputs[2][i] != flat { orderMatters = true }
                }
                XCTAssertEqual(mismatch, 0, "3+1: (x0 + x1 + x2) + x3 exactly")
                XCTAssertTrue(orderMatters, "the inputs expose the summation order")
            }
        }
    }

    /// --compress bf16 on the hierarchical path: the local sums stay float32, the leaders
    /// exchange bfloat16; every rank ends with the same bits, run after run, and each value is
    /// the exact sum rounded through bf16 (inputs exact in bf16, sums small integers).
    func testBF16AmongLeadersSameBitsEverywhere() throws {
        let groups = [0, 0, 0, 1, 1], n = 70_001
        var runs: [[[Float]]] = []
        for _ in 0..<2 {
            let ctx = try ZMQContext()
            let rings = try makeGroups(ctx, groups, wire: .tcp, runID: UInt64.random(in: 1 ... .max))
            for r in rings { r.compression = .bf16 }
            let world = groups.count
            let outputs = Box([[Float]](repeating: [], count: world))
            let errors = Box([String]())
            XCTAssertTrue(runOnThreads(world, timeoutSeconds: 60) { rank in
                var buf = (0..<n).map { Float(($0 &* 3 &+ rank) % 17) - 8 }
                do {
                    try buf.withUnsafeMutableBufferPointer { try rings[rank].allReduceSum($0, step: 1, compressedCount: n - 1) }
                } catch { errors.update { $0.append("rank \(rank): \(error)") } }
                outputs.update { $0[rank] = buf }
            })
            XCTAssertEqual(errors.get, [])
            rings.forEach { $0.close() }
            runs.append(outputs.get)
        }
        for run in runs {
            for r in 0..<groups.count { XCTAssertTrue(run[r].elementsEqual(runs[0][0]) { $0.bitPattern == $1.bitPattern }, "rank \(r)") }
        }
        for i in [0, 1, 2, 16, 1000, n - 2, n - 1] {
            let exact = (0..<groups.count).reduce(Float(0)) { $0 + Float(($1 + i * 3) % 17) - 8 }
            XCTAssertEqual(runs[0][0][i], exact, "index \(i)")
        }
    }

    /// A member that stays silent: its leader times out naming it, the other host's ranks time
    /// out too; nobody hangs.
    func testSilentMemberTimesOut() throws {
        let ctx = try ZMQContext()
        let groups = [0, 0, 1, 1]
        let rings = try groups.indices.map { r in
            try RingAllReduce(context: ctx, rank: r, world: 4, runID: 91, bindEndpoint: "tcp://127.0.0.1:*", timeoutMilliseconds: 400)
        }
        let endpoints = rings.map(\.localEndpoint)
        for r in rings { try r.connect(peerEndpoints: endpoints, hostGroups: groups) }
        defer { rings.forEach { $0.close(discardPending: true) } }
        let errors = Box([Int: String]())
        let started = Date()
        XCTAssertTrue(runOnThreads(4, timeoutSeconds: 20) { rank in
            guard rank != 1 else { return }
            var buf = [Float](repeating: 1, count: 1000)
            do { try rings[rank].allReduceSum(&buf, step: 0) } catch { errors.update { $0[rank] = "\(error)" } }
        })
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertEqual(errors.get.keys.sorted(), [0, 2, 3], "\(errors.get)")
        XCTAssertTrue(errors.get[0]?.contains("waiting for rank 1") == true, "the leader names its silent member: \(errors.get)")
        XCTAssertTrue(errors.get.values.allSatisfy { $0.contains("timed out") }, "\(errors.get)")
    }

    /// Endpoints alone: TCP ranks on different hosts are different groups; every non-TCP
    /// endpoint one group; one group or all groups of one means the flat path.
    func testGroupsFromEndpoints() throws {
        XCTAssertEqual(RingAllReduce.hostGroups(of: ["tcp://10.0.0.1:5", "tcp://10.0.0.2:5", "tcp://10.0.0.1:6", "tcp://[::1]:7", "inproc://a", "ipc:///tmp/x"]),
                       [0, 1, 0, 2, 3, 3])
        let ctx = try ZMQContext()
        let flat = try makeGroups(ctx, [0, 0, 0], wire: .inproc, runID: 5)
        XCTAssertNil(flat[0].activeHierarchy, "one host: flat")
        flat.forEach { $0.close() }
        let single = try makeGroups(ctx, [0, 1, 2], wire: .inproc, runID: 6)
        XCTAssertNil(single[0].activeHierarchy, "one rank per host: flat")
        single.forEach { $0.close() }
        let mixed = try makeGroups(ctx, [0, 1, 1], wire: .inproc, runID: 7)
        XCTAssertNotNil(mixed[2].activeHierarchy)
        mixed[2].hierarchical = false
        XCTAssertNil(mixed[2].activeHierarchy, "switched off")
        mixed.forEach { $0.close() }
    }
}
