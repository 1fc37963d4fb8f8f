// Finite-difference checks of the option paths (bidirectional, lengths, embedding, one-hot
// gather, dropout with its masks fixed by the key), dropout's keep fraction and scale, shard
// invariance with lengths and dropout (what W workers rely on), and bad-input errors.
import XCTest
@testable import RNNCore

final class OptionGradientCheckTests: XCTestCase {
    struct Batch {
        var x: [Float]
        var targets: Targets
        var initial: RecurrentState?
        var lengths: [Int]?
    }

    static func makeBatch(_ config: ModelConfig, batch B: Int, steps T: Int, withState: Bool, withLengths: Bool,
                          seed: UInt64) -> Batch {
        var rng = SeededGenerator(seed: seed)
        let x: [Float] = config.tokenInput
            ? (0..<(B * T)).map { _ in Float(rng.next() % UInt64(config.inputSize)) }
            : (0..<(B * T * config.inputSize)).map { _ in rng.nextFloat(in: -1, 1) }
        let rows = config.head == .lastStep ? B : B * T
        let targets: Targets = config.loss == .crossEntropy
            ? .classIds((0..<rows).map { _ in Int32(rng.next() % UInt64(config.outputSize)) })
            : .values((0..<(rows * config.outputSize)).map { _ in rng.nextFloat(in: -1, 1) })
        var initial: RecurrentState?
        if withState {
            let n = config.layers * config.directions * B * config.hiddenSize
            initial = RecurrentState(h: (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) },
                                     c: config.cell == .lstm ? (0..<n).map { _ in rng.nextFloat(in: -0.5, 0.5) } : nil)
        }
        var lengths: [Int]?
        if withLengths {
            lengths = (0..<B).map { b in b == 0 ? T : 1 + Int(rng.next() % UInt64(T)) }
        }
        return Batch(x: x, targets: targets, initial: initial, lengths: lengths)
    }

    /// Central differences of the loss sum against the analytic gradient, for every parameter
    /// and initial-state value; dropout masks stay fixed because the key is the same.
    func checkAgainstCentralDifferences(_ config: ModelConfig, withState: Bool, withLengths: Bool,
                                        dropout: DropoutKey? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let B = dropout?.samples.count ?? 3, T = 4
        let eps: Float = 5e-3, atol: Float = 5e-4, rtol: Float = 5e-3
        let network = try RNNNetwork(config: config)
        let parameters = ParameterTable.initialParameters(config: config, seed: 7)
        let data = Self.makeBatch(config, batch: B, steps: T, withState: withState, withLengths: withLengths, seed: 11)
        var gradient = [Float](repeating: 0, count: network.table.totalCount)
        _ = try network.accumulateGradients(parameters: parameters, input: data.x, batch: B, steps: T, targets: data.targets,
                                            initialState: data.initial, lengths: data.lengths, dropout: dropout, gradient: &gradient)
        let stateGradient = network.initialStateGradient()
        var scratch = [Float](repeating: 0, count: network.table.totalCount)
        func lossSum(_ p: [Float], _ state: RecurrentState?) throws -> Double {
            // With a dropout key the loss must see the same masks: a training pass computes it.
            if dropout != nil {
                return try network.accumulateGradients(parameters: p, input: data.x, batch: B, steps: T, targets: data.targets,
                                                       initialState: state, lengths: data.lengths, dropout: dropout,
                                                       gradient: &scratch).lossSum
            }
            return try network.evaluate(parameters: p, input: data.x, batch: B, steps: T, targets: data.targets,
                                        initialState: state, lengths: data.lengths).lossSum
        }
        var worst: Float = 0, checked = 0
        func expectClose(_ analytic: Float, at value: Float, _ what: String, _ f: (Float) throws -> Double) rethrows {
            let up = value + eps, down = value - eps
            let numeric = Float((try f(up) - f(down)) / Double(up - down))
            let ratio = abs(analytic - numeric) / (atol + rtol * abs(numeric))
            worst = max(worst, ratio)
            checked += 1
            XCTAssertLessThanOrEqual(ratio, 1, "\(what): analytic \(analytic), numeric \(numeric)", file: file, line: line)
        }
        for entry in network.table.entries {
            for i in entry.range {
                if entry.name == "embedding.weight", let pad = config.paddingIndex, let e = config.embeddingSize,
                   (i - entry.offset) / e == pad {
                    // padding_idx: no gradient by definition (PyTorch's), though the loss depends on it.
                    XCTAssertEqual(gradient[i], 0, "padding row \(pad) gets no gradient", file: file, line: line)
                    continue
                }
                var p = parameters
                try expectClose(gradient[i], at: parameters[i], "\(entry.name)[\(i - entry.offset)]") { v in
                    p[i] = v
                    return try lossSum(p, data.initial)
                }
            }
        }
        if let initial = data.initial {
            try checkInitialStateGradient(stateGradient, at: initial, loss: { try lossSum(parameters, $0) },
                                           expectClose: { try expectClose($0, at: $1, $2, $3) })
        }
        print("finite differences \(config.cell.rawValue) bi=\(config.bidirectional) L=\(config.layers) tokens=\(config.tokenInput) E=\(config.embeddingSize.map(String.init) ?? "-") lengths=\(withLengths) state=\(withState) dropout=\(dropout != nil ? config.dropout : 0) \(config.head.rawValue)/\(config.loss.rawValue): \(checked) values, worst error/tolerance \(String(format: "%.3f", worst))")
    }

    func testBidirectionalWithLengthsEveryCell() throws {
        for cell in [CellKind.rnnTanh, .lstm, .gru] {
            for head in HeadMode.allCases {
                let config = ModelConfig(cell: cell, inputSize: 3, hiddenSize: 3, layers: 2, outputSize: 3, head: head,
                                         loss: head == .lastStep ? .crossEntropy : .mse, bidirectional: true)
                try checkAgainstCentralDifferences(config, withState: true, withLengths: true)
            }
        }
    }

    func testEmbeddingAndOneHotTokens() throws {
        for cell in [CellKind.lstm, .gru] {
            let embedded = ModelConfig(cell: cell, inputSize: 6, hiddenSize: 3, layers: 1, outputSize: 3, head: .everyStep,
                                       tokenInput: true, embeddingSize: 4, paddingIndex: 2, bidirectional: true)
            try checkAgainstCentralDifferences(embedded, withState: false, withLengths: true)
            let oneHot = ModelConfig(cell: cell, inputSize: 6, hiddenSize: 3, layers: 2, outputSize: 3, head: .lastStep,
                                     tokenInput: true)
            try checkAgainstCentralDifferences(oneHot, withState: true, withLengths: true)
        }
    }

    func testDropoutWithFixedMasks() throws {
        let key = DropoutKey(seed: 3, step: 5, samples: [10, 4, 7])
        for cell in [CellKind.rnnTanh, .lstm, .gru] {
            let config = ModelConfig(cell: cell, inputSize: 3, hiddenSize: 4, layers: 3, outputSize: 3, head: .everyStep,
                                     bidirectional: cell == .lstm, dropout: 0.4)
            try checkAgainstCentralDifferences(config, withState: false, withLengths: true, dropout: key)
        }
    }

    /// Dropout's masks: the kept fraction is 1 - P within 4 standard deviations, kept values are
    /// scaled by exactly 1/(1-P), and the mask of a sample depends on its key only.
    func testDropoutKeepFractionAndScale() throws {
        let p: Float = 0.3
        let config = ModelConfig(cell: .rnnTanh, inputSize: 2, hiddenSize: 64, layers: 2, outputSize: 2, dropout: p)
        let network = try RNNNetwork(config: config)
        let B = 16, T = 20
        let parameters = ParameterTable.initialParameters(config: config, seed: 1)
        let data = Self.makeBatch(config, batch: B, steps: T, withState: false, withLengths: false, seed: 2)
        var gradient = [Float](repeating: 0, count: parameters.count)
        let key = DropoutKey(seed: 9, step: 1, samples: Array(100..<(100 + B)))
        _ = try network.accumulateGradients(parameters: parameters, input: data.x, batch: B, steps: T, targets: data.targets,
                                            dropout: key, gradient: &gradient)
        let mask = Array(UnsafeBufferPointer(start: network.workspace!.masks[0].pointer, count: B * T * 64))
        let kept = mask.filter { $0 != 0 }
        let n = Double(mask.count)
        let fraction = Double(kept.count) / n
        let sigma = (Double(1 - p) * Double(p) / n).squareRoot()
        print("dropout P=0.3: kept \(kept.count) of \(mask.count) = \(String(format: "%.4f", fraction)) (expected 0.7000 +- \(String(format: "%.4f", 4 * sigma)))")
        XCTAssertEqual(fraction, Double(1 - p), accuracy: 4 * sigma)
        XCTAssertTrue(kept.allSatisfy { $0 == 1 / (1 - p) }, "kept values are scaled by 1/(1-P)")
        // Sample 105's mask row at step 0 is the same when it is alone in a batch.
        let row = Array(mask[5 * 64..<(6 * 64)])
        _ = try network.accumulateGradients(parameters: parameters, input: Array(data.x[(5 * T * 2)..<(6 * T * 2)]), batch: 1, steps: T,
                                            targets: .classIds([0]), dropout: DropoutKey(seed: 9, step: 1, samples: [105]),
                                            gradient: &gradient)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: network.workspace!.masks[0].pointer, count: 64)), row)
        // No dropout outside training: evaluate equals a pass with P = 0.
        let plain = try RNNNetwork(config: ModelConfig(cell: .rnnTanh, inputSize: 2, hiddenSize: 64, layers: 2, outputSize: 2))
        XCTAssertEqual(try network.evaluate(parameters: parameters, input: data.x, batch: B, steps: T, targets: data.targets),
                       try plain.evaluate(parameters: parameters, input: data.x, batch: B, steps: T, targets: data.targets))
    }

    /// Two shards accumulated into one gradient equal the whole batch, with lengths, dropout,
    /// bidirectional layers and an embedding: the property W workers rely on.
    func testShardsEqualTheWholeBatch() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 9, hiddenSize: 5, layers: 2, outputSize: 3, head: .everyStep,
                                 tokenInput: true, embeddingSize: 4, paddingIndex: 0, bidirectional: true, dropout: 0.3)
        let network = try RNNNetwork(config: config)
        let B = 7, T = 6
        let parameters = ParameterTable.initialParameters(config: config, seed: 3)
        let data = Self.makeBatch(config, batch: B, steps: T, withState: false, withLengths: true, seed: 4)
        guard case .classIds(let ids) = data.targets, let lengths = data.lengths else { return XCTFail() }
        let samples = (0..<B).map { 40 + 3 * $0 }
        var whole = [Float](repeating: 0, count: parameters.count)
        let all = try network.accumulateGradients(parameters: parameters, input: data.x, batch: B, steps: T, targets: data.targets,
                                                  lengths: lengths, dropout: DropoutKey(seed: 1, step: 2, samples: samples), gradient: &whole)
        var split = [Float](repeating: 0, count: parameters.count)
        var total = LossStats()
        for range in [0..<3, 3..<7] {
            total = total + (try network.accumulateGradients(
                parameters: parameters, input: Array(data.x[(range.lowerBound * T)..<(range.upperBound * T)]), batch: range.count, steps: T,
                targets: .classIds(Array(ids[(range.lowerBound * T)..<(range.upperBound * T)])), lengths: Array(lengths[range]),
                dropout: DropoutKey(seed: 1, step: 2, samples: Array(samples[range])), gradient: &split))
        }
        XCTAssertEqual(total.scoredCount, all.scoredCount)
        XCTAssertEqual(total.scoredCount, lengths.reduce(0, +))
        XCTAssertEqual(total.lossSum, all.lossSum, accuracy: 1e-4)
        let r = compare(split, whole, rtol: 1e-5, atol: 1e-6)
        XCTAssertTrue(r.passed, "shards vs whole: max abs \(r.maxAbs), first mismatch \(r.firstMismatch ?? "-")")
        // padding_idx's row gets no gradient.
        let emb = network.table.entry(named: "embedding.weight")!
        XCTAssertTrue(whole[emb.offset..<(emb.offset + 4)].allSatisfy { $0 == 0 })
        XCTAssertTrue(parameters[emb.offset..<(emb.offset + 4)].allSatisfy { $0 == 0 }, "padding row starts at zero")
    }

    /// One-hot token ids through the gather give the numbers of the same ids one-hot encoded
    /// as float features: the forward pass bitwise, gradients up to summation order.
    func testOneHotGatherEqualsOneHotFeatures() throws {
        let V = 11, B = 4, T = 5
        let tokens = ModelConfig(cell: .gru, inputSize: V, hiddenSize: 6, layers: 1, outputSize: 3, tokenInput: true)
        let dense = ModelConfig(cell: .gru, inputSize: V, hiddenSize: 6, layers: 1, outputSize: 3)
        let a = try RNNNetwork(config: tokens), b = try RNNNetwork(config: dense)
        XCTAssertEqual(a.table, b.table)
        let parameters = ParameterTable.initialParameters(config: dense, seed: 8)
        var rng = SeededGenerator(seed: 9)
        let ids = (0..<(B * T)).map { _ in Int(rng.next() % UInt64(V)) }
        var oneHot = [Float](repeating: 0, count: B * T * V)
        for (i, id) in ids.enumerated() { oneHot[i * V + id] = 1 }
        let targets = Targets.classIds([0, 1, 2, 1])
        XCTAssertEqual(try a.predict(parameters: parameters, input: ids.map(Float.init), batch: B, steps: T),
                       try b.predict(parameters: parameters, input: oneHot, batch: B, steps: T))
        let ga = try a.meanLossAndGradient(parameters: parameters, input: ids.map(Float.init), batch: B, steps: T, targets: targets)
        let gb = try b.meanLossAndGradient(parameters: parameters, input: oneHot, batch: B, steps: T, targets: targets)
        let r = compare(ga.gradient, gb.gradient, rtol: 1e-5, atol: 1e-7)
        XCTAssertTrue(r.passed, "gather vs one-hot GEMM: max abs \(r.maxAbs)")
    }

    /// Lengths all equal to T give the numbers of no lengths (the packed path equals the plain one).
    func testFullLengthsEqualNoLengths() throws {
        for bidirectional in [false, true] {
            let config = ModelConfig(cell: .lstm, inputSize: 3, hiddenSize: 4, layers: 2, outputSize: 2, head: .everyStep,
                                     loss: .mse, bidirectional: bidirectional)
            let network = try RNNNetwork(config: config)
            let parameters = ParameterTable.initialParameters(config: config, seed: 2)
            let data = Self.makeBatch(config, batch: 3, steps: 4, withState: true, withLengths: false, seed: 3)
            let plain = try network.meanLossAndGradient(parameters: parameters, input: data.x, batch: 3, steps: 4,
                                                        targets: data.targets, initialState: data.initial)
            let packed = try network.meanLossAndGradient(parameters: parameters, input: data.x, batch: 3, steps: 4,
                                                         targets: data.targets, initialState: data.initial, lengths: [4, 4, 4])
            XCTAssertEqual(plain.stats.lossSum, packed.stats.lossSum, accuracy: 1e-9)
            let r = compare(packed.gradient, plain.gradient, rtol: 1e-6, atol: 1e-8)
            XCTAssertTrue(r.passed, "bi=\(bidirectional): max abs \(r.maxAbs)")
        }
    }

    func testBadInputsGetOneClearSentence() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 5, hiddenSize: 3, outputSize: 2, tokenInput: true, embeddingSize: 2)
        let network = try RNNNetwork(config: config)
        let p = ParameterTable.initialParameters(config: config, seed: 1)
        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertEqual(message { _ = try network.evaluate(parameters: p, input: [0, 1, 2, 3], batch: 2, steps: 2, targets: .classIds([0, 1]), lengths: [2, 3]) },
                       "length 3 of sequence 1 is outside [1, 2]")
        XCTAssertEqual(message { _ = try network.evaluate(parameters: p, input: [0, 1, 2, 3], batch: 2, steps: 2, targets: .classIds([0, 1]), lengths: [2]) },
                       "lengths must hold one value per sequence (B=2), found 1")
        XCTAssertEqual(message { _ = try network.evaluate(parameters: p, input: [0, 1, 5, 3], batch: 2, steps: 2, targets: .classIds([0, 1])) },
                       "token id 5.0 at index 2 is not an integer in [0, 5) (the vocabulary)")
        XCTAssertEqual(message { _ = try network.evaluate(parameters: p, input: [0, 1.5, 2, 3], batch: 2, steps: 2, targets: .classIds([0, 1])) },
                       "token id 1.5 at index 1 is not an integer in [0, 5) (the vocabulary)")
        XCTAssertEqual(message { _ = try RNNNetwork(config: ModelConfig(cell: .gru, inputSize: 4, hiddenSize: 2, outputSize: 2, embeddingSize: 3)) },
                       "an embedding needs token-id input (X of integer ids with vocab_size), found float features")
        XCTAssertEqual(message { _ = try RNNNetwork(config: ModelConfig(cell: .gru, inputSize: 4, hiddenSize: 2, outputSize: 2, tokenInput: true, embeddingSize: 3, paddingIndex: 4)) },
                       "padding index must be in [0, 4) (the vocabulary), found 4")
        XCTAssertEqual(message { _ = try RNNNetwork(config: ModelConfig(cell: .gru, inputSize: 4, hiddenSize: 2, outputSize: 2, dropout: 1)) },
                       "dropout must be in [0, 1), found 1.0")
    }

    /// Parameter names and shapes as PyTorch's state_dict, and the initialisation bounds.
    func testTableAndInitialisation() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 50, hiddenSize: 8, layers: 2, outputSize: 3, tokenInput: true,
                                 embeddingSize: 6, paddingIndex: 1, bidirectional: true)
        let table = ParameterTable(config: config)
        XCTAssertEqual(table.entries.map(\.name), [
            "embedding.weight",
            "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
            "rnn.weight_ih_l0_reverse", "rnn.weight_hh_l0_reverse", "rnn.bias_ih_l0_reverse", "rnn.bias_hh_l0_reverse",
            "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
            "rnn.weight_ih_l1_reverse", "rnn.weight_hh_l1_reverse", "rnn.bias_ih_l1_reverse", "rnn.bias_hh_l1_reverse",
            "fc.weight", "fc.bias",
        ])
        XCTAssertEqual(table.entry(named: "embedding.weight")?.shape, [50, 6])
        XCTAssertEqual(table.entry(named: "rnn.weight_ih_l0")?.shape, [32, 6])
        XCTAssertEqual(table.entry(named: "rnn.weight_ih_l1_reverse")?.shape, [32, 16])
        XCTAssertEqual(table.entry(named: "fc.weight")?.shape, [3, 16])
        let p = ParameterTable.initialParameters(config: config, seed: 4)
        let emb = Array(p[table.entry(named: "embedding.weight")!.range])
        XCTAssertTrue(emb[6..<12].allSatisfy { $0 == 0 })
        let mean = emb.reduce(0, +) / Float(emb.count - 6)
        let variance = emb.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(emb.count - 6)
        XCTAssertEqual(mean, 0, accuracy: 0.15)
        XCTAssertEqual(variance, 1, accuracy: 0.2)
        let fc = p[table.entry(named: "fc.weight")!.range]
        XCTAssertTrue(fc.allSatisfy { abs($0) <= 1 / Float(16).squareRoot() })
        // The JSON of a plain model does not mention the options; an optioned one round-trips.
        let plain = String(decoding: try JSONEncoder().encode(ModelConfig(cell: .gru, inputSize: 2, hiddenSize: 3, outputSize: 2)), as: UTF8.self)
        XCTAssertFalse(plain.contains("bidirectional") || plain.contains("dropout") || plain.contains("token"))
        XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: try JSONEncoder().encode(config)), config)
        // A checkpoint of an older one-hot token model resumes as the gather model, nothing else does.
        let oneHot = ModelConfig(cell: .gru, inputSize: 40, hiddenSize: 3, outputSize: 40, head: .everyStep)
        var gather = oneHot
        gather.tokenInput = true
        XCTAssertTrue(gather.continues(oneHot))
        XCTAssertTrue(gather.continues(gather))
        XCTAssertFalse(oneHot.continues(gather))
        var wider = gather
        wider.hiddenSize = 4
        XCTAssertFalse(wider.continues(oneHot))
    }
}
