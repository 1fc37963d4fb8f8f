import XCTest
@testable import RNNTransport

final class ZeroCopyTests: XCTestCase {
    func testNoCopySendDeliversAndReleases() throws {
        let ctx = try ZMQContext()
        let pull = try ZMQSocket(ctx, type: .pull)
        try pull.bind("tcp://127.0.0.1:*")
        let push = try ZMQSocket(ctx, type: .push)
        try push.connect(try pull.lastEndpoint())
        let tracker = ZMQSendTracker(slots: 4)
        var data = (0..<(1 << 18)).map { UInt32($0) &* 2_654_435_761 }
        try data.withUnsafeBytes { raw in
            try push.sendNoCopy(raw, tracker: tracker, slot: 2, deadline: .after(milliseconds: 2000))
        }
        let m = try XCTUnwrap(try pull.receive(deadline: .after(milliseconds: 5000)))
        XCTAssertTrue(tracker.waitUntilComplete(2, deadline: .after(milliseconds: 5000)))
        XCTAssertTrue(tracker.allComplete)
        let expected = data
        data = data.map { ~$0 }  // the sender's memory may change once released
        XCTAssertEqual(m.count, expected.count * 4)
        m.withUnsafeBytes { got in
            expected.withUnsafeBytes { XCTAssertTrue(got.elementsEqual($0)) }
        }
        _ = data
    }

    func testUnsentNoCopyFramesAreReleasedWhenTheSocketIsDropped() throws {
        let ctx = try ZMQContext()
        let push = try ZMQSocket(ctx, type: .push)
        try push.connect("tcp://127.0.0.1:1")  // nobody there: the frame stays queued
        let tracker = ZMQSendTracker(slots: 1)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { buffer.deallocate() }
        try push.sendNoCopy(UnsafeRawBufferPointer(buffer), tracker: tracker, slot: 0, deadline: .after(milliseconds: 500))
        XCTAssertFalse(tracker.isComplete(0))
        XCTAssertFalse(tracker.waitUntilComplete(0, deadline: .after(milliseconds: 50)))
        push.close(discardPending: true)
        XCTAssertTrue(tracker.waitUntilComplete(0, deadline: .after(milliseconds: 5000)))
    }
}
