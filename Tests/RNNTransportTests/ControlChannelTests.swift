import Foundation
import XCTest
@testable import RNNTransport

final class ControlChannelTests: XCTestCase {
    let run: UInt64 = 0xBADC0DE

    func state() -> TrainingState { TrainingState(globalStep: 0, epoch: 0, stepInEpoch: 0, parameters: [0.5, -1]) }

    /// Coordinator and two workers (threads) over real sockets: HELLO -> WELCOME -> READY,
    /// heartbeats, a silent worker declared overdue, and intruders counted and dropped.
    func runHandshake(endpoint: String) throws {
        let ctx = try ZMQContext()
        let coord = try CoordinatorChannel(context: ctx, bindEndpoint: endpoint, runID: run)
        let ep = coord.endpoint
        let workerErrors = LockedStrings()
        let done = DispatchGroup()
        for w in 0..<2 {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    let ch = try WorkerChannel(context: ctx, coordinatorEndpoint: ep, identity: Array("worker-\(w)".utf8))
                    try ch.send(HelloMessage(capabilities: ["lstm"], dataEndpoint: "tcp://127.0.0.1:\(7000 + w)", hostname: "h",
                                             processID: w, threads: 1), deadline: .after(seconds: 5))
                    guard let got = try ch.receive(deadline: .after(seconds: 5)) else { throw PayloadError.trailingBytes(count: -1) }
                    let welcome = try got.decode(WelcomeMessage.self)
                    ch.adopt(runID: welcome.runID, rank: welcome.rank)
                    try ch.send(ReadyMessage(rank: welcome.rank, generation: 0, parameterHash: 42), deadline: .after(seconds: 5))
                    // Worker 0 keeps beating for a while; worker 1 goes silent.
                    if w == 0 {
                        for i in 0..<30 {
                            try ch.send(HeartbeatMessage(sentAtNanoseconds: monotonicNanoseconds(), lastCompletedStep: UInt64(i)),
                                        deadline: .after(seconds: 5))
                            Thread.sleep(forTimeInterval: 0.05)
                        }
                        try ch.send(ByeMessage(reason: "done"), deadline: .after(seconds: 5))
                    }
                } catch {
                    workerErrors.append("worker \(w): \(error)")
                }
            }.start()
        }
        // An intruder: garbage, a frame of another run, a 3-part message, a non-HELLO with run 0.
        let intruder = try ZMQSocket(ctx, type: .dealer, lingerMilliseconds: 0)
        try intruder.connect(ep)
        try intruder.send([1, 2, 3], deadline: .after(seconds: 2))
        try intruder.send(frame: ReadyMessage(rank: 0, generation: 0, parameterHash: 0).frame(runID: run + 1), deadline: .after(seconds: 2))
        try intruder.sendMultipart([[1], [2]], deadline: .after(seconds: 2))
        try intruder.send(frame: ReadyMessage(rank: 0, generation: 0, parameterHash: 0).frame(runID: 0), deadline: .after(seconds: 2))

        var liveness = LivenessTracker<PeerID>(intervalMilliseconds: 50, timeoutMilliseconds: 1000)
        var hellos: [PeerID: HelloMessage] = [:]
        var ready = Set<UInt32>()
        var heartbeats = 0
        var lost: [PeerID] = []
        var bye = false
        let overall = Deadline.after(seconds: 10)
        while !(bye && !lost.isEmpty) && !overall.hasPassed {
            guard let r = try coord.receive(deadline: min(overall, liveness.nextWakeup())) else {
                for (peer, _) in liveness.overdue() { lost.append(peer); liveness.forget(peer) }
                continue
            }
            let peer = try XCTUnwrap(r.peer)
            liveness.heard(from: peer)
            switch r.frame.header.kind {
            case .hello:
                let h = try r.decode(HelloMessage.self)
                hellos[peer] = h
                if hellos.count == 2 {
                    let order = hellos.keys.sorted { $0.description < $1.description }
                    for (rank, p) in order.enumerated() {
                        try coord.send(WelcomeMessage(rank: UInt32(rank), world: 2, runID: run, generation: 0, configJSON: "{}",
                                                      datasetPlanJSON: "{}", peerEndpoints: order.map { hellos[$0]!.dataEndpoint },
                                                      state: state()),
                                       to: p, deadline: .after(seconds: 2))
                    }
                }
            case .ready:
                ready.insert(try r.decode(ReadyMessage.self).rank)
            case .heartbeat:
                _ = try r.decode(HeartbeatMessage.self)
                heartbeats += 1
            case .bye:
                XCTAssertEqual(try r.decode(ByeMessage.self).reason, "done")
                bye = true
                liveness.forget(peer)
            default:
                XCTFail("unexpected \(r.frame.header.kind)")
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(workerErrors.values, [])
        XCTAssertEqual(ready, [0, 1])
        XCTAssertGreaterThanOrEqual(heartbeats, 10)
        XCTAssertTrue(bye)
        XCTAssertEqual(lost.map(\.description), ["worker-1"])
        XCTAssertEqual(coord.rejects.count(.truncated), 1)
        XCTAssertEqual(coord.rejects.count(.wrongRun), 2)
        XCTAssertEqual(coord.rejects.count(.unexpected), 1)
        // Sending to a worker that is not connected fails loudly (ROUTER_MANDATORY).
        XCTAssertThrowsError(try coord.send(ByeMessage(reason: "x"), to: PeerID(Array("nobody".utf8)), deadline: .after(milliseconds: 100)))
    }

    func testHandshakeHeartbeatsAndLossOverTCP() throws { try runHandshake(endpoint: "tcp://127.0.0.1:*") }
    func testHandshakeHeartbeatsAndLossOverInproc() throws { try runHandshake(endpoint: "inproc://coord-test") }

    func testWorkerIgnoresOtherRunsAfterWelcome() throws {
        let ctx = try ZMQContext()
        let coord = try CoordinatorChannel(context: ctx, bindEndpoint: "inproc://coord-run", runID: run)
        let ch = try WorkerChannel(context: ctx, coordinatorEndpoint: coord.endpoint, identity: [7])
        try ch.send(HelloMessage(capabilities: [], dataEndpoint: "", hostname: "", processID: 0, threads: 1), deadline: .after(seconds: 2))
        let hello = try XCTUnwrap(try coord.receive(deadline: .after(seconds: 2)))
        ch.adopt(runID: run, rank: 0)
        // A frame of another run on the worker's socket is dropped and counted.
        let rogue = Frame(header: FrameHeader(kind: .stepAssignment, runID: run ^ 1), payload: [])
        try coord.socket.sendMultipart([hello.peer!.bytes, rogue.encoded], deadline: .after(seconds: 2))
        try coord.send(AbortStepMessage(globalStep: 3, reason: "test"), to: hello.peer!, deadline: .after(seconds: 2))
        let got = try XCTUnwrap(try ch.receive(deadline: .after(seconds: 2)))
        XCTAssertEqual(try got.decode(AbortStepMessage.self).globalStep, 3)
        XCTAssertEqual(ch.rejects.count(.wrongRun), 1)
        XCTAssertNil(try ch.receive(deadline: .after(milliseconds: 30)))
    }

    func testLivenessTrackerBookkeeping() {
        var t = LivenessTracker<Int>(intervalMilliseconds: 1000, timeoutMilliseconds: 10_000)
        let s: UInt64 = 1_000_000_000_000
        t.sentHeartbeat(at: s)
        t.heard(from: 1, at: s)
        t.heard(from: 2, at: s + 5_000_000_000)
        XCTAssertFalse(t.heartbeatDue(at: s + 999_000_000))
        XCTAssertTrue(t.heartbeatDue(at: s + 1_000_000_000))
        XCTAssertEqual(t.nextWakeup(at: s).nanoseconds, s + 1_000_000_000)
        XCTAssertTrue(t.overdue(at: s + 10_000_000_000).isEmpty)
        let late = t.overdue(at: s + 10_500_000_000)
        XCTAssertEqual(late.map(\.peer), [1])
        XCTAssertEqual(late.first?.silentMilliseconds, 10_500)
        t.forget(1)
        XCTAssertTrue(t.overdue(at: s + 12_000_000_000).isEmpty)
        XCTAssertEqual(t.overdue(at: s + 15_100_000_000).map(\.peer), [2])
    }
}

final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
