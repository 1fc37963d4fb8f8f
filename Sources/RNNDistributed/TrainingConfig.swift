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
    /// The learning-rate schedule (nil: constant, the optimizer's lr).
    public var schedule: LRScheduleConfig?
    /// Hold out this seeded fraction of the training rows as validation (no --val files).
    public var valSplit: Double?
    /// Keep best.h5 of the best epoch by this validation metric.
    public var keepBest: BestMetric?
    /// Stop after this many validated epochs without improvement (of --keep-best's metric, else val_loss).
    public var earlyStopping: Int?

    /// --accumulate N: each optimizer step consumes N consecutive global batches (nil: 1).
    public var accumulate: Int?

    /// The rows of one optimizer step: the epoch plan's batch (B, or N * B with --accumulate N).
    public var rowsPerOptimizerStep: Int { batchSize * (accumulate ?? 1) }

    /// How many of its `rows` a worker computes at once: all of them, or B at a time with --accumulate.
    public func accumulationChunk(rows: Int) -> Int {
        (accumulate ?? 1) > 1 ? Swift.max(1, batchSize) : Swift.max(1, rows)
    }

    /// Validation data exists: --val files or --val-split.
    public var hasValidation: Bool { !valFiles.isEmpty || valSplit != nil }
    /// Name of the optional sequence-lengths dataset; nil means "lengths". (Optional so that
    /// configs written before it existed decode, and plain configs keep their JSON.)
    public var lengthsName: String?
    /// How gradients travel between workers (nil: float32; absent from older configs).
    public var gradientCompression: GradientCompression? = nil
    /// Hierarchical all-reduce across host groups (nil: on; false: every rank in the flat
    /// algorithms; absent from older configs).
    public var hierarchicalAllReduce: Bool? = nil
    /// All-reduce each gradient bucket while backward computes the layers below (nil: on;
    /// false: the same buckets after backward, the same bits; absent from older configs).
    public var overlapBackward: Bool? = nil
    /// Where the automatic all-reduce switches algorithm at W >= 3 (nil: measured over each new
    /// ring; absent from older configs). See AllReduceCrossover.swift.
    public var allReduceCrossover: CrossoverChoice? = nil

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
        if let schedule {
            try schedule.validate()
            if schedule.kind == .plateau && !hasValidation {
                throw ConfigError("--lr-schedule plateau steps on the validation loss: it needs validation data (--val or --val-split)")
            }
        }
        if let n = accumulate, n < 1 { throw ConfigError("--accumulate must be at least 1 batch, found \(n)") }
        if let f = valSplit {
            if !(f > 0 && f < 1) { throw ConfigError("--val-split must be a fraction in (0, 1), found \(f)") }
            if !valFiles.isEmpty { throw ConfigError("--val-split holds out training data when there is no --val; give one of them") }
        }
        if let k = keepBest {
            if !hasValidation { throw ConfigError("--keep-best \(k.rawValue) needs validation data (--val or --val-split)") }
            if k == .valAccuracy && model.loss != .crossEntropy {
                throw ConfigError("--keep-best val_accuracy needs a classifier; this is a regression (MSE) model: use val_loss")
            }
        }
        if let p = earlyStopping {
            if p < 1 { throw ConfigError("--early-stopping must be at least 1 epoch, found \(p)") }
            if !hasValidation { throw ConfigError("--early-stopping needs validation data (--val or --val-split)") }
        }
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

    /// The lengths dataset's name in effect.
    public var effectiveLengthsName: String { lengthsName ?? "lengths" }

    /// The dropout key of global step `step` over dataset rows `rows` (the samples' global
    /// indices): the masks depend on (seed, step, sample, layer) only, never on the rank.
    /// nil when the model has no dropout.
    public func dropoutKey(step: Int, rows: [Int]) -> DropoutKey? {
        guard model.dropout > 0 && model.layers > 1 else { return nil }
        return DropoutKey(seed: seed, step: step, samples: rows)
    }
}

import RNNData

extension TrainingConfig {
    /// How every process opens this run's datasets: the names, token ids as ids when the model
    /// takes them (never one-hot matrices), the lengths dataset's name.
    public func datasetOptions(memoryBudgetBytes: Int = 256 << 20, validateValues: Bool = true) -> TensorDatasetOptions {
        TensorDatasetOptions(xName: xName, yName: yName, memoryBudgetBytes: memoryBudgetBytes, validateValues: validateValues,
                             lengthsName: effectiveLengthsName, tokenIds: model.tokenInput)
    }

    /// A config whose input size, output size, head and loss come from the training data
    /// (X's features, Y's classes or outputs, per-sequence or per-step targets).
    public static func forDataset(
        files: [String], valFiles: [String] = [], xName: String = "X", yName: String = "Y",
        cell: CellKind, hiddenSize: Int, layers: Int, optimizer: OptimizerConfig,
        batchSize: Int, epochs: Int, seed: UInt64, shuffle: Bool, dropLast: Bool = false,
        maxSteps: Int? = nil, workerThreads: Int = 1, hashEvery: Int = 10,
        embeddingSize: Int? = nil, paddingIndex: Int? = nil, bidirectional: Bool = false, dropout: Float = 0,
        lengthsName: String? = nil
    ) throws -> TrainingConfig {
        let absolute = files.map(absolutePath)
        let dataset = try TensorDataset.open(paths: absolute, options: TensorDatasetOptions(
            xName: xName, yName: yName, memoryBudgetBytes: 0, lengthsName: lengthsName ?? "lengths"))
        let tokens = dataset.inputEncoding != .dense
        if embeddingSize != nil && !tokens {
            throw ConfigError("--embedding needs token ids in X (integer (N, T) with vocab_size); \(absolute[0]) has float features (N, T, I = \(dataset.inputSize))")
        }
        if let p = paddingIndex {
            if embeddingSize == nil { throw ConfigError("--padding-idx \(p) needs --embedding E") }
            if p < 0 || p >= dataset.inputSize {
                throw ConfigError("--padding-idx must be in [0, \(dataset.inputSize)) (vocab_size of \(absolute[0])), found \(p)")
            }
        }
        if dropout > 0 && layers < 2 {
            throw ConfigError("--dropout \(dropout) acts between recurrent layers; it needs --layers 2 or more (PyTorch warns and ignores it)")
        }
        let model = ModelConfig(cell: cell, inputSize: dataset.inputSize, hiddenSize: hiddenSize, layers: layers,
                                outputSize: dataset.targetKind.outputSize, head: dataset.targetKind.head,
                                loss: dataset.targetKind.loss, tokenInput: tokens, embeddingSize: embeddingSize,
                                paddingIndex: paddingIndex, bidirectional: bidirectional, dropout: dropout)
        var config = TrainingConfig(model: model, optimizer: optimizer, dataFiles: absolute, valFiles: valFiles.map(absolutePath),
                                    xName: xName, yName: yName, batchSize: batchSize, epochs: epochs, seed: seed,
                                    shuffle: shuffle, dropLast: dropLast, maxSteps: maxSteps, workerThreads: workerThreads,
                                    hashEvery: hashEvery)
        config.lengthsName = lengthsName
        try config.validate()
        return config
    }
}

/// `path` made absolute against the current folder (workers may start elsewhere).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
}
