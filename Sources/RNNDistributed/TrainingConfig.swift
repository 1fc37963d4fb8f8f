// The run's configuration: what the coordinator parses from flags, sends to every worker in
// WELCOME, and stores as JSON in each checkpoint's `config` attribute.
import Foundation
import RNNCore

/// Everything that defines a training run. Two runs with equal configs (and world size for
/// summation order) produce the same parameters.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var model: ModelConfig
    public var optimizer: OptimizerConfig
    /// Training files, concatenated in this order.
    public var dataFiles: [String]
    /// Optional validation files.
    public var valFiles: [String]
    public var xName: String
    public var yName: String
    /// The global batch B.
    public var batchSize: Int
    public var epochs: Int
    public var seed: UInt64
    public var shuffle: Bool
    public var dropLast: Bool
    /// Stop after this many global steps in total (nil: run all epochs).
    public var maxSteps: Int?
    /// Threads each worker gives its GEMMs.
    public var workerThreads: Int
    /// A parameter-hash comparison across ranks every this many steps.
    public var hashEvery: Int
    /// How gradients travel between workers (nil: float32; absent from older configs).
    public var gradientCompression: GradientCompression? = nil

    public init(
        model: ModelConfig, optimizer: OptimizerConfig, dataFiles: [String], valFiles: [String] = [],
        xName: String = "X", yName: String = "Y", batchSize: Int, epochs: Int, seed: UInt64 = 0,
        shuffle: Bool = false, dropLast: Bool = false, maxSteps: Int? = nil, workerThreads: Int = 1,
        hashEvery: Int = 10
    ) {
        self.model = model
        self.optimizer = optimizer
        self.dataFiles = dataFiles
        self.valFiles = valFiles
        self.xName = xName
        self.yName = yName
        self.batchSize = batchSize
        self.epochs = epochs
        self.seed = seed
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.maxSteps = maxSteps
        self.workerThreads = workerThreads
        self.hashEvery = hashEvery
    }

    public func validate() throws {
        try model.validate()
        try optimizer.validate()
        if dataFiles.isEmpty { throw ConfigError("at least one training file is needed (--data)") }
        if batchSize < 1 { throw ConfigError("batch size must be at least 1, found \(batchSize)") }
        if epochs < 1 { throw ConfigError("epochs must be at least 1, found \(epochs)") }
        if let m = maxSteps, m < 1 { throw ConfigError("max steps must be at least 1, found \(m)") }
        if workerThreads < 1 { throw ConfigError("worker threads must be at least 1, found \(workerThreads)") }
        if hashEvery < 1 { throw ConfigError("hash interval must be at least 1, found \(hashEvery)") }
    }

    /// The config as compact, key-sorted JSON (stable across runs, for the checkpoint).
    public func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    public static func fromJSON(_ text: String) throws -> TrainingConfig {
        try JSONDecoder().decode(TrainingConfig.self, from: Data(text.utf8))
    }
}

import RNNData

extension TrainingConfig {
    /// A config whose input size, output size, head and loss come from the training data
    /// (X's features, Y's classes or outputs, per-sequence or per-step targets).
    public static func forDataset(
        files: [String], valFiles: [String] = [], xName: String = "X", yName: String = "Y",
        cell: CellKind, hiddenSize: Int, layers: Int, optimizer: OptimizerConfig,
        batchSize: Int, epochs: Int, seed: UInt64, shuffle: Bool, dropLast: Bool = false,
        maxSteps: Int? = nil, workerThreads: Int = 1, hashEvery: Int = 10
    ) throws -> TrainingConfig {
        let absolute = files.map(absolutePath)
        let dataset = try TensorDataset.open(paths: absolute, options: TensorDatasetOptions(xName: xName, yName: yName, memoryBudgetBytes: 0))
        let model = ModelConfig(cell: cell, inputSize: dataset.inputSize, hiddenSize: hiddenSize, layers: layers,
                                outputSize: dataset.targetKind.outputSize, head: dataset.targetKind.head,
                                loss: dataset.targetKind.loss)
        let config = TrainingConfig(model: model, optimizer: optimizer, dataFiles: absolute, valFiles: valFiles.map(absolutePath),
                                    xName: xName, yName: yName, batchSize: batchSize, epochs: epochs, seed: seed,
                                    shuffle: shuffle, dropLast: dropLast, maxSteps: maxSteps, workerThreads: workerThreads,
                                    hashEvery: hashEvery)
        try config.validate()
        return config
    }
}

/// `path` made absolute against the current folder (workers may start elsewhere).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
}
