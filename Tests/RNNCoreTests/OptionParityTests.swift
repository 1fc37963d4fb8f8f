// Replays the option fixtures of scripts/make_core_fixtures.py (Fixtures/options): bidirectional
// layers, variable lengths (pack_padded_sequence), token ids through an embedding or as one-hot
// (a gather of W_ih's columns here), every cell, 1 and 2 layers, both heads and losses, with and
// without an initial state. Checks outputs, final states, loss, every gradient (parameters and
// initial state) and the parameters after 3 Adam steps, with ParityTests' tolerances, and prints
// the largest differences per case.
import Foundation
import XCTest
@testable import RNNCore

final class OptionParityTests: XCTestCase {
    func testOptionFixturesMatchPyTorch() throws {
        let cases = try loadParityCases(folder: "options")
        XCTAssertGreaterThanOrEqual(cases.count, 28, "expected the pairwise set plus 16 two-layer cases")
        var summary: [String: Comparison] = [:]
        print("case                                              | forward abs/rel   | loss rel | grads abs/rel     | h0/c0 grad abs | adam abs/rel")
        for c in cases {
            let groups = try replay(c)
            for (k, v) in groups { summary[k, default: Comparison()].merge(v) }
            print([
                c.name.padding(toLength: 49, withPad: " ", startingAt: 0),
                "\(format(groups["forward"]!.maxAbs)) / \(format(groups["forward"]!.maxRel))",
                format(groups["loss"]!.maxRel),
                "\(format(groups["gradient"]!.maxAbs)) / \(format(groups["gradient"]!.maxRel))",
                groups["state gradient"].map { format($0.maxAbs) } ?? "-",
                "\(format(groups["adam"]!.maxAbs)) / \(format(groups["adam"]!.maxRel))",
            ].joined(separator: " | "))
        }
        for (k, v) in summary.sorted(by: { $0.key < $1.key }) {
            print("all option cases, \(k): max abs \(format(v.maxAbs)), max rel \(format(v.maxRel)), worst/tolerance \(String(format: "%.3f", Double(v.worst)))")
        }
    }

    private func replay(_ c: ParityCase) throws -> [String: Comparison] {
        let network = try RNNNetwork(config: c.config, threads: 1)
        let table = network.table
        let parameters = try c.flat("param.", table: table)
        let x = try c.tensor("x").floats
        let targetTensor = try c.tensor("targets")
        let targets: Targets = targetTensor.dtype == "int32" ? .classIds(targetTensor.int32s) : .values(targetTensor.floats)
        let lengths = c.tensors["lengths"].map { $0.int32s.map(Int.init) }
        var initial: RecurrentState?
        if let h0 = c.tensors["h0"] { initial = RecurrentState(h: h0.floats, c: c.tensors["c0"]?.floats) }
        var groups: [String: Comparison] = [:]
        func check(_ group: String, _ label: String, _ actual: [Float], _ expected: [Float], _ tol: (rtol: Float, atol: Float)) {
            let r = compare(actual, expected, rtol: tol.rtol, atol: tol.atol)
            groups[group, default: Comparison()].merge(r)
            XCTAssertTrue(r.passed, "\(c.name) \(label): max abs \(r.maxAbs), max rel \(r.maxRel), first mismatch \(r.firstMismatch ?? "-")")
        }
        let prediction = try network.predict(parameters: parameters, input: x, batch: c.batch, steps: c.steps,
                                             initialState: initial, lengths: lengths)
        check("forward", "output", prediction.outputs, try c.tensor("output").floats, ParityTests.forwardTolerance)
        check("forward", "h_n", prediction.finalState.h, try c.tensor("hn").floats, ParityTests.forwardTolerance)
        if c.config.cell == .lstm {
            check("forward", "c_n", prediction.finalState.c ?? [], try c.tensor("cn").floats, ParityTests.forwardTolerance)
        }
        let (stats, gradient) = try network.meanLossAndGradient(
            parameters: parameters, input: x, batch: c.batch, steps: c.steps, targets: targets,
            initialState: initial, lengths: lengths)
        check("loss", "loss", [Float(stats.meanLoss)], [Float(c.loss)], ParityTests.forwardTolerance)
        XCTAssertEqual(stats.correct, c.correct, "\(c.name): correct predictions")
        for entry in table.entries {
            check("gradient", "grad \(entry.name)", Array(gradient[entry.range]), try c.tensor("grad." + entry.name).floats,
                  ParityTests.gradientTolerance)
        }
        if initial != nil {
            let stateGradient = network.initialStateGradient()
            check("state gradient", "grad h0", stateGradient.h, try c.tensor("grad.h0").floats, ParityTests.gradientTolerance)
            if c.config.cell == .lstm {
                check("state gradient", "grad c0", stateGradient.c ?? [], try c.tensor("grad.c0").floats, ParityTests.gradientTolerance)
            }
        }
        var optimizer = AdamOptimizer(config: c.adam, parameterCount: table.totalCount)
        var p = parameters
        for _ in 0..<3 {
            var (_, g) = try network.meanLossAndGradient(parameters: p, input: x, batch: c.batch, steps: c.steps,
                                                         targets: targets, initialState: initial, lengths: lengths)
            optimizer.step(parameters: &p, gradient: &g)
        }
        check("adam", "adam parameters", p, try c.flat("adam.", table: table), ParityTests.gradientTolerance)
        return groups
    }
}
