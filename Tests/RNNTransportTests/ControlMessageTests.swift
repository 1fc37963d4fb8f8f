import XCTest
@testable import RNNTransport

final class ControlMessageTests: XCTestCase {
    let run: UInt64 = 0xC0FFEE

    func randomState(_ g: inout TestRNG) -> TrainingState {
        let n = Int.random(in: 0...40, using: &g)
        let params = (0..<n).map { _ in Float.random(in: -1...1, using: &g) }
        let withAdam = Bool.random(using: &g)
        return TrainingState(globalStep: g.next() % 10_000, epoch: g.next() % 50, stepInEpoch: g.next() % 100,
                             parameters: params,
                             expAvg: withAdam ? params.map { $0 * 0.1 } : [],
                             expAvgSq: withAdam ? params.map { $0 * $0 } : [],
                             optimizerStep: g.next() % 1000, rngState: (0..<Int.random(in: 0...4, using: &g)).map { _ in g.next() })
    }

    func randomString(_ g: inout TestRNG) -> String {
        String((0..<Int.random(in: 0...24, using: &g)).map { _ in "abcxyz:/._-é🙂".randomElement(using: &g)! })
    }

    /// One random instance of every message kind.
    func messages(seed: UInt64) -> [any ControlPayload] {
        var g = TestRNG(seed: seed)
        let world = UInt32.random(in: 1...8, using: &g)
        let endpoints = (0..<Int(world)).map { "tcp://127.0.0.1:\(5000 + $0)" }
        return [
            HelloMessage(capabilities: ["lstm", "gru", randomString(&g)], dataEndpoint: randomString(&g), hostname: randomString(&g),
                         processID: Int.random(in: 1...99999, using: &g), threads: Int.random(in: 1...8, using: &g), token: randomString(&g)),
            WelcomeMessage(rank: UInt32.random(in: 0..<world, using: &g), world: world, runID: g.next(), generation: UInt32.random(in: 0...9, using: &g),
                           configJSON: "{\"cell\":\"lstm\",\"hidden\":\(Int.random(in: 1...512, using: &g))}", datasetPlanJSON: "{}",
                           peerEndpoints: endpoints, state: randomState(&g)),
            ReadyMessage(rank: 1, generation: 2, parameterHash: g.next()),
            StepAssignment(globalStep: 7, epoch: 1, stepInEpoch: 3, positionStart: 96, positionCount: 16, globalBatchSamples: 32,
                           learningRate: Double.random(in: 0...1, using: &g)),
            MetricsMessage(globalStep: 7, samples: 16, lossSum: Double.random(in: 0...100, using: &g), correct: 9,
                           computeSeconds: 0.01, allReduceSeconds: 0.002),
            StateMessage(state: randomState(&g)),
            StateRequestMessage(globalStep: g.next()),
            HeartbeatMessage(sentAtNanoseconds: g.next(), lastCompletedStep: g.next()),
            ByeMessage(reason: randomString(&g)),
            ErrorMessage(code: "rank-diverged", message: randomString(&g)),
            RingUpdateMessage(generation: 3, rank: UInt32.random(in: 0..<world, using: &g), peerEndpoints: endpoints, resumeStep: 12),
            AbortStepMessage(globalStep: 12, reason: "rank 2 lost"),
            ParameterHashMessage(globalStep: 12, hash: g.next()),
        ]
    }

    func roundTrip<T: ControlPayload>(_ m: T, _ decoder: FrameDecoder) throws -> Bool {
        let f = m.frame(runID: run, generation: 1, sender: 0, step: 5)
        let back = try decoder.decode(f.encoded)
        XCTAssertEqual(back.header.kind, T.kind)
        return try T.decode(back, counting: decoder) == m
    }

    func testEveryMessageKindRoundTrips() throws {
        let decoder = FrameDecoder(expectedRunID: run)
        var kinds = Set<MessageKind>()
        for seed in 0..<50 {
            for m in messages(seed: UInt64(seed)) {
                XCTAssertTrue(try roundTrip(m, decoder), "seed \(seed): \(type(of: m))")
                kinds.insert(type(of: m).kind)
            }
        }
        XCTAssertEqual(decoder.rejects.total, 0)
        // Every kind except the data-plane chunk has a control payload.
        XCTAssertEqual(kinds, Set(MessageKind.allCases).subtracting([.gradientChunk]))
    }

    func checkTruncations<T: ControlPayload>(_ m: T, _ decoder: FrameDecoder) {
        let full = m.payloadBytes
        for cut in 0..<full.count {
            let f = Frame(header: FrameHeader(kind: T.kind, runID: run), payload: Array(full.prefix(cut)))
            XCTAssertThrowsError(try T.decode(f, counting: decoder), "\(T.self) cut at \(cut)") { e in
                guard case FrameError.malformedPayload(let kind, _)? = e as? FrameError else { return XCTFail("\(e)") }
                XCTAssertEqual(kind, T.kind)
            }
        }
        // Trailing garbage is rejected too.
        let f = Frame(header: FrameHeader(kind: T.kind, runID: run), payload: full + [0])
        XCTAssertThrowsError(try T.decode(f, counting: decoder))
        // And a frame of another kind.
        let other = MessageKind.allCases.first { $0 != T.kind }!
        XCTAssertThrowsError(try T.decode(Frame(header: FrameHeader(kind: other, runID: run), payload: full), counting: decoder)) { e in
            guard case FrameError.unexpected? = e as? FrameError else { return XCTFail("\(e)") }
        }
    }

    func testTruncatedOrMislabelledPayloadsAreRejectedAndCounted() {
        let decoder = FrameDecoder(expectedRunID: run)
        var expected = 0
        for m in messages(seed: 99) {
            func go<T: ControlPayload>(_ x: T) {
                checkTruncations(x, decoder)
                expected += x.payloadBytes.count + 2
            }
            go(m)
        }
        XCTAssertEqual(decoder.rejects.total, expected)
        XCTAssertEqual(decoder.rejects.count(.unexpected), 13)
    }

    func testSemanticChecksInPayloads() {
        // WELCOME whose endpoint list does not match the world size.
        var w = BinaryWriter()
        WelcomeMessage(rank: 0, world: 2, runID: 1, generation: 0, configJSON: "{}", datasetPlanJSON: "{}",
                       peerEndpoints: ["a", "b"], state: TrainingState(globalStep: 0, epoch: 0, stepInEpoch: 0, parameters: [1]))
            .encode(to: &w)
        var bytes = w.bytes
        bytes[4] = 3  // world = 3, still two endpoints
        XCTAssertThrowsError(try WelcomeMessage.decode(Frame(header: FrameHeader(kind: .welcome, runID: run), payload: bytes)))
        // STATE whose Adam moments do not match the parameter count.
        let s = TrainingState(globalStep: 1, epoch: 0, stepInEpoch: 1, parameters: [1, 2], expAvg: [1], expAvgSq: [1])
        XCTAssertThrowsError(try StateMessage.decode(StateMessage(state: s).frame(runID: run))) { e in
            XCTAssertTrue("\(e)".contains("expAvg"), "\(e)")
        }
        // A huge declared endpoint count is refused without allocating.
        var r = BinaryWriter(); r.write(UInt32(1)); r.write(UInt32(0)); r.write(UInt32.max)
        XCTAssertThrowsError(try RingUpdateMessage.decode(Frame(header: FrameHeader(kind: .ringUpdate, runID: run), payload: r.bytes)))
    }

    func testParameterHashSeesEveryBit() {
        var a: [Float] = (0..<100).map { Float($0) * 0.37 }
        let h0 = a.withUnsafeBufferPointer { parameterHash($0) }
        XCTAssertEqual(h0, a.withUnsafeBufferPointer { parameterHash($0) })
        a[57] = a[57].nextUp
        XCTAssertNotEqual(h0, a.withUnsafeBufferPointer { parameterHash($0) })
        var z: [Float] = [0]; let hz = z.withUnsafeBufferPointer { parameterHash($0) }
        z = [-0.0]
        XCTAssertNotEqual(hz, z.withUnsafeBufferPointer { parameterHash($0) })
    }

    /// HELLO -> WELCOME -> READY over a real ROUTER/DEALER pair.
    func testHandshakeOverRouterDealer() throws {
        let ctx = try ZMQContext()
        let coord = try ZMQSocket(ctx, type: .router)
        try coord.setRouterMandatory(true)
        try coord.bind("tcp://127.0.0.1:*")
        let worker = try ZMQSocket(ctx, type: .dealer)
        try worker.connect(try coord.lastEndpoint())
        let hello = HelloMessage(capabilities: ["lstm"], dataEndpoint: "tcp://127.0.0.1:7000", hostname: "h", processID: 1, threads: 1)
        try worker.send(frame: hello.frame(runID: 0), deadline: .after(milliseconds: 2000))
        let coordDecoder = FrameDecoder(expectedRunID: nil)
        let parts = try XCTUnwrap(try coord.receiveMultipart(deadline: .after(milliseconds: 2000)))
        XCTAssertEqual(parts.count, 2)
        let gotHello = try HelloMessage.decode(try coordDecoder.decode(parts[1]))
        XCTAssertEqual(gotHello, hello)
        let welcome = WelcomeMessage(rank: 0, world: 1, runID: run, generation: 0, configJSON: "{}", datasetPlanJSON: "{}",
                                     peerEndpoints: [gotHello.dataEndpoint],
                                     state: TrainingState(globalStep: 0, epoch: 0, stepInEpoch: 0, parameters: [1, 2, 3]))
        try coord.sendMultipart([parts[0].bytes, welcome.frame(runID: run).encoded], deadline: .after(milliseconds: 2000))
        let workerDecoder = FrameDecoder(expectedRunID: nil)
        let w = try XCTUnwrap(try worker.receiveFrame(workerDecoder, deadline: .after(milliseconds: 2000)))
        XCTAssertEqual(try WelcomeMessage.decode(w), welcome)
        try worker.send(frame: ReadyMessage(rank: 0, generation: 0, parameterHash: 1).frame(runID: run, sender: 0),
                        deadline: .after(milliseconds: 2000))
        let runDecoder = FrameDecoder(expectedRunID: run)
        let ready = try XCTUnwrap(try coord.receiveMultipart(deadline: .after(milliseconds: 2000)))
        XCTAssertEqual(try ReadyMessage.decode(try runDecoder.decode(ready[1])).parameterHash, 1)
    }
}
