import Dispatch
import XCTest
@testable import RNNTransport

final class SocketTests: XCTestCase {
    func testBindWildcardPortAndReadLastEndpoint() throws {
        let ctx = try ZMQContext()
        let s = try ZMQSocket(ctx, type: .pull)
        try s.bind("tcp://127.0.0.1:*")
        let ep = try s.lastEndpoint()
        XCTAssertTrue(ep.hasPrefix("tcp://127.0.0.1:"), ep)
        let port = Int(ep.split(separator: ":").last!)!
        XCTAssertGreaterThan(port, 0)
        // The port is really bound: a second bind to it fails and the error names it.
        let t = try ZMQSocket(ctx, type: .pull)
        XCTAssertThrowsError(try t.bind(ep)) { e in
            let z = e as! ZMQError
            XCTAssertEqual(z.call, "zmq_bind")
            XCTAssertEqual(z.endpoint, ep)
            XCTAssertEqual(z.errno, EADDRINUSE)
            XCTAssertTrue(z.description.contains(ep))
        }
    }

    func testBadEndpointErrorNamesIt() throws {
        let ctx = try ZMQContext()
        let s = try ZMQSocket(ctx, type: .dealer)
        XCTAssertThrowsError(try s.connect("nonsense://x")) { e in
            XCTAssertTrue("\(e)".contains("nonsense://x"), "\(e)")
        }
    }

    func testReceiveAndPollRespectDeadline() throws {
        let ctx = try ZMQContext()
        let s = try ZMQSocket(ctx, type: .pull)
        try s.bind("tcp://127.0.0.1:*")
        let t0 = monotonicNanoseconds()
        XCTAssertNil(try s.receive(deadline: .after(milliseconds: 150)))
        let ms = Double(monotonicNanoseconds() - t0) / 1e6
        XCTAssertGreaterThanOrEqual(ms, 140)
        XCTAssertLessThan(ms, 1000)
        let t1 = monotonicNanoseconds()
        var poller = ZMQPoller()
        try poller.add(s)
        XCTAssertEqual(try poller.poll(deadline: .after(milliseconds: 100)), 0)
        let ms2 = Double(monotonicNanoseconds() - t1) / 1e6
        XCTAssertGreaterThanOrEqual(ms2, 90)
        XCTAssertLessThan(ms2, 1000)
        XCTAssertEqual(try s.poll(.readable, deadline: .after(milliseconds: 20)), [])
    }

    /// `spinMicroseconds`: a frame arriving during the spin or after it (in the blocking
    /// wait) is received whole, and the spin never runs past the deadline.
    func testSpinningReceiveGetsEarlyAndLateFramesAndKeepsTheDeadline() throws {
        let ctx = try ZMQContext()
        let a = try ZMQSocket(ctx, type: .pair)
        try a.bind("tcp://127.0.0.1:*")
        let b = try ZMQSocket(ctx, type: .pair)
        try b.connect(try a.lastEndpoint())

        // Empty socket, spin (1 s) longer than the deadline (40 ms): false at the deadline.
        var t0 = monotonicNanoseconds()
        XCTAssertFalse(try a.receive(into: ZMQMessage(), deadline: .after(milliseconds: 40), spinMicroseconds: 1_000_000))
        var ms = Double(monotonicNanoseconds() - t0) / 1e6
        XCTAssertGreaterThanOrEqual(ms, 39)
        XCTAssertLessThan(ms, 500)

        // Sent 5 ms into a 500 ms spin, and sent 80 ms after a 1 ms spin ended.
        for (delayMs, spin) in [(5, 500_000), (80, 1_000)] {
            let sent = DispatchSemaphore(value: 0)
            let sender = b
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delayMs)) {
                try? sender.sendMultipart([[UInt8(delayMs)], [7, 8, 9]], deadline: .after(milliseconds: 1000))
                sent.signal()
            }
            t0 = monotonicNanoseconds()
            let parts = try XCTUnwrap(try a.receiveMultipart(deadline: .after(milliseconds: 5000), spinMicroseconds: spin))
            ms = Double(monotonicNanoseconds() - t0) / 1e6
            XCTAssertEqual(parts.map(\.bytes), [[UInt8(delayMs)], [7, 8, 9]])
            XCTAssertGreaterThanOrEqual(ms, Double(delayMs) - 1)
            XCTAssertLessThan(ms, 2000)
            sent.wait()
        }
    }

    func testSendToAbsentPeerTimesOutAndCloseDoesNotHang() throws {
        let t0 = monotonicNanoseconds()
        do {
            let ctx = try ZMQContext()
            let s = try ZMQSocket(ctx, type: .dealer, lingerMilliseconds: -1)
            try s.setImmediate(true)  // no completed connection: nothing can be queued
            try s.connect("tcp://127.0.0.1:1")  // nobody listens there
            XCTAssertThrowsError(try s.send([1, 2, 3], deadline: .after(milliseconds: 100))) { e in
                XCTAssertTrue(e is ZMQTimeout, "\(e)")
                XCTAssertTrue("\(e)".contains("tcp://127.0.0.1:1"))
            }
            // A PUSH without IMMEDIATE queues; infinite linger would block context termination.
            let p = try ZMQSocket(ctx, type: .push, lingerMilliseconds: -1)
            try p.connect("tcp://127.0.0.1:1")
            try p.send([9], deadline: .after(milliseconds: 100))
            XCTAssertEqual(try p.linger(), -1)
            p.close(discardPending: true)
            s.close(discardPending: true)
            XCTAssertTrue(s.isClosed)
            XCTAssertThrowsError(try s.send([1], deadline: .after(milliseconds: 10)))
        }  // context deinit: zmq_ctx_term
        XCTAssertLessThan(Double(monotonicNanoseconds() - t0) / 1e9, 2.0)
    }

    func testDealerRouterMultipartWithRoutingID() throws {
        let ctx = try ZMQContext()
        let router = try ZMQSocket(ctx, type: .router)
        try router.setRouterMandatory(true)
        try router.bind("tcp://127.0.0.1:*")
        let ep = try router.lastEndpoint()
        let dealer = try ZMQSocket(ctx, type: .dealer)
        try dealer.setRoutingID(Array("worker-1".utf8))
        try dealer.connect(ep)
        try dealer.sendMultipart([[1], [2, 3], []], deadline: .after(milliseconds: 2000))
        let parts = try XCTUnwrap(try router.receiveMultipart(deadline: .after(milliseconds: 2000)))
        XCTAssertEqual(parts.map(\.bytes), [Array("worker-1".utf8), [1], [2, 3], []])
        // Reply by routing id.
        try router.sendMultipart([Array("worker-1".utf8), [42]], deadline: .after(milliseconds: 2000))
        let reply = try XCTUnwrap(try dealer.receive(deadline: .after(milliseconds: 2000)))
        XCTAssertEqual(reply.bytes, [42])
        XCTAssertFalse(reply.hasMore)
        // ROUTER_MANDATORY: an unknown peer is an error, not a silent drop.
        XCTAssertThrowsError(try router.sendMultipart([Array("nobody".utf8), [1]], deadline: .after(milliseconds: 100))) { e in
            XCTAssertTrue((e as? ZMQError)?.isHostUnreachable == true, "\(e)")
        }
    }

    func testFramesOverInprocPair() throws {
        let ctx = try ZMQContext()
        let a = try ZMQSocket(ctx, type: .pair)
        try a.bind("inproc://frames-test")
        let b = try ZMQSocket(ctx, type: .pair)
        try b.connect("inproc://frames-test")
        let run: UInt64 = 99
        let decoder = FrameDecoder(expectedRunID: run)
        // Garbage first, then a frame of another run, then the real one.
        try a.send([0xde, 0xad], deadline: .after(milliseconds: 1000))
        try a.send(frame: Frame(header: FrameHeader(kind: .heartbeat, runID: 5)), deadline: .after(milliseconds: 1000))
        let f = Frame(header: FrameHeader(kind: .metrics, runID: run, step: 3), payload: [1, 2])
        try a.send(frame: f, deadline: .after(milliseconds: 1000))
        XCTAssertEqual(try b.receiveFrame(decoder, deadline: .after(milliseconds: 1000)), f)
        XCTAssertEqual(decoder.rejects.count(.truncated), 1)
        XCTAssertEqual(decoder.rejects.count(.wrongRun), 1)
        XCTAssertNil(try b.receiveFrame(decoder, deadline: .after(milliseconds: 50)))
    }

    func testOptionsRoundTrip() throws {
        let ctx = try ZMQContext()
        let s = try ZMQSocket(ctx, type: .dealer)
        try s.setSendHighWaterMark(123)
        try s.setReceiveHighWaterMark(456)
        try s.setHeartbeat(intervalMilliseconds: 1000, timeoutMilliseconds: 10_000)
        try s.setLinger(milliseconds: 0)
        XCTAssertEqual(try s.sendHighWaterMark(), 123)
        XCTAssertEqual(try s.receiveHighWaterMark(), 456)
        XCTAssertEqual(try s.heartbeatInterval(), 1000)
        XCTAssertEqual(try s.linger(), 0)
        XCTAssertGreaterThanOrEqual(zmqVersion().major, 4)
    }

    func testCurveKeysAndEncryptedExchange() throws {
        try XCTSkipUnless(zmqHas("curve"), "libzmq built without CURVE")
        let server = try ZMQCurveKeyPair.generate()
        let client = try ZMQCurveKeyPair.generate()
        XCTAssertEqual(server.publicKey.utf8.count, 40)
        XCTAssertNotEqual(server.publicKey, client.publicKey)
        XCTAssertEqual(try ZMQCurveKeyPair.publicKey(forSecret: server.secretKey), server.publicKey)
        let ctx = try ZMQContext()
        let r = try ZMQSocket(ctx, type: .router)
        try r.configureCurveServer(keys: server)
        try r.bind("tcp://127.0.0.1:*")
        let ep = try r.lastEndpoint()
        let d = try ZMQSocket(ctx, type: .dealer)
        try d.configureCurveClient(keys: client, serverPublicKey: server.publicKey)
        try d.connect(ep)
        try d.send([7, 7], deadline: .after(milliseconds: 2000))
        let parts = try XCTUnwrap(try r.receiveMultipart(deadline: .after(milliseconds: 3000)))
        XCTAssertEqual(parts.last?.bytes, [7, 7])
        // A client with the wrong server key never gets through.
        let wrong = try ZMQSocket(ctx, type: .dealer, lingerMilliseconds: 0)
        try wrong.configureCurveClient(keys: client, serverPublicKey: client.publicKey)
        try wrong.connect(ep)
        try wrong.send([1], deadline: .after(milliseconds: 500))
        XCTAssertNil(try r.receiveMultipart(deadline: .after(milliseconds: 300)))
        XCTAssertThrowsError(try d.setCurveServerKey("short"))
    }
}
