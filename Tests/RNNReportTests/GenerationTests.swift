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
}
