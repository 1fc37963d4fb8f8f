import Foundation

/// Writes one line to standard output unbuffered, so that a parent reading a pipe sees it at once.
public func printLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
