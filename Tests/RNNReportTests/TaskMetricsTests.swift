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

    /// A per-step token model over sequences of 2-8 real steps (T = 8), targets past each
    /// length set to -100 and ids there to random tokens: `eval`'s loss, accuracy, confusion
    /// matrix and perplexity count the real steps only, and `predict --probabilities` is the
    /// softmax of each sequence's last real step. The references are computed here from the
    /// network's raw outputs.
    func testPerStepTokenModelWithLengthsScoresRealStepsOnly() throws {
        var rng = SeededGenerator(seed: 21)
        let n = 48, t = 8, v = 7, classes = 3
        let lengths = (0..<n).map { _ in Int32(2 + rng.next() % UInt64(t - 1)) }
        var x = [Int32](repeating: 0, count: n * t), y = [Int32](repeating: -100, count: n * t)
        for i in 0..<n {
            for s in 0..<t { x[i * t + s] = Int32(rng.next() % UInt64(v)) }
            for s in 0..<Int(lengths[i]) { y[i * t + s] = (x[i * t + s] + (s > 0 ? x[i * t + s - 1] : 0)) % Int32(classes) }
        }
        try DatasetContents(x: .tokens(x, count: n, steps: t, vocabularySize: v), y: .classes(y, shape: [n, t]), classes: classes,
                            lengths: lengths).write(to: dir + "/steps.h5")
        let train = try runBinary("rnn-coord", ["start", "--data", "steps.h5", "--cell", "lstm", "--hidden", "12", "--bidirectional",
                                                "--batch-size", "8", "--epochs", "8", "--lr", "0.02", "--local-workers", "2",
                                                "--bind", "tcp://127.0.0.1:*", "--checkpoint-dir", "run", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(train.status, 0, train.err)
        let model = try LoadedModel.load(checkpoint: try XCTUnwrap(newestCheckpoint(dir + "/run")))
        let data = try model.open(dataset: [dir + "/steps.h5"])
        XCTAssertTrue(isLanguageModel(model.config.model))
        // The reference: cross-entropy, arg-max and softmax of the raw logits over the real steps.
        let real = lengths.map(Int.init)
        let out = try model.network.predict(parameters: model.checkpoint.parameters, input: x.map { Float($0) }, batch: n, steps: t,
                                            lengths: real).outputs
        var lossSum = 0.0, correct = 0, scored = 0
        var confusion = ConfusionMatrix(classes: classes)
        var lastStepProbabilities: [[Double]] = []
        for i in 0..<n {
            for s in 0..<real[i] {
                let logits = out[((i * t + s) * classes)..<((i * t + s + 1) * classes)].map(Double.init)
                let top = logits.max()!
                let logSum = top + log(logits.map { exp($0 - top) }.reduce(0, +))
                let target = Int(y[i * t + s])
                lossSum += logSum - logits[target]
                let predicted = logits.firstIndex(of: top)!
                if predicted == target { correct += 1 }
                confusion.add(truth: target, predicted: predicted)
                scored += 1
                if s == real[i] - 1 { lastStepProbabilities.append(logits.map { exp($0 - logSum) }) }
            }
        }
        XCTAssertEqual(scored, real.reduce(0, +))
        let loss = lossSum / Double(scored)
        let report = try model.evaluate(on: data, batchSize: 10)  // several batches, the last one short
        print("lengths per-step eval: loss \(report.loss) (reference \(loss)), perplexity \(report.perplexity ?? .nan), accuracy \(report.accuracy ?? .nan)")
        XCTAssertEqual(report.loss, loss, accuracy: 1e-5 * loss)
        XCTAssertEqual(report.perplexity!, exp(loss), accuracy: 1e-5 * exp(loss))
        XCTAssertEqual(report.bitsPerCharacter!, loss / log(2), accuracy: 1e-5 * loss)
        XCTAssertEqual(report.accuracy!, Double(correct) / Double(scored), accuracy: 1e-12)
        XCTAssertEqual(report.confusion, confusion)
        XCTAssertEqual(report.confusion?.total, scored)
        // The binaries agree: eval --log-format json, and predict --probabilities at each sequence's last real step.
        let eval = try runBinary("rnn-coord", ["eval", "--checkpoint", "run", "--data", "steps.h5", "--log-format", "json"], in: dir)
        XCTAssertEqual(eval.status, 0, eval.err)
        let json = try JSONSerialization.jsonObject(with: Data(eval.out.utf8)) as! [String: Any]
        XCTAssertEqual(json["perplexity"] as! Double, exp(loss), accuracy: 1e-5 * exp(loss))
        let predict = try runBinary("rnn-coord", ["predict", "--checkpoint", "run", "--data", "steps.h5", "--probabilities"], in: dir)
        XCTAssertEqual(predict.status, 0, predict.err)
        let lines = predict.out.split(separator: "\n").dropFirst()
        XCTAssertEqual(lines.count, n)
        for (i, line) in lines.enumerated() {
            let p = line.split(separator: ",").suffix(classes).map { Double($0)! }
            for (a, b) in zip(p, lastStepProbabilities[i]) { XCTAssertEqual(a, b, accuracy: 2e-6, "sample \(i): \(line)") }
        }
    }

    /// A last-step regression over float sequences of 2-6 real steps (T = 6) whose padding holds
    /// noise: `eval`'s MSE is the training loss over each sequence's own final state, and
    /// `predict` prints those values; then per-step targets: only the real steps are scored.
    func testRegressionWithLengthsEvaluatesAndPrintsTheRealStepsOnly() throws {
        var rng = SeededGenerator(seed: 5)
        let n = 40, t = 6, f = 2
        let lengths = (0..<n).map { _ in Int32(2 + rng.next() % UInt64(t - 1)) }
        let x = (0..<(n * t * f)).map { _ in rng.nextFloat(in: -1, 1) }
        var y = [Float](repeating: 0, count: n * 2)
        for i in 0..<n {
            let l = Int(lengths[i])
            y[i * 2] = (0..<l).map { x[(i * t + $0) * f] }.reduce(0, +) / Float(l)
            y[i * 2 + 1] = x[(i * t + l - 1) * f + 1]
        }
        try DatasetContents(x: .dense(x, count: n, steps: t, features: f), y: .values(y, shape: [n, 2]), lengths: lengths)
            .write(to: dir + "/reg.h5")
        let train = try runBinary("rnn-coord", ["start", "--data", "reg.h5", "--cell", "gru", "--hidden", "8", "--batch-size", "8",
                                                "--epochs", "5", "--lr", "0.02", "--local-workers", "1", "--bind", "tcp://127.0.0.1:*",
                                                "--checkpoint-dir", "run", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(train.status, 0, train.err)
        let model = try LoadedModel.load(checkpoint: try XCTUnwrap(newestCheckpoint(dir + "/run")))
        let data = try model.open(dataset: [dir + "/reg.h5"])
        let real = lengths.map(Int.init)
        let out = try model.network.predict(parameters: model.checkpoint.parameters, input: x, batch: n, steps: t, lengths: real).outputs
        let ignoring = try model.network.predict(parameters: model.checkpoint.parameters, input: x, batch: n, steps: t).outputs
        XCTAssertGreaterThan(zip(out, ignoring).map { abs($0 - $1) }.max()!, 1e-3, "the padding noise must matter to the test")
        let mse = zip(out, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(out.count)
        let trainingLoss = try model.network.evaluate(parameters: model.checkpoint.parameters, input: x, batch: n, steps: t,
                                                      targets: .values(y), lengths: real).meanLoss
        XCTAssertEqual(trainingLoss, mse, accuracy: 1e-6 * mse)
        let report = try model.evaluate(on: data, batchSize: 16)
        print("lengths regression eval: loss \(report.loss), mse \(report.regression?.mse ?? .nan) (reference \(mse))")
        XCTAssertEqual(report.loss, mse, accuracy: 1e-5 * mse)
        XCTAssertEqual(report.regression!.mse, mse, accuracy: 1e-5 * mse)
        let values = try model.outputs(on: data)
        XCTAssertEqual(values.flatMap { $0 }, out)
        let predict = try runBinary("rnn-coord", ["predict", "--checkpoint", "run", "--data", "reg.h5", "--limit", "4"], in: dir)
        XCTAssertEqual(predict.status, 0, predict.err)
        let lines = predict.out.split(separator: "\n")
        XCTAssertEqual(lines.count, 5)
        XCTAssertTrue(lines[1].hasPrefix("0,\"\(valueText(out[0])) \(valueText(out[1]))\","), String(lines[1]))

        // Per-step targets (the running mean of the first feature), 1000 past each length: only
        // the real steps are scored (the training loss), evaluated and printed.
        var z = [Float](repeating: 1000, count: n * t)
        for i in 0..<n {
            for s in 0..<Int(lengths[i]) { z[i * t + s] = (0...s).map { x[(i * t + $0) * f] }.reduce(0, +) / Float(s + 1) }
        }
        try DatasetContents(x: .dense(x, count: n, steps: t, features: f), y: .values(z, shape: [n, t, 1]), lengths: lengths)
            .write(to: dir + "/steps.h5")
        let trainSteps = try runBinary("rnn-coord", ["start", "--data", "steps.h5", "--cell", "gru", "--hidden", "8", "--batch-size", "8",
                                                     "--epochs", "3", "--lr", "0.02", "--local-workers", "1", "--bind", "tcp://127.0.0.1:*",
                                                     "--checkpoint-dir", "steps", "--quiet", "--no-plot"], in: dir)
        XCTAssertEqual(trainSteps.status, 0, trainSteps.err)
        let stepModel = try LoadedModel.load(checkpoint: try XCTUnwrap(newestCheckpoint(dir + "/steps")))
        XCTAssertEqual(stepModel.config.model.head, .everyStep)
        let stepOut = try stepModel.network.predict(parameters: stepModel.checkpoint.parameters, input: x, batch: n, steps: t, lengths: real).outputs
        var squared = 0.0
        for i in 0..<n { for s in 0..<real[i] { squared += Double(stepOut[i * t + s] - z[i * t + s]) * Double(stepOut[i * t + s] - z[i * t + s]) } }
        let stepMSE = squared / Double(real.reduce(0, +))
        let stepTraining = try stepModel.network.evaluate(parameters: stepModel.checkpoint.parameters, input: x, batch: n, steps: t,
                                                          targets: .values(z), lengths: real).meanLoss
        XCTAssertEqual(stepTraining, stepMSE, accuracy: 1e-6 * stepMSE)
        let stepReport = try stepModel.evaluate(on: try stepModel.open(dataset: [dir + "/steps.h5"]), batchSize: 16)
        print("lengths per-step regression eval: loss \(stepReport.loss), mse \(stepReport.regression?.mse ?? .nan) (reference \(stepMSE))")
        XCTAssertLessThan(stepMSE, 10, "the padding's 1000s must not be scored")
        XCTAssertEqual(stepReport.regression!.mse, stepMSE, accuracy: 1e-5 * stepMSE)
        let stepPredict = try runBinary("rnn-coord", ["predict", "--checkpoint", "steps", "--data", "steps.h5", "--limit", "3"], in: dir)
        XCTAssertEqual(stepPredict.status, 0, stepPredict.err)
        for (i, line) in stepPredict.out.split(separator: "\n").dropFirst().enumerated() {
            let cells = line.split(separator: "\"").filter { $0 != "," }
            XCTAssertEqual(cells.count, 3, String(line))
            XCTAssertEqual(cells[1].split(separator: " ").count, real[i], String(line))
            XCTAssertEqual(String(cells[2]), (0..<real[i]).map { valueText(z[i * t + $0]) }.joined(separator: " "), String(line))
        }
    }

    /// The highest-numbered ckpt-<step>.h5 in `folder`.
    private func newestCheckpoint(_ folder: String) throws -> String? {
        let steps = try FileManager.default.contentsOfDirectory(atPath: folder).compactMap { name -> Int? in
            guard name.hasPrefix("ckpt-"), name.hasSuffix(".h5") else { return nil }
            return Int(name.dropFirst(5).dropLast(3))
        }
        return steps.max().map { folder + "/ckpt-\($0).h5" }
    }
}
