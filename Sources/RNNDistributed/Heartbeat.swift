// Liveness, both ways, independent of how long a step computes.
//
// Design: heartbeats travel on their own socket pair, each end served by its own thread, so
// that neither a worker busy in a long forward/backward pass nor a coordinator busy writing a
// checkpoint or evaluating stops them. (ZeroMQ sockets are single-threaded, so the control
// sockets cannot be shared with a timer thread.)
//
//   worker HeartbeatLink (thread, DEALER, routing id = control id + "h")
//        --- HEARTBEAT every interval --->   coordinator HeartbeatServer (thread, ROUTER)
//        <-- HEARTBEAT answer (or ERROR) ---
//
// - The coordinator records when it last heard each member; its main loop (which waits in
//   slices of at most 100 ms) declares a member lost once it has been silent for the
//   heartbeat timeout, by rank, host and pid.
// - The worker declares the coordinator lost when its heartbeats stayed unanswered for the
//   timeout, counted from the first unanswered one (so a process that was stopped and
//   continued does not misjudge the time it was asleep). The worker's main loop also waits in
//   slices and checks this, also inside the ring all-reduce (`RingAllReduce.interruptCheck`).
// - A member that was declared lost and comes back (SIGSTOP then SIGCONT) gets ERROR instead
//   of an answer and exits non-zero: it can never rejoin a ring silently.
import Foundation
import RNNTransport

/// The coordinator's heartbeat endpoint and the last time each member was heard.
final class HeartbeatServer: @unchecked Sendable {
    let endpoint: String
    private let socket: ZMQSocket
    private let runID: UInt64
    private let decoder: FrameDecoder
    private let lock = NSLock()
    /// Control identity -> last heartbeat (monotonic ns).
    private var lastSeen: [[UInt8]: UInt64] = [:]
    /// Control identity -> why it may not come back.
    private var expelled: [[UInt8]: String] = [:]
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    /// Binds next to the control endpoint `controlBind` (same interface, any free port).
    init(context: ZMQContext, controlBind: String, runID: UInt64, curve: CurveServerConfig?, rejects: RejectCounter) throws {
        self.runID = runID
        decoder = FrameDecoder(expectedRunID: runID, maxPayloadBytes: 4096, rejects: rejects)
        socket = try ZMQSocket(context, type: .router, lingerMilliseconds: 0)
        try curve?.configure(socket)
        let bind: String
        if controlBind.hasPrefix("tcp://"), let host = Endpoint.host(of: controlBind) {
            bind = host.contains(":") ? "tcp://[\(host)]:*" : "tcp://\(host):*"
        } else {
            bind = controlBind + "-heartbeat"
        }
        do {
            try socket.bind(bind)
        } catch {
            socket.close()
            throw CoordinatorError("cannot bind the heartbeat socket at \(bind): \(error)")
        }
        endpoint = bind.hasPrefix("tcp://") ? ((try? socket.lastEndpoint()) ?? bind) : bind
        Thread.detachNewThread { [self] in loop() }
    }

    /// Starts the clock of a member: it counts as heard `grace` seconds from now (a new
    /// member first receives and decodes its WELCOME).
    func register(_ identity: [UInt8], grace: Double = 0) {
        lock.lock()
        lastSeen[identity] = monotonicNanoseconds() &+ UInt64(max(0, grace) * 1e9)
        expelled[identity] = nil
        lock.unlock()
    }

    /// Forgets a member; its later heartbeats are answered with ERROR `reason`.
    func expel(_ identity: [UInt8], reason: String) {
        lock.lock(); lastSeen[identity] = nil; expelled[identity] = reason; lock.unlock()
    }

    /// Seconds since the member was last heard (nil: not registered).
    func silence(_ identity: [UInt8]) -> Double? {
        lock.lock(); defer { lock.unlock() }
        guard let t = lastSeen[identity] else { return nil }
        let now = monotonicNanoseconds()
        return now > t ? Double(now - t) / 1e9 : 0
    }

    func stop() {
        lock.lock(); stopping = true; lock.unlock()
        _ = finished.wait(timeout: .now() + 2)
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func loop() {
        defer {
            socket.close()
            finished.signal()
        }
        let answer = HeartbeatMessage(appliedSteps: 0).frame(runID: runID).encoded
        while !isStopping {
            let parts: [ZMQMessage]?
            do { parts = try socket.receiveMultipart(deadline: .after(milliseconds: 100)) } catch { return }
            guard let parts else { continue }
            guard parts.count == 2, let frame = try? decoder.decode(parts[1]) else {
                if parts.count != 2 { decoder.rejects.record(.unexpected) }
                continue
            }
            guard frame.header.kind == .heartbeat else {
                decoder.rejects.record(.unexpected)
                continue
            }
            let hb = parts[0].bytes
            guard hb.last == 0x68 else { decoder.rejects.record(.unexpected); continue }
            let identity = Array(hb.dropLast())
            lock.lock()
            let known = lastSeen[identity] != nil
            let reason = expelled[identity]
            if known { lastSeen[identity] = max(lastSeen[identity]!, monotonicNanoseconds()) }
            lock.unlock()
            if known {
                try? socket.sendMultipart([hb, answer], deadline: .after(milliseconds: 100))
            } else if let reason {
                let error = ErrorMessage(text: reason).frame(runID: runID).encoded
                try? socket.sendMultipart([hb, error], deadline: .after(milliseconds: 100))
            } else {
                decoder.rejects.record(.unexpected)
            }
        }
    }
}

/// The worker's heartbeat thread and its view of the coordinator.
final class HeartbeatLink: @unchecked Sendable {
    enum Status: Equatable {
        case alive
        /// No answer for this many seconds.
        case lost(Double)
        /// The coordinator answered ERROR (e.g. this worker was declared lost).
        case expelled(String)
    }

    private let socket: ZMQSocket
    private let runID: UInt64
    private let interval: Int
    private let timeout: Double
    private let lock = NSLock()
    private var stopping = false
    private var firstUnanswered: UInt64?
    private var expelledText: String?
    private var applied = 0
    private var rank: UInt32 = FrameHeader.noRank
    private let finished = DispatchSemaphore(value: 0)

    init(context: ZMQContext, endpoint: String, controlIdentity: [UInt8], runID: UInt64, intervalMilliseconds: Int,
         timeoutMilliseconds: Int, curve: CurveClientConfig?) throws {
        self.runID = runID
        interval = max(10, intervalMilliseconds)
        timeout = Double(timeoutMilliseconds) / 1000
        socket = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 0)
        try socket.setRoutingID(controlIdentity + [0x68])
        try socket.setSendHighWaterMark(4)
        try curve?.configure(socket)
        try socket.connect(endpoint)
        Thread.detachNewThread { [self] in loop() }
    }

    func update(rank: Int, appliedSteps: Int) {
        lock.lock(); self.rank = UInt32(rank); applied = appliedSteps; lock.unlock()
    }

    var status: Status {
        lock.lock(); defer { lock.unlock() }
        if let expelledText { return .expelled(expelledText) }
        if let f = firstUnanswered {
            let silent = Double(monotonicNanoseconds() &- f) / 1e9
            if silent > timeout { return .lost(silent) }
        }
        return .alive
    }

    func stop() {
        lock.lock(); stopping = true; lock.unlock()
        _ = finished.wait(timeout: .now() + 2)
    }

    private func loop() {
        defer {
            socket.close()
            finished.signal()
        }
        let decoder = FrameDecoder(expectedRunID: runID, maxPayloadBytes: 1 << 16)
        var lastIteration = monotonicNanoseconds()
        while true {
            lock.lock()
            if stopping { lock.unlock(); return }
            let now = monotonicNanoseconds()
            // Far more than an interval since the last round: this process was suspended
            // (SIGSTOP); the coordinator's silence meanwhile proves nothing, count afresh.
            if now &- lastIteration > UInt64(interval) * 3_000_000 { firstUnanswered = nil }
            lastIteration = now
            let frame = HeartbeatMessage(appliedSteps: applied).frame(runID: runID, sender: rank)
            if firstUnanswered == nil { firstUnanswered = monotonicNanoseconds() }
            lock.unlock()
            try? socket.send(frame: frame, deadline: .after(milliseconds: 0))
            let next = Deadline.after(milliseconds: interval)
            while !next.hasPassed {
                let m: Frame?
                do { m = try socket.receiveFrame(decoder, deadline: Deadline(nanoseconds: min(next.nanoseconds, Deadline.after(milliseconds: 100).nanoseconds))) } catch { return }
                lock.lock()
                if stopping { lock.unlock(); return }
                if let m {
                    if m.header.kind == .heartbeat {
                        firstUnanswered = nil
                    } else if m.header.kind == .error {
                        expelledText = (try? ErrorMessage.decode(m).text) ?? "unreadable error"
                    }
                }
                lock.unlock()
            }
        }
    }
}
