// The tutorial's two examples: "hello" -> "elloh" and the SimpleRNN sequence classifier.
import XCTest
@testable import RNNCore

final class TutorialTests: XCTestCase {
    func testHelloToElloh() throws {
        let chars: [Character] = ["h", "e", "l", "o"]
        let input = "hello".map { c in chars.firstIndex(of: c)! }
        let target = "elloh".map { c in Int32(chars.firstIndex(of: c)!) }
        var x = [Float](repeating: 0, count: 5 * 4)
        for (t, id) in input.enumerated() { x[t * 4 + id] = 1 }
        let config = ModelConfig(cell: .rnnTanh, inputSize: 4, hiddenSize: 8, layers: 1, outputSize: 4,
                                 head: .everyStep, loss: .crossEntropy)
        let network = try RNNNetwork(config: config)
        var p = ParameterTable.initialParameters(config: config, seed: 0)
        var adam = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 0.1), parameterCount: p.count)
        var losses: [Double] = []
        for _ in 0..<200 {
            var (stats, g) = try network.meanLossAndGradient(parameters: p, input: x, batch: 1, steps: 5, targets: .classIds(target))
            losses.append(stats.meanLoss)
            adam.step(parameters: &p, gradient: &g)
        }
        let final = try network.evaluate(parameters: p, input: x, batch: 1, steps: 5, targets: .classIds(target))
        let outputs = try network.predict(parameters: p, input: x, batch: 1, steps: 5).outputs
        var predicted = ""
        for t in 0..<5 {
            let row = Array(outputs[(t * 4)..<(t * 4 + 4)])
            let best: Int = row.indices.max { row[$0] < row[$1] }!
            predicted.append(chars[best])
        }
        print("hello -> \(predicted): loss \(losses[0]) -> \(final.meanLoss) after 200 Adam steps")
        XCTAssertLessThan(final.meanLoss, 0.01)
        XCTAssertEqual(predicted, "elloh")
        XCTAssertEqual(final.correct, 5)
    }

    func testSimpleRNNLossGoesDown() throws {
        // SimpleRNN: I=5, H=64, T=10, batch 32, 2 classes, on random sequences whose label is
        // whether the first feature sums to more than zero.
        let I = 5, T = 10, B = 32, batches = 4
        let config = ModelConfig(cell: .rnnTanh, inputSize: I, hiddenSize: 64, layers: 1, outputSize: 2)
        let network = try RNNNetwork(config: config)
        var rng = SeededGenerator(seed: 2024)
        let data: [([Float], [Int32])] = (0..<batches).map { _ in
            let x = (0..<(B * T * I)).map { _ in rng.nextFloat(in: -1, 1) }
            var y: [Int32] = []
            for b in 0..<B {
                var sum: Float = 0
                for t in 0..<T { sum += x[(b * T + t) * I] }
                y.append(sum > 0 ? 1 : 0)
            }
            return (x, y)
        }
        var p = ParameterTable.initialParameters(config: config, seed: 1)
        var adam = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 0.003), parameterCount: p.count)
        var gradient = [Float](repeating: 0, count: p.count)
        var epochLosses: [Double] = []
        var epochAccuracy: [Double] = []
        for _ in 0..<15 {
            var epoch = LossStats()
            for (x, y) in data {
                for i in gradient.indices { gradient[i] = 0 }
                let stats = try network.accumulateGradients(parameters: p, input: x, batch: B, steps: T,
                                                            targets: .classIds(y), gradient: &gradient)
                let inverse = 1 / Float(stats.scoredCount)
                for i in gradient.indices { gradient[i] *= inverse }
                adam.step(parameters: &p, gradient: &gradient)
                epoch = epoch + stats
            }
            epochLosses.append(epoch.meanLoss)
            epochAccuracy.append(epoch.accuracy)
        }
        print("SimpleRNN epoch losses: \(epochLosses.map { String(format: "%.4f", $0) }), accuracy \(epochAccuracy.last!)")
        XCTAssertLessThan(epochLosses.last!, 0.6 * epochLosses.first!)
        XCTAssertGreaterThan(epochAccuracy.last!, 0.8)
    }
}
