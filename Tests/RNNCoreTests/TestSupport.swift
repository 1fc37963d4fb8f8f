// Helpers shared by the RNNCore tests: fixture loading and tolerance reports.
import Foundation
import XCTest
@testable import RNNCore

/// One tensor of a parity fixture: shape, dtype and base64 little-endian values.
struct FixtureTensor: Decodable {
    var shape: [Int]
    var dtype: String
    var data: String

    var bytes: Data {
        guard let d = Data(base64Encoded: data) else { return Data() }
        return d
    }

    var floats: [Float] {
        let d = bytes
        return (0..<(d.count / 4)).map { i in
            Float(bitPattern: UInt32(littleEndian: d.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) }))
        }
    }

    var int32s: [Int32] {
        let d = bytes
        return (0..<(d.count / 4)).map { i in
            Int32(littleEndian: d.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 4, as: Int32.self) })
        }
    }
}

/// One case written by scripts/make_core_fixtures.py.
struct ParityCase: Decodable {
    var name: String
    var config: ModelConfig
    var batch: Int
    var steps: Int
    var loss: Double
    var correct: Int
    var adam: OptimizerConfig
    var adamw: OptimizerConfig
    var tensors: [String: FixtureTensor]

    func tensor(_ key: String) throws -> FixtureTensor {
        guard let t = tensors[key] else { throw FixtureError("fixture \(name) has no tensor '\(key)'") }
        return t
    }

    /// The flat buffer of all tensors `prefix + key` in table order.
    func flat(_ prefix: String, table: ParameterTable) throws -> [Float] {
        var values: [Float] = []
        for entry in table.entries {
            let t = try tensor(prefix + entry.name)
            guard t.shape == entry.shape else {
                throw FixtureError("fixture \(name): \(prefix + entry.name) has shape \(t.shape), table says \(entry.shape)")
            }
            values += t.floats
        }
        return values
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Loads every JSON case in Fixtures/<folder>.
func loadParityCases(folder: String) throws -> [ParityCase] {
    guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
        throw FixtureError("the test bundle has no Fixtures folder")
    }
    let dir = root.appendingPathComponent(folder)
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
    return try names.map { name in
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        do {
            return try JSONDecoder().decode(ParityCase.self, from: data)
        } catch {
            throw FixtureError("fixture \(name) does not decode: \(error)")
        }
    }
}

/// Largest absolute and relative differences of `actual` against `expected`, and whether every
/// element satisfies |a - e| <= atol + rtol * |e|.
struct Comparison {
    var maxAbs: Float = 0
    var maxRel: Float = 0
    var worst: Float = 0 // largest |a-e| / (atol + rtol*|e|); <= 1 passes
    var firstMismatch: String?

    var passed: Bool { worst <= 1 && firstMismatch?.hasPrefix("count") != true }

    mutating func merge(_ other: Comparison) {
        maxAbs = max(maxAbs, other.maxAbs)
        maxRel = max(maxRel, other.maxRel)
        worst = max(worst, other.worst)
        if firstMismatch == nil { firstMismatch = other.firstMismatch }
    }
}

func compare(_ actual: [Float], _ expected: [Float], rtol: Float, atol: Float) -> Comparison {
    var c = Comparison()
    guard actual.count == expected.count else {
        c.firstMismatch = "count \(actual.count) != \(expected.count)"
        c.worst = .infinity
        return c
    }
    for i in 0..<actual.count {
        let d = abs(actual[i] - expected[i])
        let rel = d / max(abs(expected[i]), 1e-30)
        c.maxAbs = max(c.maxAbs, d)
        if abs(expected[i]) >= 1e-6 { c.maxRel = max(c.maxRel, rel) } // relative only where meaningful
        let ratio = d / (atol + rtol * abs(expected[i]))
        if !(ratio <= 1), c.firstMismatch == nil {
            c.firstMismatch = "[\(i)] \(actual[i]) vs \(expected[i])"
        }
        c.worst = max(c.worst, ratio.isNaN ? .infinity : ratio)
    }
    return c
}

func format(_ x: Float) -> String {
    String(format: "%.1e", Double(x))
}

/// `count` floats uniform in [-1, 1] (GEMM operands).
func randomArray(_ count: Int, _ rng: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
}

/// Central differences of the initial-state gradient: each element of h0 (and c0) is perturbed
/// in turn, and `expectClose(analytic, value, name, f)` compares the analytic derivative with
/// the change of `loss` (shared by the plain and the option gradient checks).
func checkInitialStateGradient(_ stateGradient: RecurrentState, at initial: RecurrentState,
                               loss: (RecurrentState) throws -> Double,
                               expectClose: (Float, Float, String, (Float) throws -> Double) throws -> Void) throws {
    // (withoutActuallyEscaping: a closure capturing one non-escaping parameter may not be passed
    // to another; neither escapes here.)
    try withoutActuallyEscaping(loss) { loss in
        for i in 0..<initial.h.count {
            var s = initial
            try expectClose(stateGradient.h[i], initial.h[i], "h0[\(i)]") { v in
                s.h[i] = v
                return try loss(s)
            }
        }
        if let c = initial.c {
            for i in 0..<c.count {
                var s = initial
                try expectClose(stateGradient.c![i], c[i], "c0[\(i)]") { v in
                    s.c![i] = v
                    return try loss(s)
                }
            }
        }
    }
}
