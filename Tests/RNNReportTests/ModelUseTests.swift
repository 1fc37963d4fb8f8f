import RNNCheckpoint
import RNNCore
import RNNData
import RNNDistributed
import RNNHDF5
import XCTest
@testable import RNNReport

final class ModelUseTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "rnnreport-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Trains the tutorial's "hello" -> "elloh" LSTM in process and saves it as a real checkpoint.
    private func trainedHello() throws -> (checkpoint: String, data: String) {
        let data = dir + "/hello.h5"
        try SyntheticData.hello(copies: 2).write(to: data)
        let config = try TrainingConfig.forDataset(files: [data], cell: .lstm, hiddenSize: 16, layers: 1,
                                                   optimizer: OptimizerConfig(kind: .adam, lr: 0.05), batchSize: 2, epochs: 1,
                                                   seed: 1, shuffle: false)
        let network = try RNNNetwork(config: config.model)
        var parameters = ParameterTable.initialParameters(config: config.model, seed: 1)
        var adam = AdamOptimizer(config: config.optimizer, parameterCount: parameters.count)
        // The model takes token ids (a gather of W_ih's columns), as its workers read them.
        XCTAssertTrue(config.model.tokenInput)
        let dataset = try TensorDataset.open(path: data, options: config.datasetOptions())
        let batch = try dataset.read(rows: [0, 1])
        guard case .classIds(let ids) = batch.targets else { throw ReportError("class targets expected") }
        var history = MetricsHistory(accuracy: [])
        for s in 1...120 {
            var (stats, gradient) = try network.meanLossAndGradient(parameters: parameters, input: batch.x, batch: 2, steps: 5, targets: .classIds(ids))
            _ = adam.step(parameters: &parameters, gradient: &gradient)
            history.steps.append(s)
            history.loss.append(Float(stats.meanLoss))
            history.accuracy!.append(Float(stats.accuracy))
        }
        let store = try CheckpointStore(directory: dir, keep: 1)
        let path = try store.write(Checkpoint(metadata: CheckpointMetadata(globalStep: 120, epoch: 120, stepInEpoch: 0, seed: 1, worldSize: 1,
                                                                           configJSON: config.jsonString()),
                                              optimizer: config.optimizer,
                                              state: TrainingState(parameters: parameters, expAvg: adam.expAvg, expAvgSq: adam.expAvgSq, stepCount: adam.stepCount),
                                              metrics: history), table: network.table)
        return (path, data)
    }

    func testHelloCheckpointPredictsElloh() throws {
        let (path, data) = try trainedHello()
        let model = try LoadedModel.load(checkpoint: path)
        XCTAssertTrue(model.summary.hasPrefix("lstm H=16 L=1, input 4, 4 classes"), model.summary)
        XCTAssertEqual(try model.predictText("hello", vocabulary: Array("helo".unicodeScalars)), "elloh")
        XCTAssertThrowsError(try model.predictText("hallo", vocabulary: Array("helo".unicodeScalars))) {
            XCTAssertTrue("\($0)".contains("'a' is not in the model's vocabulary"), "\($0)")
        }
        let dataset = try model.open(dataset: [data])
        let report = try model.evaluate(on: dataset)
        XCTAssertEqual(report.accuracy, 1)
        XCTAssertEqual(report.confusion?.total, 10)
        XCTAssertEqual(report.confusion?.correct, 10)
        XCTAssertEqual(report.confusion?.counts[2][2], 4, "'l' is the target at 2 of 5 steps, twice")
        let predicted = try model.predictClasses(on: dataset)
        XCTAssertEqual(predicted.map { dataset.decode($0.map(Int32.init)) }, ["elloh", "elloh"])
        // The curve from the checkpoint's history.
        let curves = RunCurves(history: model.checkpoint.metrics)
        XCTAssertEqual(curves.steps.count, 120)
        XCTAssertLessThan(curves.stepLoss.last!, curves.stepLoss.first!)
        let png = dir + "/loss.png"
        try writeCurvePNG(curves, to: png)
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: png)).prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }

    func testEvaluationAgreesWithTheLossStatsAndRejectsForeignFiles() throws {
        let data = dir + "/random.h5"
        try SyntheticData.random(count: 37, steps: 4, features: 3, classes: 5, seed: 9).write(to: data)
        let config = try TrainingConfig.forDataset(files: [data], cell: .gru, hiddenSize: 8, layers: 2, optimizer: OptimizerConfig(kind: .adam),
                                                   batchSize: 8, epochs: 1, seed: 3, shuffle: false)
        let network = try RNNNetwork(config: config.model)
        let parameters = ParameterTable.initialParameters(config: config.model, seed: 3)
        let path = try CheckpointStore(directory: dir, keep: 1).write(
            Checkpoint(metadata: CheckpointMetadata(globalStep: 0, epoch: 0, stepInEpoch: 0, seed: 3, worldSize: 1, configJSON: config.jsonString()),
                       optimizer: config.optimizer,
                       state: TrainingState(parameters: parameters, expAvg: parameters.map { _ in 0 }, expAvgSq: parameters.map { _ in 0 })),
            table: network.table)
        let model = try LoadedModel.load(checkpoint: path)
        let dataset = try model.open(dataset: [data])
        let report = try model.evaluate(on: dataset, batchSize: 10)
        let all = try dataset.read(rows: Array(0..<37))
        guard case .classIds(let ids) = all.targets else { return XCTFail("class targets expected") }
        let stats = try network.evaluate(parameters: parameters, input: all.x, batch: 37, steps: 4, targets: .classIds(ids))
        XCTAssertEqual(report.loss, stats.meanLoss, accuracy: 1e-5)
        XCTAssertEqual(report.accuracy!, stats.accuracy, accuracy: 1e-12)
        XCTAssertEqual(report.confusion!.accuracy, stats.accuracy, accuracy: 1e-12)
        XCTAssertEqual(report.confusion!.total, 37)
        XCTAssertThrowsError(try LoadedModel.load(checkpoint: data)) { XCTAssertTrue("\($0)".contains("root attribute 'config'"), "\($0)") }
        XCTAssertThrowsError(try LoadedModel.load(checkpoint: dir + "/none.h5")) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        let wrong = dir + "/wrong.h5"
        try SyntheticData.random(count: 3, steps: 4, features: 6, classes: 5, seed: 1).write(to: wrong)
        XCTAssertThrowsError(try model.open(dataset: [wrong])) { XCTAssertTrue("\($0)".contains("takes 3 input features"), "\($0)") }
    }

    /// `predict --outputs`: the inputs and raw outputs written for replay in PyTorch are the
    /// dataset's rows and exactly what the network predicts for them.
    func testWrittenOutputsAreTheInputsAndTheNetworksOutputs() throws {
        let (path, data) = try trainedHello()
        let model = try LoadedModel.load(checkpoint: path)
        let dataset = try model.open(dataset: [data])
        let out = dir + "/outputs.h5"
        try model.writeOutputs(on: dataset, to: out, batchSize: 1)
        let root = try HDF5File.open(out).root()
        let x: [Float] = try root.openDataset("X").read()
        let outputs: [Float] = try root.openDataset("outputs").read()
        let batch = try dataset.read(rows: [0, 1])
        XCTAssertEqual(x, batch.x)
        let expected = try model.network.predict(parameters: model.checkpoint.parameters, input: batch.x, batch: 2, steps: 5).outputs
        XCTAssertEqual(outputs, expected)
        XCTAssertEqual(outputs.count, 2 * 5 * 4, "(N, T, O) for the per-step head")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.contains(".tmp-") })
        XCTAssertThrowsError(try model.writeOutputs(on: dataset, to: dir + "/no/such/folder/out.h5")) {
            XCTAssertTrue("\($0)".contains("no/such/folder"), "\($0)")
        }
    }
}
