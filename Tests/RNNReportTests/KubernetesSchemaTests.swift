// deploy/k8s/*.yaml against the Kubernetes schema, offline, with `kubernetes-validate --strict`
// (PyPI). Without the tool the test skips, unless RNN_REQUIRE_KUBEVAL=1 (set by .ci/run),
// where a missing validator is a failure: CI must not pass by skipping.
import Foundation
import XCTest

final class KubernetesSchemaTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The validator on PATH (or in the usual pip locations), or nil.
    private func validator() -> String? {
        let env = ProcessInfo.processInfo.environment
        var folders = (env["PATH"] ?? "").split(separator: ":").map(String.init)
        folders += ["/usr/local/bin", "/usr/bin", "\(NSHomeDirectory())/.local/bin"]
        return folders.map { "\($0)/kubernetes-validate" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private func run(_ tool: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private func requireValidator() throws -> String {
        if let tool = validator() { return tool }
        let message = "kubernetes-validate is not installed (python3 -m pip install kubernetes-validate)"
        if ProcessInfo.processInfo.environment["RNN_REQUIRE_KUBEVAL"] == "1" {
            XCTFail(message + ", and RNN_REQUIRE_KUBEVAL=1 requires it")
            throw XCTSkip(message)
        }
        throw XCTSkip(message + ": manifests not checked against the Kubernetes schema")
    }

    private func manifests() throws -> [String] {
        let dir = root.appendingPathComponent("deploy/k8s")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        XCTAssertFalse(names.isEmpty, "no manifests in \(dir.path)")
        return names.map { dir.appendingPathComponent($0).path }
    }

    func testManifestsMatchTheKubernetesSchema() throws {
        let tool = try requireValidator()
        for file in try manifests() {
            let (status, out) = try run(tool, ["--strict", "--quiet", file])
            XCTAssertEqual(status, 0, "\(file) does not match the Kubernetes schema:\n\(out)")
        }
    }

    /// The check can fail: the same manifests with a replica count that is a string and a
    /// field Kubernetes does not know are rejected, each named.
    func testTheValidatorRejectsABrokenCopy() throws {
        let tool = try requireValidator()
        let dir = try makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for file in try manifests() {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            guard text.contains("replicas:") else { continue }
            let broken = text.replacingOccurrences(of: "replicas: ", with: "replicaz: ")
            let copy = (dir as NSString).appendingPathComponent((file as NSString).lastPathComponent)
            try broken.write(toFile: copy, atomically: true, encoding: .utf8)
            let (status, out) = try run(tool, ["--strict", "--quiet", copy])
            XCTAssertNotEqual(status, 0, "an unknown field 'replicaz' passed validation:\n\(out)")
            XCTAssertTrue(out.contains("replicaz"), out)
        }
    }

    private func makeDirectory() throws -> String {
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("rnn-k8s-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}
