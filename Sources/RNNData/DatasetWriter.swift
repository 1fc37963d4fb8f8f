// Writing TensorDataset files (used by `rnn-data make` and by tests that need real files).

import Foundation
import RNNCore
import RNNHDF5

/// Features to write.
public enum FeatureData: Sendable {
    /// Float features (N, T, I), row-major.
    case dense([Float], count: Int, steps: Int, features: Int)
    /// Token ids (N, T), row-major; stored as uint8 when V <= 256, else int32, with attribute vocab_size.
    case tokens([Int32], count: Int, steps: Int, vocabularySize: Int)
}

/// Targets to write.
public enum TargetData: Sendable {
    /// Class ids with shape (N) or (N, T); stored as int64 (numpy's default integer).
    case classes([Int32], shape: [Int])
    /// Float targets with shape (N, O) or (N, T, O).
    case values([Float], shape: [Int])
}

/// A whole dataset in memory, ready to be written as one HDF5 file.
public struct DatasetContents: Sendable {
    public var x: FeatureData
    public var y: TargetData
    /// Root attribute `classes`.
    public var classes: Int?
    /// Root attribute `vocab`: the i-th Unicode scalar is the character of id i.
    public var vocabulary: String?
    /// Root attribute `description`.
    public var description: String?
    /// Optional `/lengths` (N): sequence n is its first lengths[n] steps, the rest padding.
    public var lengths: [Int32]?

    public init(x: FeatureData, y: TargetData, classes: Int? = nil, vocabulary: String? = nil, description: String? = nil,
                lengths: [Int32]? = nil) {
        self.lengths = lengths
        self.x = x
        self.y = y
        self.classes = classes
        self.vocabulary = vocabulary
        self.description = description
    }

    /// Samples N.
    public var count: Int {
        switch x {
        case .dense(_, let n, _, _), .tokens(_, let n, _, _): return n
        }
    }

    /// Writes `/X`, `/Y` (or the given names) and the root attributes. `compress` stores
    /// both datasets chunked with shuffle + gzip level 4, as h5py's `compression="gzip"`.
    public func write(to path: String, xName: String = "X", yName: String = "Y", compress: Bool = true) throws(DataError) {
        let storage = compress ? HDF5DatasetOptions(gzipLevel: 4, shuffle: true) : HDF5DatasetOptions()
        do {
            let file = try HDF5File.create(path)
            let root = try file.root()
            switch x {
            case .dense(let values, let n, let t, let i):
                try root.writeDataset(xName, shape: [n, t, i], values: values, options: storage)
            case .tokens(let ids, let n, let t, let v):
                let dataset: HDF5Dataset
                if v <= 256 {
                    dataset = try root.writeDataset(xName, shape: [n, t], values: ids.map { UInt8(truncatingIfNeeded: $0) }, options: storage)
                } else {
                    dataset = try root.writeDataset(xName, shape: [n, t], values: ids, options: storage)
                }
                try dataset.setAttribute("vocab_size", Int64(v))
            }
            switch y {
            case .classes(let ids, let shape):
                try root.writeDataset(yName, shape: shape, values: ids.map { Int64($0) }, options: storage)
            case .values(let values, let shape):
                try root.writeDataset(yName, shape: shape, values: values, options: storage)
            }
            if let lengths { try root.writeDataset("lengths", shape: [lengths.count], values: lengths.map { Int64($0) }, options: storage) }
            if let classes { try root.setAttribute("classes", Int64(classes)) }
            if let vocabulary { try root.setAttribute("vocab", vocabulary) }
            if let description { try root.setAttribute("description", description) }
            try file.close()
        } catch {
            throw DataError.io(error, file: path, doing: "writing the dataset")
        }
    }
}

/// The datasets `rnn-data make` produces.
public enum SyntheticData {
    /// Variable-length token classification: sequences of `minLength ... maxLength` token ids
    /// (padded at the end to T = maxLength with id 0, stored in `/lengths`), ids 1 ... `classes`
    /// are keywords, the others filler; the label is the keyword that occurs most often in the
    /// real steps (ties to the lower class). Id 0 never occurs in the real steps (a padding_idx).
    public static func variableLengthTokens(count: Int, minLength: Int, maxLength: Int, vocabularySize: Int, classes: Int,
                                            seed: UInt64) -> DatasetContents {
        precondition(vocabularySize > classes + 1 && 1 <= minLength && minLength <= maxLength)
        var generator = SeededGenerator(seed: seed)
        var x = [Int32](repeating: 0, count: count * maxLength)
        var y = [Int32](repeating: 0, count: count)
        var lengths = [Int32](repeating: 0, count: count)
        for n in 0..<count {
            let length = minLength + Int(generator.next() % UInt64(maxLength - minLength + 1))
            lengths[n] = Int32(length)
            var counts = [Int](repeating: 0, count: classes)
            for t in 0..<length {
                let id: Int
                if generator.next() % 4 == 0 {
                    let c = Int(generator.next() % UInt64(classes))
                    counts[c] += 1
                    id = 1 + c
                } else {
                    id = 1 + classes + Int(generator.next() % UInt64(vocabularySize - classes - 1))
                }
                x[n * maxLength + t] = Int32(id)
            }
            y[n] = Int32(counts.indices.max { counts[$0] < counts[$1] || (counts[$0] == counts[$1] && $0 > $1) }!)
        }
        return DatasetContents(
            x: .tokens(x, count: count, steps: maxLength, vocabularySize: vocabularySize),
            y: .classes(y, shape: [count]), classes: classes,
            description: "variable-length token classification (N=\(count), lengths \(minLength)-\(maxLength) padded with id 0 at the end, V=\(vocabularySize)), seed \(seed); label = the most frequent of the keyword ids 1...\(classes)",
            lengths: lengths)
    }

    /// The "hello" -> "elloh" sequence-to-sequence example: X = token ids of "hello"
    /// (vocab "helo", V = 4), Y = per-step targets "elloh" (each character's successor,
    /// wrapping around). `copies` repeats the one sample so that it can be split among workers.
    public static func hello(copies: Int = 1) -> DatasetContents {
        let vocab = Array("helo".unicodeScalars)
        func ids(_ s: String) -> [Int32] { s.unicodeScalars.map { Int32(vocab.firstIndex(of: $0)!) } }
        let x = Array(repeating: ids("hello"), count: copies).flatMap { $0 }
        let y = Array(repeating: ids("elloh"), count: copies).flatMap { $0 }
        return DatasetContents(
            x: .tokens(x, count: copies, steps: 5, vocabularySize: 4),
            y: .classes(y, shape: [copies, 5]), classes: 4, vocabulary: "helo",
            description: "hello -> elloh: predict the next character of \"hello\" at every step (wrapping around); \(copies) copies")
    }

    /// Random sequences as in the tutorial (X ~ N(0, 1) with shape (N, T, I)) with a
    /// learnable label: the sum of all T*I features of a sequence, bucketed into `classes`
    /// equally populated classes by rank (for 2 classes: below or above the median sum).
    public static func random(count: Int, steps: Int, features: Int, classes: Int, seed: UInt64) -> DatasetContents {
        var generator = SeededGeneratorBridge(seed: seed)
        let elements = steps * features
        var x = [Float](repeating: 0, count: count * elements)
        var i = 0
        while i < x.count {
            let (a, b) = generator.normalPair()
            x[i] = a
            if i + 1 < x.count { x[i + 1] = b }
            i += 2
        }
        var sums = [Double](repeating: 0, count: count)
        for n in 0..<count {
            var s = 0.0
            for e in 0..<elements { s += Double(x[n * elements + e]) }
            sums[n] = s
        }
        let ranked = (0..<count).sorted { sums[$0] != sums[$1] ? sums[$0] < sums[$1] : $0 < $1 }
        var y = [Int32](repeating: 0, count: count)
        for (rank, n) in ranked.enumerated() { y[n] = Int32(rank * classes / count) }
        return DatasetContents(
            x: .dense(x, count: count, steps: steps, features: features),
            y: .classes(y, shape: [count]), classes: classes,
            description: "random sequences X ~ N(0,1) (N=\(count), T=\(steps), I=\(features)), seed \(seed); label = rank bucket of the sum of all features into \(classes) equal classes")
    }

    /// A character language model over `text`: the vocabulary is the sorted set of its
    /// Unicode scalars; sample n covers scalars [n*stride, n*stride + T) (X) and the same
    /// window shifted by one (Y, the next character at every step).
    /// `vocabulary` fixes the id of each character (e.g. the training file's, `--vocab-from`);
    /// nil builds it from `text` (its distinct characters in code-point order).
    public static func text(_ text: String, steps: Int, stride: Int? = nil, source: String = "",
                            vocabulary: [Unicode.Scalar]? = nil) throws(DataError) -> DatasetContents {
        let scalars = Array(text.unicodeScalars)
        let stride = stride ?? steps
        if steps < 1 || stride < 1 {
            throw DataError(.badRequest, file: source, expected: "--seq-len and stride of at least 1", found: "seq-len \(steps), stride \(stride)")
        }
        if scalars.count < steps + 1 {
            throw DataError(.empty, file: source, expected: "at least \(steps + 1) characters for one sequence of \(steps) steps", found: "\(scalars.count) characters")
        }
        let vocab = vocabulary ?? Array(Set(scalars)).sorted { $0.value < $1.value }
        var index: [Unicode.Scalar: Int32] = [:]
        for (i, s) in vocab.enumerated() where index[s] == nil { index[s] = Int32(i) }
        if let missing = scalars.first(where: { index[$0] == nil }) {
            let shown = missing == "\n" ? "\\n" : String(missing)
            throw DataError(.badRequest, file: source, expected: "only characters of the given vocabulary (\(vocab.count) characters)",
                            found: "'\(shown)' (U+\(String(missing.value, radix: 16, uppercase: true)))")
        }
        let ids = scalars.map { index[$0]! }
        let count = (ids.count - 1 - steps) / stride + 1
        var x = [Int32](repeating: 0, count: count * steps)
        var y = [Int32](repeating: 0, count: count * steps)
        for n in 0..<count {
            for t in 0..<steps {
                x[n * steps + t] = ids[n * stride + t]
                y[n * steps + t] = ids[n * stride + t + 1]
            }
        }
        var vocabText = String.UnicodeScalarView()
        vocabText.append(contentsOf: vocab)
        return DatasetContents(
            x: .tokens(x, count: count, steps: steps, vocabularySize: vocab.count),
            y: .classes(y, shape: [count, steps]), classes: vocab.count, vocabulary: String(vocabText),
            description: "character language model\(source.isEmpty ? "" : " over \(source)"): \(count) windows of \(steps) characters, stride \(stride); Y = next character")
    }

    /// `rnn-data make text --val-fraction F`: the text's first 1 - F characters for training and
    /// the last F for validation (contiguous, so no window straddles both), one vocabulary for
    /// both (`vocabulary`, or the whole text's).
    public static func textSplit(_ text: String, steps: Int, stride: Int? = nil, source: String = "", validationFraction: Double,
                                 vocabulary: [Unicode.Scalar]? = nil) throws(DataError) -> (train: DatasetContents, validation: DatasetContents) {
        guard validationFraction > 0 && validationFraction < 1 else {
            throw DataError(.badRequest, file: source, expected: "--val-fraction in (0, 1)", found: "\(validationFraction)")
        }
        let scalars = Array(text.unicodeScalars)
        let vocab = vocabulary ?? Array(Set(scalars)).sorted { $0.value < $1.value }
        let cut = Int((Double(scalars.count) * (1 - validationFraction)).rounded())
        var head = String.UnicodeScalarView(), tail = String.UnicodeScalarView()
        head.append(contentsOf: scalars[..<cut])
        tail.append(contentsOf: scalars[cut...])
        let train = try Self.text(String(head), steps: steps, stride: stride, source: source + " (first \(cut) characters)", vocabulary: vocab)
        let validation = try Self.text(String(tail), steps: steps, stride: stride, source: source + " (last \(scalars.count - cut) characters)", vocabulary: vocab)
        return (train, validation)
    }
}

/// Normal variates from the project's seeded generator (Box-Muller on 24-bit uniforms).
struct SeededGeneratorBridge {
    var generator: SeededGenerator
    init(seed: UInt64) { generator = SeededGenerator(seed: seed, stream: 0) }
    mutating func normalPair() -> (Float, Float) {
        var u1 = Double(generator.next() >> 11) * 0x1p-53
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(generator.next() >> 11) * 0x1p-53
        let r = (-2 * log(u1)).squareRoot()
        return (Float(r * cos(2 * Double.pi * u2)), Float(r * sin(2 * Double.pi * u2)))
    }
}
