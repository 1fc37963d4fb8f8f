// Who may join a run.
//
// - Loopback, no keys: a per-run token. The coordinator draws 16 random bytes (hex), writes
//   them to a token file only its user can read (`RunToken.defaultPath(port:)`, mode 0600)
//   and requires the token in every HELLO. Workers on the same machine read that file (or
//   get `--token` / RNN_TOKEN); other local users cannot.
// - CURVE (ZeroMQ's CurveZMQ: X25519 + XSalsa20-Poly1305): the coordinator's sockets are CURVE
//   servers with the coordinator's key pair; a ZAP handler (`ZAPAuthenticator`, a REP socket on
//   inproc://zeromq.zap.01 in the coordinator's context, on its own thread) accepts only
//   client public keys listed in the allow-list file. A worker is a CURVE client that checks
//   the server's public key: a coordinator without the matching secret key cannot finish
//   the handshake. All control and heartbeat traffic is then encrypted.
// - Anything but loopback without keys needs an explicit `--insecure` (still token-checked).
//
// Key files (text, written by `rnn-coord keygen --out DIR --name NAME`):
//   NAME.key   "# rnn-trainer CURVE key pair: keep this file secret"
//              "public-key = <40 Z85 characters>"
//              "secret-key = <40 Z85 characters>"      (mode 0600)
//   NAME.pub   "public-key = <40 Z85 characters>"
// Allow-list: any text file with one public key per line, either bare or as
// "public-key = KEY" (so `cat *.pub > allowed` works); a line starting with '#' is a comment
// ('#' inside a line belongs to the key: it is a Z85 character).
import Foundation
import RNNTransport

/// A security setup error, naming the file or flag.
public struct SecurityError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The coordinator side of CURVE: its key pair and the workers' public keys it accepts.
public struct CurveServerConfig: Sendable {
    public var keys: ZMQCurveKeyPair
    public var allowedClientKeys: Set<String>

    public init(keys: ZMQCurveKeyPair, allowedClientKeys: Set<String>) {
        self.keys = keys
        self.allowedClientKeys = allowedClientKeys
    }

    /// Reads `keyFile` (NAME.key) and `allowFile` (public keys).
    public static func load(keyFile: String, allowFile: String) throws -> CurveServerConfig {
        let keys = try CurveKeyFiles.readKeyPair(keyFile)
        let allowed = try CurveKeyFiles.readPublicKeys(allowFile)
        if allowed.isEmpty { throw SecurityError("allow-list \(allowFile) holds no public key; expected one 40-character Z85 key per line") }
        return CurveServerConfig(keys: keys, allowedClientKeys: allowed)
    }

    func configure(_ socket: ZMQSocket) throws {
        try socket.setZAPDomain("rnn-trainer")
        try socket.configureCurveServer(keys: keys)
    }
}

/// The worker side of CURVE: its key pair and the coordinator's public key it expects.
public struct CurveClientConfig: Sendable {
    public var keys: ZMQCurveKeyPair
    public var serverPublicKey: String

    public init(keys: ZMQCurveKeyPair, serverPublicKey: String) {
        self.keys = keys
        self.serverPublicKey = serverPublicKey
    }

    /// Reads `keyFile` (NAME.key) and the coordinator's key: the path of its .pub file, or
    /// `z85:` followed by the 40 characters. A path is always read as a path, even one that
    /// happens to be 40 characters of the Z85 alphabet (`/tmp/tmp.XXXXXXXXXX/keys/coord.pub`).
    public static func load(keyFile: String, serverKey: String) throws -> CurveClientConfig {
        let keys = try CurveKeyFiles.readKeyPair(keyFile)
        let server: String
        if serverKey.hasPrefix(CurveKeyFiles.inlinePrefix) {
            let inline = String(serverKey.dropFirst(CurveKeyFiles.inlinePrefix.count))
            guard CurveKeyFiles.isZ85Key(inline) else {
                throw SecurityError("'--server-key \(CurveKeyFiles.inlinePrefix)...' expects 40 Z85 characters after '\(CurveKeyFiles.inlinePrefix)', found \(inline.count) character(s)")
            }
            server = inline
        } else {
            guard let first = try CurveKeyFiles.readPublicKeys(serverKey).first else {
                throw SecurityError("\(serverKey) holds no public key; expected 'public-key = <40 Z85 characters>'")
            }
            server = first
        }
        return CurveClientConfig(keys: keys, serverPublicKey: server)
    }

    func configure(_ socket: ZMQSocket) throws {
        try socket.configureCurveClient(keys: keys, serverPublicKey: serverPublicKey)
    }
}

/// Reading and writing the key files described at the top of this file.
public enum CurveKeyFiles {
    /// Marks a key given inline on the command line (`--server-key z85:KEY`) instead of a path.
    public static let inlinePrefix = "z85:"
    static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    /// True for 40 characters of the Z85 alphabet.
    public static func isZ85Key(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 40 && bytes.allSatisfy { alphabet.contains($0) }
    }

    /// Z85 text of `data` (its length a multiple of 4), as the ZMQ RFC 32 defines it.
    public static func z85Encode(_ data: [UInt8]) -> String? {
        guard data.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(data.count / 4 * 5)
        var i = 0
        while i < data.count {
            var value = UInt32(data[i]) << 24 | UInt32(data[i + 1]) << 16 | UInt32(data[i + 2]) << 8 | UInt32(data[i + 3])
            var chunk = [UInt8](repeating: 0, count: 5)
            for k in stride(from: 4, through: 0, by: -1) {
                chunk[k] = alphabet[Int(value % 85)]
                value /= 85
            }
            out += chunk
            i += 4
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes NAME.key (mode 0600) and NAME.pub into `directory`; returns both paths.
    public static func generate(directory: String, name: String) throws -> (keyFile: String, publicFile: String) {
        guard !name.isEmpty, !name.contains("/") else { throw SecurityError("'--name' must be a plain file name, found '\(name)'") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pair = try ZMQCurveKeyPair.generate()
        let keyFile = (directory as NSString).appendingPathComponent("\(name).key")
        let publicFile = (directory as NSString).appendingPathComponent("\(name).pub")
        for path in [keyFile, publicFile] where FileManager.default.fileExists(atPath: path) {
            throw SecurityError("\(path) exists already; remove it or choose another '--name'")
        }
        let secret = "# rnn-trainer CURVE key pair: keep this file secret\npublic-key = \(pair.publicKey)\nsecret-key = \(pair.secretKey)\n"
        guard FileManager.default.createFile(atPath: keyFile, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw SecurityError("cannot write \(keyFile)")
        }
        let pub = "# rnn-trainer CURVE public key (\(name)): add this line to the coordinator's allow-list\npublic-key = \(pair.publicKey)\n"
        guard FileManager.default.createFile(atPath: publicFile, contents: Data(pub.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw SecurityError("cannot write \(publicFile)")
        }
        return (keyFile, publicFile)
    }

    /// `key = value` pairs and bare keys of a key file, comments removed.
    static func entries(_ path: String) throws -> [(key: String?, value: String)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw SecurityError("cannot read the key file \(path)")
        }
        var result: [(String?, String)] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            // Only whole-line comments: '#' is a Z85 character.
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if let eq = trimmed.firstIndex(of: "=") , !isZ85Key(trimmed) {
                let k = trimmed[..<eq].trimmingCharacters(in: .whitespaces)
                let v = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                result.append((k, v))
            } else {
                result.append((nil, trimmed))
            }
        }
        return result
    }

    public static func readKeyPair(_ path: String) throws -> ZMQCurveKeyPair {
        let e = try entries(path)
        guard let secret = e.first(where: { $0.key == "secret-key" })?.value else {
            throw SecurityError("\(path) holds no 'secret-key = ...' line; expected a NAME.key file from `rnn-coord keygen`")
        }
        guard isZ85Key(secret) else { throw SecurityError("\(path): the secret key is not 40 Z85 characters") }
        let derived = try ZMQCurveKeyPair.publicKey(forSecret: secret)
        if let stated = e.first(where: { $0.key == "public-key" })?.value, stated != derived {
            throw SecurityError("\(path): the public key does not belong to the secret key")
        }
        return ZMQCurveKeyPair(publicKey: derived, secretKey: secret)
    }

    public static func readPublicKeys(_ path: String) throws -> Set<String> {
        var keys = Set<String>()
        for (k, v) in try entries(path) {
            if k == "secret-key" { continue }
            guard isZ85Key(v) else { throw SecurityError("\(path): '\(v.prefix(60))' is not a 40-character Z85 public key") }
            keys.insert(v)
        }
        return keys
    }
}

/// The per-run token of loopback runs and its file.
public enum RunToken {
    /// 16 random bytes as 32 hex digits.
    public static func generate() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// Where a coordinator bound to loopback port `port` leaves its token for local workers.
    public static func defaultPath(port: String) -> String {
        let base = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? NSTemporaryDirectory()
        return (base as NSString).appendingPathComponent("rnn-coord-\(getuid())-\(port).token")
    }

    /// Writes `token` to `path`, readable by this user only.
    static func write(_ token: String, to path: String) throws {
        unlink(path)
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw SecurityError("cannot write the run token file \(path)")
        }
    }

    /// The token in `path`, or nil.
    static func read(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }
}

/// Counts of refused peers, by reason; thread-safe.
public final class PeerRejections: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]

    public init() {}

    func record(_ reason: String) {
        lock.lock(); counts[reason, default: 0] += 1; lock.unlock()
    }

    public var total: Int { lock.lock(); defer { lock.unlock() }; return counts.values.reduce(0, +) }
    public var snapshot: [String: Int] { lock.lock(); defer { lock.unlock() }; return counts }
}

/// A log that says each thing once per key (e.g. a peer address), then at most once per
/// `interval` with the count of repeats in between: a peer that retries every 100 ms must not
/// flood the log. Thread-safe.
final class RateLimitedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var last: [String: (time: Double, suppressed: Int)] = [:]
    private let interval: Double
    private let log: @Sendable (String) -> Void

    init(interval: Double = 60, log: @escaping @Sendable (String) -> Void) {
        self.interval = interval
        self.log = log
    }

    func callAsFunction(key: String, _ text: @autoclosure () -> String) {
        let now = Double(monotonicNanoseconds()) / 1e9
        lock.lock()
        let entry = last[key]
        let due = entry.map { now - $0.time >= interval } ?? true
        let suppressed = entry?.suppressed ?? 0
        last[key] = due ? (now, 0) : (entry!.time, suppressed + 1)
        lock.unlock()
        guard due else { return }
        log(suppressed > 0 ? "\(text()) (\(suppressed) more time(s) since the last report)" : text())
    }
}

/// A ZAP handler (RFC 27) for CURVE: accepts a client whose public key is allowed. Runs on
/// its own thread; `stop()` ends it.
///
/// With `holdSeconds` > 0 a request of a key that is not (yet) allowed is not answered at
/// once: it waits until `setAllowed` adds the key, or until `holdSeconds` pass (then refused).
/// A worker's ring socket needs this: its ring peers learn each other's keys from the same RING
/// message, and a peer that read it first connects before this worker has installed the keys.
/// ZeroMQ never retries a connection whose key was refused, so refusing it would stall the
/// first step until the ring timeout. Requests are read on a ROUTER socket so that several
/// can wait at once (libzmq's ZAP requests carry the REQ envelope).
final class ZAPAuthenticator: @unchecked Sendable {
    private let socket: ZMQSocket
    private var allowed: Set<String>
    private let rejections: PeerRejections
    private let log: RateLimitedLog
    private let holdSeconds: Double
    private let lock = NSLock()
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    /// A request waiting for its key to be allowed.
    private struct Held {
        var envelope: [[UInt8]]
        var version: [UInt8]
        var requestID: [UInt8]
        var key: String
        var address: String
        var deadline: Deadline
    }

    /// Binds inproc://zeromq.zap.01 in `context` (before any CURVE server socket binds).
    init(context: ZMQContext, allowed: Set<String>, rejections: PeerRejections, holdSeconds: Double = 0,
         log: @escaping @Sendable (String) -> Void) throws {
        socket = try ZMQSocket(context, type: .router, lingerMilliseconds: 0)
        try socket.bind("inproc://zeromq.zap.01")
        self.allowed = allowed
        self.rejections = rejections
        self.holdSeconds = holdSeconds
        self.log = RateLimitedLog(log: log)
        Thread.detachNewThread { [self] in loop() }
    }

    func stop() {
        lock.lock(); stopping = true; lock.unlock()
        _ = finished.wait(timeout: .now() + 2)
    }

    /// Replaces the allowed keys (a worker's ring: the current ring members' keys); held
    /// requests of newly allowed keys are accepted within a poll slice (5 ms).
    func setAllowed(_ keys: Set<String>) {
        lock.lock(); allowed = keys; lock.unlock()
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private func isAllowed(_ key: String) -> Bool { lock.lock(); defer { lock.unlock() }; return allowed.contains(key) }

    private func reply(_ envelope: [[UInt8]], _ version: [UInt8], _ requestID: [UInt8], ok: Bool) {
        let status = ok ? "200" : "400", text = ok ? "OK" : "not allowed"
        _ = try? socket.sendMultipart(envelope + [version, requestID, Array(status.utf8), Array(text.utf8), [], []],
                                      deadline: .after(milliseconds: 1000))
    }

    private func refuse(_ key: String, from address: String) {
        rejections.record("CURVE key not on the allow-list")
        log(key: address, "refused a CURVE client from \(address): public key \(key) is not on the allow-list")
    }

    private func loop() {
        defer {
            socket.close()
            finished.signal()
        }
        var held: [Held] = []
        while !isStopping {
            // Held requests: accept the ones allowed meanwhile, refuse the expired ones.
            held.removeAll { h in
                if isAllowed(h.key) {
                    reply(h.envelope, h.version, h.requestID, ok: true)
                    return true
                }
                if h.deadline.hasPassed {
                    refuse(h.key, from: h.address)
                    reply(h.envelope, h.version, h.requestID, ok: false)
                    return true
                }
                return false
            }
            let received: [ZMQMessage]?
            do {
                received = try socket.receiveMultipart(deadline: .after(milliseconds: held.isEmpty ? 100 : 5))
            } catch { return }
            guard let parts = received else { continue }
            // routing id, empty delimiter, then version, request id, domain, address, identity,
            // mechanism, credentials...
            let frames = parts.map(\.bytes)
            guard let delimiter = frames.firstIndex(where: \.isEmpty), frames.count >= delimiter + 7 else { continue }
            let envelope = Array(frames[...delimiter])
            let body = Array(frames[(delimiter + 1)...])
            let version = body[0], requestID = body[1]
            let address = String(decoding: body[3], as: UTF8.self)
            let mechanism = String(decoding: body[5], as: UTF8.self)
            guard mechanism == "CURVE", body.count >= 7, let key = CurveKeyFiles.z85Encode(body[6]) else {
                rejections.record("not CURVE")
                log(key: address, "refused a \(mechanism) client from \(address): CURVE with an allowed key is required")
                reply(envelope, version, requestID, ok: false)
                continue
            }
            if isAllowed(key) {
                reply(envelope, version, requestID, ok: true)
            } else if holdSeconds > 0 {
                held.append(Held(envelope: envelope, version: version, requestID: requestID, key: key, address: address,
                                 deadline: .after(seconds: holdSeconds)))
            } else {
                refuse(key, from: address)
                reply(envelope, version, requestID, ok: false)
            }
        }
    }
}
