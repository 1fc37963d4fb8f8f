import Foundation
import XCTest
@testable import RNNDistributed
import RNNTransport

/// Results shared between rank threads.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func update(_ f: (inout T) -> Void) { lock.lock(); f(&value); lock.unlock() }
    var get: T { lock.lock(); defer { lock.unlock() }; return value }
}

enum Wire { case tcp, inproc }

/// Runs `body(rank)` on `count` threads (real threads: ranks block in receives, so a
/// width-limited pool could starve them). Returns false if they did not all finish in time.
func runOnThreads(_ count: Int, timeoutSeconds: Double, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    for r in 0..<count {
        group.enter()
        let t = Thread { body(r); group.leave() }
        t.stackSize = 1 << 20
        t.start()
    }
    return group.wait(timeout: .now() + timeoutSeconds) == .success
}

/// Builds a connected ring of `world` ranks in one context.
func makeRing(_ ctx: ZMQContext, world: Int, wire: Wire, runID: UInt64, timeoutMilliseconds: Int = 5000) throws -> [RingAllReduce] {
    let rings = try (0..<world).map { r in
        try RingAllReduce(context: ctx, rank: r, world: world, runID: runID,
                          bindEndpoint: wire == .tcp ? "tcp://127.0.0.1:*" : "inproc://ring-\(runID)-\(r)",
                          timeoutMilliseconds: timeoutMilliseconds)
    }
    let endpoints = rings.map(\.localEndpoint)
    for r in rings { try r.connect(peerEndpoints: endpoints) }
    return rings
}

/// Integer-valued contribution of `rank` at index `i`: sums over ranks are exact in float32.
@inline(__always) func contribution(_ rank: Int, _ i: Int) -> Float { Float((i &* 7 &+ rank &* 13) % 2001 - 1000) }

final class AllReduceTests: XCTestCase {
    let sizes = [1, 2, 3, 5, 15, 16, 17, 31, 100, 1000, 4097, 65_537, 262_147, 1_000_003]

    func checkExactSums(world: Int, wire: Wire, algorithm: AllReduceAlgorithm, sizes: [Int], subChunkBytes: Int = 256 * 1024,
                         zeroCopy: Bool = true, ioThreads: Int = 1, copyFrameBytes: Int? = nil,
                         sendWindow: Int? = nil) throws {
        let ctx = try ZMQContext(ioThreads: ioThreads)
        let runID = UInt64.random(in: 1 ... .max)
        let rings = try makeRing(ctx, world: world, wire: wire, runID: runID)
        for r in rings {
            r.algorithm = algorithm; r.subChunkBytes = subChunkBytes; r.zeroCopy = zeroCopy
            if let c = copyFrameBytes { r.copyFrameBytes = c }
            if let w = sendWindow { r.sendWindow = w }
        }
        let outputs = Box([[[Float]]](repeating: [], count: world))
        let errors = Box([String]())
        let finished = runOnThreads(world, timeoutSeconds: 60) { rank in
            let ring = rings[rank]
            for (k, n) in sizes.enumerated() {
                var buf = (0..<n).map { contribution(rank, $0) }
                do {
                    try ring.allReduceSum(&buf, step: UInt64(k))
                } catch {
                    errors.update { $0.append("rank \(rank) n \(n): \(error)") }
                    return
                }
                outputs.update { $0[rank].append(buf) }
            }
        }
        XCTAssertTrue(finished, "ranks did not finish (W=\(world) \(wire) \(algorithm))")
        XCTAssertEqual(errors.get, [])
        let out = outputs.get
        for (k, n) in sizes.enumerated() {
            guard out.allSatisfy({ $0.count > k }) else { return XCTFail("missing results for n=\(n)") }
            let ref = out[0][k]
            XCTAssertEqual(ref.count, n)
            var firstBad: String?
            for i in 0..<n {
                var exact = 0
                for r in 0..<world { exact += Int(contribution(r, i)) }
                if ref[i] != Float(exact) { firstBad = "index \(i): got \(ref[i]), expected \(exact)"; break }
            }
            XCTAssertNil(firstBad, "W=\(world) \(wire) \(algorithm) n=\(n)")
            for r in 1..<world {
                XCTAssertTrue(out[r][k].withUnsafeBytes { a in ref.withUnsafeBytes { b in a.elementsEqual(b) } },
                              "rank \(r) differs bitwise from rank 0 (W=\(world) n=\(n))")
            }
        }
        XCTAssertEqual(rings.map { $0.rejects.total }, Array(repeating: 0, count: world))
    }

    func testWorldOfOneIsNoOp() throws {
        let ctx = try ZMQContext()
        let ring = try RingAllReduce(context: ctx, rank: 0, world: 1, runID: 1, bindEndpoint: "inproc://solo")
        try ring.connect(peerEndpoints: [ring.localEndpoint])
        var x: [Float] = [1.5, -2, 3]
        try ring.allReduceSum(&x, step: 0)
        XCTAssertEqual(x, [1.5, -2, 3])
    }

    func testTwoRanksTCP() throws { try checkExactSums(world: 2, wire: .tcp, algorithm: .automatic, sizes: sizes) }
    func testTwoRanksRingTCP() throws { try checkExactSums(world: 2, wire: .tcp, algorithm: .ring, sizes: sizes, subChunkBytes: 64 * 1024) }
    func testThreeRanksTCP() throws { try checkExactSums(world: 3, wire: .tcp, algorithm: .automatic, sizes: sizes) }
    func testThreeRanksTwoIOThreadsTCP() throws {
        try checkExactSums(world: 3, wire: .tcp, algorithm: .automatic, sizes: sizes, ioThreads: 2)
    }
    func testTwoRanksCopyingSendsTCP() throws {
        try checkExactSums(world: 2, wire: .tcp, algorithm: .automatic, sizes: sizes, zeroCopy: false)
    }
    /// Every frame two-part and zero-copy (even the tiny ones), then every frame single-part
    /// with a copied payload (even the 256 KiB ones).
    func testTwoRanksAllZeroCopyOrAllSinglePartFramesTCP() throws {
        try checkExactSums(world: 2, wire: .tcp, algorithm: .automatic, sizes: sizes, copyFrameBytes: -1)
        try checkExactSums(world: 3, wire: .tcp, algorithm: .ring, sizes: sizes, copyFrameBytes: -1)
        try checkExactSums(world: 2, wire: .tcp, algorithm: .automatic, sizes: sizes, copyFrameBytes: .max)
        try checkExactSums(world: 3, wire: .tcp, algorithm: .ring, sizes: sizes, copyFrameBytes: .max)
    }
    /// Send windows other than the default 1: W = 2 exchange with every sub-chunk sent at
    /// once and with a window of 3; W = 3 ring with a full-chunk window (0) and a window of 2.
    func testSendWindowsTCP() throws {
        try checkExactSums(world: 2, wire: .tcp, algorithm: .automatic, sizes: sizes, subChunkBytes: 64 * 1024, sendWindow: 0)
        try checkExactSums(world: 2, wire: .tcp, algorithm: .automatic, sizes: sizes, subChunkBytes: 64 * 1024, sendWindow: 3)
        try checkExactSums(world: 3, wire: .tcp, algorithm: .ring, sizes: sizes, subChunkBytes: 64 * 1024, sendWindow: 0)
        try checkExactSums(world: 3, wire: .tcp, algorithm: .ring, sizes: sizes, subChunkBytes: 64 * 1024, sendWindow: 2)
    }
    func testFourRanksTCP() throws { try checkExactSums(world: 4, wire: .tcp, algorithm: .automatic, sizes: sizes, subChunkBytes: 100 * 1024) }
    func testThreeRanksExchangeInproc() throws { try checkExactSums(world: 3, wire: .inproc, algorithm: .exchange, sizes: Array(sizes.prefix(12))) }
    func testFourRanksRingInproc() throws { try checkExactSums(world: 4, wire: .inproc, algorithm: .ring, sizes: sizes) }
    func testTwoRanksInprocSmallSubChunks() throws {
        try checkExactSums(world: 2, wire: .inproc, algorithm: .automatic, sizes: [1, 17, 5000], subChunkBytes: 64)
    }

    /// Random (non-integer) values: summation order matters, yet every rank holds the same bits.
    func testBitwiseIdenticalOnRandomFloats() throws {
        for (world, algorithm) in [(3, AllReduceAlgorithm.ring), (4, .exchange), (2, .automatic), (3, .automatic)] {
            let ctx = try ZMQContext()
            let rings = try makeRing(ctx, world: world, wire: .inproc, runID: 42)
            for r in rings { r.algorithm = algorithm; r.subChunkBytes = 4096 }
            let n = 10_007
            let outputs = Box([[Float]](repeating: [], count: world))
            let inputs = (0..<world).map { r -> [Float] in
                var g = SystemRandomNumberGenerator()
                _ = r
                return (0..<n).map { _ in Float.random(in: -1...1, using: &g) * Float(1 << Int.random(in: 0...20, using: &g)) }
            }
            let errors = Box([String]())
            XCTAssertTrue(runOnThreads(world, timeoutSeconds: 30) { rank in
                var buf = inputs[rank]
                do { try rings[rank].allReduceSum(&buf, step: 1) } catch {
                    errors.update { $0.append("W=\(world) \(algorithm) rank \(rank): \(error)") }
                    return
                }
                outputs.update { $0[rank] = buf }
            })
            XCTAssertEqual(errors.get, [])
            let out = outputs.get
            guard out.allSatisfy({ $0.count == n }) else { return XCTFail("missing outputs") }
            for r in 0..<world {
                XCTAssertEqual(out[r].count, n)
                XCTAssertTrue(out[r].elementsEqual(out[0]) { $0.bitPattern == $1.bitPattern }, "W=\(world) \(algorithm) rank \(r)")
            }
            for i in stride(from: 0, to: n, by: 97) {
                let exact = (0..<world).reduce(0.0) { $0 + Double(inputs[$1][i]) }
                XCTAssertEqual(Double(out[0][i]), exact, accuracy: 1e-5 * Double(1 << 21) * Double(world))
            }
        }
    }

    /// A rank that never takes part: its neighbours fail with a timeout naming a peer rank,
    /// within the deadline; nobody hangs.
    func testSilentRankCausesTimeoutNotHang() throws {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: 3, wire: .tcp, runID: 7, timeoutMilliseconds: 300)
        let errors = Box([Int: AllReduceError]())
        let elapsed = Box([Int: Double]())
        let start = monotonicNanoseconds()
        XCTAssertTrue(runOnThreads(2, timeoutSeconds: 5) { rank in
            var buf = [Float](repeating: 1, count: 100_000)
            do throws(AllReduceError) { try rings[rank].allReduceSum(&buf, step: 0) } catch {
                errors.update { $0[rank] = error }
            }
            elapsed.update { $0[rank] = Double(monotonicNanoseconds() - start) / 1e6 }
        })
        let e = errors.get
        XCTAssertEqual(e.count, 2)
        guard case .timeout(let op, let peer, _, let ms, _, _)? = e[0] else { return XCTFail("rank 0: \(String(describing: e[0]))") }
        XCTAssertEqual(op, "receive")
        XCTAssertEqual(peer, 2)  // rank 0 waits for its left neighbour, the silent rank 2
        XCTAssertGreaterThanOrEqual(ms, 290)
        XCTAssertTrue(e[0]!.description.contains("rank 2"), e[0]!.description)
        guard case .timeout(_, let peer1, _, _, _, _)? = e[1] else { return XCTFail("rank 1: \(String(describing: e[1]))") }
        XCTAssertEqual(peer1, 0)
        for (_, ms) in elapsed.get { XCTAssertLessThan(ms, 2000) }
    }

    /// CURVE on the data plane: encrypted, authenticated ring; a rank with a wrong key for
    /// its neighbour cannot deliver (the neighbour times out).
    func testCurveRing() throws {
        try XCTSkipUnless(zmqHas("curve"), "libzmq built without CURVE")
        let ctx = try ZMQContext()
        let world = 3
        let keys = try (0..<world).map { _ in try ZMQCurveKeyPair.generate() }
        // The public key each rank expects of its right neighbour (changed below to a wrong one).
        let expectedRight = Box((0..<world).map { keys[($0 + 1) % world].publicKey })
        let rings = try (0..<world).map { r in
            try RingAllReduce(context: ctx, rank: r, world: world, runID: 31, bindEndpoint: "tcp://127.0.0.1:*",
                              timeoutMilliseconds: 5000, socketSetup: { socket, peer in
                                  if peer == nil {
                                      try socket.configureCurveServer(keys: keys[r])
                                  } else {
                                      try socket.configureCurveClient(keys: keys[r], serverPublicKey: expectedRight.get[r])
                                  }
                              })
        }
        for r in rings { try r.connect(peerEndpoints: rings.map(\.localEndpoint)) }
        let outputs = Box([[Float]](repeating: [], count: world))
        XCTAssertTrue(runOnThreads(world, timeoutSeconds: 20) { rank in
            var buf = (0..<100_003).map { contribution(rank, $0) }
            do { try rings[rank].allReduceSum(&buf, step: 0) } catch { return }
            outputs.update { $0[rank] = buf }
        })
        let expected = (0..<100_003).map { i in (0..<world).reduce(Float(0)) { $0 + contribution($1, i) } }
        for r in 0..<world { XCTAssertEqual(outputs.get[r], expected, "rank \(r)") }

        // Rank 0 connects to rank 1 with rank 2's public key: the handshake fails, nothing arrives.
        for r in rings { r.timeoutMilliseconds = 300 }
        expectedRight.update { $0[0] = keys[2].publicKey }
        try rings[0].connect(peerEndpoints: rings.map(\.localEndpoint))
        let errors = Box([Int: AllReduceError]())
        XCTAssertTrue(runOnThreads(world, timeoutSeconds: 10) { rank in
            var buf = [Float](repeating: 1, count: 10)
            do throws(AllReduceError) { try rings[rank].allReduceSum(&buf, step: 1) } catch { errors.update { $0[rank] = error } }
        })
        guard case .timeout(_, let peer, _, _, _, _)? = errors.get[1] else { return XCTFail("rank 1: \(String(describing: errors.get[1]))") }
        XCTAssertEqual(peer, 0)
    }

    /// A ring re-formed with fewer ranks (a worker lost) keeps working with a new generation.
    func testReformAfterLosingARank() throws {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: 3, wire: .tcp, runID: 41, timeoutMilliseconds: 300)
        // Rank 1 is lost: ranks 0 and 2 fail the step...
        let failed = Box(0)
        XCTAssertTrue(runOnThreads(2, timeoutSeconds: 5) { i in
            let rank = i == 0 ? 0 : 2
            var buf = [Float](repeating: 1, count: 50_000)
            do { try rings[rank].allReduceSum(&buf, step: 9) } catch { failed.update { $0 += 1 } }
        })
        XCTAssertEqual(failed.get, 2)
        // ...and redo it as a ring of two, generation 1, as a worker does on REFORM: a new ring
        // socket each, old rank 2 becomes rank 1.
        for r in rings { r.close(discardPending: true) }
        let survivors = try (0..<2).map { r in
            try RingAllReduce(context: ctx, rank: r, world: 2, runID: 41, generation: 1, bindEndpoint: "tcp://127.0.0.1:*", timeoutMilliseconds: 5000)
        }
        let endpoints = survivors.map(\.localEndpoint)
        for r in survivors { try r.connect(peerEndpoints: endpoints) }
        let outputs = Box([[Float]](repeating: [], count: 2))
        XCTAssertTrue(runOnThreads(2, timeoutSeconds: 10) { rank in
            var buf = (0..<50_000).map { contribution(rank, $0) }
            do { try survivors[rank].allReduceSum(&buf, step: 9) } catch { return }
            outputs.update { $0[rank] = buf }
        })
        let expected = (0..<50_000).map { contribution(0, $0) + contribution(1, $0) }
        XCTAssertEqual(outputs.get[0], expected)
        XCTAssertEqual(outputs.get[1], expected)
    }

    /// Ranks that disagree on the buffer size fail with a protocol violation naming the
    /// neighbour (or a timeout), never a hang and never a silently wrong sum.
    func testMismatchedSizesAreAProtocolViolation() throws {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: 2, wire: .tcp, runID: 21, timeoutMilliseconds: 500)
        let errors = Box([Int: AllReduceError]())
        XCTAssertTrue(runOnThreads(2, timeoutSeconds: 5) { rank in
            var buf = [Float](repeating: 1, count: rank == 0 ? 100 : 200)
            do throws(AllReduceError) { try rings[rank].allReduceSum(&buf, step: 0) } catch { errors.update { $0[rank] = error } }
        })
        let e = errors.get
        XCTAssertEqual(e.count, 2)
        for (rank, err) in e {
            guard case .protocolViolation(let peer, let frameError) = err else { return XCTFail("rank \(rank): \(err)") }
            XCTAssertEqual(peer, 1 - rank)
            XCTAssertEqual(frameError.reason, .unexpected)
            XCTAssertTrue(err.description.contains("len"), err.description)
        }
    }

    /// After an aborted exchange, a new generation ignores the leftovers of the old one: frames
    /// of generation 0 for the same step, queued at rank 1's data socket ahead of the real
    /// ones (a peer's old socket still connected to a fixed --data-bind port), are dropped.
    func testStaleFramesOfAbortedGenerationAreDropped() throws {
        let ctx = try ZMQContext()
        let rings = try (0..<2).map { r in
            try RingAllReduce(context: ctx, rank: r, world: 2, runID: 9, generation: 1, bindEndpoint: "tcp://127.0.0.1:*", timeoutMilliseconds: 5000)
        }
        let endpoints = rings.map(\.localEndpoint)
        // Sub-chunks of 16 KiB: 20 receives at rank 1, which its PULL socket fair-queues between
        // rank 0's connection and the leftovers' one, so the leftovers are read during the step.
        for r in rings {
            try r.connect(peerEndpoints: endpoints)
            r.subChunkBytes = 16 * 1024
        }
        let leftover = try ZMQSocket(ctx, type: .push, lingerMilliseconds: 1000)
        defer { leftover.close() }
        try leftover.connect(endpoints[1])
        let junk = [UInt8](repeating: 0x3F, count: 64)
        for sequence in 0..<3 {
            let header = FrameHeader(kind: .gradientChunk, runID: 9, generation: 0, sender: 0, step: 4, sequence: UInt32(sequence), payloadLength: junk.count)
            try leftover.send(Frame(header: header, payload: junk).encoded, deadline: .after(seconds: 5))
        }
        Thread.sleep(forTimeInterval: 0.2)  // the leftovers are queued before the real frames
        let outputs = Box([[Float]](repeating: [], count: 2))
        XCTAssertTrue(runOnThreads(2, timeoutSeconds: 10) { rank in
            var buf = (0..<80_000).map { contribution(rank, $0) }
            do { try rings[rank].allReduceSum(&buf, step: 4) } catch { return }
            outputs.update { $0[rank] = buf }
        })
        let out = outputs.get
        XCTAssertEqual(out[0], (0..<80_000).map { contribution(0, $0) + contribution(1, $0) })
        XCTAssertEqual(out[1], out[0])
        XCTAssertGreaterThan(rings[1].rejects.count(.stale), 0)
    }

    /// Garbage and frames of a foreign run sent to a data socket are counted and dropped.
    func testForeignFramesAreRejectedAndCounted() throws {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: 2, wire: .tcp, runID: 11)
        let intruder = try ZMQSocket(ctx, type: .push)
        try intruder.connect(rings[1].localEndpoint)
        try intruder.send([1, 2, 3], deadline: .after(milliseconds: 1000))
        try intruder.send(frame: Frame(header: FrameHeader(kind: .gradientChunk, runID: 12, sender: 0, payloadLength: 0)),
                          deadline: .after(milliseconds: 1000))
        // The intruder's frames arrive at some point (its own TCP connection, fair-queued with
        // the neighbour's): keep reducing until both were seen, checking every result.
        // Bounded by time, not by a count: on a loaded machine the connection may take a while.
        var ops = 0
        let deadline = Deadline.after(seconds: 15)
        while !deadline.hasPassed && (rings[1].rejects.count(.truncated) < 1 || rings[1].rejects.count(.wrongRun) < 1) {
            let outputs = Box([[Float]](repeating: [], count: 2))
            let step = UInt64(ops)
            XCTAssertTrue(runOnThreads(2, timeoutSeconds: 10) { rank in
                var buf = (0..<300).map { contribution(rank, $0) }
                do { try rings[rank].allReduceSum(&buf, step: step) } catch { return }
                outputs.update { $0[rank] = buf }
            })
            XCTAssertEqual(outputs.get[1], (0..<300).map { contribution(0, $0) + contribution(1, $0) })
            XCTAssertEqual(outputs.get[0], outputs.get[1])
            ops += 1
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertEqual(rings[1].rejects.count(.truncated), 1)
        XCTAssertEqual(rings[1].rejects.count(.wrongRun), 1)
        XCTAssertEqual(rings[0].rejects.total, 0)
    }

    /// Gradients and appended scalars (sample count, loss sum) reduce in one buffer.
    func testAllReduceBufferWithScalars() throws {
        let ctx = try ZMQContext()
        let rings = try makeRing(ctx, world: 3, wire: .inproc, runID: 13)
        let outputs = Box([[Float]](repeating: [], count: 3))
        XCTAssertTrue(runOnThreads(3, timeoutSeconds: 10) { rank in
            let b = AllReduceBuffer(gradientCount: 1000, scalarCount: 2)
            b.withGradients { g in for i in 0..<g.count { g[i] = contribution(rank, i) } }
            b[scalar: 0] = Float(10 + rank)      // samples
            b[scalar: 1] = Float(rank) * 0.5     // loss sum
            do { try b.allReduce(with: rings[rank], step: 0) } catch { return }
            let out = b.withUnsafeMutableBufferPointer { Array($0) }
            outputs.update { $0[rank] = out }
            b.withUnsafeMutableBufferPointer { p in
                precondition(Int(bitPattern: p.baseAddress!) % 64 == 0)
            }
        })
        let out = outputs.get
        XCTAssertEqual(out[0].count, 1002)
        XCTAssertEqual(out[0][1000], 33)
        XCTAssertEqual(out[0][1001], 1.5)
        XCTAssertEqual(out[1], out[0])
        XCTAssertEqual(out[2], out[0])
    }

    func testScheduleSplitCoversEverythingOnce() {
        for n in [0, 1, 15, 16, 17, 100, 1000, 4097] {
            for parts in 1...7 {
                var next = 0
                for k in 0..<parts {
                    let r = RingAllReduce.split(n, parts: parts, index: k)
                    XCTAssertEqual(r.lowerBound, next, "n \(n) parts \(parts) k \(k)")
                    if r.upperBound < n { XCTAssertEqual(r.upperBound % 16, 0) }
                    next = r.upperBound
                }
                XCTAssertEqual(next, n)
            }
        }
    }
}
