// A worker lost while the survivors' communication threads are inside a bucket: digits with a
// 2-layer LSTM H=160 has two buckets (the head and layer 1, 824 KB; layer 0, 435 KB), so the
// first leaves during layer 0's backward (GradientBuckets.swift). SIGKILL of one of three
// workers mid-epoch must end as it does on the non-overlapped path: the survivors abandon the
// step (the REFORM reaches the communication thread's poll, the worker thread rethrows after
// backward), redo it in a re-formed ring and finish.
import Foundation
import RNNCheckpoint
import RNNCore
import XCTest

final class OverlapFaultTests: XCTestCase {
    var dir = ""
    var ckpt: String { (dir as NSString).appendingPathComponent("ckpt") }

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("ovfault") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private let layers = ["--layers", "2"]
    private var table: ParameterTable {
        ParameterTable(config: ModelConfig(cell: .lstm, inputSize: 8, hiddenSize: 160, layers: 2, outputSize: 10))
    }

    func testSIGKILLOneOfThreeWorkersWhileBucketsAreInFlightTrainingCompletesWithTwo() throws {
        let refDir = (dir as NSString).appendingPathComponent("ref")
        let ref = try ChildProcess("rnn-coord", faultArguments(layers + ["--local-workers", "1", "--checkpoint-dir", refDir]))
        XCTAssertEqual(ref.wait(timeout: 240), 0, ref.output)
        let reference = try CheckpointStore.read(path: (refDir as NSString).appendingPathComponent("ckpt-\(faultSteps).h5"), table: table)

        let coord = try ChildProcess("rnn-coord", faultArguments(layers + ["--workers", "3", "--checkpoint-dir", ckpt]))
        let endpoint = try coordinatorEndpoint(coord)
        let workers = try (0..<3).map { _ in try ChildProcess("rnn-worker", ["--connect", endpoint]) }
        XCTAssertNotNil(coord.waitForLine(containing: "Epoch [2/6], Step [5/", timeout: 120), coord.output)
        workers[2].kill()
        XCTAssertEqual(coord.wait(timeout: 240), 0, coord.output)
        XCTAssertTrue(coord.output.contains("Lost worker"), coord.output)
        XCTAssertTrue(coord.output.contains("Redoing global step"), coord.output)
        for w in workers.prefix(2) {
            XCTAssertEqual(w.wait(timeout: 30), 0, w.output)
            XCTAssertTrue(w.output.contains("done after \(faultSteps) steps"), w.output)
        }
        let final = try CheckpointStore.read(path: (ckpt as NSString).appendingPathComponent("ckpt-\(faultSteps).h5"), table: table)
        XCTAssertEqual(final.state.stepCount, faultSteps, "Adam applied every step exactly once")
        var steps: [Int] = []
        for l in try String(contentsOfFile: (ckpt as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
            if o["kind"] as? String == "step" { steps.append(o["global_step"] as! Int) }
        }
        XCTAssertEqual(steps, Array(1...faultSteps), "every global step logged once")
        let diff = maxAbsDifference(final.parameters, reference.parameters)
        print("SIGKILL worker with buckets in flight: max |p - p_one_worker| = \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-5)
    }
}
