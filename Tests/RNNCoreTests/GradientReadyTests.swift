// `onGradientReady`: backward reports the gradient segments (head, layers top-down, embedding)
// in order, each at the moment it is final, which is what lets a caller all-reduce a bucket
// while the layers below still compute.
import XCTest
@testable import RNNCore

final class GradientReadyTests: XCTestCase {
    private struct Case {
        var name: String
        var config: ModelConfig
        var lengths: [Int]?
    }

    private var cases: [Case] {
        [
            Case(name: "lstm 2 layers, last step", config: ModelConfig(cell: .lstm, inputSize: 4, hiddenSize: 6, layers: 2, outputSize: 3)),
            Case(name: "gru 3 layers, every step, mse",
                 config: ModelConfig(cell: .gru, inputSize: 3, hiddenSize: 5, layers: 3, outputSize: 2, head: .everyStep, loss: .mse)),
            Case(name: "rnn bidirectional 2 layers, lengths",
                 config: ModelConfig(cell: .rnnTanh, inputSize: 3, hiddenSize: 4, layers: 2, outputSize: 3, bidirectional: true),
                 lengths: [4, 2, 3]),
            Case(name: "lstm embedding, bidirectional",
                 config: ModelConfig(cell: .lstm, inputSize: 7, hiddenSize: 4, layers: 2, outputSize: 3, tokenInput: true,
                                     embeddingSize: 5, bidirectional: true)),
            Case(name: "gru one-hot tokens, 1 layer",
                 config: ModelConfig(cell: .gru, inputSize: 9, hiddenSize: 4, layers: 1, outputSize: 2, tokenInput: true)),
        ]
    }

    /// The segments cover the gradient, each directly below the one before, in completion
    /// order; every reported range already holds its final values (bitwise), and the
    /// gradient is the same bits as without the callback. Starting from a non-zero gradient
    /// (accumulation) changes nothing.
    func testSegmentsAreReportedInOrderAndFinal() throws {
        let B = 3, T = 4
        for c in cases {
            let network = try RNNNetwork(config: c.config)
            let total = network.table.totalCount
            let segments = network.gradientSegments
            XCTAssertEqual(segments.count, c.config.layers + 1 + (c.config.embeddingSize == nil ? 0 : 1), c.name)
            XCTAssertEqual(segments.first?.upperBound, total, c.name)
            XCTAssertEqual(segments.last?.lowerBound, 0, c.name)
            for i in 1..<segments.count { XCTAssertEqual(segments[i].upperBound, segments[i - 1].lowerBound, c.name) }
            XCTAssertEqual(segments[0].lowerBound, network.table.entry(named: "fc.weight")!.offset, c.name)

            let parameters = ParameterTable.initialParameters(config: c.config, seed: 4)
            var rng = SeededGenerator(seed: 9)
            let x: [Float] = c.config.tokenInput
                ? (0..<(B * T)).map { _ in Float(rng.next() % UInt64(c.config.inputSize)) }
                : (0..<(B * T * c.config.inputSize)).map { _ in rng.nextFloat(in: -1, 1) }
            let rows = c.config.head == .lastStep ? B : B * T
            let targets: Targets = c.config.loss == .crossEntropy
                ? .classIds((0..<rows).map { _ in Int32(rng.next() % UInt64(c.config.outputSize)) })
                : .values((0..<(rows * c.config.outputSize)).map { _ in rng.nextFloat(in: -1, 1) })
            let start = (0..<total).map { _ in rng.nextFloat(in: -0.1, 0.1) }

            var plain = start
            _ = try network.accumulateGradients(parameters: parameters, input: x, batch: B, steps: T, targets: targets,
                                                lengths: c.lengths, gradient: &plain)
            var reported: [Range<Int>] = []
            var snapshots: [[Float]] = []
            var watched = start
            try parameters.withUnsafeBufferPointer { p in
                try x.withUnsafeBufferPointer { xs in
                    try watched.withUnsafeMutableBufferPointer { buffer in
                        let g = buffer
                        _ = try network.accumulateGradients(parameters: p, input: xs, batch: B, steps: T, targets: targets,
                                                            lengths: c.lengths, gradient: g) { range in
                            reported.append(range)
                            snapshots.append(Array(g[range]))
                        }
                    }
                }
            }
            XCTAssertEqual(reported, segments, c.name)
            for (range, snapshot) in zip(reported, snapshots) {
                XCTAssertEqual(snapshot.map(\.bitPattern), watched[range].map(\.bitPattern), "\(c.name): \(range) changed after it was reported")
            }
            XCTAssertEqual(watched.map(\.bitPattern), plain.map(\.bitPattern), "\(c.name): the callback changed the gradient")
        }
    }
}
