// Runs the package's own executables (built next to the test bundle) to completion.
import Foundation
import XCTest

/// The executable `name` next to the test bundle; skips the test when it is not built.
func builtBinary(_ name: String) throws -> URL {
    let bundle = Bundle(for: LockedData.self).bundleURL
    let folder = bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent()
        : URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let url = folder.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else { throw XCTSkip("\(url.path) is not built") }
    return url
}

/// Runs `name args` in `dir` (at most `timeout` s, then it is killed); returns status, stdout, stderr.
func runBinary(_ name: String, _ args: [String], in dir: String, timeout: Double = 120) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = try builtBinary(name)
    p.arguments = args
    p.currentDirectoryURL = URL(fileURLWithPath: dir)
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let outData = LockedData(), errData = LockedData()
    let group = DispatchGroup()
    for (pipe, sink) in [(out, outData), (err, errData)] {
        group.enter()
        DispatchQueue.global().async {
            sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
    }
    if group.wait(timeout: .now() + timeout) == .timedOut {
        p.terminate()
        XCTFail("\(name) \(args) did not finish within \(timeout) s")
    }
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData.get(), as: UTF8.self), String(decoding: errData.get(), as: UTF8.self))
}

/// Asserts a failed run printed one error line (maybe with a hint line) containing `expected`.
func assertOneErrorLine(_ r: (status: Int32, out: String, err: String), contains expected: String, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertNotEqual(r.status, 0, what, file: file, line: line)
    let lines = r.err.split(separator: "\n")
    XCTAssertTrue(lines.count == 1 || (lines.count == 2 && lines[1].hasPrefix("Hint: ")), "\(what): \(r.err)", file: file, line: line)
    XCTAssertTrue(lines.first.map { $0.contains("error: ") && $0.contains(expected) } ?? false, "\(what): \(r.err)", file: file, line: line)
}
