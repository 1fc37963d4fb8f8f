// Replays the PyTorch fixtures of scripts/make_core_fixtures.py: forward outputs, final states,
// loss, every gradient (parameters and initial state), and parameters after 3 Adam and 3 AdamW
// steps. Prints, per case and tensor group, the largest absolute and relative differences.
import Foundation
import XCTest
@testable import RNNCore

final class ParityTests: XCTestCase {
    /// Forward: |a - e| <= 1e-6 + 1e-5 |e|. Gradients and updated parameters: 1e-5 + 1e-4 |e|.
    static let forwardTolerance: (rtol: Float, atol: Float) = (1e-5, 1e-6)
    static let gradientTolerance: (rtol: Float, atol: Float) = (1e-4, 1e-5)

    func testAllFixturesMatchPyTorch() throws {
        let cases = try loadParityCases(folder: "core")
        XCTAssertEqual(cases.count, 32, "expected 4 cells x 2 heads x 2 depths x 2 initial-state variants")
        var summary: [String: Comparison] = [:]
        print("case                          | forward abs/rel   | loss rel | grads abs/rel     | h0/c0 grad abs    | adam abs/rel      | adamw abs/rel")
        for c in cases {
            let groups = try replay(c)
            for (k, v) in groups { summary[k, default: Comparison()].merge(v) }
            let line = [
                c.name.padding(toLength: 29, withPad: " ", startingAt: 0),
                "\(format(groups["forward"]!.maxAbs)) / \(format(groups["forward"]!.maxRel))",
                format(groups["loss"]!.maxRel),
                "\(format(groups["gradient"]!.maxAbs)) / \(format(groups["gradient"]!.maxRel))",
                groups["state gradient"].map { format($0.maxAbs) } ?? "-",
                "\(format(groups["adam"]!.maxAbs)) / \(format(groups["adam"]!.maxRel))",
                "\(format(groups["adamw"]!.maxAbs)) / \(format(groups["adamw"]!.maxRel))",
            ].joined(separator: " | ")
            print(line)
        }
        for (k, v) in summary.sorted(by: { $0.key < $1.key }) {
            print("all cases, \(k): max abs \(format(v.maxAbs)), max rel \(format(v.maxRel)), worst/tolerance \(String(format: "%.3f", Double(v.worst)))")
        }
    }

    /// Replays one case, asserting every tolerance; returns the comparison per tensor group.
    private func replay(_ c: ParityCase) throws -> [String: Comparison] {
        let network = try RNNNetwork(config: c.config, threads: 1)
        let table = network.table
        let parameters = try c.flat("param.", table: table)
        XCTAssertEqual(parameters.count, table.totalCount)
        let x = try c.tensor("x").floats
        let targetTensor = try c.tensor("targets")
        let targets: Targets = targetTensor.dtype == "int32" ? .classIds(targetTensor.int32s) : .values(targetTensor.floats)
        var initial: RecurrentState?
        if let h0 = c.tensors["h0"] {
            initial = RecurrentState(h: h0.floats, c: c.tensors["c0"]?.floats)
        }
        var groups: [String: Comparison] = [:]
        func check(_ group: String, _ label: String, _ actual: [Float], _ expected: [Float], _ tol: (rtol: Float, atol: Float)) {
            let r = compare(actual, expected, rtol: tol.rtol, atol: tol.atol)
            groups[group, default: Comparison()].merge(r)
            XCTAssertTrue(r.passed, "\(c.name) \(label): max abs \(r.maxAbs), max rel \(r.maxRel), first mismatch \(r.firstMismatch ?? "-")")
        }

        // Forward: outputs and final states.
        let prediction = try network.predict(parameters: parameters, input: x, batch: c.batch, steps: c.steps, initialState: initial)
        check("forward", "output", prediction.outputs, try c.tensor("output").floats, Self.forwardTolerance)
        check("forward", "h_n", prediction.finalState.h, try c.tensor("hn").floats, Self.forwardTolerance)
        if c.config.cell == .lstm {
            check("forward", "c_n", prediction.finalState.c ?? [], try c.tensor("cn").floats, Self.forwardTolerance)
        }

        // Loss and gradients of the mean loss.
        let (stats, gradient) = try network.meanLossAndGradient(
            parameters: parameters, input: x, batch: c.batch, steps: c.steps, targets: targets, initialState: initial)
        check("loss", "loss", [Float(stats.meanLoss)], [Float(c.loss)], Self.forwardTolerance)
        XCTAssertEqual(stats.correct, c.correct, "\(c.name): correct predictions")
        for entry in table.entries {
            check("gradient", "grad \(entry.name)", Array(gradient[entry.range]), try c.tensor("grad." + entry.name).floats,
                  Self.gradientTolerance)
        }
        if initial != nil {
            let stateGradient = network.initialStateGradient()
            check("state gradient", "grad h0", stateGradient.h, try c.tensor("grad.h0").floats, Self.gradientTolerance)
            if c.config.cell == .lstm {
                check("state gradient", "grad c0", stateGradient.c ?? [], try c.tensor("grad.c0").floats, Self.gradientTolerance)
            }
        }

        // Three optimizer steps on the same batch, for Adam and for AdamW.
        for (group, config) in [("adam", c.adam), ("adamw", c.adamw)] {
            var optimizer = AdamOptimizer(config: config, parameterCount: table.totalCount)
            var p = parameters
            for _ in 0..<3 {
                var (_, g) = try network.meanLossAndGradient(
                    parameters: p, input: x, batch: c.batch, steps: c.steps, targets: targets, initialState: initial)
                optimizer.step(parameters: &p, gradient: &g)
            }
            XCTAssertEqual(optimizer.stepCount, 3)
            check(group, "\(group) parameters", p, try c.flat(group + ".", table: table), Self.gradientTolerance)
        }
        return groups
    }
}
