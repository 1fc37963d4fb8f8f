// Test hosts in network namespaces, made by scripts/netns-hosts.sh (one place for the ip and
// tc commands): host i is the namespace PREFIXi at SUBNET.(i+1) on a bridge, its link shaped
// both ways. Each instance takes a random prefix, so runs never share namespaces; `remove()`
// (also run by deinit) takes them down.
import Foundation

/// Why hosts could not be made (not root, no ip tool, the kernel refused): tests skip with it.
public struct NetworkHostsUnavailable: Error, CustomStringConvertible {
    public let description: String
}

public final class NetworkHosts: @unchecked Sendable {
    public let count: Int
    public let prefix: String
    public let subnet: String
    public let rate: String
    private var removed = false
    static let script = repositoryRoot.appendingPathComponent("scripts/netns-hosts.sh").path

    /// Makes `count` hosts with links shaped to `rate` ("1gbit", "100mbit", "none").
    public init(count: Int, rate: String = "1gbit", subnet: String = "10.77.0") throws {
        guard getuid() == 0 else {
            throw NetworkHostsUnavailable(description: "test hosts need root (ip netns, veth, tc); running as uid \(getuid())")
        }
        guard ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw NetworkHostsUnavailable(description: "test hosts need the ip tool (apt-get install iproute2)")
        }
        self.count = count
        self.rate = rate
        self.subnet = subnet
        prefix = "rt" + String(UInt32.random(in: 0..<0xFFFFFF), radix: 36)
        let (status, out) = Self.script(["up", "\(count)", "--rate", rate, "--prefix", prefix, "--subnet", subnet])
        guard status == 0 else {
            _ = Self.script(["down", "--prefix", prefix])
            throw NetworkHostsUnavailable(description: "scripts/netns-hosts.sh up \(count) failed (\(status)): \(out)")
        }
    }

    @discardableResult
    static func script(_ args: [String]) -> (Int32, String) {
        runToCompletion("/bin/bash", [script] + args)
    }

    /// Host i's address (i from 0).
    public func address(_ i: Int) -> String { "\(subnet).\(i + 1)" }

    /// Host i's namespace name.
    public func namespace(_ i: Int) -> String { "\(prefix)\(i)" }

    /// Starts one of the package's executables (or an absolute path) on host i.
    public func run(_ i: Int, _ product: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ChildProcess {
        precondition(i >= 0 && i < count, "host \(i) outside 0..<\(count)")
        let path = product.hasPrefix("/") ? product : productsDirectory.appendingPathComponent(product).path
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }!
        return try ChildProcess(ip, ["netns", "exec", namespace(i), path] + arguments, environment: environment)
    }

    /// Takes host i's link down (as if its cable were pulled), or up again.
    public func setLink(_ i: Int, up: Bool) throws {
        let (status, out) = Self.script([up ? "restore" : "cut", "\(i)", "--prefix", prefix])
        guard status == 0 else { throw NetworkHostsUnavailable(description: "netns-hosts.sh \(up ? "restore" : "cut") \(i): \(out)") }
    }

    /// Bytes host i has sent and received over its link so far (the kernel's counters of the
    /// bridge end of its veth pair: what it receives, host i sent).
    public func linkBytes(_ i: Int) throws -> (sent: Int, received: Int) {
        precondition(i >= 0 && i < count, "host \(i) outside 0..<\(count)")
        func counter(_ name: String) throws -> Int {
            let path = "/sys/class/net/\(prefix)h\(i)/statistics/\(name)"
            let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let v = Int(text) else { throw NetworkHostsUnavailable(description: "\(path): not a number: '\(text)'") }
            return v
        }
        return (try counter("rx_bytes"), try counter("tx_bytes"))
    }

    /// Removes the namespaces and the bridge (idempotent).
    public func remove() {
        guard !removed else { return }
        removed = true
        Self.script(["down", "\(count)", "--prefix", prefix])
    }

    deinit { remove() }
}
