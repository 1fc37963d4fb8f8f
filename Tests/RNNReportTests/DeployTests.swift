// deploy/ is checked against the real command line: every flag the compose file, the
// Kubernetes manifests, the Slurm script, install.sh and the README pass to rnn-coord or
// rnn-worker must appear in that command's --help, and names and ports must agree.
import Foundation
import XCTest
import Yams

final class DeployTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The built executables sit next to the test bundle.
    private func help(_ executable: String, _ args: [String]) throws -> String {
        let bundle = Bundle(for: DeployTests.self).bundleURL
        let folder = bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent()
            : URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let bin = folder.appendingPathComponent(executable)
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("\(bin.path) is not built (run swift build first)")
        }
        let process = Process()
        process.executableURL = bin
        process.arguments = args + ["--help"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(executable) \(args) --help")
        return String(decoding: data, as: UTF8.self)
    }

    private func flags(in text: String) -> Set<String> {
        var result = Set<String>()
        let scalars = Array(text)
        var i = 0
        while i + 2 < scalars.count {
            if scalars[i] == "-", scalars[i + 1] == "-", scalars[i + 2].isLetter, i == 0 || !(scalars[i - 1].isLetter || scalars[i - 1] == "-") {
                var j = i + 2
                while j < scalars.count, scalars[j].isLetter || scalars[j].isNumber || scalars[j] == "-" { j += 1 }
                result.insert(String(scalars[(i + 2)..<j]))
                i = j
            } else {
                i += 1
            }
        }
        return result
    }

    private func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Checks one command line (as tokens) against the real flags: the flags after an
    /// `rnn-coord start` or `rnn-worker` token, up to a shell separator.
    private func check(_ tokens: [String], start: Set<String>, worker: Set<String>, file: String) {
        let names = tokens.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"'\\")) }
        var i = 0
        while i < names.count {
            let known: Set<String>
            if names[i].hasSuffix("rnn-coord"), i + 1 < names.count, names[i + 1] == "start" {
                known = start
                i += 2
            } else if names[i].hasSuffix("rnn-worker") {
                known = worker
                i += 1
            } else {
                i += 1
                continue
            }
            let command = names[i - 1]
            while i < names.count, !["&", "&&", "|", ";", "||"].contains(names[i]) {
                for f in flags(in: names[i]) where !names[i].hasPrefix("$") {
                    XCTAssertTrue(known.contains(f), "\(file): '--\(f)' is not a flag of \(command)")
                }
                i += 1
            }
        }
    }

    func testDeployFilesUseRealFlagsNamesAndPorts() throws {
        let start = flags(in: try help("rnn-coord", ["start"]))
        let worker = flags(in: try help("rnn-worker", []))
        XCTAssertTrue(start.isSuperset(of: ["data", "val", "workers", "bind", "checkpoint-dir", "config", "log-format", "quiet"]))
        XCTAssertTrue(worker.isSuperset(of: ["connect", "data-root", "data-bind", "advertise-host"]))

        // compose.yaml
        let compose = try XCTUnwrap(try Yams.load(yaml: try read("deploy/compose.yaml")) as? [String: Any])
        let services = try XCTUnwrap(compose["services"] as? [String: [String: Any]])
        let coord = try XCTUnwrap(services["coordinator"])
        let coordCommand = try XCTUnwrap(coord["command"] as? [String])
        XCTAssertEqual(Array(coordCommand.prefix(2)), ["rnn-coord", "start"])
        check(coordCommand, start: start, worker: worker, file: "compose.yaml")
        let bind = try XCTUnwrap(coordCommand.firstIndex(of: "--bind").map { coordCommand[$0 + 1] })
        let port = try XCTUnwrap(bind.split(separator: ":").last.map(String.init))
        XCTAssertEqual(coord["ports"] as? [String], ["\(port):\(port)"])
        let workerCount = try XCTUnwrap(coordCommand.firstIndex(of: "--workers").flatMap { Int(coordCommand[$0 + 1]) })
        let workers = services.filter { ($0.value["command"] as? [String])?.first == "rnn-worker" }
        XCTAssertEqual(workers.count, workerCount, "one worker service per --workers")
        for (name, w) in workers {
            let cmd = w["command"] as! [String]
            check(cmd, start: start, worker: worker, file: "compose.yaml")
            XCTAssertEqual(cmd.firstIndex(of: "--connect").map { cmd[$0 + 1] }, "tcp://coordinator:\(port)")
            XCTAssertEqual(cmd.firstIndex(of: "--advertise-host").map { cmd[$0 + 1] }, w["hostname"] as? String, name)
        }

        // Kubernetes manifests.
        var byKind: [String: [[String: Any]]] = [:]
        for doc in try Yams.load_all(yaml: try read("deploy/k8s/rnn-trainer.yaml")) {
            let d = try XCTUnwrap(doc as? [String: Any])
            byKind[d["kind"] as! String, default: []].append(d)
        }
        for kind in ["Namespace", "PersistentVolumeClaim", "Secret", "Service", "Deployment", "StatefulSet"] {
            XCTAssertNotNil(byKind[kind], "a \(kind)")
        }
        func path(_ d: Any?, _ keys: String...) -> Any? {
            var cur = d
            for k in keys { cur = (cur as? [String: Any])?[k] ?? (Int(k).flatMap { i in (cur as? [Any]).flatMap { i < $0.count ? $0[i] : nil } }) }
            return cur
        }
        let deployment = byKind["Deployment"]![0]
        let coordContainer = try XCTUnwrap(path(deployment, "spec", "template", "spec", "containers", "0"))
        let kArgs = (path(coordContainer, "command") as! [String]) + (path(coordContainer, "args") as! [String])
        check(kArgs, start: start, worker: worker, file: "k8s")
        let kBind = kArgs[kArgs.firstIndex(of: "--bind")! + 1]
        let kPort = Int(kBind.split(separator: ":").last!)!
        let services8 = byKind["Service"]!
        let coordService = try XCTUnwrap(services8.first { (path($0, "spec", "clusterIP") as? String) != "None" })
        XCTAssertEqual(path(coordService, "spec", "ports", "0", "port") as? Int, kPort)
        XCTAssertEqual(path(coordService, "spec", "selector", "app") as? String, path(deployment, "spec", "template", "metadata", "labels", "app") as? String)
        let stateful = byKind["StatefulSet"]![0]
        let workerContainer = try XCTUnwrap(path(stateful, "spec", "template", "spec", "containers", "0"))
        let wArgs = (path(workerContainer, "command") as! [String]) + (path(workerContainer, "args") as! [String])
        check(wArgs, start: start, worker: worker, file: "k8s")
        let coordName = path(coordService, "metadata", "name") as! String
        XCTAssertEqual(wArgs[wArgs.firstIndex(of: "--connect")! + 1], "tcp://\(coordName):\(kPort)")
        let headless = try XCTUnwrap(services8.first { (path($0, "spec", "clusterIP") as? String) == "None" })
        XCTAssertEqual(path(stateful, "spec", "serviceName") as? String, path(headless, "metadata", "name") as? String)
        XCTAssertTrue(wArgs[wArgs.firstIndex(of: "--advertise-host")! + 1].hasSuffix("." + (path(headless, "metadata", "name") as! String)))
        let ringPort = wArgs[wArgs.firstIndex(of: "--data-bind")! + 1].split(separator: ":").last.map(String.init)
        XCTAssertEqual(path(headless, "spec", "ports", "0", "port") as? Int, ringPort.flatMap { Int($0) })
        XCTAssertEqual(path(stateful, "spec", "replicas") as? Int, Int(kArgs[kArgs.firstIndex(of: "--workers")! + 1]))
        let pvc = path(byKind["PersistentVolumeClaim"]![0], "metadata", "name") as! String
        let secret = path(byKind["Secret"]![0], "metadata", "name") as! String
        for workload in [deployment, stateful] {
            let volumes = path(workload, "spec", "template", "spec", "volumes") as! [[String: Any]]
            XCTAssertTrue(volumes.contains { path($0, "persistentVolumeClaim", "claimName") as? String == pvc })
            XCTAssertTrue(volumes.contains { path($0, "secret", "secretName") as? String == secret })
        }

        // Shell scripts, the container recipe and the README: every rnn-coord start / rnn-worker line.
        for file in ["deploy/slurm.sbatch", "deploy/install.sh", "deploy/Dockerfile", "README.md"] {
            let text = try read(file).replacingOccurrences(of: "\\\n", with: " ")
            for line in text.split(separator: "\n") where line.contains("rnn-coord") || line.contains("rnn-worker") {
                check(line.split(separator: " ").map(String.init), start: start, worker: worker, file: file)
            }
        }
        let slurm = try read("deploy/slurm.sbatch")
        XCTAssertTrue(slurm.contains("head -n 1"), "the coordinator runs on the first node")
        // Several workers per node: the coordinator waits for nodes x tasks per node, and the
        // workers' srun starts that many per node.
        XCTAssertTrue(slurm.contains("WORKERS=$((SLURM_JOB_NUM_NODES * PER_NODE))"), "worker count from --ntasks-per-node")
        XCTAssertTrue(slurm.contains("--ntasks-per-node=\"$PER_NODE\""), "the workers' srun starts PER_NODE tasks per node")
        XCTAssertTrue(slurm.contains("--workers \"$WORKERS\""), "rnn-coord expects them all")
    }
}
