// Metrics that fit the task: regression eval reports MSE, RMSE, MAE and R² (checked against
// sums computed here), predict prints values and --probabilities; a 62-class character model
// reports perplexity and bits per character and gets its top confusions instead of a matrix;
// small losses print with enough digits.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import XCTest
@testable import RNNReport

final class TaskMetricsTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rnntask-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testRegressionSumsGiveMSERMSEMAEAndUniformR2() {
        // Two outputs, three samples.
        let truth: [Float] = [1, 10, 2, 20, 3, 30]
        let predicted: [Float] = [1.5, 10, 2, 18, 2, 33]
        var sums = RegressionSums(outputs: 2)
        sums.add(predicted: Array(predicted[0..<2]), truth: Array(truth[0..<2]))
        sums.add(predicted: Array(predicted[2...]), truth: Array(truth[2...]))
        let m = sums.metrics
        let d = zip(predicted, truth).map { Double($0 - $1) }
        XCTAssertEqual(m.mse, d.map { $0 * $0 }.reduce(0, +) / 6, accuracy: 1e-12)
        XCTAssertEqual(m.rmse, m.mse.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(m.mae, d.map(abs).reduce(0, +) / 6, accuracy: 1e-12)
        // Output 0: SS_res 0.25 + 0 + 1, SS_tot 2; output 1: SS_res 0 + 4 + 9, SS_tot 200.
        XCTAssertEqual(m.r2, ((1 - 1.25 / 2) + (1 - 13.0 / 200)) / 2, accuracy: 1e-12)
    }

    func testLossesBelowAThousandthKeepTheirDigits() {
        XCTAssertEqual(lossText(0.69314), "0.6931")
        XCTAssertEqual(lossText(0.0012345), "0.0012")
        XCTAssertEqual(lossText(0.000034567), "3.4567e-05")
        XCTAssertEqual(lossText(0), "0.0000")
        let e = EpochProgress(epoch: 1, epochs: 2, globalStep: 5, loss: 1.0, accuracy: 0.5, validationLoss: 2.0, validationAccuracy: nil,
                              seconds: 1, samplesPerSecond: 10, languageModel: true)
        XCTAssertEqual(epochLine(e), "Epoch [1/2], Loss: 1.0000, Accuracy: 50.00%, Perplexity: 2.72, BPC: 1.443, Val Loss: 2.0000, Val Perplexity: 7.39, Val BPC: 2.885")
    }

    func testCharacterModelEvalReportsPerplexityAndTopConfusions() throws {
        guard let folder = Bundle.module.url(forResource: "Fixtures/generate", withExtension: nil) else { throw XCTSkip("no fixtures") }
        let model = try LoadedModel.load(checkpoint: folder.appendingPathComponent("char-lstm.h5").path)
        let sonnets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("datasets/text/sonnets.h5").path
        let data = try model.open(dataset: [sonnets])
        let report = try model.evaluate(on: data)
        XCTAssertEqual(report.perplexity!, exp(report.loss), accuracy: 1e-9)
        XCTAssertEqual(report.bitsPerCharacter!, report.loss / log(2), accuracy: 1e-12)
        XCTAssertNil(report.regression)
        let text = report.text(labels: data.vocabulary.map { $0.map { String($0) } })
        print(text)
        XCTAssertTrue(text.contains("Perplexity: "), text)
        XCTAssertTrue(text.contains("Most frequent confusions (62 classes"), text)
        XCTAssertFalse(text.contains("Confusion matrix"), text)
        XCTAssertEqual(text.split(separator: "\n").filter { $0.hasPrefix("  '") }.count, 10)
        let top = report.confusion!.topConfusions(3)
        XCTAssertGreaterThanOrEqual(top[0].2, top[1].2)
    }

    func testRegressionEvalAndPredictPrintTheValuesThroughTheBinaries() throws {
        // y = mean of the sequence's first feature over time, plus the last step's second feature.
        var rng = SeededGenerator(seed: 3)
        let n = 64, t = 5, f = 2
        let x = (0..<(n * t * f)).map { _ in rng.nextFloat(in: -1, 1) }
        var y = [Float](repeating: 0, count: n * 2)
        for s in 0..<n {
            y[s * 2] = (0..<t).map { x[(s * t + $0) * f] }.reduce(0, +) / Float(t)
            y[s * 2 + 1] = x[(s * t + t - 1) * f + 1]
        }
        try DatasetContents(x: .dense(x, count: n, steps: t, features: f), y: .values(y, shape: [n, 2])).write(to: dir + "/reg.h5")
        let train = try runBinary("rnn-coord", ["start", "--data", "reg.h5", "--cell", "gru", "--hidden", "8", "--batch-size", "16",
                                                "--epochs", "30", "--lr", "0.02", "--local-workers", "1", "--bind", "tcp://127.0.0.1:*",
                                                "--checkpoint-dir", "run", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(train.status, 0, train.err)
        let eval = try runBinary("rnn-coord", ["eval", "--checkpoint", "run", "--data", "reg.h5", "--log-format", "json"], in: dir)
        XCTAssertEqual(eval.status, 0, eval.err)
        let json = try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as! [String: Any]
        let mse = json["mse"] as! Double, r2 = json["r2"] as! Double
        XCTAssertEqual(mse, json["loss"] as! Double, accuracy: 1e-6)  // the training loss is torch's mse_loss
        XCTAssertEqual(json["rmse"] as! Double, mse.squareRoot(), accuracy: 1e-9)
        XCTAssertGreaterThan(r2, 0.5, "a GRU fits this after 30 epochs")
        let text = try runBinary("rnn-coord", ["eval", "--checkpoint", "run", "--data", "reg.h5"], in: dir).out
        for key in ["MSE: ", "RMSE: ", "MAE: ", "R²: "] { XCTAssertTrue(text.contains(key), text) }
        XCTAssertFalse(text.contains("Accuracy"), text)
        // predict prints the two predicted values and the true ones.
        let predict = try runBinary("rnn-coord", ["predict", "--checkpoint", "run", "--data", "reg.h5", "--limit", "3"], in: dir)
        XCTAssertEqual(predict.status, 0, predict.err)
        let lines = predict.out.split(separator: "\n")
        XCTAssertEqual(lines.first, "sample,predicted,true")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[1].hasPrefix("0,\""), String(lines[1]))
        XCTAssertTrue(lines[1].hasSuffix("\(valueText(y[0])) \(valueText(y[1]))\""), String(lines[1]))
        assertOneErrorLine(try runBinary("rnn-coord", ["predict", "--checkpoint", "run", "--data", "reg.h5", "--probabilities"], in: dir),
                           contains: "--probabilities needs a classifier", "regression --probabilities")
    }

    func testPredictProbabilitiesSumToOneAndAgreeWithThePrediction() throws {
        XCTAssertEqual(try runBinary("rnn-data", ["make", "random", "--output", "r.h5", "-n", "40", "-c", "3"], in: dir).status, 0)
        let train = try runBinary("rnn-coord", ["start", "--data", "r.h5", "--cell", "lstm", "--hidden", "6", "--batch-size", "8", "--epochs", "2",
                                                "--local-workers", "1", "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", "run", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(train.status, 0, train.err)
        let r = try runBinary("rnn-coord", ["predict", "--checkpoint", "run", "--data", "r.h5", "--probabilities", "--limit", "10"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.first, "sample,predicted,true,p_0,p_1,p_2")
        for line in lines.dropFirst() {
            let cells = line.split(separator: ",")
            let p = cells[3...].map { Double($0)! }
            XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(p.firstIndex(of: p.max()!), Int(cells[1]))
        }
        assertOneErrorLine(try runBinary("rnn-coord", ["predict", "--checkpoint", "run", "--text", "ab", "--probabilities"], in: dir),
                           contains: "--text needs a character model", "--text --probabilities on a classifier")
    }

    func testPredictTextProbabilitiesListTheLikeliestNextCharacters() throws {
        guard let folder = Bundle.module.url(forResource: "Fixtures/generate", withExtension: nil) else { throw XCTSkip("no fixtures") }
        let path = folder.appendingPathComponent("char-lstm.h5").path
        let model = try LoadedModel.load(checkpoint: path)
        let sonnets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("datasets/text/sonnets.h5").path
        let vocab = try TensorDataset.open(path: sonnets).vocabulary!
        let all = try model.nextCharacterProbabilities("Shall I compare th", vocabulary: vocab)
        XCTAssertEqual(all.count, 62)
        XCTAssertEqual(all.map(\.1).reduce(0, +), 1, accuracy: 1e-9)
        // The likeliest is what greedy generation takes next.
        var greedy = TokenSampler(temperature: 0, seed: 0)
        XCTAssertEqual(String(all[0].0), try model.generate(prompt: "Shall I compare th", length: 1, sampler: &greedy, vocabulary: vocab))
        let r = try runBinary("rnn-coord", ["predict", "--checkpoint", path, "--vocab-from", sonnets, "--text", "Shall I compare th", "--probabilities"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.count, 12)  // predicted text, header, 10 characters
        XCTAssertEqual(lines[1], "next,probability")
        XCTAssertEqual(lines[2], "\"\(all[0].0)\",\(String(format: "%.6f", all[0].1))")
    }
}
