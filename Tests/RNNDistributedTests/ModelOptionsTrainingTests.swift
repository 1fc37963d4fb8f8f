// Issue 15's options under data parallelism: a bidirectional LSTM with an embedding, variable
// lengths and inter-layer dropout (P = 0.3) trained by 1 and by 3 workers gives the same
// parameters (masks keyed by sample, never by rank), with an uneven last batch; replicas stay
// bitwise equal; resume stays bitwise; the checkpoint carries the new names and config.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
import RNNDistributed
import XCTest

final class ModelOptionsTrainingTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("options") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 50 variable-length token sequences (lengths 3-9, T = 9), batch 8: 7 steps per epoch,
    /// the last of 2 samples (so with W = 3 one rank computes nothing then), 3 epochs.
    func makeConfig(shuffle: Bool = true, dropout: Float = 0.3) throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("tokens.h5")
        if !FileManager.default.fileExists(atPath: path) {
            try SyntheticData.variableLengthTokens(count: 50, minLength: 3, maxLength: 9, vocabularySize: 12, classes: 3, seed: 4)
                .write(to: path)
        }
        return try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 8, layers: 2, optimizer: OptimizerConfig(lr: 0.01),
                                             batchSize: 8, epochs: 3, seed: 5, shuffle: shuffle, hashEvery: 3,
                                             embeddingSize: 5, paddingIndex: 0, bidirectional: true, dropout: dropout)
    }

    func testDropoutBidirectionalEmbeddingLengthsThreeWorkersMatchOne() throws {
        let config = try makeConfig()
        XCTAssertTrue(config.model.tokenInput)
        let one = try trainInProcess(config, world: 1)
        XCTAssertEqual(one.summary.globalSteps, 21)
        let three = try trainInProcess(config, world: 3, interruptPollMilliseconds: 0)
        XCTAssertEqual(three.summary.globalSteps, 21)
        for w in three.workers {
            XCTAssertEqual(w.steps, 21)
            XCTAssertTrue(w.parameters == three.workers[0].parameters, "rank \(w.rank) differs bitwise from rank 0")
        }
        let diff = maxAbsDifference(three.summary.parameters, one.summary.parameters)
        print("bi-LSTM + embedding + lengths + dropout 0.3, W=3 vs W=1: max |p_3 - p_1| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        XCTAssertEqual(three.summary.train.loss, one.summary.train.loss, accuracy: 1e-4)
        // Dropout really acted: without it the parameters differ.
        let plain = try trainInProcess(try makeConfig(dropout: 0), world: 1)
        XCTAssertGreaterThan(maxAbsDifference(plain.summary.parameters, one.summary.parameters), 1e-3)
        // padding_idx 0 never trains: its row stays zero.
        let table = ParameterTable(config: config.model)
        let emb = table.entry(named: "embedding.weight")!
        XCTAssertTrue(one.summary.parameters[emb.offset..<(emb.offset + 5)].allSatisfy { $0 == 0 })
    }

    /// A per-step GRU over one-hot token ids (the gather path) with lengths and dropout: each
    /// rank scores only its sequences' real steps, and the step's mean is over all of them.
    func testPerStepOneHotGRUWithLengthsThreeWorkersMatchOne() throws {
        var rng = SeededGenerator(seed: 8)
        let n = 50, t = 7, v = 9
        let lengths = (0..<n).map { _ in Int32(1 + rng.next() % UInt64(t)) }
        var x = [Int32](repeating: 0, count: n * t), y = [Int32](repeating: 0, count: n * t)
        for i in 0..<n {
            for s in 0..<Int(lengths[i]) {
                x[i * t + s] = Int32(1 + rng.next() % UInt64(v - 1))
                y[i * t + s] = (x[i * t + s] + (s > 0 ? x[i * t + s - 1] : 0)) % 3
            }
        }
        let path = (dir as NSString).appendingPathComponent("steps.h5")
        try DatasetContents(x: .tokens(x, count: n, steps: t, vocabularySize: v), y: .classes(y, shape: [n, t]), classes: 3,
                            lengths: lengths).write(to: path)
        let config = try TrainingConfig.forDataset(files: [path], cell: .gru, hiddenSize: 6, layers: 2, optimizer: OptimizerConfig(lr: 0.02),
                                                   batchSize: 8, epochs: 3, seed: 2, shuffle: true, hashEvery: 2, dropout: 0.3)
        XCTAssertEqual(config.model.head, .everyStep)
        XCTAssertTrue(config.model.tokenInput)
        XCTAssertNil(config.model.embeddingSize)
        let one = try trainInProcess(config, world: 1)
        let three = try trainInProcess(config, world: 3, interruptPollMilliseconds: 0)
        for w in three.workers { XCTAssertTrue(w.parameters == three.workers[0].parameters, "rank \(w.rank) differs bitwise") }
        let diff = maxAbsDifference(three.summary.parameters, one.summary.parameters)
        print("per-step one-hot GRU + lengths + dropout 0.3, W=3 vs W=1: max |p_3 - p_1| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        XCTAssertEqual(three.summary.train.loss, one.summary.train.loss, accuracy: 1e-4)
    }

    func testResumeWithDropoutAndLengthsIsBitwiseExact() throws {
        let config = try makeConfig()
        let straight = try trainInProcess(config, world: 2)
        let ckpt = (dir as NSString).appendingPathComponent("ckpt")
        var first = config
        first.maxSteps = 10
        _ = try trainInProcess(first, world: 2, checkpointDir: ckpt)
        let saved = try CheckpointStore.read(path: (ckpt as NSString).appendingPathComponent("ckpt-10.h5"),
                                             table: ParameterTable(config: config.model))
        XCTAssertEqual(saved.metadata.globalStep, 10)
        let rest = try trainInProcess(config, world: 2, checkpointDir: ckpt, resume: ckpt)
        XCTAssertEqual(rest.summary.globalSteps, 21)
        XCTAssertTrue(rest.summary.parameters == straight.summary.parameters,
                      "resumed run differs by \(maxAbsDifference(rest.summary.parameters, straight.summary.parameters))")
        // The checkpoint holds PyTorch's names and the options in its config.
        let file = try CheckpointStore.read(path: (ckpt as NSString).appendingPathComponent("ckpt-21.h5"),
                                            table: ParameterTable(config: config.model))
        XCTAssertEqual(file.parameters, rest.summary.parameters)
        let names = ParameterTable(config: config.model).entries.map(\.name)
        XCTAssertTrue(names.contains("embedding.weight") && names.contains("rnn.weight_hh_l1_reverse"))
        let decoded = try TrainingConfig.fromJSON(config.jsonString())
        XCTAssertEqual(decoded, config)
        XCTAssertEqual(decoded.model.dropout, 0.3)
        XCTAssertTrue(decoded.model.bidirectional)
    }

    // MARK: Issue 16's workflow on this model

    /// The step records of a run folder's metrics.jsonl, with the lr as written.
    func stepLearningRates(_ runDir: String) throws -> [Double] {
        let text = try String(contentsOfFile: (runDir as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").filter { $0.contains("\"kind\":\"step\"") }.compactMap { line in
            line.range(of: "\"lr\":").flatMap { Double(line[$0.upperBound...].prefix { $0 != "," && $0 != "}" }) }
        }
    }

    /// The bidirectional LSTM with embedding, lengths and dropout under --val-split 0.2 (40
    /// training rows, batch 8: 5 steps per epoch; 10 held-out rows validated with their lengths),
    /// --keep-best val_loss and `schedule`.
    func makeWorkflowConfig(schedule: LRScheduleConfig, lr: Float, epochs: Int) throws -> TrainingConfig {
        var config = try makeConfig()
        config.optimizer = OptimizerConfig(kind: .adam, lr: lr)
        config.epochs = epochs
        config.valSplit = 0.2
        config.keepBest = .valLoss
        config.schedule = schedule
        try config.validate()
        return config
    }

    func testCosineWarmupValSplitKeepBestOnBidirectionalLengthsThreeWorkersMatchOne() throws {
        let config = try makeWorkflowConfig(schedule: LRScheduleConfig(kind: .cosine, minLR: 1e-4, warmupSteps: 3), lr: 0.05, epochs: 4)
        let oneDir = (dir as NSString).appendingPathComponent("one"), threeDir = (dir as NSString).appendingPathComponent("three")
        let one = try trainInProcess(config, world: 1, checkpointDir: oneDir)
        let three = try trainInProcess(config, world: 3, checkpointDir: threeDir, interruptPollMilliseconds: 0,
                                       configureWorker: { _, options in options.dataBind = "tcp://127.0.0.1:*" })
        XCTAssertEqual(one.summary.globalSteps, 20)
        XCTAssertEqual(three.summary.globalSteps, 20)
        for w in three.workers {
            XCTAssertEqual(w.steps, 20)
            XCTAssertTrue(w.parameters == three.workers[0].parameters, "rank \(w.rank) differs bitwise from rank 0")
        }
        let diff = maxAbsDifference(three.summary.parameters, one.summary.parameters)
        print("cosine warmup + val-split + keep-best, bi-LSTM + lengths + dropout, W=3 vs W=1: max |p_3 - p_1| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        XCTAssertEqual(three.summary.validation!.loss, one.summary.validation!.loss, accuracy: 1e-5)
        // The lr followed the schedule (it changed) and is the same step by step.
        let lrOne = try stepLearningRates(oneDir), lrThree = try stepLearningRates(threeDir)
        XCTAssertEqual(lrOne.count, 20)
        XCTAssertEqual(lrOne, lrThree)
        XCTAssertGreaterThan(Set(lrOne).count, 10)
        // The same best epoch and a best.h5 of the same parameters.
        XCTAssertEqual(three.summary.best?.bestEpoch, one.summary.best?.bestEpoch)
        XCTAssertNotNil(one.summary.best?.bestEpoch)
        let table = ParameterTable(config: config.model)
        let bestOne = try CheckpointStore.read(path: (oneDir as NSString).appendingPathComponent("best.h5"), table: table)
        let bestThree = try CheckpointStore.read(path: (threeDir as NSString).appendingPathComponent("best.h5"), table: table)
        XCTAssertEqual(bestOne.metadata.globalStep, 5 * one.summary.best!.bestEpoch!)
        XCTAssertEqual(bestThree.metadata.globalStep, bestOne.metadata.globalStep)
        XCTAssertLessThanOrEqual(maxAbsDifference(bestThree.parameters, bestOne.parameters), 1e-5)
    }

    /// The plateau schedule steps on the validation loss of the held-out split: it turns up
    /// after a few epochs (10 held-out rows) and the plateau halves the lr. A resume mid-epoch
    /// and one at an epoch's end (after the scheduler's and the tracker's epoch step) end bitwise
    /// equal to the straight run, with the same lr sequence, the same best epoch and, when the
    /// best epoch comes after the resume point, the same best.h5.
    func testPlateauValSplitKeepBestOnBidirectionalLengthsResumesBitwise() throws {
        let config = try makeWorkflowConfig(schedule: LRScheduleConfig(kind: .plateau, gamma: 0.5, patience: 0, warmupSteps: 2),
                                            lr: 0.01, epochs: 6)
        let straightDir = (dir as NSString).appendingPathComponent("straight")
        let straight = try trainInProcess(config, world: 2, checkpointDir: straightDir, checkpointEvery: 3,
                                          configureCoordinator: { $0.keep = 100 })
        XCTAssertEqual(straight.summary.globalSteps, 30)
        let all = try stepLearningRates(straightDir)
        XCTAssertEqual(all.count, 30)
        XCTAssertGreaterThan(Set(all.suffix(25)).count, 1, "the plateau never cut the lr: \(all)")
        let bestEpoch = try XCTUnwrap(straight.summary.best?.bestEpoch)
        print("plateau + val-split + keep-best: best epoch \(bestEpoch) of 6; lr per epoch \(stride(from: 0, to: 30, by: 5).map { all[$0] })")
        let table = ParameterTable(config: config.model)
        let best = try CheckpointStore.read(path: (straightDir as NSString).appendingPathComponent("best.h5"), table: table)
        var comparedBest = 0
        for from in [12, 15] {
            let resumeDir = (dir as NSString).appendingPathComponent("resume-\(from)")
            try FileManager.default.createDirectory(atPath: resumeDir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: (straightDir as NSString).appendingPathComponent("ckpt-\(from).h5"),
                                             toPath: (resumeDir as NSString).appendingPathComponent("ckpt-\(from).h5"))
            let rest = try trainInProcess(config, world: 2, checkpointDir: resumeDir, resume: resumeDir)
            XCTAssertEqual(rest.summary.globalSteps, 30)
            XCTAssertTrue(rest.summary.parameters == straight.summary.parameters,
                          "resumed at \(from): differs by \(maxAbsDifference(rest.summary.parameters, straight.summary.parameters))")
            XCTAssertEqual(try stepLearningRates(resumeDir), Array(all.suffix(30 - from)), "resumed at \(from)")
            XCTAssertEqual(rest.summary.best?.bestEpoch, bestEpoch, "resumed at \(from)")
            XCTAssertEqual(rest.summary.validation?.loss, straight.summary.validation?.loss)
            // A best epoch after the resume point writes the same best.h5 again.
            if 5 * bestEpoch > from {
                let again = try CheckpointStore.read(path: (resumeDir as NSString).appendingPathComponent("best.h5"), table: table)
                XCTAssertEqual(again.metadata.globalStep, best.metadata.globalStep)
                XCTAssertTrue(again.parameters == best.parameters, "resumed at \(from): best.h5 differs")
                comparedBest += 1
            }
        }
        XCTAssertGreaterThan(comparedBest, 0, "the best epoch (\(bestEpoch)) came before every resume point: best.h5 was never compared")
    }
}
