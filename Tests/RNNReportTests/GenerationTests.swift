// rnn-coord generate: greedy text equal to PyTorch's from the same checkpoint
// (Fixtures/generate, scripts/make_generate_fixture.py), seeded sampling reproducible, and
// sampling frequencies that match softmax(logits / T) (chi-square), with and without top-k.
import Foundation
import RNNCore
import XCTest
@testable import RNNReport

private struct GreedyFixture: Decodable {
    var torch: String
    var vocab: String
    var prompt: String
    var length: Int
    var greedy: String
    var minTop2Gap: Double
}

final class GenerationTests: XCTestCase {
    private func fixture() throws -> (GreedyFixture, String) {
        guard let folder = Bundle.module.url(forResource: "Fixtures/generate", withExtension: nil) else {
            throw XCTSkip("the test bundle has no Fixtures/generate")
        }
        let f = try JSONDecoder().decode(GreedyFixture.self, from: Data(contentsOf: folder.appendingPathComponent("greedy.json")))
        return (f, folder.appendingPathComponent("char-lstm.h5").path)
    }

    func testGreedyGenerationEqualsPyTorchsFromTheSameCheckpoint() throws {
        let (f, path) = try fixture()
        let model = try LoadedModel.load(checkpoint: path)
        var sampler = TokenSampler(temperature: 0, seed: 1)
        let text = try model.generate(prompt: f.prompt, length: f.length, sampler: &sampler, vocabulary: Array(f.vocab.unicodeScalars))
        print("greedy: \(f.length) characters, equal to torch \(f.torch): \(text == f.greedy) (smallest top-2 logit gap in torch \(f.minTop2Gap))")
        XCTAssertEqual(text, f.greedy)
    }

    func testSeededSamplingRepeatsAndSeedsDiffer() throws {
        let (f, path) = try fixture()
        let model = try LoadedModel.load(checkpoint: path)
        let vocab = Array(f.vocab.unicodeScalars)
        func sample(_ seed: UInt64, topK: Int? = nil) throws -> String {
            var s = TokenSampler(temperature: 0.8, topK: topK, seed: seed)
            return try model.generate(prompt: f.prompt, length: 150, sampler: &s, vocabulary: vocab)
        }
        XCTAssertEqual(try sample(3), try sample(3))
        XCTAssertNotEqual(try sample(3), try sample(4))
        XCTAssertEqual(try sample(5).unicodeScalars.count, 150)
        // top-k 1 is greedy whatever the temperature.
        XCTAssertEqual(String(try sample(9, topK: 1).prefix(60)), String(f.greedy.prefix(60)))
    }

    /// Pearson's chi-square of `counts` against `expected` probabilities (cells with p > 0).
    private func chiSquare(_ counts: [Int], _ p: [Double], draws: Int) -> (Double, Int) {
        var chi = 0.0, cells = 0
        for (c, q) in zip(counts, p) where q > 0 {
            let e = q * Double(draws)
            chi += (Double(c) - e) * (Double(c) - e) / e
            cells += 1
        }
        return (chi, cells - 1)
    }

    func testSamplingFrequenciesMatchTheSoftmaxAtTheTemperature() {
        let logits: [Float] = [2.0, 1.0, 0.5, -1.0, 0.0, 1.5, -0.3]
        // chi-square critical values at p = 0.001: df 6 -> 22.46, df 2 -> 13.82.
        for (temperature, topK, critical) in [(0.8, nil as Int?, 22.46), (1.7, nil, 22.46), (0.5, 3, 13.82)] {
            var sampler = TokenSampler(temperature: temperature, topK: topK, seed: 42)
            // The expected distribution, computed here independently: softmax of the kept logits / T.
            let kept = topK.map { k in Set(logits.indices.sorted { logits[$0] > logits[$1] }.prefix(k)) } ?? Set(logits.indices)
            let weights = logits.indices.map { kept.contains($0) ? exp(Double(logits[$0]) / temperature) : 0 }
            let expected = weights.map { $0 / weights.reduce(0, +) }
            let p = sampler.probabilities(logits[...])
            for (a, b) in zip(p, expected) { XCTAssertEqual(a, b, accuracy: 1e-12) }
            let draws = 200_000
            var counts = [Int](repeating: 0, count: logits.count)
            for _ in 0..<draws { counts[sampler.next(logits[...])] += 1 }
            let (chi, df) = chiSquare(counts, expected, draws: draws)
            print("T=\(temperature) top-k \(topK.map(String.init) ?? "-"): chi-square \(String(format: "%.2f", chi)) with \(df) df over \(draws) draws (critical \(critical))")
            XCTAssertLessThan(chi, critical)
            for i in logits.indices where !kept.contains(i) { XCTAssertEqual(counts[i], 0, "token \(i) is outside the top \(topK!)") }
        }
        var greedy = TokenSampler(temperature: 0, seed: 1)
        XCTAssertEqual(greedy.next([0.5, 3, 3, 1][...]), 1)  // the first of equal maxima, as torch.argmax
    }

    func testGenerateCommandPrintsThePromptAndTheGreedyTextAndRejectsBadFlags() throws {
        let (f, path) = try fixture()
        let dir = NSTemporaryDirectory() + "rnngen-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sonnets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("datasets/text/sonnets.h5").path
        let args = ["generate", "--checkpoint", path, "--vocab-from", sonnets, "--prompt", f.prompt]
        let r = try runBinary("rnn-coord", args + ["--length", "\(f.length)", "--temperature", "0"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out, f.prompt + f.greedy + "\n")
        let a = try runBinary("rnn-coord", args + ["--length", "80", "--temperature", "0.9", "--top-k", "5", "--seed", "11"], in: dir)
        let b = try runBinary("rnn-coord", args + ["--length", "80", "--temperature", "0.9", "--top-k", "5", "--seed", "11"], in: dir)
        XCTAssertEqual(a.status, 0, a.err)
        XCTAssertEqual(a.out, b.out)
        for (extra, expected) in [(["--temperature=-1"], "'--temperature' of 0 or more"), (["--top-k", "0"], "'--top-k' of at least 1"),
                                  (["--length", "0"], "'--length' of at least 1"), (["--prompt", "Shall I ~"], "'~' is not in the model's vocabulary")] {
            assertOneErrorLine(try runBinary("rnn-coord", args + extra, in: dir), contains: expected, "\(extra)")
        }
        // A model that is not a character model (digits: one class per sequence).
        let digits = URL(fileURLWithPath: sonnets).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("digits/digits-test.h5").path
        let train = try runBinary("rnn-coord", ["start", "--data", digits, "--cell", "gru", "--hidden", "4", "--batch-size", "64", "--max-steps", "1",
                                                "--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", "digits", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(train.status, 0, train.err)
        assertOneErrorLine(try runBinary("rnn-coord", ["generate", "--checkpoint", "digits", "--prompt", "a", "--vocab-from", sonnets], in: dir),
                           contains: "needs a character model", "digits model")
    }

    /// The highest-numbered ckpt-<step>.h5 in `folder`.
    private func newestCheckpoint(in folder: String) throws -> String {
        let steps = try FileManager.default.contentsOfDirectory(atPath: folder).compactMap { name -> Int? in
            guard name.hasPrefix("ckpt-"), name.hasSuffix(".h5") else { return nil }
            return Int(name.dropFirst(5).dropLast(3))
        }
        return folder + "/ckpt-\(try XCTUnwrap(steps.max())).h5"
    }

    /// The greedy continuation computed here without carrying any state: each next character is
    /// the arg-max of the last step of one forward pass over the whole text so far. Returns the
    /// text and the smallest gap between the two largest logits along the way.
    private func referenceGreedy(_ model: LoadedModel, prompt: String, length: Int, vocabulary: [Unicode.Scalar]) throws -> (String, Float) {
        var index: [Unicode.Scalar: Int] = [:]
        for (i, c) in vocabulary.enumerated() where index[c] == nil { index[c] = i }
        var ids = prompt.unicodeScalars.map { index[$0]! }
        var text = String.UnicodeScalarView()
        var smallestGap = Float.infinity
        let V = model.config.model.outputSize
        for _ in 0..<length {
            // A token-id model reads the ids themselves (as floats).
            let out = try model.network.predict(parameters: model.checkpoint.parameters, input: ids.map { Float($0) },
                                                batch: 1, steps: ids.count).outputs
            let last = Array(out[((ids.count - 1) * V)..<(ids.count * V)])
            let sorted = last.sorted(by: >)
            smallestGap = min(smallestGap, sorted[0] - sorted[1])
            let next = last.firstIndex(of: sorted[0])!
            text.append(vocabulary[next])
            ids.append(next)
        }
        return (String(text), smallestGap)
    }

    /// A character model trained by `rnn-coord start --embedding` (token ids into nn.Embedding):
    /// `generate` runs, is reproducible with a seed, and greedy decoding equals the arg-max
    /// continuation computed from the network's own predict over the whole text each time.
    /// The same for the one-hot gather model (no --embedding); a bidirectional model is refused.
    func testGenerateWithAnEmbeddingCharacterModelIsGreedyAndSeeded() throws {
        let dir = NSTemporaryDirectory() + "rnngen-emb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let corpus = String(repeating: "the cat sat on the mat. the dog ran to the log. a hen hid in the den. ", count: 12)
        try corpus.write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        let made = try runBinary("rnn-data", ["make", "text", "--from", "t.txt", "--seq-len", "16", "--output", "train.h5"], in: dir)
        XCTAssertEqual(made.status, 0, made.err)
        func train(_ folder: String, _ extra: [String]) throws {
            let r = try runBinary("rnn-coord", ["start", "--data", "train.h5", "--cell", "gru", "--hidden", "24", "--batch-size", "16",
                                                "--epochs", "25", "--lr", "0.02", "--shuffle", "--seed", "3", "--local-workers", "2",
                                                "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", folder, "--quiet", "--no-plot"] + extra, in: dir)
            XCTAssertEqual(r.status, 0, r.err)
        }
        try train("emb", ["--embedding", "8"])
        try train("onehot", [])
        let prompt = "the d"
        for folder in ["emb", "onehot"] {
            let model = try LoadedModel.load(checkpoint: try newestCheckpoint(in: dir + "/" + folder))
            XCTAssertTrue(model.config.model.tokenInput)
            XCTAssertEqual(model.config.model.embeddingSize, folder == "emb" ? 8 : nil)
            let vocabulary = try XCTUnwrap(try model.open(dataset: [dir + "/train.h5"]).vocabulary)
            let (expected, gap) = try referenceGreedy(model, prompt: prompt, length: 60, vocabulary: vocabulary)
            print("\(folder): greedy '\(expected)' (smallest top-2 logit gap \(gap))")
            XCTAssertGreaterThan(gap, 1e-4, "\(folder): a near tie makes the comparison meaningless; change the seed")
            // The model learned something: the corpus' continuation.
            XCTAssertTrue(expected.hasPrefix("og ran to the "), "\(folder): \(expected)")
            var greedy = TokenSampler(temperature: 0, seed: 1)
            XCTAssertEqual(try model.generate(prompt: prompt, length: 60, sampler: &greedy, vocabulary: vocabulary), expected, folder)
            let args = ["generate", "--checkpoint", folder, "--prompt", prompt, "--length", "60"]
            let g = try runBinary("rnn-coord", args + ["--temperature", "0"], in: dir)
            XCTAssertEqual(g.status, 0, g.err)
            XCTAssertEqual(g.out, prompt + expected + "\n", folder)
            let a = try runBinary("rnn-coord", args + ["--temperature", "1.5", "--seed", "7"], in: dir)
            let b = try runBinary("rnn-coord", args + ["--temperature", "1.5", "--seed", "7"], in: dir)
            let c = try runBinary("rnn-coord", args + ["--temperature", "1.5", "--seed", "8"], in: dir)
            XCTAssertEqual(a.status, 0, a.err)
            XCTAssertEqual(a.out, b.out, folder)
            XCTAssertNotEqual(a.out, c.out, folder)
            XCTAssertEqual(a.out.unicodeScalars.count, prompt.unicodeScalars.count + 60 + 1)
        }
        // A bidirectional model reads the text backwards too: it cannot continue it one
        // character at a time, and generate says so.
        try train("bi", ["--embedding", "8", "--bidirectional", "--max-steps", "2"])
        assertOneErrorLine(try runBinary("rnn-coord", ["generate", "--checkpoint", "bi", "--prompt", prompt], in: dir),
                           contains: "bidirectional", "bidirectional generate")
    }
}
