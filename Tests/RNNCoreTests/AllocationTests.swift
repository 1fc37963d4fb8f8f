// "No allocation in a steady-state step" (issue 18 item 4): the process's malloc-family calls
// are counted (MallocCounter interposes them in the test executable) over steady-state
// training steps, RNNNetwork.accumulateGradients plus the worker's Adam step, for every cell,
// the model options and 1 and 2 threads. A step that allocates fails the test.
import MallocCounter
import XCTest
@testable import RNNCore

final class AllocationTests: XCTestCase {
    struct Case {
        var name: String
        var config: ModelConfig
        var batch = 16
        var steps = 12
        var lengths = false
        var initialState = false
        var dropout = false
    }

    static let cases: [Case] = [
        Case(name: "rnn_tanh (seed-small)", config: ModelConfig(cell: .rnnTanh, inputSize: 5, hiddenSize: 64, outputSize: 2), batch: 32, steps: 10),
        Case(name: "rnn_relu per-step mse", config: ModelConfig(cell: .rnnRelu, inputSize: 7, hiddenSize: 24, outputSize: 3, head: .everyStep, loss: .mse)),
        Case(name: "lstm 2 layers", config: ModelConfig(cell: .lstm, inputSize: 20, hiddenSize: 48, layers: 2, outputSize: 4)),
        Case(name: "gru 2 layers, initial state", config: ModelConfig(cell: .gru, inputSize: 20, hiddenSize: 40, layers: 2, outputSize: 4),
             initialState: true),
        Case(name: "bidirectional lstm 2 layers", config: ModelConfig(cell: .lstm, inputSize: 16, hiddenSize: 32, layers: 2, outputSize: 3,
                                                                     bidirectional: true)),
        Case(name: "embedding lstm", config: ModelConfig(cell: .lstm, inputSize: 50, hiddenSize: 32, outputSize: 3, tokenInput: true,
                                                        embeddingSize: 12)),
        Case(name: "one-hot gru per-step", config: ModelConfig(cell: .gru, inputSize: 30, hiddenSize: 32, outputSize: 30, head: .everyStep,
                                                              tokenInput: true)),
        Case(name: "lstm lengths", config: ModelConfig(cell: .lstm, inputSize: 10, hiddenSize: 32, outputSize: 3), lengths: true),
        Case(name: "lstm dropout", config: ModelConfig(cell: .lstm, inputSize: 10, hiddenSize: 32, layers: 3, outputSize: 3, dropout: 0.3),
             dropout: true),
        // Big enough for the 2-thread paths (split GEMMs and the split recurrent steps).
        Case(name: "lstm H=128", config: ModelConfig(cell: .lstm, inputSize: 64, hiddenSize: 128, layers: 2, outputSize: 10), batch: 32, steps: 20),
        Case(name: "gru H=128", config: ModelConfig(cell: .gru, inputSize: 64, hiddenSize: 128, outputSize: 10), batch: 32, steps: 20),
    ]

    /// The fewest allocation calls seen in any of `windows` windows of `steps` steps each.
    /// (Other threads of the test process, e.g. an idle Dispatch worker, may allocate now and
    /// then; a step that allocates does so in every window.)
    static func fewestAllocations(windows: Int = 3, steps: Int = 3, _ step: () throws -> Void) rethrows -> Int {
        var fewest = Int.max
        for _ in 0..<windows {
            MallocCounter_start()
            for _ in 0..<steps { try step() }
            fewest = min(fewest, MallocCounter_stop())
        }
        return fewest
    }

    func testCounterSeesAnAllocation() throws {
        MallocCounter_start()
        let a = [Float](repeating: 1, count: Int.random(in: 100...200))
        let n = MallocCounter_stop()
        if n < 0 { throw XCTSkip("malloc is interposed on glibc only") }
        XCTAssertGreaterThanOrEqual(a.count > 0 ? n : 0, 1, "an array allocates")
        let aligned = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        MallocCounter_start()
        let b = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        let m = MallocCounter_stop()
        b.deallocate()
        aligned.deallocate()
        XCTAssertEqual(m, 1, "an aligned allocation counts too")
    }

    func testSteadyStateTrainingStepAllocatesNothing() throws {
        MallocCounter_start()
        if MallocCounter_stop() < 0 { throw XCTSkip("malloc is interposed on glibc only") }
        for threads in [1, 2] {
            for c in Self.cases {
                let config = c.config, B = c.batch, T = c.steps
                let network = try RNNNetwork(config: config, threads: threads)
                var parameters = ParameterTable.initialParameters(config: config, seed: 3)
                var gradient = [Float](repeating: 0, count: parameters.count)
                var optimizer = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 1e-3), parameterCount: parameters.count)
                var previous = TrainingState()
                var rng = SeededGenerator(seed: 5)
                let x: [Float] = config.tokenInput
                    ? (0..<(B * T)).map { _ in Float(rng.next() % UInt64(config.inputSize)) }
                    : (0..<(B * T * config.inputSize)).map { _ in rng.nextFloat(in: -1, 1) }
                let rows = config.head == .lastStep ? B : B * T
                let targets: Targets = config.loss == .crossEntropy
                    ? .classIds((0..<rows).map { _ in Int32(rng.next() % UInt64(config.outputSize)) })
                    : .values((0..<(rows * config.outputSize)).map { _ in rng.nextFloat(in: -1, 1) })
                let lengths: [Int]? = c.lengths ? (0..<B).map { b in 1 + (b * 7) % T } : nil
                let n = config.layers * config.directions * B * config.hiddenSize
                let state: RecurrentState? = c.initialState ? RecurrentState(h: (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) }) : nil
                var key = c.dropout ? DropoutKey(seed: 7, step: 0, samples: Array(0..<B)) : nil
                func step() throws {
                    key?.step += 1
                    let stats = try network.accumulateGradients(parameters: parameters, input: x, batch: B, steps: T, targets: targets,
                                                                initialState: state, lengths: lengths, dropout: key,
                                                                gradient: &gradient)
                    gradient.withUnsafeMutableBufferPointer { sums in
                        _ = optimizer.step(parameters: &parameters, clearingGradientSum: sums, scale: 1 / Float(stats.scoredCount),
                                           keepingPreviousIn: &previous)
                    }
                }
                // Warm-up: the workspace, packing buffers and Adam's saved state are sized here.
                try step()
                try step()
                let calls = try Self.fewestAllocations(step)
                XCTAssertEqual(calls, 0, "\(c.name), threads \(threads): a steady-state step allocated \(calls / 3) times (3 steps, fewest of 3 windows)")
            }
        }
    }
}
