// Who may join: CURVE keys and the allow-list, the run token, the --insecure rule; and proof
// that CURVE traffic is encrypted, by recording the bytes through a TCP proxy.
import Foundation
import XCTest

/// Forwards TCP connections from a local port to `target` and records every byte both ways.
final class RecordingProxy: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let targetPort: Int
    private let lock = NSLock()
    private var recorded = Data()

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, len) == 0 && listen(listener, 8) == 0 && getsockname(listener, $0, &len) == 0
            }
        }
        guard ok else { throw XCTSkip("cannot open the recording proxy's port") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var bytes: Data { lock.lock(); defer { lock.unlock() }; return recorded }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(targetPort).bigEndian
            let connected = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else { close(client); close(upstream); continue }
            Thread.detachNewThread { [self] in pump(from: client, to: upstream) }
            Thread.detachNewThread { [self] in pump(from: upstream, to: client) }
        }
    }

    private func pump(from a: Int32, to b: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(a, &buffer, buffer.count)
            if n <= 0 { break }
            lock.lock(); recorded.append(contentsOf: buffer[0..<n]); lock.unlock()
            var sent = 0
            while sent < n {
                let m = buffer[sent..<n].withUnsafeBytes { write(b, $0.baseAddress, n - sent) }
                if m <= 0 { break }
                sent += m
            }
        }
        shutdown(b, Int32(SHUT_WR))
    }
}

final class SecurityTests: XCTestCase {
    var dir = ""
    var keys: String { (dir as NSString).appendingPathComponent("keys") }
    func key(_ name: String) -> String { (keys as NSString).appendingPathComponent(name) }

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("sec") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func smallRun(_ extra: [String]) -> [String] {
        ["start", "--data", repositoryRoot.appendingPathComponent("datasets/digits/digits-train.h5").path,
         "--cell", "gru", "--hidden", "32", "--batch-size", "64", "--epochs", "2", "--max-steps", "30",
         "--bind", "tcp://127.0.0.1:*", "--heartbeat-timeout", "2", "--heartbeat-interval", "0.2", "--join-timeout", "30"] + extra
    }

    func keygen(_ name: String) throws {
        let p = try ChildProcess("rnn-coord", ["keygen", "--out", keys, "--name", name])
        XCTAssertEqual(p.wait(timeout: 30), 0, p.output)
    }

    func testKeygenWritesASecretAndAPublicFile() throws {
        try keygen("node")
        let secret = try String(contentsOfFile: key("node.key"), encoding: .utf8)
        let pub = try String(contentsOfFile: key("node.pub"), encoding: .utf8)
        let attributes = try FileManager.default.attributesOfItem(atPath: key("node.key"))
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let publicLine = try XCTUnwrap(pub.split(separator: "\n").first { $0.hasPrefix("public-key = ") })
        XCTAssertEqual(publicLine.count, "public-key = ".count + 40)
        XCTAssertTrue(secret.contains(publicLine) && secret.contains("secret-key = "), secret)
        XCTAssertFalse(pub.contains("secret-key"))
        let again = try ChildProcess("rnn-coord", ["keygen", "--out", keys, "--name", "node"])
        XCTAssertNotEqual(again.wait(timeout: 30), 0)
        XCTAssertTrue(again.output.contains("exists already"), again.output)
    }

    /// With CURVE: the listed worker trains; a worker whose key is not listed and a worker
    /// that expects another server key cannot join; the recorded control traffic holds no
    /// plaintext (no frame magic, no config JSON), while the same run without CURVE does.
    func testCURVEAllowListAndEncryptedTraffic() throws {
        for name in ["coord", "alice", "mallory"] { try keygen(name) }
        try FileManager.default.copyItem(atPath: key("alice.pub"), toPath: key("allowed"))
        let coord = try ChildProcess("rnn-coord", smallRun(["--workers", "1", "--curve-key", key("coord.key"), "--allow", key("allowed")]))
        let endpoint = try coordinatorEndpoint(coord)
        let port = try XCTUnwrap(Int(endpoint.split(separator: ":").last!))
        let proxy = try RecordingProxy(targetPort: port)
        defer { proxy.stop() }
        // Not on the allow-list.
        let mallory = try ChildProcess("rnn-worker", ["--connect", endpoint, "--curve-key", key("mallory.key"),
                                                      "--server-key", key("coord.pub"), "--join-timeout", "3"])
        // Listed, but expects another coordinator key (a man in the middle would hold that one).
        let confused = try ChildProcess("rnn-worker", ["--connect", endpoint, "--curve-key", key("alice.key"),
                                                       "--server-key", key("mallory.pub"), "--join-timeout", "3"])
        XCTAssertNotEqual(mallory.wait(timeout: 30), 0, mallory.output)
        XCTAssertNotEqual(confused.wait(timeout: 30), 0, confused.output)
        // The refusal is named (it used to be a silent wait: "no answer from the coordinator").
        XCTAssertTrue(mallory.output.contains("rejected our CURVE handshake") && mallory.output.contains("allow-list"), mallory.output)
        XCTAssertTrue(confused.output.contains("check --server-key"), confused.output)
        XCTAssertTrue(coord.output.contains("not on the allow-list"), coord.output)
        let alice = try ChildProcess("rnn-worker", ["--connect", "tcp://127.0.0.1:\(proxy.port)", "--curve-key", key("alice.key"),
                                                    "--server-key", key("coord.pub")])
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        XCTAssertEqual(alice.wait(timeout: 30), 0, alice.output)
        XCTAssertTrue(alice.output.contains("done after 30 steps"), alice.output)
        let encrypted = proxy.bytes
        XCTAssertGreaterThan(encrypted.count, 20_000, "the WELCOME with the model state went through the proxy")
        XCTAssertNil(encrypted.range(of: Data("RNNT".utf8)), "frame magic visible on the wire")
        XCTAssertNil(encrypted.range(of: Data("batchSize".utf8)), "config JSON visible on the wire")

        // Control: the same run without CURVE shows both in the clear, so the check can fail.
        let plainCoord = try ChildProcess("rnn-coord", smallRun(["--workers", "1"]))
        let plainPort = try XCTUnwrap(Int(try coordinatorEndpoint(plainCoord).split(separator: ":").last!))
        let plainProxy = try RecordingProxy(targetPort: plainPort)
        defer { plainProxy.stop() }
        let token = try XCTUnwrap(String(contentsOfFile: tokenFile(plainCoord), encoding: .utf8).split(separator: "\n").first.map(String.init))
        let bob = try ChildProcess("rnn-worker", ["--connect", "tcp://127.0.0.1:\(plainProxy.port)", "--token", token])
        XCTAssertEqual(plainCoord.wait(timeout: 60), 0, plainCoord.output)
        XCTAssertEqual(bob.wait(timeout: 30), 0, bob.output)
        XCTAssertNotNil(plainProxy.bytes.range(of: Data("RNNT".utf8)))
        XCTAssertNotNil(plainProxy.bytes.range(of: Data("batchSize".utf8)))
        print("CURVE: \(encrypted.count) bytes recorded, no plaintext; without CURVE \(plainProxy.bytes.count) bytes with frame magic and config JSON")
    }

    func tokenFile(_ coord: ChildProcess) throws -> String {
        let line = try XCTUnwrap(coord.waitForLine(containing: "run token in ", timeout: 30), coord.output)
        let after = try XCTUnwrap(line.range(of: "run token in ")).upperBound
        return String(line[after...].prefix { $0 != ")" })
    }

    /// Loopback without keys: a wrong token is refused and counted, the right one (read from
    /// the coordinator's user-only token file) joins.
    func testWrongRunTokenIsRefusedAndCounted() throws {
        let coord = try ChildProcess("rnn-coord", smallRun(["--workers", "1"]))
        let endpoint = try coordinatorEndpoint(coord)
        let file = try tokenFile(coord)
        let mode = (try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? NSNumber)?.intValue
        XCTAssertEqual(mode, 0o600, "the token file is readable by its user only")
        let intruder = try ChildProcess("rnn-worker", ["--connect", endpoint, "--token", "0123456789abcdef", "--join-timeout", "5"])
        XCTAssertNotEqual(intruder.wait(timeout: 30), 0)
        XCTAssertTrue(intruder.output.contains("wrong run token"), intruder.output)
        let worker = try ChildProcess("rnn-worker", ["--connect", endpoint])
        XCTAssertEqual(coord.wait(timeout: 60), 0, coord.output)
        XCTAssertEqual(worker.wait(timeout: 30), 0, worker.output)
        XCTAssertTrue(coord.output.contains("Refused a worker"), coord.output)
        XCTAssertTrue(coord.output.contains("1 peer(s)"), coord.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file), "the token file is removed at the end")
    }

    func testNonLoopbackBindWithoutKeysNeedsInsecure() throws {
        let args = smallRun(["--workers", "1", "--join-timeout", "1"]).map { $0 == "tcp://127.0.0.1:*" ? "tcp://0.0.0.0:*" : $0 }
        let refused = try ChildProcess("rnn-coord", args)
        XCTAssertNotEqual(refused.wait(timeout: 30), 0)
        XCTAssertTrue(refused.output.contains("--insecure") && refused.output.contains("--curve-key"), refused.output)
        let allowed = try ChildProcess("rnn-coord", args + ["--insecure"])
        XCTAssertNotEqual(allowed.wait(timeout: 30), 0, "no worker joins within 1 s")
        XCTAssertTrue(allowed.output.contains("only 0 of 1 workers joined"), allowed.output)
    }
}
