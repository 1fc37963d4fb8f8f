// LR schedules and SGD against torch.optim (Fixtures/schedules.json from
// scripts/make_schedule_fixtures.py): the lr of every optimizer step, also across a
// save-and-restore of the scheduler's state, and SGD's parameters after each step.
import Foundation
import XCTest
@testable import RNNCore

private struct ScheduleFixtures: Decodable {
    struct Schedule: Decodable {
        var name: String
        var config: LRScheduleConfig
        var baseLR: Double
        var totalSteps: Int
        var stepsPerEpoch: Int
        var valLosses: [Double]
        var lrs: [Double]
    }
    struct SGDCase: Decodable {
        var name: String
        var momentum: Float
        var nesterov: Bool
        var weightDecay: Float
        var lrs: [Double]
        var initial: [Float]
        var gradients: [[Float]]
        var after: [[Float]]
    }
    struct ModelCase: Decodable {
        var name: String
        var cell: CellKind
        var inputSize, hiddenSize, outputSize, batch, steps, totalSteps: Int
        var optimizer: OptimizerConfig
        var schedule: LRScheduleConfig
        var x: [Float]
        var targets: [Int32]
        var lrs: [Double]
        var before: [String: [Float]]
        var after: [String: [Float]]
    }
    var torch: String
    var warmupStartFactor: Double
    var schedules: [Schedule]
    var sgd: [SGDCase]
    var models: [ModelCase]

    static func load() throws -> ScheduleFixtures {
        guard let url = Bundle.module.url(forResource: "Fixtures/schedules", withExtension: "json") else {
            throw FixtureError("the test bundle has no Fixtures/schedules.json")
        }
        return try JSONDecoder().decode(ScheduleFixtures.self, from: Data(contentsOf: url))
    }
}

final class ScheduleAndSGDTests: XCTestCase {
    /// Our lr sequence of a fixture's run (optionally saved to JSON and restored after `restoreAt` steps).
    private func sequence(_ c: ScheduleFixtures.Schedule, restoreAt: Int? = nil) throws -> [Double] {
        var s = LRScheduler(config: c.config, baseLR: c.baseLR, totalSteps: c.totalSteps)
        var lrs: [Double] = []
        for g in 0..<c.totalSteps {
            if g == restoreAt {
                let data = try JSONEncoder().encode(s)
                s = try JSONDecoder().decode(LRScheduler.self, from: data)
            }
            lrs.append(s.lr)
            s.stepTaken()
            if (g + 1) % c.stepsPerEpoch == 0 {
                let e = (g + 1) / c.stepsPerEpoch - 1
                s.epochEnded(validationLoss: c.valLosses[e])
            }
        }
        return lrs
    }

    func testEveryScheduleGivesTorchsLearningRates() throws {
        let f = try ScheduleFixtures.load()
        XCTAssertEqual(f.warmupStartFactor, LRScheduleConfig.warmupStartFactor)
        print("schedule                  | steps | max rel diff vs torch \(f.torch) | bitwise equal")
        for c in f.schedules {
            let ours = try sequence(c)
            XCTAssertEqual(ours.count, c.lrs.count)
            var worst = 0.0, equal = 0
            for (i, (a, b)) in zip(ours, c.lrs).enumerated() {
                let rel = abs(a - b) / max(abs(b), 1e-300)
                worst = max(worst, rel)
                if a == b { equal += 1 }
                if rel > 1e-12 { XCTFail("\(c.name): step \(i) lr \(a), torch \(b)") }
            }
            print("\(c.name.padding(toLength: 25, withPad: " ", startingAt: 0)) | \(c.totalSteps)    | \(worst) | \(equal)/\(c.lrs.count)")
        }
    }

    func testRestoredSchedulerContinuesBitwise() throws {
        for c in try ScheduleFixtures.load().schedules {
            let straight = try sequence(c)
            for at in [1, c.stepsPerEpoch, c.totalSteps / 2 + 1] {
                XCTAssertEqual(try sequence(c, restoreAt: at), straight, "\(c.name) restored at step \(at)")
            }
        }
    }

    func testLookAheadEqualsSteppingWithinAnEpoch() {
        let config = LRScheduleConfig(kind: .cosine, minLR: 1e-4, warmupSteps: 3)
        var s = LRScheduler(config: config, baseLR: 0.1, totalSteps: 20)
        for _ in 0..<2 { s.stepTaken() }
        let ahead = (0..<5).map { s.lr(ahead: $0) }
        var stepped: [Double] = []
        for _ in 0..<5 { stepped.append(s.lr); s.stepTaken() }
        XCTAssertEqual(ahead, stepped)
    }

    func testBadScheduleValuesAreNamed() {
        let bad: [(LRScheduleConfig, String)] = [
            (LRScheduleConfig(kind: .step, stepSize: 0), "--lr-step-size"),
            (LRScheduleConfig(kind: .step, gamma: 0), "--lr-gamma"),
            (LRScheduleConfig(kind: .plateau, gamma: 1.5), "--lr-gamma"),
            (LRScheduleConfig(kind: .cosine, minLR: -1), "--lr-min"),
            (LRScheduleConfig(kind: .plateau, patience: -1), "--lr-patience"),
            (LRScheduleConfig(warmupSteps: -2), "--warmup-steps"),
        ]
        for (config, flag) in bad {
            XCTAssertThrowsError(try config.validate()) { error in
                XCTAssertTrue("\(error)".contains(flag), "\(error)")
            }
        }
        XCTAssertThrowsError(try OptimizerConfig(kind: .adam, momentum: 0.9).validate())
        XCTAssertThrowsError(try OptimizerConfig(kind: .sgd, nesterov: true).validate())
        XCTAssertThrowsError(try OptimizerConfig(kind: .sgd, momentum: 1).validate())
        XCTAssertNoThrow(try OptimizerConfig(kind: .sgd, lr: 0.1, momentum: 0.9, nesterov: true).validate())
    }

    func testSGDMatchesTorchWithMomentumNesterovAndWeightDecay() throws {
        for c in try ScheduleFixtures.load().sgd {
            let config = OptimizerConfig(kind: .sgd, lr: Float(c.lrs[0]), weightDecay: c.weightDecay,
                                         momentum: c.momentum, nesterov: c.nesterov)
            XCTAssertNoThrow(try config.validate())
            // In place on the gradient, and out of place on a gradient sum (scale 1/4).
            var a = AdamOptimizer(config: config, parameterCount: c.initial.count), b = a
            var pa = c.initial, pb = c.initial
            var previous = TrainingState()
            var worst = Comparison()
            for (step, lr) in c.lrs.enumerated() {
                var g = c.gradients[step]
                a.step(parameters: &pa, gradient: &g, lr: lr)
                let sum = c.gradients[step].map { $0 * 4 }
                sum.withUnsafeBufferPointer { _ = b.step(parameters: &pb, gradientSum: $0, scale: 0.25, lr: lr, keepingPreviousIn: &previous) }
                let cmp = compare(pa, c.after[step], rtol: 1e-6, atol: 1e-7)
                worst.merge(cmp)
                XCTAssertTrue(cmp.passed, "\(c.name) step \(step + 1): max abs \(cmp.maxAbs), first mismatch \(cmp.firstMismatch ?? "none")")
                XCTAssertEqual(pa, pb, "\(c.name) step \(step + 1): the out-of-place step on the sum differs")
            }
            print("sgd \(c.name): max abs \(format(worst.maxAbs)), max rel \(format(worst.maxRel)) over \(c.lrs.count) steps")
        }
    }

    func testConstantLearningRateOverrideIsBitwiseTheConfigsLR() {
        for kind in [OptimizerKind.adam, .adamw] {
            let config = OptimizerConfig(kind: kind, lr: 0.003, weightDecay: 0.01)
            var rng = SeededGenerator(seed: 4)
            var a = AdamOptimizer(config: config, parameterCount: 29), b = a
            var pa = randomArray(29, &rng), pb = pa
            for _ in 0..<3 {
                var g1 = randomArray(29, &rng), g2 = g1
                a.step(parameters: &pa, gradient: &g1)
                b.step(parameters: &pb, gradient: &g2, lr: Double(config.lr))
            }
            XCTAssertEqual(pa, pb)
        }
    }

    /// The tutorial's model trained 5 steps by SGD (momentum, Nesterov, weight decay) or Adam
    /// under a warmup + cosine or a step schedule, against PyTorch's state_dict after them.
    func testTrainingUnderAScheduleMatchesTorch() throws {
        for c in try ScheduleFixtures.load().models {
            let model = ModelConfig(cell: c.cell, inputSize: c.inputSize, hiddenSize: c.hiddenSize, layers: 1, outputSize: c.outputSize,
                                    head: .lastStep, loss: .crossEntropy)
            let network = try RNNNetwork(config: model)
            let table = network.table
            func flat(_ tensors: [String: [Float]]) throws -> [Float] {
                var out = [Float](repeating: 0, count: table.totalCount)
                for e in table.entries {
                    guard let v = tensors[e.name], v.count == e.count else { throw FixtureError("\(c.name): tensor \(e.name) missing or misshaped") }
                    out.replaceSubrange(e.range, with: v)
                }
                return out
            }
            var p = try flat(c.before)
            var optimizer = AdamOptimizer(config: c.optimizer, parameterCount: table.totalCount)
            // Each optimizer step ends an "epoch" here (torch steps the schedulers once per step).
            var scheduler = LRScheduler(config: c.schedule, baseLR: Double(c.optimizer.lr), totalSteps: c.totalSteps)
            var lrs: [Double] = []
            for _ in 0..<c.totalSteps {
                var (_, g) = try network.meanLossAndGradient(parameters: p, input: c.x, batch: c.batch, steps: c.steps, targets: .classIds(c.targets))
                lrs.append(scheduler.lr)
                optimizer.step(parameters: &p, gradient: &g, lr: scheduler.lr)
                scheduler.stepTaken()
                scheduler.epochEnded(validationLoss: nil)
            }
            // The config's lr is float32 (0.3 is 0.30000001192...), torch's a double: the sequences
            // agree to float precision here (bitwise from the same base, testEveryScheduleGivesTorchsLearningRates).
            for (a, b) in zip(lrs, c.lrs) { XCTAssertEqual(a, b, accuracy: 1e-7 * b, "\(c.name) lr") }
            let cmp = compare(p, try flat(c.after), rtol: 1e-4, atol: 1e-5)
            print("\(c.name): parameters after \(c.totalSteps) steps, max abs \(format(cmp.maxAbs)), max rel \(format(cmp.maxRel))")
            XCTAssertTrue(cmp.passed, "\(c.name): first mismatch \(cmp.firstMismatch ?? "none")")
        }
    }
}
