// Multi-host on one machine: the coordinator and three workers each in their own network
// namespace with their own address on a bridge (ip netns + veth, needs root). Cutting one
// worker's link (ip link set down) is handled as a lost worker: the others finish.
import Foundation
import XCTest

final class NetworkNamespaceTests: XCTestCase {
    let ip = FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip"
    let id = String(UInt32.random(in: 0..<0xFFFF), radix: 16)
    var namespaces: [String] = []
    var bridge: String { "rnnbr\(id)" }

    @discardableResult
    func run(_ args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ip)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    func must(_ args: [String]) throws {
        let (status, out) = run(args)
        if status != 0 { throw XCTSkip("network namespaces are not usable here: `ip \(args.joined(separator: " "))` failed: \(out)") }
    }

    override func tearDown() {
        for ns in namespaces { run(["netns", "del", ns]) }
        run(["link", "del", bridge])
    }

    /// Namespace i gets 10.213.7.(i+1)/24 on a veth whose other end is on the bridge.
    func setUpNetwork(count: Int) throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: ip) else {
            throw XCTSkip("network namespace test skipped: needs root and the ip tool (uid \(getuid()))")
        }
        try must(["link", "add", bridge, "type", "bridge"])
        try must(["link", "set", bridge, "up"])
        for i in 0..<count {
            let ns = "rnn\(id)n\(i)"
            try must(["netns", "add", ns])
            namespaces.append(ns)
            try must(["link", "add", "rh\(id)\(i)", "type", "veth", "peer", "name", "rn\(id)\(i)"])
            try must(["link", "set", "rn\(id)\(i)", "netns", ns])
            try must(["link", "set", "rh\(id)\(i)", "master", bridge])
            try must(["link", "set", "rh\(id)\(i)", "up"])
            try must(["-n", ns, "addr", "add", "10.213.7.\(i + 1)/24", "dev", "rn\(id)\(i)"])
            try must(["-n", ns, "link", "set", "rn\(id)\(i)", "up"])
            try must(["-n", ns, "link", "set", "lo", "up"])
        }
    }

    func inNamespace(_ i: Int, _ product: String, _ args: [String]) throws -> ChildProcess {
        try ChildProcess(ip, ["netns", "exec", namespaces[i], productsDirectory.appendingPathComponent(product).path] + args)
    }

    func testCuttingAWorkersLinkInItsOwnNamespaceIsALostWorker() throws {
        try setUpNetwork(count: 4)
        let dir = try makeTemporaryDirectory("netns")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "netns-test-token-\(id)"
        var args = faultArguments(["--workers", "3", "--insecure", "--token", token, "--checkpoint-dir", dir])
        args = args.map { $0 == "tcp://127.0.0.1:*" ? "tcp://10.213.7.1:5555" : $0 }
        let coord = try inNamespace(0, "rnn-coord", args)
        XCTAssertNotNil(coord.waitForLine(containing: "listening on", timeout: 60), coord.output)
        let workers = try (1...3).map { try inNamespace($0, "rnn-worker", ["--connect", "tcp://10.213.7.1:5555", "--token", token]) }
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/6], Step [5/", timeout: 60), coord.output)
        for w in workers {
            XCTAssertTrue(w.output.contains("ring endpoint tcp://10.213.7."), "each worker announces its own address: \(w.output)")
        }
        try must(["link", "set", "rh\(id)3", "down"])
        let cut = Date()
        let detected = secondsUntil(coord, shows: "Lost worker", timeout: 30)
        XCTAssertEqual(coord.wait(timeout: 120), 0, coord.output)
        let lost = try XCTUnwrap(coord.output.split(separator: "\n").first { $0.contains("Lost worker") }, coord.output)
        XCTAssertTrue(lost.contains("no heartbeat"), String(lost))
        for w in workers.prefix(2) {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("done after \(faultSteps) steps"), w.output)
        }
        let isolated = workers[2].wait(timeout: 30)
        XCTAssertNotNil(isolated)
        XCTAssertNotEqual(isolated, 0, workers[2].output)
        print("netns: link of the worker at 10.213.7.4 cut; declared lost after \(detected.map { String(format: "%.2f", $0) } ?? "-") s "
              + "(timeout 1 s), run finished \(String(format: "%.1f", Date().timeIntervalSince(cut))) s after the cut")
    }
}
