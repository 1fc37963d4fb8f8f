// CURVE key allowlist: a ZAP (ZeroMQ Authentication Protocol, RFC 27) handler serving one
// context. Every CURVE handshake on any socket of that context asks it; only listed client
// public keys are accepted, everything else is refused (and counted).
import CZeroMQ
import Foundation

/// Accepts CURVE clients whose public key is in the allowlist. Runs one handler thread
/// bound to `inproc://zeromq.zap.01` of `context`; create it before the server sockets
/// start accepting. Note: it also judges CURVE connections of every other socket in the
/// same context (e.g. the all-reduce ring), so list those keys too. The handler thread keeps
/// this object (and the context) alive until `stop()` is called.
public final class ZAPAllowlist: @unchecked Sendable {
    private let lock = NSLock()
    private var allowed: Set<String>
    private var stopRequested = false
    private var acceptedCount = 0
    private var deniedCount = 0
    private var deniedKeys: [String] = []
    private let finished = DispatchSemaphore(value: 0)
    private var started = false

    /// Starts the handler with `allowedPublicKeys` (Z85 text, 40 characters each).
    public init(context: ZMQContext, allowedPublicKeys: Set<String>) throws(ZMQError) {
        allowed = allowedPublicKeys
        let socket = try ZMQSocket(context, type: .rep, lingerMilliseconds: 0)
        try socket.bind("inproc://zeromq.zap.01")
        let handler = Thread { [self] in
            self.serve(socket)
            socket.close(discardPending: true)
            self.finished.signal()
        }
        handler.name = "ZAP allowlist"
        handler.start()
        started = true
    }

    deinit { stop() }

    /// Stops the handler (within ~100 ms). New CURVE handshakes then fail.
    public func stop() {
        lock.lock()
        let wasRunning = started && !stopRequested
        stopRequested = true
        lock.unlock()
        if wasRunning { finished.wait() }
    }

    /// Adds or removes a key while running.
    public func allow(_ publicKey: String) { lock.lock(); allowed.insert(publicKey); lock.unlock() }
    public func revoke(_ publicKey: String) { lock.lock(); allowed.remove(publicKey); lock.unlock() }

    public var accepted: Int { lock.lock(); defer { lock.unlock() }; return acceptedCount }
    public var denied: Int { lock.lock(); defer { lock.unlock() }; return deniedCount }
    /// Public keys refused so far (for the log: "foreign worker key ... refused").
    public var deniedPublicKeys: [String] { lock.lock(); defer { lock.unlock() }; return deniedKeys }

    private var shouldStop: Bool { lock.lock(); defer { lock.unlock() }; return stopRequested }

    private func serve(_ socket: ZMQSocket) {
        while !shouldStop {
            guard let request = try? socket.receiveMultipart(deadline: .after(milliseconds: 100)) else { continue }
            let reply = answer(request.map(\.bytes))
            do {
                try socket.sendMultipart(reply, deadline: .after(milliseconds: 1000))
            } catch {
                continue  // the requester went away; REP needs a new request next
            }
        }
    }

    /// ZAP request: version, request id, domain, address, identity, mechanism, credentials...
    /// Reply: version, request id, status code, status text, user id, metadata.
    private func answer(_ frames: [[UInt8]]) -> [[UInt8]] {
        let requestID = frames.count > 1 ? frames[1] : []
        func reply(_ code: String, _ text: String, user: String = "") -> [[UInt8]] {
            [Array("1.0".utf8), requestID, Array(code.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        guard frames.count >= 6, frames[0] == Array("1.0".utf8) else { return reply("500", "malformed ZAP request") }
        let mechanism = String(decoding: frames[5], as: UTF8.self)
        guard mechanism == "CURVE", frames.count >= 7, frames[6].count == 32 else {
            return reply("400", "only CURVE clients are accepted")
        }
        var text = [CChar](repeating: 0, count: 41)
        let encoded = frames[6].withUnsafeBufferPointer { key in zmq_z85_encode(&text, key.baseAddress, 32) }
        guard encoded != nil else { return reply("500", "cannot encode client key") }
        let key = String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        lock.lock()
        let ok = allowed.contains(key)
        if ok { acceptedCount += 1 } else { deniedCount += 1; deniedKeys.append(key) }
        lock.unlock()
        return ok ? reply("200", "OK", user: key) : reply("400", "public key not in the allowlist")
    }
}
