// `rnn-data inspect`: a human-readable report of a dataset file.

import Foundation
import RNNHDF5

public enum DatasetInspector {
    /// Describes every dataset of `path` (shape, dtype, layout, compression, attributes),
    /// then opens it as a TensorDataset and adds N/T/I, the target kind, a class histogram
    /// and the first sample (decoded when a vocab exists). Throws the DataError of the first
    /// problem found (the structural listing is then not returned).
    public static func report(path: String, options: TensorDatasetOptions = TensorDatasetOptions()) throws(DataError) -> String {
        var lines: [String] = ["file: \(path)"]
        do {
            if !FileManager.default.fileExists(atPath: path) {
                throw DataError(.fileNotFound, file: path, expected: "an existing HDF5 file", found: "no such file")
            }
            if try !HDF5File.isHDF5(path: path) {
                throw DataError(.notHDF5, file: path, expected: "an HDF5 file", found: "a file without the HDF5 signature")
            }
            let file = try HDF5File.open(path)
            let root = try file.root()
            lines.append("size: \(try file.size()) bytes")
            for name in try root.attributeNames() {
                let attribute = try root.attribute(name)
                var value = "\(attribute)"
                if value.count > 80 { value = String(value.prefix(77)) + "..." }
                if case .string = attribute { value = value.debugDescription }
                lines.append("attribute \(name) = \(value)")
            }
            try describe(group: root, lines: &lines)
        } catch let error as DataError {
            throw error
        } catch let error as HDF5Error {
            throw DataError(.notHDF5, file: path, expected: "a readable HDF5 file", found: "a damaged or truncated file", hdf5: error)
        } catch {
            throw DataError(.io, file: path, expected: "to read the file", found: "\(error)")
        }

        let dataset = try TensorDataset.open(path: path, options: options)
        lines.append("TensorDataset: N = \(dataset.count), T = \(dataset.steps), I = \(dataset.inputSize)"
                     + (dataset.inputEncoding == .dense ? "" : " (token ids, vocab_size \(dataset.inputSize); one-hot in meaning)"))
        lines.append("targets: \(dataset.targetKind)")
        if let lengths = dataset.allLengths() {
            let total = lengths.reduce(0) { $0 + Int($1) }
            lines.append("lengths: '\(options.lengthsName)' in [\(lengths.min()!), \(lengths.max()!)], mean "
                         + String(format: "%.1f", Double(total) / Double(lengths.count)) + " of T = \(dataset.steps)"
                         + String(format: " (%.1f%% padding)", 100 * (1 - Double(total) / Double(lengths.count * dataset.steps))))
        }
        if let all = dataset.allClassIds() {
            var histogram = [Int](repeating: 0, count: dataset.targetKind.outputSize)
            // Per-step padding past a sequence's length (any value, e.g. -100) is not counted.
            for id in all where id >= 0 && Int(id) < histogram.count { histogram[Int(id)] += 1 }
            let total = max(histogram.reduce(0, +), 1)
            lines.append("class histogram:")
            for (c, n) in histogram.enumerated() {
                let label = dataset.vocabulary.flatMap { c < $0.count ? " \(String($0[c]).debugDescription)" : nil } ?? ""
                lines.append(String(format: "  %4d%@: %8d (%5.1f%%)", c, label, n, 100.0 * Double(n) / Double(total)))
            }
        }
        let first = try dataset.read(rows: [0])
        if dataset.deliversTokenIds, let _ = dataset.vocabulary {
            lines.append("sample 0 x: \(dataset.decode(first.x.map { Int32($0) })!.debugDescription)")
        } else if case .tokens(let v) = dataset.inputEncoding, let _ = dataset.vocabulary {
            var ids: [Int32] = []
            for t in 0..<dataset.steps {
                let row = first.x[(t * v)..<((t + 1) * v)]
                ids.append(Int32(row.firstIndex(of: 1).map { $0 - t * v } ?? -1))
            }
            lines.append("sample 0 x: \(dataset.decode(ids)!.debugDescription)")
        } else {
            let shown = first.x.prefix(min(first.x.count, 16)).map { String(format: "%.4g", $0) }
            lines.append("sample 0 x: [" + shown.joined(separator: ", ") + (first.x.count > 16 ? ", ...]" : "]"))
        }
        switch first.targets {
        case .classIds(let ids):
            if let text = dataset.decode(ids), dataset.targetKind.isPerStep {
                lines.append("sample 0 y: \(text.debugDescription)")
            } else {
                lines.append("sample 0 y: " + ids.map(String.init).joined(separator: " "))
            }
        case .values(let values):
            lines.append("sample 0 y: [" + values.prefix(16).map { String(format: "%.4g", $0) }.joined(separator: ", ") + (values.count > 16 ? ", ...]" : "]"))
        }
        if let text = dataset.datasetDescription { lines.append("description: \(text)") }
        return lines.joined(separator: "\n")
    }

    private static func describe(group: HDF5Group, lines: inout [String]) throws {
        for (name, kind) in try group.children() {
            switch kind {
            case .group:
                let child = try group.openGroup(name)
                lines.append("group \(child.path)")
                try describe(group: child, lines: &lines)
            case .dataset:
                let d = try group.openDataset(name)
                let shape = "(" + d.shape.map(String.init).joined(separator: ", ") + (d.shape.count == 1 ? ",)" : ")")
                var text = "dataset \(d.path): shape \(shape), \(d.typeInfo), \(d.layout)"
                if !d.filters.isEmpty { text += ", filters " + d.filters.map { "\($0)" }.joined(separator: "+") }
                text += ", \(d.storageSize()) bytes stored"
                for attr in try d.attributeNames() { text += ", @\(attr) = \(try d.attribute(attr))" }
                lines.append(text)
            case .other:
                lines.append("other object \(name)")
            }
        }
    }
}
