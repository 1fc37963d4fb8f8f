// Key files are read by path whatever the path looks like; fresh key pairs all pass the CURVE
// handshake and the allow-list; a ring socket holds (does not refuse) a peer whose key arrives
// a moment later, while a key that never arrives is refused.
import Foundation
@testable import RNNDistributed
import RNNTransport
import XCTest

final class KeyFileAndAdmissionTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        guard zmqHas("curve") else { throw XCTSkip("libzmq without CURVE") }
        dir = try makeTemporaryDirectory("keys")
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static let z85 = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")

    /// A relative path of `length` characters of the Z85 alphabet; '/' separates folders
    /// (never first, last or doubled, no "." or ".." component).
    func randomPath(length: Int, using rng: inout SystemRandomNumberGenerator) -> String {
        while true {
            var chars: [Character] = []
            for i in 0..<length {
                var c = Self.z85.randomElement(using: &rng)!
                if c == "/" && (i == 0 || i == length - 1 || chars.last == "/") { c = "k" }
                chars.append(c)
            }
            let path = String(chars)
            if !path.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) { return path }
        }
    }

    /// Writes `text` at `relative` under `dir`, creating folders; returns the path as a user
    /// would type it from `dir` (relative, so its length is exactly the length drawn).
    func write(_ text: String, at relative: String, under base: String? = nil) throws -> String {
        let full = ((base ?? dir) as NSString).appendingPathComponent(relative)
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
        return relative
    }

    /// 200 random key file paths of 1-120 characters (a quarter of them exactly 40, the
    /// length of a Z85 key) all load as files: the keys read are the keys written.
    func testKeyFilePathsOfAnyShapeLoadAsPaths() throws {
        let server = try ZMQCurveKeyPair.generate(), client = try ZMQCurveKeyPair.generate()
        var rng = SystemRandomNumberGenerator()
        let saved = FileManager.default.currentDirectoryPath
        defer { _ = FileManager.default.changeCurrentDirectoryPath(saved) }
        var forty = 0
        for i in 0..<200 {
            let length = i % 4 == 0 ? 40 : Int.random(in: 1...120, using: &rng)
            if length == 40 { forty += 1 }
            let base = randomPath(length: length, using: &rng)
            // Each trial in a folder of its own, the path relative to it (so its length is the
            // length drawn); three files: the drawn path and two siblings of equal length.
            let trial = (dir as NSString).appendingPathComponent("trial-\(i)")
            try FileManager.default.createDirectory(atPath: trial, withIntermediateDirectories: true)
            XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(trial))
            let pubPath = try write("public-key = \(server.publicKey)\n", at: base, under: trial)
            let keyPath = try write("public-key = \(client.publicKey)\nsecret-key = \(client.secretKey)\n",
                                    at: String(base.dropLast()) + (base.last == "K" ? "Q" : "K"), under: trial)
            let allowPath = try write("public-key = \(client.publicKey)\n", at: String(base.dropLast()) + (base.last == "A" ? "B" : "A"), under: trial)
            XCTAssertEqual(pubPath.count, length)
            let loaded = try CurveClientConfig.load(keyFile: keyPath, serverKey: pubPath)
            XCTAssertEqual(loaded.serverPublicKey, server.publicKey, "--server-key \(pubPath) was not read as a file")
            XCTAssertEqual(loaded.keys, client)
            let serverConfig = try CurveServerConfig.load(keyFile: keyPath, allowFile: allowPath)
            XCTAssertEqual(serverConfig.allowedClientKeys, [client.publicKey], "--allow \(allowPath) was not read as a file")
        }
        XCTAssertGreaterThanOrEqual(forty, 50)
        // A path that names no file is an error about the file, never a key.
        let missing = String(repeating: "a", count: 40)
        XCTAssertThrowsError(try CurveClientConfig.load(keyFile: missing, serverKey: missing)) { error in
            XCTAssertTrue("\(error)".contains("cannot read the key file \(missing)"), "\(error)")
        }
    }

    func testInlineServerKeysNeedTheZ85Prefix() throws {
        let server = try ZMQCurveKeyPair.generate(), client = try ZMQCurveKeyPair.generate()
        let keyFile = try write("public-key = \(client.publicKey)\nsecret-key = \(client.secretKey)\n", at: "w.key")
        let saved = FileManager.default.currentDirectoryPath
        _ = FileManager.default.changeCurrentDirectoryPath(dir)
        defer { _ = FileManager.default.changeCurrentDirectoryPath(saved) }
        XCTAssertEqual(try CurveClientConfig.load(keyFile: keyFile, serverKey: "z85:" + server.publicKey).serverPublicKey, server.publicKey)
        XCTAssertThrowsError(try CurveClientConfig.load(keyFile: keyFile, serverKey: "z85:tooShort")) { error in
            XCTAssertTrue("\(error)".contains("expects 40 Z85 characters"), "\(error)")
        }
        XCTAssertThrowsError(try CurveClientConfig.load(keyFile: keyFile, serverKey: server.publicKey)) { error in
            XCTAssertTrue("\(error)".contains("cannot read the key file"), "a bare key is a path: \(error)")
        }
    }

    /// 50 fresh `keygen` pairs (written as files, read back with the program's loaders) all
    /// complete the CURVE handshake with a coordinator-like server whose allow-list is the
    /// concatenation of their .pub files, and exchange a message.
    func testFiftyFreshKeyPairsAllJoin() throws {
        let server = try CurveKeyFiles.generate(directory: dir, name: "coordinator")
        var allow = ""
        var clients: [CurveClientConfig] = []
        for i in 0..<50 {
            let pair = try CurveKeyFiles.generate(directory: dir, name: "worker\(i)")
            allow += try String(contentsOfFile: pair.publicFile, encoding: .utf8)
            clients.append(try CurveClientConfig.load(keyFile: pair.keyFile, serverKey: server.publicFile))
        }
        let allowFile = try write(allow, at: "workers.allow")
        let serverConfig = try CurveServerConfig.load(keyFile: server.keyFile, allowFile: (dir as NSString).appendingPathComponent(allowFile))
        XCTAssertEqual(serverConfig.allowedClientKeys.count, 50)
        let context = try ZMQContext()
        defer { context.shutdown() }
        let zap = try ZAPAuthenticator(context: context, allowed: serverConfig.allowedClientKeys, rejections: PeerRejections(), log: { _ in })
        defer { zap.stop() }
        let router = try ZMQSocket(context, type: .router, lingerMilliseconds: 0)
        defer { router.close() }
        try serverConfig.configure(router)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint()
        var dealers: [ZMQSocket] = []
        defer { for d in dealers { d.close() } }
        for (i, c) in clients.enumerated() {
            let d = try ZMQSocket(context, type: .dealer, lingerMilliseconds: 0)
            try c.configure(d)
            try d.connect(endpoint)
            try d.send(Array("hello \(i)".utf8), deadline: .after(seconds: 5))
            dealers.append(d)
        }
        var joined = Set<String>()
        let deadline = Deadline.after(seconds: 20)
        while joined.count < 50, let parts = try router.receiveMultipart(deadline: deadline) {
            joined.insert(String(decoding: parts[1].bytes, as: UTF8.self))
            try router.sendMultipart([parts[0].bytes, Array("welcome".utf8)], deadline: .after(seconds: 5))
        }
        XCTAssertEqual(joined.count, 50, "only \(joined.count) of 50 fresh key pairs got through the handshake")
        for d in dealers {
            XCTAssertEqual(try d.receive(deadline: .after(seconds: 5))?.bytes, Array("welcome".utf8))
        }
    }

    /// A CURVE-server PULL socket behind `gate` (bound on loopback) and a CURVE PUSH peer with
    /// `peerKeys` connected to it from `peerContext`, its first frame sent.
    func ringPair(_ context: ZMQContext, _ peerContext: ZMQContext, peerKeys: ZMQCurveKeyPair) throws -> (receiver: ZMQSocket, sender: ZMQSocket) {
        let serverKeys = try ZMQCurveKeyPair.generate()
        let receiver = try ZMQSocket(context, type: .pull, lingerMilliseconds: 0)
        try receiver.setZAPDomain("rnn-trainer")
        try receiver.configureCurveServer(keys: serverKeys)
        try receiver.bind("tcp://127.0.0.1:*")
        let sender = try ZMQSocket(peerContext, type: .push, lingerMilliseconds: 0)
        try sender.configureCurveClient(keys: peerKeys, serverPublicKey: serverKeys.publicKey)
        try sender.connect(try receiver.lastEndpoint())
        try sender.send(Array("chunk".utf8), deadline: .after(seconds: 1))
        return (receiver, sender)
    }

    /// The ring's admission: a peer that connects before its key is allowed is held, then
    /// accepted when `setAllowed` adds the key (its message arrives); without the hold (the
    /// old behaviour) the same peer is refused and ZeroMQ never retries it.
    func testRingGateHoldsAnEarlyPeerUntilItsKeyArrives() throws {
        for hold in [5.0, 0.0] {
            let context = try ZMQContext()
            defer { context.shutdown() }
            let logs = Box<[String]>([])
            let gate = try ZAPAuthenticator(context: context, allowed: [], rejections: PeerRejections(), holdSeconds: hold,
                                            log: { line in logs.update { $0.append(line) } })
            defer { gate.stop() }
            let peerKeys = try ZMQCurveKeyPair.generate()
            let peerContext = try ZMQContext()
            defer { peerContext.shutdown() }
            let (receiver, sender) = try ringPair(context, peerContext, peerKeys: peerKeys)
            defer { receiver.close(); sender.close() }
            usleep(300_000)  // the peer's handshake is waiting on ZAP now
            gate.setAllowed([peerKeys.publicKey])
            let got = try receiver.receive(deadline: .after(seconds: 3))
            if hold > 0 {
                XCTAssertEqual(got?.bytes, Array("chunk".utf8), "the held peer was not admitted once its key arrived")
                XCTAssertTrue(logs.get.isEmpty, "\(logs.get)")
            } else {
                XCTAssertNil(got, "without the hold the early peer is refused for good")
                XCTAssertTrue(logs.get.contains { $0.contains("not on the allow-list") }, "\(logs.get)")
            }
        }
        // A key that never arrives is refused when the hold runs out.
        let context = try ZMQContext()
        defer { context.shutdown() }
        let logs = Box<[String]>([])
        let gate = try ZAPAuthenticator(context: context, allowed: [], rejections: PeerRejections(), holdSeconds: 0.5,
                                        log: { line in logs.update { $0.append(line) } })
        defer { gate.stop() }
        let (receiver, sender) = try ringPair(context, context, peerKeys: try ZMQCurveKeyPair.generate())
        defer { receiver.close(); sender.close() }
        XCTAssertNil(try receiver.receive(deadline: .after(seconds: 2)))
        XCTAssertTrue(logs.get.contains { $0.contains("not on the allow-list") }, "\(logs.get)")
    }
}
