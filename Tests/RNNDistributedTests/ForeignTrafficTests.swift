// Thousands of random, truncated, foreign and replayed frames sent at the coordinator's
// control and heartbeat endpoints and at every worker's ring endpoint while they train:
// training completes bitwise equal to an undisturbed run, and the counters show the rejections.
import Foundation
import RNNCore
import RNNData
import RNNDistributed
import RNNTransport
import XCTest

final class ForeignTrafficTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("foreign") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testForeignFramesAtEveryEndpointDuringTrainingAreRejectedAndCounted() throws {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        let config = try TrainingConfig.forDataset(files: [path], cell: .gru, hiddenSize: 12, layers: 1, optimizer: OptimizerConfig(lr: 0.01),
                                                   batchSize: 8, epochs: 40, seed: 5, shuffle: true, hashEvery: 5)
        let clean = try trainInProcess(config, world: 2)

        var options = CoordinatorOptions(config: config, bind: "tcp://127.0.0.1:*", workers: 2, joinTimeout: 60, stepTimeout: 60,
                                         ringTimeout: 30)
        options.heartbeatTimeout = 3
        options.heartbeatInterval = 0.1
        let heartbeatEndpoint = Box("")
        let coordinator = try Coordinator(options: options, events: { event in
            switch event {
            case .message(_, let text) where text.hasPrefix("Heartbeats on "):
                heartbeatEndpoint.update { $0 = String(text.split(separator: " ")[2]) }
            case .step:
                usleep(3_000)  // stretch the run (280 steps) to about a second of training under fire
            default: break
            }
        })
        let ringEndpoints = Box<[String]>([])
        let group = DispatchGroup()
        let (summary, done) = runInBackground(coordinator, group: group)
        let workers = Box<[Result<WorkerSummary, Error>]>([])
        for _ in 0..<2 {
            group.enter()
            let endpoint = coordinator.endpoint
            Thread.detachNewThread {
                let w = Worker(options: WorkerOptions(connect: endpoint, joinTimeout: 60), log: { line in
                    if let r = line.range(of: "ring endpoint ") {
                        let ep = String(line[r.upperBound...].prefix { $0 != " " })
                        ringEndpoints.update { $0.append(ep) }
                    }
                })
                let r = Result { try w.run() }
                workers.update { $0.append(r) }
                group.leave()
            }
        }

        // The attacker: one socket per endpoint, frames of every kind of wrongness.
        let sent = Box([String: Int]())
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            let deadline = Date().addingTimeInterval(30)
            while ringEndpoints.get.count < 2 || heartbeatEndpoint.get.isEmpty {
                if Date() > deadline || done.get { return }
                usleep(1_000)
            }
            guard let ctx = try? ZMQContext() else { return }
            defer { ctx.shutdown() }
            var targets: [(String, ZMQSocket)] = []
            func open(_ name: String, _ type: ZMQSocketType, _ ep: String) {
                guard let s = try? ZMQSocket(ctx, type: type, lingerMilliseconds: 0) else { return }
                try? s.connect(ep)
                targets.append((name, s))
            }
            open("coordinator control", .dealer, coordinator.endpoint)
            open("coordinator heartbeat", .dealer, heartbeatEndpoint.get)
            for (i, ep) in ringEndpoints.get.prefix(2).enumerated() { open("worker \(i) ring", .push, ep) }
            defer { for (_, s) in targets { s.close() } }
            var rng = SeededGenerator(seed: 1234)
            var i = 0
            while !done.get && i < 40_000 {
                for (name, s) in targets {
                    let frame = Self.garbage(i, &rng)
                    if (try? s.send(frame, deadline: .after(milliseconds: 0))) != nil {
                        sent.update { $0[name, default: 0] += 1 }
                    }
                    i += 1
                }
                if i % 64 == 0 { usleep(500) }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "the run hung")
        let s = try XCTUnwrap(summary.get).get()
        let ws = try workers.get.map { try $0.get() }
        XCTAssertEqual(s.globalSteps, 280)
        XCTAssertTrue(s.parameters == clean.summary.parameters, "foreign frames changed the training result")
        for w in ws { XCTAssertTrue(w.parameters == s.parameters) }
        let total = sent.get.values.reduce(0, +)
        XCTAssertGreaterThan(total, 2000, "thousands of frames were sent: \(sent.get)")
        XCTAssertGreaterThan(s.rejectedFrames, 500)
        for w in ws { XCTAssertGreaterThan(w.rejectedFrames, 100, "rank \(w.rank)") }
        XCTAssertGreaterThan(s.rejectedPeers, 0, "replayed HELLOs without the run token")
        print("foreign frames sent: \(sent.get.sorted { $0.key < $1.key }); rejected by the coordinator: \(s.rejectedFrames) "
              + "\(s.rejectedByReason.sorted { $0.key < $1.key }), peers refused: \(s.rejectedPeers); "
              + "by the workers: \(ws.map(\.rejectedFrames))")
    }

    /// Frame `i` of the attack: random bytes, truncated headers, bad version/flags/length,
    /// well-formed frames of another run (every kind), and HELLOs without the run token.
    static func garbage(_ i: Int, _ rng: inout SeededGenerator) -> [UInt8] {
        switch i % 7 {
        case 0:
            return (0..<Int(rng.next() % 200)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 1:
            return Array(Frame(header: FrameHeader(kind: .heartbeat, runID: rng.next())).encoded.prefix(Int(rng.next() % 48)))
        case 2:
            var h = FrameHeader(kind: .metrics, runID: rng.next(), payloadLength: 8)
            h.version = UInt16(2 + rng.next() % 100)
            return Frame(header: h, payload: [UInt8](repeating: 1, count: 8)).encoded
        case 3:
            var h = FrameHeader(kind: .gradientChunk, runID: rng.next())
            h.flags = 1
            return Frame(header: h).encoded
        case 4:
            var bytes = Frame(header: FrameHeader(kind: .gradientChunk, runID: rng.next(), payloadLength: 64),
                              payload: [UInt8](repeating: 0x3F, count: 64)).encoded
            bytes.removeLast(Int(1 + rng.next() % 60))  // declared length no longer matches
            return bytes
        case 5:
            let kinds = MessageKind.allCases
            let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
            let n = Int(rng.next() % 64)
            return Frame(header: FrameHeader(kind: kind, runID: rng.next(), generation: UInt32(rng.next() % 4), sender: UInt32(rng.next() % 3),
                                             step: rng.next() % 300, payloadLength: n),
                         payload: (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }).encoded
        default:
            // A replayed HELLO of another worker, without the token.
            var w = BinaryWriter()
            w.write(Int(FrameHeader.currentVersion)); w.write("intruder"); w.write(4242); w.write("")
            return Frame(header: FrameHeader(kind: .hello, runID: 0), payload: w.bytes).encoded
        }
    }
}
