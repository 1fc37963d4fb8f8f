// Overlap of the all-reduce with backward (GradientBuckets.swift): the buckets of a 3-layer
// LSTM leave while the layers below still compute, on a communication thread; the
// non-overlapped path (`overlapBackward = false`, `--no-overlap`) reduces the same buckets
// after backward. Both must give the same bits: at W = 3 with an uneven row split, with bf16
// on the wire, on the hierarchical path and with --accumulate; and a bucket that fails on the
// communication thread must void the step like any broken exchange.
import Foundation
import RNNCore
import RNNData
@testable import RNNDistributed
import XCTest

final class OverlapTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("overlap") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Joining, the tail rule, the scalars in the first bucket, the tags' order.
    func testBucketPlan() {
        // Floats: head 100, layer 2 400, layer 1 400, layer 0 100; minimum 200 floats (800 bytes).
        let plan = GradientBuckets(segments: [900..<1000, 500..<900, 100..<500, 0..<100], gradientCount: 1000, scalarCount: 2,
                                   minimumBytes: 800)
        XCTAssertEqual(plan.buckets.map(\.range), [500..<1002, 0..<500], "the head joins layer 2; the small layer 0 joins layer 1")
        XCTAssertEqual(plan.buckets.map(\.compressedCount), [500, 500])
        XCTAssertEqual(plan.buckets.map(\.lastSegment), [1, 3])
        let single = GradientBuckets(segments: [90..<100, 0..<90], gradientCount: 100, scalarCount: 1)
        XCTAssertEqual(single.buckets.map(\.range), [0..<101])
        XCTAssertEqual(single.buckets[0].compressedCount, 100)
        XCTAssertLessThan(GradientBuckets.tag(step: 6, bucket: 2), GradientBuckets.tag(step: 6, bucket: 3))
        XCTAssertLessThan(GradientBuckets.tag(step: 6, bucket: 65_534), GradientBuckets.tag(step: 7, bucket: 0))

        func buckets(_ model: ModelConfig) throws -> GradientBuckets {
            let n = try RNNNetwork(config: model)
            return GradientBuckets(segments: n.gradientSegments, gradientCount: n.table.totalCount, scalarCount: 1)
        }
        // lstm-large (docs/BENCHMARKS.md): the head and layer 1 (8.4 MB), then layer 0 (5.3 MB).
        let large = try! buckets(ModelConfig(cell: .lstm, inputSize: 128, hiddenSize: 512, layers: 2, outputSize: 10))
        XCTAssertEqual(large.buckets.map(\.range.count), [2_048 * 1_026 + 5_130 + 1, 2_048 * 642])
        // The install demo's LSTM H=64 (a 68 KB gradient): one bucket, reduced after backward.
        XCTAssertEqual(try! buckets(ModelConfig(cell: .lstm, inputSize: 8, hiddenSize: 64, layers: 1, outputSize: 10)).count, 1)
    }

    private func data(steps: Int = 6) throws -> String {
        let path = (dir as NSString).appendingPathComponent("random.h5")
        if !FileManager.default.fileExists(atPath: path) {
            // 100 samples, batch 32: steps of 32, 32, 32, 4 rows; W = 3 splits 32 as 11, 11, 10.
            try SyntheticData.random(count: 100, steps: steps, features: 3, classes: 3, seed: 11).write(to: path)
        }
        return path
    }

    /// LSTM H=128, 3 layers: buckets head + layer 2 (528 KB), layer 1 (528 KB), layer 0 (272 KB).
    private func config(overlap: Bool, batch: Int = 32, accumulate: Int? = nil, compress: GradientCompression? = nil) throws -> TrainingConfig {
        var c = try TrainingConfig.forDataset(files: [try data()], cell: .lstm, hiddenSize: 128, layers: 3,
                                              optimizer: OptimizerConfig(kind: .adam, lr: 0.002), batchSize: batch,
                                              epochs: 3, seed: 5, shuffle: true, hashEvery: 2)
        c.overlapBackward = overlap ? nil : false
        // Runs compared bitwise need one crossover: a measured one may differ from run to run.
        c.allReduceCrossover = .fixed
        c.accumulate = accumulate
        c.gradientCompression = compress
        try c.validate()
        return c
    }

    private func train(_ config: TrainingConfig, world: Int, hosts: [String]? = nil, metrics: String? = nil,
                       log: (@Sendable (Int, String) -> Void)? = nil, quickRetry: Bool = false,
                       configure: (@Sendable (Int, inout WorkerOptions) -> Void)? = nil) throws -> InProcessRun {
        try trainInProcess(config, world: world, checkpointDir: metrics, configureWorker: { i, options in
            // TCP ring sockets (the default for a loopback coordinator is IPC); `hosts` puts
            // worker i on its own loopback address, which makes host groups.
            options.dataBind = "tcp://\(hosts?[i] ?? "127.0.0.1"):*"
            configure?(i, &options)
        }, configureCoordinator: { options in
            // A failed step is retried after the heartbeat timeout (which could name a lost peer).
            if quickRetry {
                options.heartbeatTimeout = 1
                options.heartbeatInterval = 0.2
            }
        }, workerLog: log)
    }

    private func assertReplicasEqual(_ run: InProcessRun, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(run.summary.globalSteps, 12, label, file: file, line: line)
        for w in run.workers {
            XCTAssertEqual(w.steps, 12, label, file: file, line: line)
            XCTAssertTrue(w.parameters == run.summary.parameters, "\(label): rank \(w.rank) differs bitwise", file: file, line: line)
        }
    }

    private func assertSameBits(_ a: InProcessRun, _ b: InProcessRun, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(a.summary.parameters == b.summary.parameters,
                      "\(label): overlap on and off differ, max |dp| = \(maxAbsDifference(a.summary.parameters, b.summary.parameters))",
                      file: file, line: line)
        XCTAssertEqual(a.summary.train.loss, b.summary.train.loss, label, file: file, line: line)
    }

    /// metrics.jsonl: reduce_s = reduce_exposed_s + reduce_hidden_s on every step; nothing is
    /// hidden without overlap; returns the hidden seconds over all steps.
    private func hiddenSeconds(_ folder: String, overlap: Bool, file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        let text = try String(contentsOfFile: (folder as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var hidden = 0.0, steps = 0
        for l in text.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
            guard o["kind"] as? String == "step" else { continue }
            steps += 1
            let total = try XCTUnwrap(o["reduce_s"] as? Double), exposed = try XCTUnwrap(o["reduce_exposed_s"] as? Double)
            let h = try XCTUnwrap(o["reduce_hidden_s"] as? Double)
            XCTAssertTrue(exposed >= 0 && h >= 0, "\(l)", file: file, line: line)
            XCTAssertEqual(total, exposed + h, accuracy: 1e-9, "\(l)", file: file, line: line)
            if !overlap { XCTAssertEqual(h, 0, "\(l)", file: file, line: line) }
            hidden += h
        }
        XCTAssertEqual(steps, 12, file: file, line: line)
        return hidden
    }

    /// W = 3 (rows 11, 11, 10): overlap on and off give the same bits, every replica the same
    /// bits, and both equal W = 1 within 1e-5; metrics.jsonl splits reduce_s, and with overlap
    /// some of it was hidden behind backward.
    func testOverlapOnAndOffAreBitwiseEqualAtThreeWorkersAndMatchOneWorker() throws {
        let network = try RNNNetwork(config: try config(overlap: true).model)
        XCTAssertEqual(GradientBuckets(segments: network.gradientSegments, gradientCount: network.table.totalCount, scalarCount: 1).count, 3)
        let one = try train(try config(overlap: true), world: 1)
        let onDir = (dir as NSString).appendingPathComponent("on"), offDir = (dir as NSString).appendingPathComponent("off")
        let on = try train(try config(overlap: true), world: 3, metrics: onDir)
        let off = try train(try config(overlap: false), world: 3, metrics: offDir)
        assertReplicasEqual(on, "overlap")
        assertReplicasEqual(off, "no overlap")
        assertSameBits(on, off, "W = 3")
        let diff = maxAbsDifference(on.summary.parameters, one.summary.parameters)
        print("overlap, W = 3 vs W = 1: max |dp| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
        XCTAssertEqual(try hiddenSeconds(offDir, overlap: false), 0)
        let hidden = try hiddenSeconds(onDir, overlap: true)
        print("overlap, W = 3: \(hidden) s of all-reduce hidden behind backward over 12 steps")
        XCTAssertGreaterThan(hidden, 0)
    }

    /// bf16 on the wire: each bucket is rounded and summed per chunk owner as one buffer was;
    /// on and off give the same bits, the replicas too.
    func testOverlapWithBF16IsBitwiseEqualToNoOverlap() throws {
        let on = try train(try config(overlap: true, compress: .bf16), world: 3)
        let off = try train(try config(overlap: false, compress: .bf16), world: 3)
        assertReplicasEqual(on, "bf16 overlap")
        assertReplicasEqual(off, "bf16 no overlap")
        assertSameBits(on, off, "bf16, W = 3")
    }

    /// Two workers on 127.0.0.1 and one on 127.0.0.2: the hierarchical path (ipc:// inside the
    /// first group) per bucket; on and off the same bits, and W = 1 within 1e-5. The lone
    /// worker joins last, so that both runs have the same groups ({0, 1}, {2}): the groups
    /// decide the order of the additions.
    func testOverlapOnTheHierarchicalPathIsBitwiseEqualToNoOverlap() throws {
        let hosts = ["127.0.0.1", "127.0.0.1", "127.0.0.2"]
        let one = try train(try config(overlap: true), world: 1)
        let lines = Box<[String]>([])
        let log: @Sendable (Int, String) -> Void = { _, line in if line.contains("hierarchical all-reduce") { lines.update { $0.append(line) } } }
        let last: @Sendable (Int, inout WorkerOptions) -> Void = { i, _ in if i == 2 { Thread.sleep(forTimeInterval: 1) } }
        let on = try train(try config(overlap: true), world: 3, hosts: hosts, log: log, configure: last)
        let off = try train(try config(overlap: false), world: 3, hosts: hosts, log: log, configure: last)
        XCTAssertEqual(lines.get.count, 6, "every worker of both runs takes the hierarchical path: \(lines.get)")
        XCTAssertEqual(lines.get.filter { $0.contains("rank 2 is the leader of host group 2 of 2 (1 rank(s)") }.count, 2,
                       "the lone worker is rank 2 in both runs: \(lines.get)")
        assertReplicasEqual(on, "hierarchical overlap")
        assertReplicasEqual(off, "hierarchical no overlap")
        assertSameBits(on, off, "hierarchical, W = 3")
        let diff = maxAbsDifference(on.summary.parameters, one.summary.parameters)
        print("overlap, hierarchical W = 3 vs W = 1: max |dp| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
    }

    /// --accumulate 4 --batch-size 8: the first three batches add into every bucket, the
    /// last one's backward overlaps; on and off the same bits, and both equal one batch of 32
    /// at W = 1 within 1e-5.
    func testOverlapWithAccumulateIsBitwiseEqualToNoOverlapAndToOneBigBatch() throws {
        let big = try train(try config(overlap: true, batch: 32), world: 1)
        let on = try train(try config(overlap: true, batch: 8, accumulate: 4), world: 3)
        let off = try train(try config(overlap: false, batch: 8, accumulate: 4), world: 3)
        assertReplicasEqual(on, "accumulate overlap")
        assertReplicasEqual(off, "accumulate no overlap")
        assertSameBits(on, off, "--accumulate 4, W = 3")
        let diff = maxAbsDifference(on.summary.parameters, big.summary.parameters)
        print("overlap, --accumulate 4 x 8 at W = 3 vs batch 32 at W = 1: max |dp| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
    }

    /// Bucket 1 of global step 5 breaks on one worker (on the communication thread with
    /// overlap, while its backward still runs; after it without): the worker reports the
    /// failed step once backward is done, the ring is re-formed, the step redone, and the
    /// result is bitwise the fault-free one.
    func testABucketThatFailsMidBackwardVoidsTheStepAndItIsRedone() throws {
        for overlap in [true, false] {
            let clean = try train(try config(overlap: overlap), world: 3)
            let faulty = try train(try config(overlap: overlap), world: 3, quickRetry: true, configure: { i, options in
                if i == 1 { options.faults.failBucketAt = (globalStep: 5, bucket: 1) }
            })
            let label = overlap ? "overlap" : "no overlap"
            assertReplicasEqual(faulty, label)
            XCTAssertEqual(faulty.summary.redoneSteps, 1, label)
            XCTAssertTrue(faulty.summary.parameters == clean.summary.parameters, "\(label): the redone step changed the result")
            // Step 6, assigned ahead, may be abandoned too (its exchange meets the REFORM).
            for w in faulty.workers { XCTAssertTrue((1...2).contains(w.abandoned), "\(label): rank \(w.rank) abandoned \(w.abandoned)") }
        }
    }
}
