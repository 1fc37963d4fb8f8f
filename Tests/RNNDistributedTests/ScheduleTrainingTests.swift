// LR schedules and SGD in real training (coordinator and workers on threads): W workers match
// one worker and stay bitwise equal, every metrics.jsonl step record carries the lr the
// scheduler gives, and a resume from a checkpoint (mid-epoch, and at an epoch's end where the
// per-epoch schedule steps) continues bitwise.
import Foundation
import RNNCheckpoint
import RNNCore
import RNNData
@testable import RNNDistributed
import RNNTransport
import XCTest

final class ScheduleTrainingTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("sched") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 50 samples, batch 8: 7 steps per epoch (the last of 2 samples), 3 epochs = 21 steps.
    func makeConfig(optimizer: OptimizerConfig, schedule: LRScheduleConfig, withValidation: Bool = false, epochs: Int = 3) throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        if !FileManager.default.fileExists(atPath: path) {
            try SyntheticData.random(count: 50, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        }
        var config = try TrainingConfig.forDataset(files: [path], valFiles: withValidation ? [path] : [], cell: .lstm, hiddenSize: 12,
                                                   layers: 2, optimizer: optimizer, batchSize: 8, epochs: epochs, seed: 5, shuffle: true,
                                                   hashEvery: 3)
        config.schedule = schedule
        try config.validate()
        return config
    }

    func stepRecords(_ runDir: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: (runDir as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> [String: Any]? in
            guard var r = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return nil }
            // The lr as written (Foundation's JSON parser may round the last digit of a double).
            if let at = line.range(of: "\"lr\":") {
                r["lr"] = Double(line[at.upperBound...].prefix { $0 != "," && $0 != "}" })
            }
            return r
        }.filter { $0["kind"] as? String == "step" }
    }

    func testSGDWithCosineWarmupOverThreeWorkersMatchesOneWorker() throws {
        let config = try makeConfig(optimizer: OptimizerConfig(kind: .sgd, lr: 0.5, weightDecay: 1e-3, momentum: 0.9, nesterov: true),
                                    schedule: LRScheduleConfig(kind: .cosine, minLR: 0.01, warmupSteps: 4))
        let oneDir = (dir as NSString).appendingPathComponent("one")
        let one = try trainInProcess(config, world: 1, checkpointDir: oneDir)
        let three = try trainInProcess(config, world: 3, configureWorker: { _, options in options.dataBind = "tcp://127.0.0.1:*" })
        XCTAssertEqual(three.summary.globalSteps, 21)
        for w in three.workers {
            XCTAssertEqual(w.steps, 21)
            XCTAssertTrue(w.parameters == three.workers[0].parameters, "rank \(w.rank) differs bitwise from rank 0")
        }
        let diff = maxAbsDifference(three.summary.parameters, one.summary.parameters)
        print("sgd nesterov + cosine warmup W=3: max |p_3 - p_1| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        let initial = ParameterTable.initialParameters(config: config.model, seed: config.seed)
        XCTAssertGreaterThan(maxAbsDifference(one.summary.parameters, initial), 1e-2)
        // The metrics' lr is the scheduler's, step by step.
        var expected = LRScheduler(config: config.schedule!, baseLR: Double(config.optimizer.lr), totalSteps: 21)
        let records = try stepRecords(oneDir)
        XCTAssertEqual(records.count, 21)
        for r in records {
            XCTAssertEqual(r["lr"] as? Double, expected.lr, "global step \(r["global_step"] ?? "?")")
            expected.stepTaken()
        }
        let saved = try CheckpointStore.read(path: (oneDir as NSString).appendingPathComponent("ckpt-21.h5"), table: ParameterTable(config: config.model))
        XCTAssertEqual(saved.optimizer.kind, .sgd)
        XCTAssertEqual(saved.optimizer.momentum, 0.9)
        XCTAssertTrue(saved.optimizer.nesterov)
        let scheduler = try JSONDecoder().decode(LRScheduler.self, from: Data(saved.metadata.schedulerJSON.utf8))
        XCTAssertEqual(scheduler.stepsTaken, 21)
    }

    /// A straight run writing checkpoints every `every` steps; a resume from `ckpt-<from>.h5`
    /// alone ends bitwise equal, its step records' lr equal too.
    func checkResume(_ config: TrainingConfig, every: Int, from: Int) throws {
        let straightDir = (dir as NSString).appendingPathComponent("straight-\(from)")
        let straight = try trainInProcess(config, world: 2, checkpointDir: straightDir, checkpointEvery: every,
                                          configureCoordinator: { $0.keep = 100 })
        let resumeDir = (dir as NSString).appendingPathComponent("resume-\(from)")
        try FileManager.default.createDirectory(atPath: resumeDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: (straightDir as NSString).appendingPathComponent("ckpt-\(from).h5"),
                                         toPath: (resumeDir as NSString).appendingPathComponent("ckpt-\(from).h5"))
        let rest = try trainInProcess(config, world: 2, checkpointDir: resumeDir, resume: resumeDir)
        let total = config.epochs * 7
        XCTAssertEqual(rest.summary.globalSteps, total)
        XCTAssertTrue(rest.summary.parameters == straight.summary.parameters,
                      "resumed at \(from): differs by \(maxAbsDifference(rest.summary.parameters, straight.summary.parameters))")
        let all = try stepRecords(straightDir).map { $0["lr"] as? Double }
        // The resumed part (with the step before it) sees the lr change.
        XCTAssertGreaterThan(Set(all.suffix(total - from + 1)).count, 1, "the schedule never changed the lr from step \(from): \(all)")
        let a = Array(all.suffix(total - from))
        let b = try stepRecords(resumeDir).map { $0["lr"] as? Double }
        XCTAssertEqual(a, b)
    }

    func testStepScheduleWithWarmupResumesBitwiseAtAnEpochEnd() throws {
        let config = try makeConfig(optimizer: OptimizerConfig(kind: .sgd, lr: 0.2, momentum: 0.5),
                                    schedule: LRScheduleConfig(kind: .step, stepSize: 1, gamma: 0.5, warmupSteps: 3))
        try checkResume(config, every: 7, from: 14)
    }

    func testPlateauResumesBitwiseAtAnEpochEnd() throws {
        // An lr far too high for Adam: the validation loss turns up and the plateau halves it.
        let config = try makeConfig(optimizer: OptimizerConfig(kind: .adam, lr: 0.5),
                                    schedule: LRScheduleConfig(kind: .plateau, gamma: 0.5, patience: 0), withValidation: true, epochs: 6)
        try checkResume(config, every: 7, from: 21)
    }

    func testCosineWithAdamWResumesBitwiseMidEpoch() throws {
        let config = try makeConfig(optimizer: OptimizerConfig(kind: .adamw, lr: 0.01),
                                    schedule: LRScheduleConfig(kind: .cosine, minLR: 1e-4, warmupSteps: 4))
        try checkResume(config, every: 5, from: 15)
    }

    func testPlateauWithoutValidationIsRefused() throws {
        XCTAssertThrowsError(try makeConfig(optimizer: OptimizerConfig(), schedule: LRScheduleConfig(kind: .plateau))) { error in
            XCTAssertTrue("\(error)".contains("--val"), "\(error)")
        }
    }

    /// A STEP entry carries its lr bit for bit (or none); a negative or non-finite lr is refused.
    func testStepMessagesCarryTheLearningRate() throws {
        let steps = [StepMessage(epoch: 0, stepInEpoch: 0, globalStep: 3, rows: [1, 2], wantHash: false, lr: 0.1 + 1e-17),
                     StepMessage(epoch: 0, stepInEpoch: 1, globalStep: 4, rows: [3], wantHash: true, lr: nil)]
        let decoded = try StepGroupMessage.decode(StepGroupMessage(steps).frame(runID: 1)).records
        XCTAssertEqual(decoded, steps)
        XCTAssertEqual(decoded[0].lr?.bitPattern, (0.1 + 1e-17).bitPattern)
        for bad in [-0.5, Double.nan, Double.infinity] {
            let frame = StepGroupMessage([StepMessage(epoch: 0, stepInEpoch: 0, globalStep: 0, rows: [], wantHash: false, lr: bad)]).frame(runID: 1)
            XCTAssertThrowsError(try StepGroupMessage.decode(frame)) { XCTAssertTrue("\($0)".contains("lr"), "\($0)") }
        }
    }

    /// --keep-best with --early-stopping resumed from a checkpoint at an epoch's end: the
    /// tracker continues (same best epoch, same stop), the parameters bitwise equal.
    func testEarlyStoppingResumesBitwiseAtAnEpochEnd() throws {
        // A held-out 30 % and an lr far too high for Adam: the validation loss turns up.
        var config = try makeConfig(optimizer: OptimizerConfig(kind: .adam, lr: 0.3), schedule: LRScheduleConfig(), epochs: 30)
        config.valSplit = 0.3
        config.keepBest = .valLoss
        config.earlyStopping = 3
        try config.validate()
        let straightDir = (dir as NSString).appendingPathComponent("es-straight")
        let straight = try trainInProcess(config, world: 2, checkpointDir: straightDir, checkpointEvery: 5,
                                          configureCoordinator: { $0.keep = 100 })
        XCTAssertTrue(straight.summary.stoppedEarly)
        let best = straight.summary.best!.bestEpoch!
        // Resume from the end of the epoch after the best one (the tracker has counted one bad
        // epoch); 35 training rows, batch 8: 5 steps per epoch.
        let from = 5 * (best + 1)
        guard from < straight.summary.globalSteps else { return XCTFail("stopped too early to resume in between") }
        let resumeDir = (dir as NSString).appendingPathComponent("es-resume")
        try FileManager.default.createDirectory(atPath: resumeDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: (straightDir as NSString).appendingPathComponent("ckpt-\(from).h5"),
                                         toPath: (resumeDir as NSString).appendingPathComponent("ckpt-\(from).h5"))
        let rest = try trainInProcess(config, world: 2, checkpointDir: resumeDir, resume: resumeDir)
        XCTAssertTrue(rest.summary.stoppedEarly)
        XCTAssertEqual(rest.summary.best?.bestEpoch, best)
        XCTAssertEqual(rest.summary.globalSteps, straight.summary.globalSteps)
        XCTAssertTrue(rest.summary.parameters == straight.summary.parameters)
    }

    /// On resume the saved scheduler continues when it is the same schedule and base lr; a
    /// changed one restarts from its formula at the checkpoint's step, with a warning.
    func testResumedSchedulerIsTheSavedOneOrAReplayWithAWarning() throws {
        var config = try makeConfig(optimizer: OptimizerConfig(kind: .adam, lr: 0.01),
                                    schedule: LRScheduleConfig(kind: .step, stepSize: 1, gamma: 0.5))
        var saved = LRScheduler(config: config.schedule!, baseLR: Double(config.optimizer.lr), totalSteps: 21)
        for g in 0..<9 {
            saved.stepTaken()
            if (g + 1) % 7 == 0 { saved.epochEnded(validationLoss: nil) }
        }
        let same = try makeLRScheduler(config: config, stepsPerEpoch: 7, savedJSON: saved.jsonString(), globalStep: 9, epochsEnded: 1)
        XCTAssertEqual(same.scheduler, saved)
        XCTAssertNil(same.warning)
        XCTAssertThrowsError(try makeLRScheduler(config: config, stepsPerEpoch: 7, savedJSON: saved.jsonString(), globalStep: 10, epochsEnded: 1))
        config.schedule = LRScheduleConfig(kind: .step, stepSize: 1, gamma: 0.25)
        let changed = try makeLRScheduler(config: config, stepsPerEpoch: 7, savedJSON: saved.jsonString(), globalStep: 9, epochsEnded: 1)
        XCTAssertNotNil(changed.warning)
        XCTAssertEqual(changed.scheduler?.stepsTaken, 9)
        XCTAssertEqual(changed.scheduler?.lr, Double(config.optimizer.lr) * 0.25)
        config.schedule = nil
        XCTAssertNil(try makeLRScheduler(config: config, stepsPerEpoch: 7, savedJSON: saved.jsonString(), globalStep: 9, epochsEnded: 1).scheduler)
    }
}
