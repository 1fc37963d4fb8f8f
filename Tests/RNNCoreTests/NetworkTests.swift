// Data-parallel semantics (gradient sums over shards), workspace reuse, threads, validation,
// initialisation.
import XCTest
@testable import RNNCore

final class NetworkTests: XCTestCase {
    /// Rows [start, start+count) of a batch-first tensor with `inner` values per batch row.
    private func rows(_ v: [Float], _ start: Int, _ count: Int, _ inner: Int) -> [Float] {
        Array(v[(start * inner)..<((start + count) * inner)])
    }

    /// Batch rows of an (L, B, H) state.
    private func stateRows(_ v: [Float], layers: Int, batch: Int, hidden: Int, _ start: Int, _ count: Int) -> [Float] {
        var out: [Float] = []
        for l in 0..<layers {
            let from: Int = (l * batch + start) * hidden
            let to: Int = from + count * hidden
            out += v[from..<to]
        }
        return out
    }

    func testTwoShardSumEqualsOneShard() throws {
        let B = 5, T = 4, split = 2
        for cell in CellKind.allCases {
            for (head, loss) in [(HeadMode.lastStep, LossKind.crossEntropy), (.everyStep, .crossEntropy),
                                 (.lastStep, .mse), (.everyStep, .mse)] {
                let config = ModelConfig(cell: cell, inputSize: 3, hiddenSize: 6, layers: 2, outputSize: 4, head: head, loss: loss)
                let network = try RNNNetwork(config: config)
                let p = ParameterTable.initialParameters(config: config, seed: 3)
                let data = GradientCheckTests.makeBatch(config, batch: B, steps: T, withState: true, seed: 5)
                var whole = [Float](repeating: 0, count: p.count)
                let wholeStats = try network.accumulateGradients(parameters: p, input: data.x, batch: B, steps: T,
                                                                 targets: data.targets, initialState: data.initial, gradient: &whole)
                var sharded = [Float](repeating: 0, count: p.count)
                var shardStats = LossStats()
                for (start, count) in [(0, split), (split, B - split)] {
                    let targetsPerRow = (head == .lastStep ? 1 : T) * (loss == .mse ? config.outputSize : 1)
                    let targets: Targets
                    switch data.targets {
                    case .classIds(let ids): targets = .classIds(Array(ids[(start * targetsPerRow)..<((start + count) * targetsPerRow)]))
                    case .values(let v): targets = .values(rows(v, start, count, targetsPerRow))
                    }
                    let h = stateRows(data.initial!.h, layers: 2, batch: B, hidden: 6, start, count)
                    let c = data.initial!.c.map { stateRows($0, layers: 2, batch: B, hidden: 6, start, count) }
                    shardStats = shardStats + (try network.accumulateGradients(
                        parameters: p, input: rows(data.x, start, count, T * 3), batch: count, steps: T,
                        targets: targets, initialState: RecurrentState(h: h, c: c), gradient: &sharded))
                }
                XCTAssertEqual(shardStats.scoredCount, wholeStats.scoredCount)
                XCTAssertEqual(shardStats.correct, wholeStats.correct)
                XCTAssertEqual(shardStats.lossSum, wholeStats.lossSum, accuracy: 1e-5 * abs(wholeStats.lossSum))
                let r = compare(sharded, whole, rtol: 1e-5, atol: 1e-6)
                XCTAssertTrue(r.passed, "\(cell) \(head) \(loss): shard sum differs, max abs \(r.maxAbs), \(r.firstMismatch ?? "")")
            }
        }
    }

    func testAccumulatesAndMeanIsSumOverCount() throws {
        let config = ModelConfig(cell: .gru, inputSize: 3, hiddenSize: 5, layers: 1, outputSize: 3, head: .everyStep)
        let network = try RNNNetwork(config: config)
        let p = ParameterTable.initialParameters(config: config, seed: 1)
        let data = GradientCheckTests.makeBatch(config, batch: 3, steps: 4, withState: false, seed: 2)
        var g = [Float](repeating: 0, count: p.count)
        let s1 = try network.accumulateGradients(parameters: p, input: data.x, batch: 3, steps: 4, targets: data.targets, gradient: &g)
        let once = g
        _ = try network.accumulateGradients(parameters: p, input: data.x, batch: 3, steps: 4, targets: data.targets, gradient: &g)
        XCTAssertEqual(s1.scoredCount, 12)
        XCTAssertTrue(compare(g, once.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7).passed, "second call must add, not overwrite")
        let (stats, mean) = try network.meanLossAndGradient(parameters: p, input: data.x, batch: 3, steps: 4, targets: data.targets)
        XCTAssertEqual(stats.meanLoss, s1.lossSum / 12, accuracy: 1e-6)
        XCTAssertTrue(compare(mean, once.map { $0 / 12 }, rtol: 1e-5, atol: 1e-7).passed)
        let eval = try network.evaluate(parameters: p, input: data.x, batch: 3, steps: 4, targets: data.targets)
        XCTAssertEqual(eval, s1)
    }

    func testWorkspaceIsAllocatedOnceAndReused() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 4, hiddenSize: 8, layers: 2, outputSize: 2)
        let network = try RNNNetwork(config: config)
        let p = ParameterTable.initialParameters(config: config, seed: 1)
        var g = [Float](repeating: 0, count: p.count)
        let big = GradientCheckTests.makeBatch(config, batch: 6, steps: 5, withState: false, seed: 1)
        _ = try network.accumulateGradients(parameters: p, input: big.x, batch: 6, steps: 5, targets: big.targets, gradient: &g)
        let first = ObjectIdentifier(try XCTUnwrap(network.workspace))
        let small = GradientCheckTests.makeBatch(config, batch: 4, steps: 3, withState: false, seed: 2)
        for _ in 0..<3 {
            _ = try network.accumulateGradients(parameters: p, input: big.x, batch: 6, steps: 5, targets: big.targets, gradient: &g)
            _ = try network.accumulateGradients(parameters: p, input: small.x, batch: 4, steps: 3, targets: small.targets, gradient: &g)
        }
        XCTAssertEqual(ObjectIdentifier(try XCTUnwrap(network.workspace)), first, "a fitting shape must reuse the workspace")
        // A smaller shape after a bigger one gives the same result as a fresh network.
        let fresh = try RNNNetwork(config: config)
        var g1 = [Float](repeating: 0, count: p.count), g2 = g1
        let a = try network.accumulateGradients(parameters: p, input: small.x, batch: 4, steps: 3, targets: small.targets, gradient: &g1)
        let b = try fresh.accumulateGradients(parameters: p, input: small.x, batch: 4, steps: 3, targets: small.targets, gradient: &g2)
        XCTAssertEqual(a, b)
        XCTAssertEqual(g1, g2)
    }

    func testThreadsGiveTheSameResult() throws {
        // Large enough that the input projection (1280 x 384 x 64) and dW_hh (384 x 128 x 1280)
        // pass GemmEngine's minimum work per thread and are really split.
        let config = ModelConfig(cell: .gru, inputSize: 64, hiddenSize: 128, layers: 2, outputSize: 3, head: .everyStep)
        let p = ParameterTable.initialParameters(config: config, seed: 9)
        let data = GradientCheckTests.makeBatch(config, batch: 64, steps: 20, withState: true, seed: 4)
        var results: [[Float]] = []
        var states: [[Float]] = []
        for threads in [1, 2] {
            let network = try RNNNetwork(config: config, threads: threads)
            XCTAssertEqual(network.threads, threads)
            results.append(try network.meanLossAndGradient(parameters: p, input: data.x, batch: 64, steps: 20,
                                                           targets: data.targets, initialState: data.initial).gradient)
            states.append(network.initialStateGradient().h)
        }
        let r = compare(results[1], results[0], rtol: 1e-5, atol: 1e-7)
        XCTAssertTrue(r.passed, "threads 2 vs 1: max abs \(r.maxAbs)")
        XCTAssertTrue(compare(states[1], states[0], rtol: 1e-5, atol: 1e-7).passed)
        print("threads 2 vs 1: gradients \(results[1] == results[0] ? "bitwise equal" : "max abs diff \(r.maxAbs)")")
    }

    /// Issue 18 item 3: with 2 threads the recurrent steps are split by hidden units across the
    /// thread team (and big GEMMs by rows or columns); parameters after 3 Adam steps, the loss
    /// and the initial-state gradients must be bitwise those of 1 thread, for every cell, a
    /// bidirectional 2-layer model, lengths, an initial state and a per-step head, at sizes
    /// whose unit split is uneven (H = 40: 16 + 24 units) and at the split's size threshold.
    func testTwoThreadsAreBitwiseOneThreadAfterTrainingSteps() throws {
        struct Case { var config: ModelConfig; var lengths = false; var state = false; var minFlops = 0 }
        let cases: [Case] = [
            Case(config: ModelConfig(cell: .lstm, inputSize: 12, hiddenSize: 40, layers: 2, outputSize: 3)),
            Case(config: ModelConfig(cell: .gru, inputSize: 12, hiddenSize: 40, layers: 2, outputSize: 3, head: .everyStep), state: true),
            Case(config: ModelConfig(cell: .rnnTanh, inputSize: 5, hiddenSize: 64, outputSize: 2)),
            Case(config: ModelConfig(cell: .rnnRelu, inputSize: 6, hiddenSize: 33, outputSize: 4, head: .everyStep, loss: .mse), lengths: true),
            Case(config: ModelConfig(cell: .lstm, inputSize: 10, hiddenSize: 48, layers: 2, outputSize: 3, bidirectional: true),
                 lengths: true, state: true),
            Case(config: ModelConfig(cell: .gru, inputSize: 10, hiddenSize: 32, layers: 2, outputSize: 3, bidirectional: true), lengths: true),
            // The default threshold: a step of H = 128, B = 24 (3.1 MFLOP per thread) is split.
            Case(config: ModelConfig(cell: .lstm, inputSize: 32, hiddenSize: 128, outputSize: 5), minFlops: 2_000_000),
        ]
        let B = 24, T = 9
        for c in cases {
            let config = c.config
            var rng = SeededGenerator(seed: 17)
            let x = (0..<(B * T * config.inputSize)).map { _ in rng.nextFloat(in: -1, 1) }
            let rows = config.head == .lastStep ? B : B * T
            let targets: Targets = config.loss == .crossEntropy
                ? .classIds((0..<rows).map { _ in Int32(rng.next() % UInt64(config.outputSize)) })
                : .values((0..<(rows * config.outputSize)).map { _ in rng.nextFloat(in: -1, 1) })
            let lengths: [Int]? = c.lengths ? (0..<B).map { b in 1 + (b * 5) % T } : nil
            let n = config.layers * config.directions * B * config.hiddenSize
            let state: RecurrentState? = c.state
                ? RecurrentState(h: (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) },
                                 c: config.cell == .lstm ? (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) } : nil)
                : nil
            var finals: [[Float]] = [], losses: [[Double]] = [], initialGradients: [[Float]] = []
            for threads in [1, 2] {
                let network = try RNNNetwork(config: config, threads: threads)
                network.recurrentSplitMinFlops = c.minFlops
                var parameters = ParameterTable.initialParameters(config: config, seed: 23)
                var optimizer = AdamOptimizer(config: OptimizerConfig(kind: .adam, lr: 1e-2), parameterCount: parameters.count)
                var lossSums: [Double] = []
                for _ in 0..<3 {
                    var (stats, gradient) = try network.meanLossAndGradient(parameters: parameters, input: x, batch: B, steps: T,
                                                                            targets: targets, initialState: state, lengths: lengths)
                    lossSums.append(stats.lossSum)
                    _ = optimizer.step(parameters: &parameters, gradient: &gradient)
                }
                finals.append(parameters)
                losses.append(lossSums)
                initialGradients.append(network.initialStateGradient().h + (network.initialStateGradient().c ?? []))
            }
            let name = "\(config.cell) H=\(config.hiddenSize) L=\(config.layers) D=\(config.directions)"
            XCTAssertEqual(losses[1], losses[0], "\(name): losses")
            let firstDiff = zip(finals[1], finals[0]).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
            XCTAssertNil(firstDiff, "\(name): parameter \(firstDiff?.offset ?? -1) differs after 3 steps: threads 2 \(firstDiff?.element.0 ?? 0), threads 1 \(firstDiff?.element.1 ?? 0)")
            XCTAssertEqual(initialGradients[1], initialGradients[0], "\(name): initial-state gradients")
        }
    }

    /// The input projection runs in row chunks on one thread once the gates outgrow L2 (here
    /// N x 4H = 1400 x 256 floats, chunks of 510 rows, the last one partial) and as one product
    /// with two threads (a chunk is too small to split): every element gets the same
    /// operations, so outputs and final states are bitwise equal, for both layers.
    func testChunkedInputProjectionIsBitwiseEqualToOneProduct() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 24, hiddenSize: 64, layers: 2, outputSize: 5, head: .everyStep)
        let p = ParameterTable.initialParameters(config: config, seed: 21)
        let data = GradientCheckTests.makeBatch(config, batch: 56, steps: 25, withState: true, seed: 8)
        var predictions: [Prediction] = []
        for threads in [1, 2] {
            let network = try RNNNetwork(config: config, threads: threads)
            predictions.append(try network.predict(parameters: p, input: data.x, batch: 56, steps: 25, initialState: data.initial))
        }
        XCTAssertEqual(predictions[0].outputs, predictions[1].outputs)
        XCTAssertEqual(predictions[0].finalState, predictions[1].finalState)
    }

    func testPredictReturnsBatchFirstOutputsAndFinalState() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 2, hiddenSize: 3, layers: 2, outputSize: 2, head: .everyStep)
        let network = try RNNNetwork(config: config)
        let p = ParameterTable.initialParameters(config: config, seed: 1)
        let data = GradientCheckTests.makeBatch(config, batch: 3, steps: 4, withState: true, seed: 1)
        let all = try network.predict(parameters: p, input: data.x, batch: 3, steps: 4, initialState: data.initial)
        XCTAssertEqual(all.outputs.count, 3 * 4 * 2)
        // Running the first 2 steps, then the last 2 from the returned state, gives the same outputs.
        // Steps `range` of every batch row of x (3, 4, 2) or of the outputs (3, 4, 2).
        func steps(_ v: [Float], _ range: Range<Int>) -> [Float] {
            var out: [Float] = []
            for b in 0..<3 {
                let from: Int = (b * 4 + range.lowerBound) * 2
                let to: Int = (b * 4 + range.upperBound) * 2
                out += v[from..<to]
            }
            return out
        }
        let first = try network.predict(parameters: p, input: steps(data.x, 0..<2), batch: 3, steps: 2, initialState: data.initial)
        let second = try network.predict(parameters: p, input: steps(data.x, 2..<4), batch: 3, steps: 2, initialState: first.finalState)
        XCTAssertTrue(compare(second.finalState.h, all.finalState.h, rtol: 1e-6, atol: 1e-7).passed)
        XCTAssertTrue(compare(second.finalState.c!, all.finalState.c!, rtol: 1e-6, atol: 1e-7).passed)
        let tail = steps(all.outputs, 2..<4)
        XCTAssertTrue(compare(second.outputs, tail, rtol: 1e-6, atol: 1e-7).passed)
    }

    func testBadInputsGiveClearErrors() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 3, hiddenSize: 4, layers: 1, outputSize: 2)
        let network = try RNNNetwork(config: config)
        let p = ParameterTable.initialParameters(config: config, seed: 1)
        var g = [Float](repeating: 0, count: p.count)
        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch { return "\(error)" }
            return "no error"
        }
        let x = [Float](repeating: 0.1, count: 2 * 3 * 3)
        XCTAssertTrue(message { _ = try network.accumulateGradients(parameters: p, input: Array(x.dropLast()), batch: 2, steps: 3, targets: .classIds([0, 1]), gradient: &g) }
            .contains("input x must be (B=2, T=3, I=3) = 18 values, found 17"))
        XCTAssertTrue(message { _ = try network.accumulateGradients(parameters: p, input: x, batch: 2, steps: 3, targets: .classIds([0, 2]), gradient: &g) }
            .contains("class id 2 at index 1 is outside [0, 2)"))
        XCTAssertTrue(message { _ = try network.accumulateGradients(parameters: p, input: x, batch: 2, steps: 3, targets: .values([0, 2, 1, 1]), gradient: &g) }
            .contains("cross-entropy needs integer class ids"))
        XCTAssertTrue(message { _ = try network.accumulateGradients(parameters: p, input: x, batch: 2, steps: 3, targets: .classIds([0, 1]), initialState: RecurrentState(h: [Float](repeating: 0, count: 8)), gradient: &g) }
            .contains("needs c0"))
        XCTAssertTrue(message { _ = try network.accumulateGradients(parameters: Array(p.dropLast()), input: x, batch: 2, steps: 3, targets: .classIds([0, 1]), gradient: &g) }
            .contains("parameters must hold \(p.count) values"))
        XCTAssertTrue(message { _ = try RNNNetwork(config: ModelConfig(cell: .gru, inputSize: 3, hiddenSize: 0, outputSize: 2)) }
            .contains("hidden size must be at least 1, found 0"))
    }

    func testInitialisationIsPyTorchStyleAndSeeded() {
        let config = ModelConfig(cell: .lstm, inputSize: 10, hiddenSize: 64, layers: 2, outputSize: 5)
        let a = ParameterTable.initialParameters(config: config, seed: 42)
        XCTAssertEqual(a, ParameterTable.initialParameters(config: config, seed: 42))
        XCTAssertNotEqual(a, ParameterTable.initialParameters(config: config, seed: 43))
        XCTAssertEqual(a.count, ParameterTable(config: config).totalCount)
        let bound: Float = 1 / 8
        XCTAssertTrue(a.allSatisfy { $0 >= -bound && $0 < bound })
        // Uniform on [-k, k): mean ~0, variance k^2/3.
        let mean = a.reduce(0, +) / Float(a.count)
        let variance = a.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(a.count)
        XCTAssertEqual(mean, 0, accuracy: 0.002)
        XCTAssertEqual(variance, bound * bound / 3, accuracy: 0.03 * bound * bound / 3)
        // Every tensor, the head included, uses the same 1/sqrt(H) bound.
        let fc = ParameterTable(config: config).entry(named: "fc.weight")!
        XCTAssertGreaterThan(a[fc.range].map(abs).max()!, 0.9 * bound)
    }
}
