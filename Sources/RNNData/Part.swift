// One file of a TensorDataset: opening and checking it, preloading it when it fits the
// memory budget, and reading rows (coalesced runs of sorted rows, one H5Dread per up to
// `maxRunsPerRead` runs, then a scatter into batch order).

import Foundation
import RNNCore
import RNNHDF5

/// Runs of rows combined into one hyperslab union per H5Dread. Measured with HDF5 1.10.8:
/// a union of 64 one-row hyperslabs reads ~8k rows/s (HDF5 walks span trees per chunk),
/// one simple hyperslab per H5Dread ~100k+ rows/s; so each run gets its own read.
let maxRunsPerRead = 1

final class Part: @unchecked Sendable {
    let path: String
    let xName: String
    let yName: String
    let file: HDF5File
    let x: HDF5Dataset
    let y: HDF5Dataset
    let rowOffset: Int
    let rows: Int
    let steps: Int
    let features: Int
    let encoding: InputEncoding
    /// Stored elements per X row: T*I dense or T tokens.
    let xRowElements: Int
    let perStepTargets: Bool
    /// Provisional kind (class count filled in by the dataset).
    let targetKind: TargetKind
    let targetElements: Int
    let declaredClasses: Int?
    let maxLabel: Int
    /// All class ids, (N) or (N, T), for classification.
    let labels: [Int32]?
    let xDense: [Float]?
    let xTokens: [Int32]?
    let yValues: [Float]?
    let vocabulary: [Unicode.Scalar]?
    let descriptionText: String?
    /// The optional lengths dataset (N), each in [1, T]; nil when the file has none.
    var lengths: [Int32]? = nil
    /// Deliver token ids as float values (B, T) instead of one-hot rows (B, T, V).
    var tokenIds = false

    /// pread-based readers for unfiltered X/Y stored exactly as read (set after open when
    /// the file is not preloaded).
    var xDirect: HDF5DirectRowReader?
    var yDirect: HDF5DirectRowReader?

    var isPreloaded: Bool { xDense != nil || xTokens != nil }

    private init(path: String, xName: String, yName: String, file: HDF5File, x: HDF5Dataset, y: HDF5Dataset,
                 rowOffset: Int, rows: Int, steps: Int, features: Int, encoding: InputEncoding,
                 perStepTargets: Bool, targetKind: TargetKind, targetElements: Int, declaredClasses: Int?,
                 maxLabel: Int, labels: [Int32]?, xDense: [Float]?, xTokens: [Int32]?, yValues: [Float]?,
                 vocabulary: [Unicode.Scalar]?, descriptionText: String?) {
        self.path = path; self.xName = xName; self.yName = yName; self.file = file; self.x = x; self.y = y
        self.rowOffset = rowOffset; self.rows = rows; self.steps = steps; self.features = features
        self.encoding = encoding; self.xRowElements = encoding == .dense ? steps * features : steps
        self.perStepTargets = perStepTargets; self.targetKind = targetKind; self.targetElements = targetElements
        self.declaredClasses = declaredClasses; self.maxLabel = maxLabel; self.labels = labels
        self.xDense = xDense; self.xTokens = xTokens; self.yValues = yValues
        self.vocabulary = vocabulary; self.descriptionText = descriptionText
    }

    static func shapeText(_ shape: [Int]) -> String {
        "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
    }

    // MARK: opening and structural checks

    static func open(path: String, options: TensorDatasetOptions, rowOffset: Int, budget: inout Int) throws(DataError) -> Part {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            throw DataError(.fileNotFound, file: path, expected: "an existing HDF5 file", found: "no such file")
        }
        if isDirectory.boolValue {
            throw DataError(.fileNotFound, file: path, expected: "an HDF5 file", found: "a directory")
        }
        if !FileManager.default.isReadableFile(atPath: path) {
            throw DataError(.fileNotFound, file: path, expected: "a readable HDF5 file", found: "a file without read permission")
        }
        let signature: Bool
        do { signature = try HDF5File.isHDF5(path: path) } catch {
            throw DataError(.notHDF5, file: path, expected: "an HDF5 file", found: "a file HDF5 cannot read", hdf5: error)
        }
        if !signature {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            throw DataError(.notHDF5, file: path, expected: "an HDF5 file (signature \\x89HDF\\r\\n\\x1a\\n)",
                            found: size == 0 ? "an empty file" : "a \(size)-byte file without the HDF5 signature")
        }
        let file: HDF5File
        let root: HDF5Group
        do {
            file = try HDF5File.open(path)
            root = try file.root()
        } catch {
            throw DataError(.notHDF5, file: path, expected: "a readable HDF5 file", found: "a damaged or truncated file", hdf5: error)
        }
        do {
            return try open(file: file, root: root, path: path, options: options, rowOffset: rowOffset, budget: &budget)
        } catch let error as DataError {
            throw error
        } catch let error as HDF5Error {
            throw DataError.io(error, file: path, doing: "opening the dataset")
        } catch {
            throw DataError(.io, file: path, expected: "to open the dataset", found: "\(error)")
        }
    }

    private static func requireDataset(_ name: String, role: String, root: HDF5Group, path: String, cache: Int) throws -> HDF5Dataset {
        if try !root.exists(name) {
            let present = try root.children().map { $0.kind == .dataset ? "'\($0.name)'" : "'\($0.name)/' (group)" }
            let flag = role == "features" ? "--x-name" : "--y-name"
            throw DataError(.missingDataset, file: path, dataset: name,
                            expected: "a \(role) dataset '\(name)' (choose another name with \(flag))",
                            found: present.isEmpty ? "an empty file" : "only " + present.joined(separator: ", "))
        }
        do {
            let dataset = try root.openDataset(name, chunkCacheBytes: cache)
            // Unfiltered chunks need no cache: without one HDF5 reads just the selected rows of
            // a chunk straight into the caller's buffer, instead of loading the whole chunk
            // into the cache and copying (64x less data for one row of a 64-row chunk).
            if case .chunked = dataset.layout, dataset.filters.isEmpty {
                return try root.openDataset(name, chunkCacheBytes: 0)
            }
            return dataset
        } catch {
            throw DataError(.missingDataset, file: path, dataset: name, expected: "'\(name)' to be a dataset", found: "an object that is not a dataset", hdf5: error)
        }
    }

    private static func positiveIntAttribute(_ object: HDF5Object, _ name: String, path: String, dataset: String?) throws -> Int? {
        guard try object.hasAttribute(name) else { return nil }
        let value = try object.attribute(name)
        guard case .integers(let v) = value, v.count == 1, v[0] >= 1, v[0] <= Int64(Int32.max) else {
            throw DataError(.badAttribute, file: path, dataset: dataset,
                            expected: "attribute '\(name)' to be one positive integer", found: "\(value)")
        }
        return Int(v[0])
    }

    private static func open(file: HDF5File, root: HDF5Group, path: String, options: TensorDatasetOptions, rowOffset: Int, budget: inout Int) throws -> Part {
        let xName = options.xName, yName = options.yName
        let x = try requireDataset(xName, role: "features", root: root, path: path, cache: options.chunkCacheBytes)
        let y = try requireDataset(yName, role: "targets", root: root, path: path, cache: options.chunkCacheBytes)

        // X: dense floats (N, T, I) or token ids (N, T).
        let encoding: InputEncoding
        let features: Int
        switch x.typeInfo.typeClass {
        case .float:
            guard x.shape.count == 3 else {
                throw DataError(.rankMismatch, file: path, dataset: xName, expected: "float features of rank 3 (N, T, I)",
                                found: "rank \(x.shape.count), shape \(shapeText(x.shape))")
            }
            encoding = .dense
            features = x.shape[2]
        case .integer:
            guard x.shape.count == 2 else {
                throw DataError(.rankMismatch, file: path, dataset: xName,
                                expected: "integer token ids of rank 2 (N, T) (integer features (N, T, I) must be stored as float)",
                                found: "rank \(x.shape.count), shape \(shapeText(x.shape)) of \(x.typeInfo)")
            }
            guard let vocab = try positiveIntAttribute(x, "vocab_size", path: path, dataset: xName)
                    ?? positiveIntAttribute(root, "vocab_size", path: path, dataset: nil) else {
                throw DataError(.badAttribute, file: path, dataset: xName,
                                expected: "attribute 'vocab_size' on integer token ids", found: "no such attribute")
            }
            encoding = .tokens(vocabularySize: vocab)
            features = vocab
        default:
            throw DataError(.unsupportedType, file: path, dataset: xName,
                            expected: "float16/float32/float64 features or integer token ids", found: x.typeInfo.description)
        }
        let n = x.shape[0], t = x.shape[1]
        if n == 0 { throw DataError(.empty, file: path, dataset: xName, expected: "at least one sample", found: "shape \(shapeText(x.shape))") }
        if t == 0 { throw DataError(.empty, file: path, dataset: xName, expected: "at least one time step", found: "shape \(shapeText(x.shape))") }
        if features == 0 { throw DataError(.empty, file: path, dataset: xName, expected: "at least one feature", found: "shape \(shapeText(x.shape))") }

        // Y: class ids (N) / (N, T) or float targets (N, O) / (N, T, O).
        let perStep: Bool
        let kind: TargetKind
        switch y.typeInfo.typeClass {
        case .integer:
            switch y.shape.count {
            case 1: perStep = false
            case 2: perStep = true
            default:
                throw DataError(.rankMismatch, file: path, dataset: yName, expected: "class ids of rank 1 (N) or 2 (N, T)",
                                found: "rank \(y.shape.count), shape \(shapeText(y.shape))")
            }
            kind = perStep ? .stepClasses(classes: 0) : .sequenceClasses(classes: 0)
        case .float:
            switch y.shape.count {
            case 2: perStep = false
            case 3: perStep = true
            default:
                throw DataError(.rankMismatch, file: path, dataset: yName, expected: "float targets of rank 2 (N, O) or 3 (N, T, O)",
                                found: "rank \(y.shape.count), shape \(shapeText(y.shape))")
            }
            let o = y.shape.last!
            if o == 0 { throw DataError(.empty, file: path, dataset: yName, expected: "at least one output", found: "shape \(shapeText(y.shape))") }
            kind = perStep ? .stepValues(outputs: o) : .sequenceValues(outputs: o)
        default:
            throw DataError(.unsupportedType, file: path, dataset: yName,
                            expected: "integer class ids or float targets", found: y.typeInfo.description)
        }
        if y.shape[0] != n {
            throw DataError(.countMismatch, file: path, dataset: yName, expected: "N = \(n) rows like '\(xName)' \(shapeText(x.shape))",
                            found: "N = \(y.shape[0]), shape \(shapeText(y.shape))")
        }
        if perStep && y.shape[1] != t {
            throw DataError(.shapeMismatch, file: path, dataset: yName, expected: "T = \(t) steps like '\(xName)' \(shapeText(x.shape))",
                            found: "T = \(y.shape[1]), shape \(shapeText(y.shape))")
        }
        let targetElements = y.rowElements

        // Root attributes.
        let declared = try positiveIntAttribute(root, "classes", path: path, dataset: nil)
        var vocabulary: [Unicode.Scalar]? = nil
        if try root.hasAttribute("vocab") {
            guard case .string(let text) = try root.attribute("vocab") else {
                throw DataError(.badAttribute, file: path, expected: "root attribute 'vocab' to be a string (id -> character)", found: "\(try root.attribute("vocab"))")
            }
            vocabulary = Array(text.unicodeScalars)
        }
        var descriptionText: String? = nil
        if try root.hasAttribute("description") { descriptionText = "\(try root.attribute("description"))" }

        // Lengths (optional): per-step class ids past a sequence's length are padding, never
        // read, so they may hold anything (e.g. -100, CrossEntropyLoss's ignore_index).
        let lengths = try readLengths(root: root, path: path, name: options.lengthsName, rows: n, steps: t, cache: options.chunkCacheBytes)

        // Labels: always loaded (small), checked against 0 here and against classes later.
        var labels: [Int32]? = nil
        var maxLabel = -1
        if kind.isClassification {
            let wide: [Int64] = try y.read()
            var narrow = [Int32](repeating: 0, count: wide.count)
            for (i, label) in wide.enumerated() {
                if perStep, let lengths, i % t >= Int(lengths[i / t]) {
                    narrow[i] = Int32(clamping: label)
                    continue
                }
                if label < 0 || label > Int64(Int32.max) || (declared != nil && label >= Int64(declared!)) {
                    throw DataError(.labelOutOfRange, file: path, dataset: yName,
                                    expected: "class ids in [0, \(declared.map(String.init) ?? "classes"))",
                                    found: "\(label) at \(position(i, elements: targetElements, steps: perStep))")
                }
                narrow[i] = Int32(label)
                if Int(label) > maxLabel { maxLabel = Int(label) }
            }
            labels = narrow
        }

        // Preload when the converted data fits in what is left of the budget.
        let xBytes = n * (encoding == .dense ? t * features : t) * 4
        let yBytes = kind.isClassification ? 0 : n * targetElements * 4
        var xDense: [Float]? = nil, xTokens: [Int32]? = nil, yValues: [Float]? = nil
        if xBytes + yBytes <= budget {
            budget -= xBytes + yBytes
            if encoding == .dense {
                // Unfiltered float32 rows come straight from the file with pread.
                if let reader = HDF5DirectRowReader.make(for: x), reader.scalar == .float32 {
                    var values = [Float](unsafeUninitializedCapacity: n * t * features) { buffer, count in
                        adviseHugePages(UnsafeMutableRawBufferPointer(buffer))
                        count = n * t * features
                    }
                    try reader.readRows([0..<n], into: &values)
                    xDense = values
                } else {
                    xDense = try x.read()
                }
            } else {
                xTokens = try x.read()
            }
            if !kind.isClassification { yValues = try y.read() }
        }
        let part = Part(path: path, xName: xName, yName: yName, file: file, x: x, y: y, rowOffset: rowOffset,
                        rows: n, steps: t, features: features, encoding: encoding, perStepTargets: perStep,
                        targetKind: kind, targetElements: targetElements, declaredClasses: declared, maxLabel: maxLabel,
                        labels: labels, xDense: xDense, xTokens: xTokens, yValues: yValues,
                        vocabulary: vocabulary, descriptionText: descriptionText)
        part.tokenIds = options.tokenIds
        part.lengths = lengths
        if xDense == nil && xTokens == nil {
            let wanted: HDF5Scalar = encoding == .dense ? .float32 : .int32
            if let reader = HDF5DirectRowReader.make(for: x), reader.scalar == wanted { part.xDirect = reader }
            if !kind.isClassification, let reader = HDF5DirectRowReader.make(for: y), reader.scalar == .float32 { part.yDirect = reader }
        }
        return part
    }

    /// The optional lengths dataset: integers (N) in [1, T], or nil when the file has none.
    private static func readLengths(root: HDF5Group, path: String, name: String, rows n: Int, steps t: Int, cache: Int) throws -> [Int32]? {
        guard try root.exists(name) else { return nil }
        let dataset = try root.openDataset(name, chunkCacheBytes: cache)
        guard dataset.typeInfo.typeClass == .integer else {
            throw DataError(.unsupportedType, file: path, dataset: name, expected: "integer sequence lengths (N) in [1, T = \(t)]",
                            found: dataset.typeInfo.description)
        }
        guard dataset.shape.count == 1 else {
            throw DataError(.rankMismatch, file: path, dataset: name, expected: "sequence lengths of rank 1 (N)",
                            found: "rank \(dataset.shape.count), shape \(shapeText(dataset.shape))")
        }
        guard dataset.shape[0] == n else {
            throw DataError(.countMismatch, file: path, dataset: name, expected: "N = \(n) lengths, one per sample of X",
                            found: "N = \(dataset.shape[0])")
        }
        let wide: [Int64] = try dataset.read()
        var lengths = [Int32](repeating: 0, count: n)
        for (i, v) in wide.enumerated() {
            guard v >= 1 && v <= Int64(t) else {
                throw DataError(.lengthOutOfRange, file: path, dataset: name, expected: "sequence lengths in [1, T = \(t)]",
                                found: "\(v) at sample \(i)")
            }
            lengths[i] = Int32(v)
        }
        return lengths
    }

    /// "sample n" / "sample n, step t" / "sample n, step t, feature i" for element index `i`.
    static func position(_ i: Int, elements: Int, steps: Bool, features: Int = 1) -> String {
        let sample = i / elements
        let within = i % elements
        if !steps { return features > 1 ? "sample \(sample), output \(within)" : "sample \(sample)" }
        if features > 1 { return "sample \(sample), step \(within / features), feature \(within % features)" }
        return "sample \(sample), step \(within)"
    }

    /// Files must agree on T, I, input encoding and target kind.
    func checkAgreement(with other: Part) throws(DataError) {
        func disagree(_ what: String, _ mine: String, _ theirs: String) -> DataError {
            DataError(.filesDisagree, file: other.path, dataset: what == "target kind" || what == "O" ? other.yName : other.xName,
                      expected: "\(what) = \(mine) like the first file \(path)", found: "\(what) = \(theirs)")
        }
        if other.steps != steps { throw disagree("T", "\(steps)", "\(other.steps)") }
        if other.encoding != encoding {
            throw disagree("input encoding", encoding == .dense ? "float features" : "token ids", other.encoding == .dense ? "float features" : "token ids")
        }
        if other.features != features { throw disagree("I", "\(features)", "\(other.features)") }
        if other.targetKind.shapeName != targetKind.shapeName { throw disagree("target kind", targetKind.shapeName, other.targetKind.shapeName) }
        if !targetKind.isClassification && other.targetKind.outputSize != targetKind.outputSize {
            throw disagree("O", "\(targetKind.outputSize)", "\(other.targetKind.outputSize)")
        }
        if let a = declaredClasses, let b = other.declaredClasses, a != b { throw disagree("classes", "\(a)", "\(b)") }
        if (other.lengths == nil) != (lengths == nil) {
            throw DataError(.filesDisagree, file: other.path, expected: "sequence lengths \(lengths == nil ? "absent" : "present") like the first file \(path)",
                            found: other.lengths == nil ? "no lengths dataset" : "a lengths dataset")
        }
    }

    /// Whether label `i` is per-step padding past its sequence's length (never read).
    func isPadding(label i: Int) -> Bool {
        guard perStepTargets, let lengths else { return false }
        return i % steps >= Int(lengths[i / steps])
    }

    func checkLabels(classes: Int) throws(DataError) {
        guard let labels else { return }
        for (i, label) in labels.enumerated() where Int(label) >= classes && !isPadding(label: i) {
            throw DataError(.labelOutOfRange, file: path, dataset: yName, expected: "class ids in [0, \(classes))",
                            found: "\(label) at \(Part.position(i, elements: targetElements, steps: perStepTargets))")
        }
    }

    // MARK: value scans

    /// Index of the first non-finite value in `values[range]`, or nil.
    static func firstNonFinite(_ values: UnsafeBufferPointer<Float>) -> Int? {
        // Finite floats have an exponent below all-ones: compare bit patterns, branch-free per lane.
        var i = 0
        let n = values.count
        while i + 8 <= n {
            var bad = false
            for k in 0..<8 { bad = bad || !values[i + k].isFinite }
            if bad { break }
            i += 8
        }
        while i < n {
            if !values[i].isFinite { return i }
            i += 1
        }
        return nil
    }

    func nonFiniteError(dataset: String, index: Int, value: Float, isX: Bool) -> DataError {
        let where_: String
        if isX {
            where_ = Part.position(index, elements: steps * features, steps: true, features: features)
        } else {
            let o = targetKind.outputSize
            where_ = Part.position(index, elements: targetElements, steps: perStepTargets, features: o)
        }
        return DataError(.nonFinite, file: path, dataset: dataset, expected: "finite \(isX ? "features" : "targets")",
                         found: "\(value) at \(where_)")
    }

    func tokenError(index: Int, token: Int32) -> DataError {
        DataError(.tokenOutOfRange, file: path, dataset: xName, expected: "token ids in [0, \(features)) (vocab_size)",
                  found: "\(token) at \(Part.position(index, elements: steps, steps: true))")
    }

    func checkFinite(_ values: [Float], firstRow: Int, rowElements: Int, dataset: String, isX: Bool) throws(DataError) {
        let bad = values.withUnsafeBufferPointer { Part.firstNonFinite($0) }
        if let bad {
            throw nonFiniteError(dataset: dataset, index: firstRow * rowElements + bad, value: values[bad], isX: isX)
        }
    }

    func checkTokens(_ tokens: [Int32], firstRow: Int) throws(DataError) {
        let v = Int32(features)
        for (i, token) in tokens.enumerated() where token < 0 || token >= v {
            throw tokenError(index: firstRow * steps + i, token: token)
        }
    }

    /// Full scan: non-finite features and float targets, token ids in range. Bounded memory
    /// (blocks of ~8 MiB) for files that are not preloaded.
    func scanValues() throws(DataError) {
        if let xDense { try checkFinite(xDense, firstRow: 0, rowElements: xRowElements, dataset: xName, isX: true) }
        else if let xTokens { try checkTokens(xTokens, firstRow: 0) }
        else {
            let block = max(1, (8 << 20) / (xRowElements * 4))
            var row = 0
            while row < rows {
                let range = row..<min(rows, row + block)
                do {
                    if encoding == .dense {
                        let values: [Float] = try x.read(rows: range)
                        try checkFinite(values, firstRow: row, rowElements: xRowElements, dataset: xName, isX: true)
                    } else {
                        let tokens: [Int32] = try x.read(rows: range)
                        try checkTokens(tokens, firstRow: row)
                    }
                } catch let error as DataError { throw error } catch let error as HDF5Error {
                    throw DataError.io(error, file: path, dataset: xName, doing: "reading rows \(range)")
                } catch { throw DataError(.io, file: path, expected: "to read", found: "\(error)") }
                row = range.upperBound
            }
        }
        if !targetKind.isClassification {
            let values: [Float]
            if let yValues { values = yValues } else {
                do { values = try y.read() } catch { throw DataError.io(error, file: path, dataset: yName, doing: "reading the targets") }
            }
            try checkFinite(values, firstRow: 0, rowElements: targetElements, dataset: yName, isX: false)
        }
    }

    // MARK: row reads

    /// Reads the stored rows `localRows` (sorted ascending, repeats allowed) of `dataset` as
    /// `T`, in that order, into `scratch` (resized). Consecutive rows form runs; up to
    /// `maxRunsPerRead` runs are read with one hyperslab-union H5Dread.
    func readSortedRows<T: HDF5Element>(_ dataset: HDF5Dataset, _ localRows: [Int], rowElements: Int, into scratch: inout [T]) throws(DataError) {
        var unique: [Int] = []
        unique.reserveCapacity(localRows.count)
        for r in localRows where unique.last != r { unique.append(r) }
        let runs = Self.runs(ofIncreasing: unique)
        let needed = unique.count * rowElements
        if scratch.count < needed {
            scratch = [T](unsafeUninitializedCapacity: needed) { _, n in n = needed }
        }
        try readRuns(dataset, runs, rowElements: rowElements, into: &scratch, at: 0, rowCount: unique.count)
        if unique.count != localRows.count {
            // Expand repeats so scratch row k is localRows[k].
            var expanded = [T](unsafeUninitializedCapacity: localRows.count * rowElements) { _, n in n = localRows.count * rowElements }
            var u = 0
            for (k, r) in localRows.enumerated() {
                while unique[u] != r { u += 1 }
                for e in 0..<rowElements { expanded[k * rowElements + e] = scratch[u * rowElements + e] }
            }
            scratch = expanded
        }
    }

    /// Whether `localRows` are strictly increasing and land on consecutive batch rows, so
    /// HDF5 can read them straight into the batch.
    static func isDirect(_ localRows: [Int], _ destinations: [Int]) -> Bool {
        for k in 1..<max(localRows.count, 1) where localRows[k] <= localRows[k - 1] || destinations[k] != destinations[k - 1] + 1 {
            return false
        }
        return true
    }

    /// Reads strictly increasing `localRows` of `dataset` straight into `out` at batch row `first`.
    func readDirect(_ dataset: HDF5Dataset, _ localRows: [Int], first: Int, elements: Int, into out: inout [Float]) throws(DataError) {
        try readRuns(dataset, Self.runs(ofIncreasing: localRows), rowElements: elements, into: &out,
                     at: first * elements, rowCount: localRows.count)
    }

    /// Consecutive rows of strictly increasing `rows` as ranges.
    static func runs(ofIncreasing rows: [Int]) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var runStart = rows[0], previous = rows[0]
        for r in rows.dropFirst() {
            if r != previous + 1 { runs.append(runStart..<(previous + 1)); runStart = r }
            previous = r
        }
        runs.append(runStart..<(previous + 1))
        return runs
    }

    /// Reads `runs` of `dataset` as `T` into `out` from element `start`: through the direct
    /// (pread) reader when it serves this dataset and type, otherwise `maxRunsPerRead` runs per H5Dread.
    func readRuns<T: HDF5Element>(_ dataset: HDF5Dataset, _ runs: [Range<Int>], rowElements: Int, into out: inout [T],
                                  at start: Int, rowCount: Int) throws(DataError) {
        var offset = start
        var index = 0
        do {
            if let reader = dataset === x ? xDirect : yDirect, reader.scalar == T.hdf5Scalar {
                try reader.readRows(runs, into: &out, at: offset)
                index = runs.count
            }
            while index < runs.count {
                let group = Array(runs[index..<min(runs.count, index + maxRunsPerRead)])
                try dataset.readRows(group, into: &out, at: offset)
                offset += group.reduce(0) { $0 + $1.count } * rowElements
                index += group.count
            }
        } catch {
            throw DataError.io(error, file: path, dataset: dataset.path, doing: "reading \(rowCount) rows")
        }
    }

    func readX(localRows: [Int], destinations: [Int], into out: inout [Float], sampleElements: Int, validated: Bool,
               scratch: inout [Float], tokens scratchTokens: inout [Int32]) throws(DataError) {
        switch encoding {
        case .dense:
            if let xDense {
                scatter(source: xDense, sourceRows: localRows, destinations: destinations, elements: sampleElements, into: &out)
                return
            }
            if Part.isDirect(localRows, destinations) {
                try readDirect(x, localRows, first: destinations[0], elements: sampleElements, into: &out)
                if !validated {
                    let range = (destinations[0] * sampleElements)..<((destinations[0] + localRows.count) * sampleElements)
                    if let bad = out.withUnsafeBufferPointer({ Part.firstNonFinite(UnsafeBufferPointer(rebasing: $0[range])) }) {
                        let row = localRows[bad / sampleElements]
                        throw nonFiniteError(dataset: xName, index: row * sampleElements + bad % sampleElements, value: out[range.lowerBound + bad], isX: true)
                    }
                }
                return
            }
            try readSortedRows(x, localRows, rowElements: sampleElements, into: &scratch)
            if !validated {
                if let bad = scratch.withUnsafeBufferPointer({ Part.firstNonFinite(UnsafeBufferPointer(rebasing: $0[0..<(localRows.count * sampleElements)])) }) {
                    let row = localRows[bad / sampleElements]
                    throw nonFiniteError(dataset: xName, index: row * sampleElements + bad % sampleElements, value: scratch[bad], isX: true)
                }
            }
            scatter(source: scratch, sourceRows: Array(0..<localRows.count), destinations: destinations, elements: sampleElements, into: &out)
        case .tokens(let v):
            var tokens: [Int32]
            var rowsInTokens: [Int]
            if let xTokens {
                tokens = xTokens
                rowsInTokens = localRows
            } else {
                tokens = scratchTokens
                scratchTokens = []
                defer { scratchTokens = tokens }
                try readSortedRows(x, localRows, rowElements: steps, into: &tokens)
                rowsInTokens = Array(0..<localRows.count)
                if !validated {
                    for k in 0..<localRows.count {
                        for t in 0..<steps where tokens[k * steps + t] < 0 || tokens[k * steps + t] >= Int32(v) {
                            throw tokenError(index: localRows[k] * steps + t, token: tokens[k * steps + t])
                        }
                    }
                }
            }
            let t = steps
            if tokenIds {
                // Ids as exact float values, (B, T): RNNCore gathers W_ih's columns or embedding rows.
                tokens.withUnsafeBufferPointer { src in
                    out.withUnsafeMutableBufferPointer { dst in
                        for (k, dest) in destinations.enumerated() {
                            let row = rowsInTokens[k] * t
                            for s in 0..<t { dst[dest * t + s] = Float(src[row + s]) }
                        }
                    }
                }
                return
            }
            tokens.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for (k, dest) in destinations.enumerated() {
                        let base = dest * sampleElements
                        (dst.baseAddress! + base).update(repeating: 0, count: sampleElements)
                        let row = rowsInTokens[k] * t
                        for s in 0..<t {
                            let token = Int(src[row + s])
                            if token >= 0 && token < v { dst[base + s * v + token] = 1 }
                        }
                    }
                }
            }
        }
    }

    func readLabels(localRows: [Int], destinations: [Int], into out: inout [Int32], elements: Int) {
        scatter(source: labels!, sourceRows: localRows, destinations: destinations, elements: elements, into: &out)
    }

    func readValues(localRows: [Int], destinations: [Int], into out: inout [Float], elements: Int, validated: Bool,
                    scratch: inout [Float]) throws(DataError) {
        if let yValues {
            scatter(source: yValues, sourceRows: localRows, destinations: destinations, elements: elements, into: &out)
            return
        }
        try readSortedRows(y, localRows, rowElements: elements, into: &scratch)
        if !validated {
            if let bad = scratch.withUnsafeBufferPointer({ Part.firstNonFinite(UnsafeBufferPointer(rebasing: $0[0..<(localRows.count * elements)])) }) {
                let row = localRows[bad / elements]
                throw nonFiniteError(dataset: yName, index: row * elements + bad % elements, value: scratch[bad], isX: false)
            }
        }
        scatter(source: scratch, sourceRows: Array(0..<localRows.count), destinations: destinations, elements: elements, into: &out)
    }
}

/// Copies row `sourceRows[k]` of `source` to row `destinations[k]` of `out` (rows of `elements`).
func scatter<T>(source: [T], sourceRows: [Int], destinations: [Int], elements: Int, into out: inout [T]) {
    source.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for (k, dest) in destinations.enumerated() {
                (dst.baseAddress! + dest * elements).update(from: src.baseAddress! + sourceRows[k] * elements, count: elements)
            }
        }
    }
}
