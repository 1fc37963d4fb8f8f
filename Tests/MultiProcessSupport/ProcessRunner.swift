// Spawns the package's own executables (built next to the test bundle), drains their output
// while they run, and kills them at a deadline so that a test fails instead of hanging.
// Shared by the MultiProcessTests and MultiHostTests targets (no XCTest in here).
import Foundation

/// The folder holding the built executables (`.build/<config>/`).
public let productsDirectory: URL = {
    let bundle = Bundle(for: ChildProcess.self).bundleURL
    return bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent()
        : URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
}()

/// The repository root (for the shipped datasets).
public let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var outputData = Data()
    private let pipe = Pipe()
    public let name: String

    /// Starts `executable` (a product name, or an absolute path) with `arguments`; stdout and stderr are merged.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        name = executable
        process.executableURL = executable.hasPrefix("/") ? URL(fileURLWithPath: executable)
            : productsDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self, !chunk.isEmpty else { return }
            self.lock.lock()
            self.outputData.append(chunk)
            self.lock.unlock()
        }
        try process.run()
    }

    public var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: outputData, as: UTF8.self)
    }

    /// Waits until `line` matches some output line, or the deadline; returns the line.
    public func waitForLine(containing text: String, timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = output.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
            if !process.isRunning { break }
            usleep(20_000)
        }
        return output.split(separator: "\n").first(where: { $0.contains(text) }).map(String.init)
    }

    /// Waits for exit; kills the process (SIGKILL) at the deadline and returns nil then.
    @discardableResult
    public func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            drain()
            return nil
        }
        process.waitUntilExit()
        drain()
        return process.terminationStatus
    }

    private func drain() {
        pipe.fileHandleForReading.readabilityHandler = nil
        let rest = pipe.fileHandleForReading.readDataToEndOfFile()
        lock.lock()
        outputData.append(rest)
        lock.unlock()
    }

    public func kill(signal: Int32 = SIGKILL) {
        if process.isRunning { Foundation.kill(process.processIdentifier, signal) }
    }

    deinit {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }
}

/// Runs `executable args` to completion (stdout and stderr merged); (-1, why) when it cannot start.
public func runToCompletion(_ executable: String, _ args: [String], environment: [String: String]? = nil) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    do { try p.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

public func makeTemporaryDirectory(_ name: String) throws -> String {
    let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("rnn-\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The percentage after `label` in `line` ("val accuracy 97.50%" -> 97.5).
public func percentage(after label: String, in line: String) -> Double? {
    guard let r = line.range(of: label) else { return nil }
    let rest = line[r.upperBound...].drop { $0 == " " || $0 == ":" }
    return Double(rest.prefix { $0.isNumber || $0 == "." })
}
