// Training with CURVE on every socket (control, heartbeats and the ring): the result is
// bitwise the plaintext run's, and neither a plaintext sender nor a CURVE sender whose key is
// not in the ring can put a single frame into a ring socket (its frames never reach the
// worker, so nothing is even counted).
import Foundation
import RNNCore
import RNNData
import RNNDistributed
import RNNTransport
import XCTest

final class CurveTrainingTests: XCTestCase {
    func testCURVEEverywhereGivesTheSameResultAndPlaintextFramesNeverArrive() throws {
        guard zmqHas("curve") else { throw XCTSkip("libzmq without CURVE") }
        let dir = try makeTemporaryDirectory("curve")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = (dir as NSString).appendingPathComponent("random.h5")
        try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        let config = try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 12, layers: 1, optimizer: OptimizerConfig(lr: 0.01),
                                                   batchSize: 8, epochs: 20, seed: 5, shuffle: true)
        let plain = try trainInProcess(config, world: 2)

        let server = try ZMQCurveKeyPair.generate()
        let clients = try (0..<2).map { _ in try ZMQCurveKeyPair.generate() }
        var options = CoordinatorOptions(config: config, bind: "tcp://127.0.0.1:*", workers: 2, joinTimeout: 30, stepTimeout: 30,
                                         ringTimeout: 15)
        options.curve = CurveServerConfig(keys: server, allowedClientKeys: Set(clients.map(\.publicKey)))
        let coordinator = try Coordinator(options: options, events: { event in
            if case .step = event { usleep(2_000) }  // 140 steps: long enough for the sprayer
        })
        XCTAssertNil(coordinator.token, "CURVE runs authenticate by key, not by token")
        let ringEndpoints = Box<[String]>([])
        let ringKeys = Box<[String]>([])  // ringKeys[k]: the public key serving ringEndpoints[k]
        let group = DispatchGroup()
        let (summary, done) = runInBackground(coordinator, group: group)
        let workers = Box<[Result<WorkerSummary, Error>]>([])
        for keys in clients {
            group.enter()
            var wo = WorkerOptions(connect: coordinator.endpoint, joinTimeout: 30)
            wo.curve = CurveClientConfig(keys: keys, serverPublicKey: server.publicKey)
            let workerOptions = wo
            Thread.detachNewThread {
                let w = Worker(options: workerOptions, log: { line in
                    if let r = line.range(of: "ring endpoint ") {
                        let ep = String(line[r.upperBound...].prefix { $0 != " " })
                        ringEndpoints.update { eps in
                            ringKeys.update { $0.append(keys.publicKey) }
                            eps.append(ep)
                        }
                    }
                })
                let r = Result { try w.run() }
                workers.update { $0.append(r) }
                group.leave()
            }
        }
        let sent = Box(0)
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            while ringEndpoints.get.count < 2 && !done.get { usleep(1_000) }
            guard let ctx = try? ZMQContext() else { return }
            defer { ctx.shutdown() }
            // A plaintext sender, and a CURVE sender with its own key pair that knows each
            // worker's public key but is not in the ring (the ring's ZAP handler refuses it).
            let stranger = try? ZMQCurveKeyPair.generate()
            var sockets: [ZMQSocket] = []
            for (i, ep) in ringEndpoints.get.prefix(2).enumerated() {
                if let s = try? ZMQSocket(ctx, type: .push, lingerMilliseconds: 0) {
                    try? s.connect(ep)
                    sockets.append(s)
                }
                if let stranger, let s = try? ZMQSocket(ctx, type: .push, lingerMilliseconds: 0) {
                    try? s.configureCurveClient(keys: stranger, serverPublicKey: ringKeys.get[i])
                    try? s.connect(ep)
                    sockets.append(s)
                }
            }
            defer { for s in sockets { s.close() } }
            let frame = Frame(header: FrameHeader(kind: .gradientChunk, runID: 1, payloadLength: 4), payload: [0, 0, 128, 63]).encoded
            while !done.get {
                for s in sockets where (try? s.send(frame, deadline: .after(milliseconds: 0))) != nil { sent.update { $0 += 1 } }
                usleep(1_000)
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 90), .success, "the CURVE run hung")
        let s = try XCTUnwrap(summary.get).get()
        let ws = try workers.get.map { try $0.get() }
        XCTAssertEqual(s.globalSteps, plain.summary.globalSteps)
        XCTAssertTrue(s.parameters == plain.summary.parameters, "CURVE changed the result")
        XCTAssertGreaterThan(sent.get, 0, "the plaintext sender queued frames")
        for w in ws {
            XCTAssertTrue(w.parameters == s.parameters)
            XCTAssertEqual(w.rejectedFrames, 0, "a foreign frame reached rank \(w.rank)'s CURVE ring socket")
        }
        print("CURVE run: \(s.globalSteps) steps bitwise equal to plaintext; \(sent.get) frames queued at the ring sockets by a plaintext "
              + "sender and by a CURVE sender outside the ring, \(ws.map(\.rejectedFrames).reduce(0, +)) arrived")
    }
}
