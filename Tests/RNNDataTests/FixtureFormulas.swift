// The formulas of scripts/make_data_fixtures.py, recomputed in Swift, and helpers.

import Foundation
import XCTest
@testable import RNNData

enum Fixture {
    static func path(_ name: String) -> String {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name).path
    }

    /// x(g, t, i) = ((7 g + 3 t + i) mod 64) / 8 - 4
    static func feature(_ g: Int, _ t: Int, _ i: Int) -> Float {
        Float((7 * g + 3 * t + i) % 64) / 8 - 4
    }
    /// r(g, t, o) = ((5 g + 2 t + o) mod 32) / 4 - 4
    static func target(_ g: Int, _ t: Int, _ o: Int) -> Float {
        Float((5 * g + 2 * t + o) % 32) / 4 - 4
    }
    static func features(rows: [Int], steps: Int, inputs: Int) -> [Float] {
        var out: [Float] = []
        for g in rows { for t in 0..<steps { for i in 0..<inputs { out.append(feature(g, t, i)) } } }
        return out
    }
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("rnn-data-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Asserts that `body` throws a DataError of `kind` whose message names `file` and contains every `fragments`.
func assertDataError<T>(_ kind: DataError.Kind, file: String, mentions fragments: [String] = [],
                        _ body: () throws -> T, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error, got success", line: line)
    } catch let error as DataError {
        XCTAssertEqual(error.kind, kind, "\(error)", line: line)
        XCTAssertTrue(error.description.contains(file), "message does not name \(file): \(error)", line: line)
        for fragment in fragments {
            XCTAssertTrue(error.description.contains(fragment), "message lacks '\(fragment)': \(error)", line: line)
        }
    } catch {
        XCTFail("expected DataError, got \(error)", line: line)
    }
}
