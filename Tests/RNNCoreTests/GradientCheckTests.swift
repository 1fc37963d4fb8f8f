// Finite-difference checks of the backward pass, independent of PyTorch: central differences
// of the loss sum on Float parameters against the analytic gradient of the loss sum.
import XCTest
@testable import RNNCore

final class GradientCheckTests: XCTestCase {
    /// Random inputs, targets and initial state for a tiny batch.
    struct Batch {
        var x: [Float]
        var targets: Targets
        var initial: RecurrentState?
    }

    static func makeBatch(_ config: ModelConfig, batch B: Int, steps T: Int, withState: Bool, seed: UInt64) -> Batch {
        var rng = SeededGenerator(seed: seed)
        let x = (0..<(B * T * config.inputSize)).map { _ in rng.nextFloat(in: -1, 1) }
        let rows = config.head == .lastStep ? B : B * T
        let targets: Targets = config.loss == .crossEntropy
            ? .classIds((0..<rows).map { _ in Int32(rng.next() % UInt64(config.outputSize)) })
            : .values((0..<(rows * config.outputSize)).map { _ in rng.nextFloat(in: -1, 1) })
        var initial: RecurrentState?
        if withState {
            let n = config.layers * B * config.hiddenSize
            initial = RecurrentState(h: (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) },
                                     c: config.cell == .lstm ? (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) } : nil)
        }
        return Batch(x: x, targets: targets, initial: initial)
    }

    func testEveryCellHeadAndLossAgainstCentralDifferences() throws {
        let B = 2, T = 3
        let eps: Float = 5e-3
        let atol: Float = 5e-4, rtol: Float = 5e-3
        for cell in CellKind.allCases {
            for head in HeadMode.allCases {
                for loss in LossKind.allCases {
                    let config = ModelConfig(cell: cell, inputSize: 3, hiddenSize: 3, layers: 2, outputSize: 3,
                                             head: head, loss: loss)
                    let network = try RNNNetwork(config: config)
                    let parameters = ParameterTable.initialParameters(config: config, seed: 7)
                    let data = Self.makeBatch(config, batch: B, steps: T, withState: true, seed: 11)
                    var gradient = [Float](repeating: 0, count: network.table.totalCount)
                    _ = try network.accumulateGradients(parameters: parameters, input: data.x, batch: B, steps: T,
                                                        targets: data.targets, initialState: data.initial, gradient: &gradient)
                    let stateGradient = network.initialStateGradient()

                    func lossSum(_ p: [Float], _ state: RecurrentState?) throws -> Double {
                        try network.evaluate(parameters: p, input: data.x, batch: B, steps: T,
                                             targets: data.targets, initialState: state).lossSum
                    }
                    var kinks = 0
                    var worst: Float = 0
                    var checked = 0
                    /// Checks the analytic derivative against the central difference of `f` at
                    /// `value`. For ReLU cells a value may sit within eps of a kink, where no
                    /// central difference is valid; there the analytic derivative must match the
                    /// one-sided difference on the side that does not cross the kink.
                    func expectClose(_ analytic: Float, at value: Float, _ what: String, _ f: (Float) throws -> Double) rethrows {
                        let up = value + eps, down = value - eps
                        let mid = try f(value), fUp = try f(up), fDown = try f(down)
                        let numeric = Float((fUp - fDown) / Double(up - down))
                        var ratio = abs(analytic - numeric) / (atol + rtol * abs(numeric))
                        if ratio > 1 && cell == .rnnRelu {
                            let right = Float((fUp - mid) / Double(up - value)), left = Float((mid - fDown) / Double(value - down))
                            let oneSided = min(abs(analytic - right), abs(analytic - left)) / (2 * atol + rtol * abs(analytic))
                            if oneSided <= 1 && abs(right - left) > 4 * atol {
                                kinks += 1
                                ratio = oneSided
                            }
                        }
                        worst = max(worst, ratio)
                        checked += 1
                        XCTAssertLessThanOrEqual(ratio, 1, "\(cell.rawValue)/\(head.rawValue)/\(loss.rawValue) \(what): analytic \(analytic), numeric \(numeric)")
                    }
                    for entry in network.table.entries {
                        for i in entry.range {
                            var p = parameters
                            try expectClose(gradient[i], at: parameters[i], "\(entry.name)[\(i - entry.offset)]") { v in
                                p[i] = v
                                return try lossSum(p, data.initial)
                            }
                        }
                    }
                    let initial = data.initial!
                    try checkInitialStateGradient(stateGradient, at: initial, loss: { try lossSum(parameters, $0) },
                                                   expectClose: { try expectClose($0, at: $1, $2, $3) })
                    print("finite differences \(cell.rawValue)/\(head.rawValue)/\(loss.rawValue): \(checked) values, worst error/tolerance \(String(format: "%.3f", worst)), \(kinks) at ReLU kinks (checked one-sided)")
                    XCTAssertLessThanOrEqual(kinks * 10, checked, "too many values on ReLU kinks for a meaningful check")
                }
            }
        }
    }

    /// Inputs of 16 or more features take the direct dW_ih GEMM instead of the transposed one
    /// used for narrow inputs: check that path too (layer 0's weight_ih and its bias).
    func testWideInputAgainstCentralDifferences() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 17, hiddenSize: 3, layers: 1, outputSize: 2,
                                 head: .everyStep, loss: .crossEntropy)
        let network = try RNNNetwork(config: config)
        let parameters = ParameterTable.initialParameters(config: config, seed: 5)
        let data = Self.makeBatch(config, batch: 2, steps: 3, withState: false, seed: 6)
        var gradient = [Float](repeating: 0, count: parameters.count)
        _ = try network.accumulateGradients(parameters: parameters, input: data.x, batch: 2, steps: 3,
                                            targets: data.targets, gradient: &gradient)
        let eps: Float = 5e-3
        var worst: Float = 0
        for name in ["rnn.weight_ih_l0", "rnn.bias_ih_l0"] {
            let entry = try XCTUnwrap(network.table.entry(named: name))
            for i in entry.range {
                var p = parameters
                p[i] = parameters[i] + eps
                let up = try network.evaluate(parameters: p, input: data.x, batch: 2, steps: 3, targets: data.targets).lossSum
                p[i] = parameters[i] - eps
                let down = try network.evaluate(parameters: p, input: data.x, batch: 2, steps: 3, targets: data.targets).lossSum
                let numeric = Float((up - down) / Double((parameters[i] + eps) - (parameters[i] - eps)))
                let ratio = abs(gradient[i] - numeric) / (5e-4 + 5e-3 * abs(numeric))
                worst = max(worst, ratio)
                XCTAssertLessThanOrEqual(ratio, 1, "\(name)[\(i - entry.offset)]: analytic \(gradient[i]), numeric \(numeric)")
            }
        }
        print("finite differences, I = 17 (direct dW_ih path): worst error/tolerance \(String(format: "%.3f", worst))")
    }
}
