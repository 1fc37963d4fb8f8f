// The all-reduce crossover measured over a new ring (AllReduceCrossover.swift): the rule that
// turns times into thresholds; every rank of a real TCP ring ends with the same measurement and
// exact sums afterwards; nothing is measured where there is no choice; and training with the
// measured crossover, with explicit thresholds at both extremes, and with the thresholds a
// measured run logs, gives W = 1's parameters and bitwise-equal replicas.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import RNNTransport
import XCTest

final class CrossoverTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("crossover") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testThresholdsFromTimes() {
        let grid = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20]
        func choose(_ t: [[Float]]) -> (Int, Int) { CrossoverMeasurement.choose(sizes: grid, microseconds: t) }
        // Columns: recursive doubling, halving-doubling, ring.
        // Over 1 Gbit/s links at W = 4 (docs/BENCHMARKS.md): recursive doubling wins below
        // 64 KiB, the ring from there; halving-doubling never.
        let links = choose([[250, 400, 510], [420, 500, 610], [1100, 900, 850], [4400, 3500, 3300], [17000, 14000, 13200]])
        XCTAssertEqual(links.0, 32 << 10, "half-way (log scale) between 16 and 64 KiB")
        XCTAssertEqual(links.1, 32 << 10, "no halving-doubling range")
        // Loopback: recursive doubling up to 64 KiB, halving-doubling at 256 KiB, the ring at 1 MiB.
        let loopback = choose([[143, 318, 189], [172, 348, 363], [189, 474, 429], [753, 572, 700], [1814, 1188, 1153]])
        XCTAssertEqual(loopback.0, 128 << 10)
        XCTAssertEqual(loopback.1, 512 << 10)
        // One algorithm everywhere.
        XCTAssertEqual(choose(Array(repeating: [1, 2, 3], count: 5)).0, 2 << 20, "recursive doubling up to twice the largest size")
        XCTAssertEqual(choose(Array(repeating: [3, 1, 2], count: 5)).0, 0)
        XCTAssertEqual(choose(Array(repeating: [3, 1, 2], count: 5)).1, 2 << 20)
        XCTAssertEqual(choose(Array(repeating: [3, 2, 1], count: 5)).1, 0, "the ring everywhere")
        // Ties go to the ring; a lone noisy win among ring sizes does not split the range.
        XCTAssertEqual(choose(Array(repeating: [5, 5, 5], count: 5)).1, 0)
        let noisy = choose([[1, 3, 2], [4, 3, 2], [1.9, 3, 2], [4, 3, 2], [4, 3, 2]])
        XCTAssertEqual(noisy.0, 8 << 10, "recursive doubling only where it clearly won")
        XCTAssertEqual(noisy.1, 8 << 10)
        // A single size.
        XCTAssertEqual(CrossoverMeasurement.choose(sizes: [65536], microseconds: [[1, 2, 3]]).0, 131072)
        XCTAssertEqual(AllReduceCrossover.sizes(upTo: 70_000), [4 << 10, 16 << 10, 64 << 10, 256 << 10])
        XCTAssertEqual(AllReduceCrossover.sizes(upTo: 100), [4 << 10])
        XCTAssertEqual(AllReduceCrossover.sizes(upTo: 9 << 20), grid)
        XCTAssertEqual(grid.map { AllReduceCrossover.operationsPerBlock(bytes: $0, blockBytes: 1 << 20) }, [32, 32, 16, 4, 2])
    }

    func testArgument() {
        XCTAssertEqual(CrossoverChoice(argument: "measured"), .measured)
        XCTAssertEqual(CrossoverChoice(argument: "fixed"), .thresholds(recursiveDoublingMaxBytes: 262_144, halvingDoublingMaxBytes: 262_144))
        XCTAssertEqual(CrossoverChoice(argument: "0,1048576"), .thresholds(recursiveDoublingMaxBytes: 0, halvingDoublingMaxBytes: 1_048_576))
        for bad in ["", "auto", "5", "2,1", "-1,4", "1,2,3", "a,b", "1,"] { XCTAssertNil(CrossoverChoice(argument: bad), bad) }
        let json = try! JSONEncoder().encode(CrossoverChoice.thresholds(recursiveDoublingMaxBytes: 1, halvingDoublingMaxBytes: 2))
        XCTAssertEqual(try! JSONDecoder().decode(CrossoverChoice.self, from: json), .thresholds(recursiveDoublingMaxBytes: 1, halvingDoublingMaxBytes: 2))
    }

    /// RING carries the run's measured crossovers, METRICS rank 0's new one; bad values are refused.
    func testMessagesCarryCrossovers() throws {
        let known = [CrossoverThresholds(world: 4, recursiveDoublingMaxBytes: 32_768, halvingDoublingMaxBytes: 524_288),
                     CrossoverThresholds(world: 3, recursiveDoublingMaxBytes: 0, halvingDoublingMaxBytes: 0)]
        let ring = RingMessage(generation: 3, endpoints: ["tcp://a:1", "tcp://b:2"], crossovers: known)
        XCTAssertEqual(try RingMessage.decode(ring.frame(runID: 9, generation: 3)), ring)
        var metrics = MetricsMessage(globalStep: 7, lossSum: 1, scored: 2, correct: 1, samples: 2, globalScored: 4,
                                     parameterHash: 0, computeSeconds: 0.1, reduceSeconds: 0.2)
        XCTAssertEqual(try MetricsGroupMessage.decode(MetricsGroupMessage([metrics]).frame(runID: 9)).records, [metrics])
        metrics.measuredCrossover = known[0]
        XCTAssertEqual(try MetricsGroupMessage.decode(MetricsGroupMessage([metrics]).frame(runID: 9)).records[0].measuredCrossover, known[0])
        let bad = RingMessage(generation: 3, endpoints: ["tcp://a:1"],
                              crossovers: [CrossoverThresholds(world: 4, recursiveDoublingMaxBytes: 9, halvingDoublingMaxBytes: 8)])
        XCTAssertThrowsError(try RingMessage.decode(bad.frame(runID: 9, generation: 3))) { error in
            XCTAssertTrue("\(error)".contains("W 4, 9, 8"), "\(error)")
        }
    }

    /// W = 3, 4 and 5 ranks on loopback TCP: every rank gets the same measurement (bitwise the
    /// same times, so the same thresholds) and the same tag count; an all-reduce after it, at
    /// sizes either side of the thresholds, is exact and bitwise the same everywhere.
    func testEveryRankMeasuresTheSame() throws {
        for world in [3, 4, 5] {
            let ctx = try ZMQContext()
            let rings = try makeRing(ctx, world: world, wire: .tcp, runID: UInt64(500 + world), timeoutMilliseconds: 20_000)
            defer { rings.forEach { $0.close() } }
            let measured = Box([Int: CrossoverMeasurement]())
            let tags = Box([Int: UInt64]())
            let errors = Box([String]())
            let sizes = [1, 700, 5000, 40_000, 70_000, 300_000]
            XCTAssertTrue(runOnThreads(world, timeoutSeconds: 60) { rank in
                do {
                    var tag: UInt64 = 0
                    guard let m = try rings[rank].measureCrossover(sizes: AllReduceCrossover.sizes(upTo: 1 << 20), tag: &tag, blockBytes: 0) else {
                        return errors.update { $0.append("rank \(rank): nothing measured") }
                    }
                    measured.update { $0[rank] = m }
                    tags.update { $0[rank] = tag }
                    for n in sizes {
                        var buf = (0..<n).map { contribution(rank, $0) }
                        try rings[rank].allReduceSum(&buf, step: tag); tag += 1
                        for i in 0..<n where buf[i] != (0..<world).reduce(Float(0), { $0 + contribution($1, i) }) {
                            return errors.update { $0.append("rank \(rank) n \(n) index \(i): \(buf[i])") }
                        }
                    }
                } catch {
                    errors.update { $0.append("rank \(rank): \(error)") }
                }
            })
            XCTAssertEqual(errors.get, [])
            let all = measured.get
            XCTAssertEqual(all.count, world)
            let perCandidate = 1 + 2 * 2  // a warm-up and two blocks of 2
            let expectedTags = UInt64(5 * 3 * perCandidate + 1)  // 5 sizes, 3 algorithms, and the agreement
            XCTAssertEqual(Set(tags.get.values), [expectedTags])
            for (r, m) in all {
                XCTAssertEqual(m, all[0], "W=\(world) rank \(r) measured otherwise than rank 0")
                XCTAssertEqual(rings[r].recursiveDoublingMaxBytes, m.recursiveDoublingMaxBytes)
                XCTAssertEqual(rings[r].halvingDoublingMaxBytes, m.halvingDoublingMaxBytes)
                XCTAssertEqual(rings[r].algorithm, .automatic, "the candidates are tried, then automatic again")
            }
            let m = all[0]!
            XCTAssertEqual(m.world, world)
            XCTAssertLessThanOrEqual(m.recursiveDoublingMaxBytes, m.halvingDoublingMaxBytes)
            XCTAssertTrue(m.microseconds.joined().allSatisfy { $0 > 0 && $0.isFinite })
            print("W=\(world): \(m.summary)")
        }
    }

    /// No choice, nothing run: W = 2, an algorithm given, two host groups (two leaders).
    func testNothingMeasuredWithoutAChoice() throws {
        let ctx = try ZMQContext()
        var tag: UInt64 = 0
        let two = try makeRing(ctx, world: 2, wire: .inproc, runID: 601)
        XCTAssertNil(try two[0].measureCrossover(sizes: [4096], tag: &tag))
        two.forEach { $0.close() }
        let four = try makeRing(ctx, world: 4, wire: .inproc, runID: 602)
        four[0].algorithm = .ring
        XCTAssertNil(try four[0].measureCrossover(sizes: [4096], tag: &tag))
        four.forEach { $0.close() }
        let grouped = try (0..<4).map { r in
            try RingAllReduce(context: ctx, rank: r, world: 4, runID: 603, bindEndpoint: "inproc://crossover-603-\(r)", timeoutMilliseconds: 5000)
        }
        for r in grouped { try r.connect(peerEndpoints: grouped.map(\.localEndpoint), hostGroups: [0, 0, 1, 1]) }
        XCTAssertEqual(grouped[0].algorithmWorld, 2)
        XCTAssertNil(try grouped[0].measureCrossover(sizes: [4096], tag: &tag))
        grouped.forEach { $0.close() }
        XCTAssertEqual(tag, 0)
    }

    private func config(crossover: CrossoverChoice?) throws -> TrainingConfig {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        if !FileManager.default.fileExists(atPath: path) {
            // 100 samples, batch 32: steps of 32, 32, 32, 4 rows (W = 3: 11, 11, 10; W = 4: one row each in the last).
            try SyntheticData.random(count: 100, steps: 6, features: 3, classes: 3, seed: 11).write(to: path)
        }
        // LSTM H=128, 3 layers: buckets of 528 KB, 528 KB and 272 KB.
        var c = try TrainingConfig.forDataset(files: [path], cell: .lstm, hiddenSize: 128, layers: 3,
                                              optimizer: OptimizerConfig(kind: .adam, lr: 0.002), batchSize: 32,
                                              epochs: 2, seed: 5, shuffle: true, hashEvery: 2)
        c.allReduceCrossover = crossover
        try c.validate()
        return c
    }

    private func train(_ config: TrainingConfig, world: Int, log: (@Sendable (Int, String) -> Void)? = nil,
                       configure: (@Sendable (Int, inout WorkerOptions) -> Void)? = nil) throws -> InProcessRun {
        let run = try trainInProcess(config, world: world, configureWorker: { i, options in
            options.dataBind = "tcp://127.0.0.1:*"
            configure?(i, &options)
        }, configureCoordinator: { options in
            if configure != nil {
                options.heartbeatTimeout = 1
                options.heartbeatInterval = 0.2
            }
        }, workerLog: log)
        XCTAssertEqual(run.summary.globalSteps, 8)
        for w in run.workers {
            if configure == nil { XCTAssertEqual(w.abandoned, 0, "rank \(w.rank)") }
            XCTAssertTrue(w.parameters == run.summary.parameters, "W=\(world) rank \(w.rank) differs bitwise from the coordinator's state")
        }
        return run
    }

    func testTrainingWithEveryCrossoverMatchesOneWorker() throws {
        let one = try train(try config(crossover: nil), world: 1)
        let lines = Box([String]())
        let measured = try train(try config(crossover: nil), world: 4, log: { rank, line in
            if line.contains("crossover") { lines.update { $0.append("\(rank): \(line)") } }
        })
        XCTAssertEqual(lines.get.count, 1, "rank 0 logs the measurement once: \(lines.get)")
        let line = lines.get.first ?? ""
        XCTAssertTrue(line.contains(": worker: all-reduce crossover measured in "), line)
        let diff = maxAbsDifference(measured.summary.parameters, one.summary.parameters)
        print("W=4, measured: max |p_W - p_1| = \(diff); \(line)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        // The thresholds the line names give the same bits again.
        let repeatArgument = line.components(separatedBy: "--allreduce-crossover ").last!.trimmingCharacters(in: CharacterSet(charactersIn: ")"))
        let repeated = try XCTUnwrap(CrossoverChoice(argument: repeatArgument), line)
        let again = try train(try config(crossover: repeated), world: 4)
        XCTAssertTrue(again.summary.parameters == measured.summary.parameters, "\(repeatArgument) did not repeat the measured run's bits")
        // Every bucket by the ring, and every bucket (up to 1 MiB) by recursive doubling, at W = 3 (uneven rows) and 4.
        for world in [3, 4] {
            var results: [[Float]] = []
            for choice in [CrossoverChoice.thresholds(recursiveDoublingMaxBytes: 0, halvingDoublingMaxBytes: 0),
                           .thresholds(recursiveDoublingMaxBytes: 1 << 20, halvingDoublingMaxBytes: 1 << 20),
                           .thresholds(recursiveDoublingMaxBytes: 0, halvingDoublingMaxBytes: 1 << 20)] {
                let run = try train(try config(crossover: choice), world: world)
                let d = maxAbsDifference(run.summary.parameters, one.summary.parameters)
                print("W=\(world), \(choice): max |p_W - p_1| = \(d)")
                XCTAssertLessThanOrEqual(d, 1e-5, "W=\(world) \(choice)")
                results.append(run.summary.parameters)
            }
            // The choice took effect: at W = 4 the three algorithms add in three different orders.
            if world == 4 {
                XCTAssertFalse(results[0] == results[1], "the ring and recursive doubling gave the same bits")
                XCTAssertFalse(results[0] == results[2], "the ring and halving-doubling gave the same bits")
                XCTAssertFalse(results[1] == results[2], "recursive doubling and halving-doubling gave the same bits")
            }
        }
    }

    /// A step fails on one worker: the ring is re-formed with the same three workers, which take
    /// the measured crossover from RING instead of measuring again, so the redone step gives the
    /// bits of a fault-free run with those thresholds.
    func testAReformedRingOfTheSameWorldKeepsTheMeasuredCrossover() throws {
        let lines = Box([String]())
        let faulty = try train(try config(crossover: nil), world: 3, log: { _, line in
            if line.contains("crossover measured") { lines.update { $0.append(line) } }
        }, configure: { i, options in
            if i == 1 { options.faults.failBucketAt = (globalStep: 3, bucket: 1) }
        })
        XCTAssertEqual(faulty.summary.redoneSteps, 1)
        XCTAssertEqual(lines.get.count, 1, "measured once over two rings of 3: \(lines.get)")
        let argument = (lines.get.first ?? "").components(separatedBy: "--allreduce-crossover ").last!.trimmingCharacters(in: CharacterSet(charactersIn: ")"))
        let clean = try train(try config(crossover: try XCTUnwrap(CrossoverChoice(argument: argument))), world: 3)
        XCTAssertTrue(faulty.summary.parameters == clean.summary.parameters, "the redone step changed the result")
    }
}
