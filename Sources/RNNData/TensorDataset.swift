// A TensorDataset over one or more HDF5 files. Legend: N samples, T steps, I input features
// (after one-hot), O outputs, B rows of a batch, V vocabulary size.
//
// Files: /X float16/32/64 (N, T, I) or integer token ids (N, T) with attribute vocab_size
// (one-hot encoded on read); /Y integer class ids (N) or (N, T), or float targets (N, O) or
// (N, T, O). Optional root attributes: classes, vocab, description. Several files are
// concatenated in the given order.
//
// Typical use (coordinator checks everything once; workers skip the full value scan):
//
//   let data = try TensorDataset.open(paths: ["train.h5"])          // throws DataError
//   let model = ModelConfig(cell: .lstm, inputSize: data.inputSize, hiddenSize: 128,
//                           outputSize: data.targetKind.outputSize,
//                           head: data.targetKind.head, loss: data.targetKind.loss)
//   let plan = try EpochPlan(sampleCount: data.count, batchSize: 64, shuffle: true, seed: 1)
//   let epoch = plan.epoch(e)
//   var batch = Batch()
//   try data.read(rows: epoch.shard(step: s, rank: r, worldSize: w), into: &batch)
//   // batch.x: (B, T, I) float32; batch.targets (RNNCore's Targets): .classIds (B) / (B, T) or .values (B, O) / (B, T, O)
//
// Reading strategy: files whose converted data fit `memoryBudgetBytes` are loaded at open;
// others are read per request: rows sorted, coalesced into runs, one hyperslab read per run
// (HDF5 1.10's hyperslab unions are slow), or plain `pread` at HDF5-reported offsets when the
// data is unfiltered and stored exactly as float32 (HDF5 1.10 would read whole chunks);
// compressed chunks go through a per-dataset chunk cache (`chunkCacheBytes`).

import Foundation
import RNNCore
import RNNHDF5

/// What the targets are, and so which head and loss a model needs.
public enum TargetKind: Sendable, Equatable, CustomStringConvertible {
    /// Y (N): one class id per sequence.
    case sequenceClasses(classes: Int)
    /// Y (N, T): one class id per time step.
    case stepClasses(classes: Int)
    /// Y (N, O): one float vector per sequence.
    case sequenceValues(outputs: Int)
    /// Y (N, T, O): one float vector per time step.
    case stepValues(outputs: Int)

    /// O of the model's Linear head: the class count or the number of float outputs.
    public var outputSize: Int {
        switch self {
        case .sequenceClasses(let c), .stepClasses(let c): return c
        case .sequenceValues(let o), .stepValues(let o): return o
        }
    }
    public var isClassification: Bool {
        switch self {
        case .sequenceClasses, .stepClasses: return true
        default: return false
        }
    }
    public var isPerStep: Bool {
        switch self {
        case .stepClasses, .stepValues: return true
        default: return false
        }
    }
    /// The head that scores these targets.
    public var head: HeadMode { isPerStep ? .everyStep : .lastStep }
    /// The loss for these targets.
    public var loss: LossKind { isClassification ? .crossEntropy : .mse }

    public var description: String {
        switch self {
        case .sequenceClasses(let c): return "one class per sequence (\(c) classes)"
        case .stepClasses(let c): return "one class per step (\(c) classes)"
        case .sequenceValues(let o): return "\(o) float targets per sequence"
        case .stepValues(let o): return "\(o) float targets per step"
        }
    }

    /// Kind names without sizes, for "files disagree" messages.
    var shapeName: String {
        switch self {
        case .sequenceClasses: return "class ids (N)"
        case .stepClasses: return "class ids (N, T)"
        case .sequenceValues: return "float targets (N, O)"
        case .stepValues: return "float targets (N, T, O)"
        }
    }
}

/// How X is stored.
public enum InputEncoding: Sendable, Equatable {
    /// Float features (N, T, I), converted to float32 on read.
    case dense
    /// Integer token ids (N, T), one-hot encoded to I = V on read.
    case tokens(vocabularySize: Int)
}

/// One batch: `x` (B, T, I) float32 row-major (token ids (B, T) as floats with
/// `TensorDatasetOptions.tokenIds`), its targets (RNNCore's `Targets`, as the network takes them) and, when the dataset has them, the
/// sequence lengths (B). Reuse one Batch with
/// `read(rows:into:)` to avoid allocating (and first-touching) new buffers every step.
public struct Batch: Sendable, Equatable {
    public var count: Int
    public var x: [Float]
    public var targets: Targets
    /// Sequence lengths (B) in [1, T], nil when the dataset has no lengths.
    public var lengths: [Int]?
    /// Rows read from disk in file order before they are scattered into batch order.
    var scratchFloats: [Float] = []
    var scratchTokens: [Int32] = []

    public init(count: Int = 0, x: [Float] = [], targets: Targets = .classIds([])) {
        self.count = count
        self.x = x
        self.targets = targets
    }

    public static func == (a: Batch, b: Batch) -> Bool {
        a.count == b.count && a.x == b.x && a.targets == b.targets && a.lengths == b.lengths
    }
}

/// How to open a dataset.
public struct TensorDatasetOptions: Sendable {
    /// Name (path) of the features dataset in every file.
    public var xName: String
    /// Name (path) of the targets dataset in every file.
    public var yName: String
    /// Converted bytes (float32 features, int32 tokens/labels) that may be held in memory:
    /// files are preloaded whole, in order, while their data fits in what is left; other
    /// files are read row by row from disk. 0 = always read from disk.
    public var memoryBudgetBytes: Int
    /// Chunk cache per dataset handle for files read from disk (HDF5's default is 1 MiB).
    public var chunkCacheBytes: Int
    /// Scan every value at open: NaN/Inf in features and float targets, labels and token ids
    /// in range. When off, rows read from disk are still checked as they are read.
    public var validateValues: Bool
    /// Name (path) of the optional sequence-lengths dataset (N) in every file.
    public var lengthsName: String
    /// Token-id files: deliver the ids as float values, x (B, T), for a model with
    /// `tokenInput`, instead of one-hot rows (B, T, V).
    public var tokenIds: Bool

    public init(xName: String = "X", yName: String = "Y", memoryBudgetBytes: Int = 256 << 20,
                chunkCacheBytes: Int = 32 << 20, validateValues: Bool = true, lengthsName: String = "lengths",
                tokenIds: Bool = false) {
        self.lengthsName = lengthsName
        self.tokenIds = tokenIds
        self.xName = xName
        self.yName = yName
        self.memoryBudgetBytes = memoryBudgetBytes
        self.chunkCacheBytes = chunkCacheBytes
        self.validateValues = validateValues
    }
}

/// A dataset of N sequences spread over one or more HDF5 files, read by rows.
///
/// Thread safety: all stored properties are immutable after `open`; reads from disk go
/// through libhdf5, which Debian builds thread-safe (one global lock).
public final class TensorDataset: @unchecked Sendable {
    /// N: samples over all files.
    public let count: Int
    /// T: time steps per sample.
    public let steps: Int
    /// I: input features per step after one-hot encoding.
    public let inputSize: Int
    public let inputEncoding: InputEncoding
    public let targetKind: TargetKind
    /// Root attribute `vocab` of the first file: the i-th Unicode scalar is the character of id i.
    public let vocabulary: [Unicode.Scalar]?
    /// Root attribute `description` of the first file.
    public let datasetDescription: String?
    /// The files, in concatenation order, with their row counts.
    public var files: [(path: String, rows: Int)] { parts.map { ($0.path, $0.rows) } }
    /// Whether each file was preloaded into memory (same order as `files`).
    public var preloaded: [Bool] { parts.map { $0.isPreloaded } }

    let parts: [Part]
    let options: TensorDatasetOptions
    /// Elements of one sample's targets: 1, T, O or T*O.
    let targetElements: Int
    /// Elements of one stored X row: T*I dense, T tokens.
    let storedXElements: Int

    /// Opens and checks `paths` (concatenated in order). Throws a `DataError` naming the file
    /// and dataset for every problem listed in `DataError.Kind`.
    public static func open(paths: [String], options: TensorDatasetOptions = TensorDatasetOptions()) throws(DataError) -> TensorDataset {
        if paths.isEmpty {
            throw DataError(.badRequest, file: "", expected: "at least one dataset file", found: "none")
        }
        var parts: [Part] = []
        var offset = 0
        var budget = options.memoryBudgetBytes
        for path in paths {
            let part = try Part.open(path: path, options: options, rowOffset: offset, budget: &budget)
            if let first = parts.first {
                try first.checkAgreement(with: part)
            }
            parts.append(part)
            offset += part.rows
        }
        // Class count: the largest `classes` attribute or, without one, the largest label + 1.
        let first = parts[0]
        var kind = first.targetKind
        if kind.isClassification {
            let declared = parts.compactMap { $0.declaredClasses }
            let classes = declared.max() ?? (parts.map { $0.maxLabel }.max()! + 1)
            kind = first.perStepTargets ? .stepClasses(classes: classes) : .sequenceClasses(classes: classes)
            // Labels are always loaded for classification, so this check is cheap.
            for part in parts { try part.checkLabels(classes: classes) }
        }
        if options.validateValues {
            for part in parts { try part.scanValues() }
        }
        return TensorDataset(parts: parts, options: options, kind: kind)
    }

    /// Opens one file.
    public static func open(path: String, options: TensorDatasetOptions = TensorDatasetOptions()) throws(DataError) -> TensorDataset {
        try open(paths: [path], options: options)
    }

    private init(parts: [Part], options: TensorDatasetOptions, kind: TargetKind) {
        self.parts = parts
        self.options = options
        self.count = parts.reduce(0) { $0 + $1.rows }
        self.steps = parts[0].steps
        self.inputSize = parts[0].features
        self.inputEncoding = parts[0].encoding
        self.targetKind = kind
        self.vocabulary = parts[0].vocabulary
        self.datasetDescription = parts[0].descriptionText
        self.storedXElements = parts[0].xRowElements
        switch kind {
        case .sequenceClasses: targetElements = 1
        case .stepClasses: targetElements = parts[0].steps
        case .sequenceValues(let o): targetElements = o
        case .stepValues(let o): targetElements = parts[0].steps * o
        }
    }

    /// Elements of one sample's features: T * I (T for token ids delivered as ids).
    public var sampleElements: Int { options.tokenIds && inputEncoding != .dense ? steps : steps * inputSize }

    /// Whether the files carry a lengths dataset (variable-length sequences).
    public var hasLengths: Bool { parts[0].lengths != nil }

    /// Whether x is delivered as token ids (B, T) rather than features (B, T, I).
    public var deliversTokenIds: Bool { options.tokenIds && inputEncoding != .dense }

    /// Every sample's length in sample order (N), nil without a lengths dataset.
    public func allLengths() -> [Int32]? {
        guard hasLengths else { return nil }
        return parts.flatMap { $0.lengths! }
    }

    /// Decodes token ids (or class ids) with the vocabulary, or nil without one.
    public func decode(_ ids: [Int32]) -> String? {
        guard let vocabulary else { return nil }
        var text = String.UnicodeScalarView()
        for id in ids {
            text.append(id >= 0 && Int(id) < vocabulary.count ? vocabulary[Int(id)] : "?")
        }
        return String(text)
    }

    /// All class ids of the dataset in sample order ((N) or (N, T)); nil for float targets.
    public func allClassIds() -> [Int32]? {
        guard targetKind.isClassification else { return nil }
        var all: [Int32] = []
        all.reserveCapacity(count * targetElements)
        for part in parts { all.append(contentsOf: part.labels ?? []) }
        return all
    }

    /// Reads samples `rows` (any order; repeats allowed) as one batch: x (B, T, I) float32,
    /// targets (B) / (B, T) Int32 or (B, O) / (B, T, O) Float, in the order of `rows`.
    public func read(rows: [Int]) throws(DataError) -> Batch {
        var batch = Batch()
        try read(rows: rows, into: &batch)
        return batch
    }

    /// Like `read(rows:)`, reusing the arrays of `batch` (resized when needed).
    public func read(rows: [Int], into batch: inout Batch) throws(DataError) {
        let b = rows.count
        for row in rows where row < 0 || row >= count {
            throw DataError(.badRequest, file: parts.count == 1 ? parts[0].path : "", expected: "sample indices in 0..<\(count)", found: "\(row)")
        }
        batch.count = b
        let xCount = b * sampleElements
        if batch.x.count != xCount { batch.x = [Float](repeating: 0, count: xCount) }
        var classes: [Int32] = []
        var values: [Float] = []
        if targetKind.isClassification {
            if case .classIds(let old) = batch.targets, old.count == b * targetElements { classes = old }
            else { classes = [Int32](repeating: 0, count: b * targetElements) }
            batch.targets = .classIds([])
        } else {
            if case .values(let old) = batch.targets, old.count == b * targetElements { values = old }
            else { values = [Float](repeating: 0, count: b * targetElements) }
            batch.targets = .values([])
        }
        if hasLengths {
            var lengths = batch.lengths ?? []
            lengths.removeAll(keepingCapacity: true)
            for row in rows {
                // Files are few: find the one holding `row`.
                var k = 0
                while row >= parts[k].rowOffset + parts[k].rows { k += 1 }
                lengths.append(Int(parts[k].lengths![row - parts[k].rowOffset]))
            }
            batch.lengths = lengths
        } else {
            batch.lengths = nil
        }
        if b == 0 {
            batch.targets = targetKind.isClassification ? .classIds([]) : .values([])
            return
        }

        // Sort (row, destination) pairs once; rows of each file then form sorted runs.
        var order = Array(0..<b)
        var sorted = true
        for i in 1..<b where rows[i] <= rows[i - 1] { sorted = false; break }
        if !sorted { order.sort { rows[$0] < rows[$1] } }

        var start = 0
        for part in parts {
            // The slice of `order` whose rows fall in this file.
            var end = start
            while end < b && rows[order[end]] < part.rowOffset + part.rows { end += 1 }
            if end > start {
                let local = order[start..<end].map { rows[$0] - part.rowOffset }
                let destinations = Array(order[start..<end])
                try part.readX(localRows: local, destinations: destinations, into: &batch.x, sampleElements: sampleElements,
                               validated: options.validateValues, scratch: &batch.scratchFloats, tokens: &batch.scratchTokens)
                if targetKind.isClassification {
                    part.readLabels(localRows: local, destinations: destinations, into: &classes, elements: targetElements)
                } else {
                    try part.readValues(localRows: local, destinations: destinations, into: &values, elements: targetElements,
                                        validated: options.validateValues, scratch: &batch.scratchFloats)
                }
            }
            start = end
        }
        batch.targets = targetKind.isClassification ? .classIds(classes) : .values(values)
    }
}
