// Writing (atomically: temporary file, fsync, rename, fsync folder), keeping the last K,
// reading with format/version/shape checks, and finding the newest valid checkpoint.

import Foundation
import RNNCore
import RNNHDF5
#if canImport(Glibc)
import Glibc
#endif

/// The result of looking for the newest usable checkpoint in a folder.
public struct CheckpointSearch: Sendable {
    /// The newest checkpoint that reads and matches the table, or nil.
    public var checkpoint: Checkpoint?
    public var path: String?
    /// One sentence per newer file that was skipped, naming the file and the reason.
    public var warnings: [String]
}

/// A folder of `ckpt-<global_step>.h5` files.
public struct CheckpointStore: Sendable {
    public let directory: String
    /// Checkpoints kept after each write (older ones are deleted); at least 1.
    public let keep: Int
    /// Store every tensor as one chunk with a Fletcher-32 checksum, so that damaged data
    /// is detected on read (h5py and PyTorch loading are unaffected).
    public let checksums: Bool

    /// Uses (and creates, if needed) `directory`.
    public init(directory: String, keep: Int = 3, checksums: Bool = true) throws(CheckpointError) {
        if keep < 1 {
            throw CheckpointError(.badRequest, path: directory, expected: "keep of at least 1", found: "\(keep)")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, path: directory, expected: "a folder for checkpoints", found: "\(error.localizedDescription)")
        }
        self.directory = directory
        self.keep = keep
        self.checksums = checksums
    }

    /// `<directory>/ckpt-<step>.h5`.
    public func path(forStep step: Int) -> String {
        (directory as NSString).appendingPathComponent("ckpt-\(step).h5")
    }

    /// The checkpoints in the folder, oldest first.
    public func list() -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [(Int, String)] = []
        for name in names where name.hasPrefix("ckpt-") && name.hasSuffix(".h5") {
            let digits = name.dropFirst(5).dropLast(3)
            if let step = Int(digits), step >= 0, String(step) == digits {
                found.append((step, (directory as NSString).appendingPathComponent(name)))
            }
        }
        return found.sorted { $0.0 < $1.0 }
    }

    // MARK: writing

    /// Writes `checkpoint` as `ckpt-<global_step>.h5`: into a temporary file in the same
    /// folder, flushed and fsynced, renamed over the final name, the folder fsynced; then
    /// deletes all but the newest `keep` checkpoints. Returns the final path.
    @discardableResult
    public func write(_ checkpoint: Checkpoint, table: ParameterTable) throws(CheckpointError) -> String {
        let final = try writeAtomically(checkpoint, table: table, name: "\(checkpoint.metadata.globalStep)")
        prune()
        return final
    }

    /// `<directory>/best.h5`, the best checkpoint of `--keep-best` (never pruned).
    public var bestPath: String { (directory as NSString).appendingPathComponent("best.h5") }

    /// Writes `checkpoint` as `best.h5`, atomically like `write`; `--keep` never removes it.
    @discardableResult
    public func writeBest(_ checkpoint: Checkpoint, table: ParameterTable) throws(CheckpointError) -> String {
        try writeAtomically(checkpoint, table: table, name: "best")
    }

    /// Temporary file, fsync, rename over `ckpt-<name>.h5` (or `best.h5`), fsync the folder.
    private func writeAtomically(_ checkpoint: Checkpoint, table: ParameterTable, name: String) throws(CheckpointError) -> String {
        let final = name == "best" ? bestPath : path(forStep: checkpoint.metadata.globalStep)
        try CheckpointStore.validate(checkpoint, table: table, path: final)
        let temporary = (directory as NSString).appendingPathComponent(
            ".ckpt-\(name).h5.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do throws(CheckpointError) {
            try CheckpointStore.writeFile(checkpoint, table: table, to: temporary, checksums: checksums)
            try CheckpointStore.fsync(path: temporary, directory: false)
            if rename(temporary, final) != 0 {
                let code = errno
                throw CheckpointError(.io, path: final, expected: "to rename \(temporary) over it", found: String(cString: strerror(code)))
            }
            try CheckpointStore.fsync(path: directory, directory: true)
        } catch {
            unlink(temporary)
            throw error
        }
        return final
    }

    /// Deletes all but the newest `keep` checkpoints, and temporary files left behind by
    /// writers that no longer run (see `removeInterruptedWrites`).
    public func prune() {
        let all = list()
        for (_, old) in all.dropLast(keep) { unlink(old) }
        removeInterruptedWrites()
    }

    /// Deletes the temporary files of checkpoint writes whose writer is gone
    /// (`.ckpt-<name>.h5.tmp-<pid>-<n>` whose pid no longer exists): a crash interrupted them,
    /// and as they never carried a checkpoint name nothing ever read them. Returns their names.
    /// The one cleanup rule: the coordinator runs it at start, every write runs it after pruning.
    @discardableResult
    public func removeInterruptedWrites() -> [String] {
        var removed: [String] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasPrefix(".ckpt-") {
            guard let marker = name.range(of: ".h5.tmp-") else { continue }
            let rest = name[marker.upperBound...]
            guard let pid = Int32(rest.split(separator: "-").first ?? ""), pid > 0 else { continue }
            if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH,
               unlink((directory as NSString).appendingPathComponent(name)) == 0 {
                removed.append(name)
            }
        }
        return removed.sorted()
    }

    static func validate(_ c: Checkpoint, table: ParameterTable, path: String) throws(CheckpointError) {
        func bad(_ what: String, _ n: Int, _ expected: Int) -> CheckpointError {
            CheckpointError(.badRequest, path: path, expected: "\(what) of \(expected) floats (the ParameterTable's total)", found: "\(n)")
        }
        if c.parameters.count != table.totalCount { throw bad("parameters", c.parameters.count, table.totalCount) }
        if c.state.expAvg.count != table.totalCount { throw bad("exp_avg", c.state.expAvg.count, table.totalCount) }
        if c.state.expAvgSq.count != table.totalCount { throw bad("exp_avg_sq", c.state.expAvgSq.count, table.totalCount) }
        if c.metrics.loss.count != c.metrics.steps.count || (c.metrics.accuracy.map { $0.count != c.metrics.steps.count } ?? false) {
            throw CheckpointError(.badRequest, path: path, expected: "metrics loss/accuracy as long as steps (\(c.metrics.steps.count))",
                                  found: "loss \(c.metrics.loss.count), accuracy \(c.metrics.accuracy.map { String($0.count) } ?? "none")")
        }
        if c.metadata.globalStep < 0 {
            throw CheckpointError(.badRequest, path: path, expected: "a global step >= 0", found: "\(c.metadata.globalStep)")
        }
    }

    static func writeFile(_ c: Checkpoint, table: ParameterTable, to path: String, checksums: Bool) throws(CheckpointError) {
        do {
            let file = try HDF5File.create(path, checksummedMetadata: true)
            let root = try file.root()
            let m = c.metadata
            try root.setAttribute("format", checkpointFormat)
            try root.setAttribute("format_version", checkpointFormatVersion)
            try root.setAttribute("global_step", Int64(m.globalStep))
            try root.setAttribute("epoch", Int64(m.epoch))
            try root.setAttribute("step_in_epoch", Int64(m.stepInEpoch))
            try root.setAttribute("seed", m.seed)
            try root.setAttribute("world_size", Int64(m.worldSize))
            try root.setAttribute("config", m.configJSON)
            try root.setAttribute("rng_state", array: m.rngState)
            if !m.schedulerJSON.isEmpty { try root.setAttribute("lr_scheduler", m.schedulerJSON) }
            if !m.bestTrackerJSON.isEmpty { try root.setAttribute("best_tracker", m.bestTrackerJSON) }

            let options = HDF5DatasetOptions(chunks: nil, fletcher32: checksums)
            func writeTensors(_ group: HDF5Group, _ flat: [Float]) throws(HDF5Error) {
                for entry in table.entries {
                    try group.writeDataset(entry.name, shape: entry.shape, values: flat[entry.range], options: options)
                }
            }
            try writeTensors(try root.createGroup("model"), c.parameters)
            let optimizer = try root.createGroup("optimizer")
            let o = c.optimizer
            try optimizer.setAttribute("kind", o.kind.rawValue)
            try optimizer.setAttribute("lr", Double(o.lr))
            try optimizer.setAttribute("beta1", Double(o.beta1))
            try optimizer.setAttribute("beta2", Double(o.beta2))
            try optimizer.setAttribute("eps", Double(o.eps))
            try optimizer.setAttribute("weight_decay", Double(o.weightDecay))
            if let clip = o.clipNorm { try optimizer.setAttribute("clip_norm", Double(clip)) }
            try optimizer.setAttribute("step", Int64(c.state.stepCount))
            if o.kind == .sgd {
                // torch.optim.SGD's state name; exp_avg_sq is unused by SGD (zero) and not written.
                try optimizer.setAttribute("momentum", Double(o.momentum))
                try optimizer.setAttribute("nesterov", Int64(o.nesterov ? 1 : 0))
                try writeTensors(try optimizer.createGroup("momentum_buffer"), c.state.expAvg)
            } else {
                try writeTensors(try optimizer.createGroup("exp_avg"), c.state.expAvg)
                try writeTensors(try optimizer.createGroup("exp_avg_sq"), c.state.expAvgSq)
            }

            let metrics = try root.createGroup("metrics")
            let n = c.metrics.steps.count
            try metrics.writeDataset("step", shape: [n], values: c.metrics.steps.map { Int64($0) })
            try metrics.writeDataset("loss", shape: [n], values: c.metrics.loss)
            if let accuracy = c.metrics.accuracy { try metrics.writeDataset("accuracy", shape: [n], values: accuracy) }
            try file.flush()
            try file.close()
        } catch {
            throw CheckpointError(.io, path: path, expected: "to write the checkpoint", found: "an HDF5 error: \(error.innermostCause ?? error.call)", hdf5: error)
        }
    }

    static func fsync(path: String, directory: Bool) throws(CheckpointError) {
        let fd = open(path, directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
        if fd < 0 {
            let code = errno
            throw CheckpointError(.io, path: path, expected: "to open it for fsync", found: String(cString: strerror(code)))
        }
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 {
            let code = errno
            throw CheckpointError(.io, path: path, expected: "fsync to succeed", found: String(cString: strerror(code)))
        }
    }

    // MARK: reading

    /// Reads and checks a checkpoint against `table`: format, version, every tensor of the
    /// table present with its shape and no others, optimizer attributes, metrics.
    public static func read(path: String, table: ParameterTable) throws(CheckpointError) -> Checkpoint {
        if !FileManager.default.fileExists(atPath: path) {
            throw CheckpointError(.notFound, path: path, expected: "a checkpoint file", found: "no such file")
        }
        let file: HDF5File, root: HDF5Group
        do {
            if try !HDF5File.isHDF5(path: path) {
                throw CheckpointError(.damaged, path: path, expected: "an HDF5 checkpoint file", found: "a file without the HDF5 signature")
            }
            file = try HDF5File.open(path)
            root = try file.root()
        } catch let error as CheckpointError {
            throw error
        } catch let error as HDF5Error {
            throw CheckpointError(.damaged, path: path, expected: "a readable HDF5 checkpoint", found: "a damaged or truncated file", hdf5: error)
        } catch {
            throw CheckpointError(.damaged, path: path, expected: "a readable HDF5 checkpoint", found: "\(error)")
        }
        do {
            return try readContents(root: root, path: path, table: table)
        } catch let error as CheckpointError {
            throw error
        } catch let error as HDF5Error {
            throw CheckpointError(.damaged, path: path, expected: "a complete, undamaged checkpoint", found: "an HDF5 error: \(error.innermostCause ?? error.call)", hdf5: error)
        } catch {
            throw CheckpointError(.damaged, path: path, expected: "a readable checkpoint", found: "\(error)")
        }
    }

    private static func readContents(root: HDF5Group, path: String, table: ParameterTable) throws -> Checkpoint {
        guard try root.hasAttribute("format"), case .string(let format) = try root.attribute("format") else {
            throw CheckpointError(.foreign, path: path, expected: "root attribute format = \"\(checkpointFormat)\"", found: "an HDF5 file without it")
        }
        if format != checkpointFormat {
            throw CheckpointError(.foreign, path: path, expected: "format = \"\(checkpointFormat)\"", found: "format = \"\(format)\"")
        }
        let version = try root.integerAttribute("format_version")
        if version != checkpointFormatVersion {
            throw CheckpointError(.unsupportedVersion, path: path, expected: "format_version \(checkpointFormatVersion)", found: "format_version \(version)")
        }
        func int(_ object: HDF5Object, _ name: String) throws -> Int {
            guard try object.hasAttribute(name) else {
                throw CheckpointError(.mismatch, path: path, expected: "attribute '\(name)' on \(object.path)", found: "none")
            }
            return Int(try object.integerAttribute(name))
        }
        func float(_ object: HDF5Object, _ name: String) throws -> Float {
            guard try object.hasAttribute(name) else {
                throw CheckpointError(.mismatch, path: path, expected: "attribute '\(name)' on \(object.path)", found: "none")
            }
            return Float(try object.floatAttribute(name))
        }
        var rng: [UInt64] = []
        if try root.hasAttribute("rng_state"), case .integers(let words) = try root.attribute("rng_state") {
            rng = words.map { UInt64(bitPattern: $0) }
        }
        var metadata = CheckpointMetadata(
            globalStep: try int(root, "global_step"), epoch: try int(root, "epoch"), stepInEpoch: try int(root, "step_in_epoch"),
            seed: UInt64(bitPattern: Int64(try int(root, "seed"))), worldSize: try int(root, "world_size"),
            configJSON: try root.hasAttribute("config") ? try root.stringAttribute("config") : "", rngState: rng,
            schedulerJSON: try root.hasAttribute("lr_scheduler") ? try root.stringAttribute("lr_scheduler") : "")
        metadata.bestTrackerJSON = try root.hasAttribute("best_tracker") ? try root.stringAttribute("best_tracker") : ""

        func readTensors(_ groupPath: String) throws -> [Float] {
            guard try root.exists(groupPath) else {
                throw CheckpointError(.mismatch, path: path, expected: "group /\(groupPath)", found: "none")
            }
            let group = try root.openGroup(groupPath)
            var flat = [Float](repeating: 0, count: table.totalCount)
            let present = Set(try group.children().map { $0.name })
            let expected = Set(table.entries.map { $0.name })
            if let extra = present.subtracting(expected).sorted().first {
                throw CheckpointError(.mismatch, path: path, expected: "only the tensors of the model's ParameterTable in /\(groupPath)",
                                      found: "unexpected /\(groupPath)/\(extra)")
            }
            for entry in table.entries {
                guard present.contains(entry.name) else {
                    throw CheckpointError(.mismatch, path: path, expected: "tensor /\(groupPath)/\(entry.name)", found: "none (missing)")
                }
                let dataset = try group.openDataset(entry.name)
                if dataset.shape != entry.shape {
                    throw CheckpointError(.mismatch, path: path, expected: "/\(groupPath)/\(entry.name) of shape \(entry.shape)", found: "shape \(dataset.shape)")
                }
                try dataset.readRows(0..<max(dataset.rowCount, 0), into: &flat, at: entry.offset)
            }
            return flat
        }
        let parameters = try readTensors("model")
        guard try root.exists("optimizer") else {
            throw CheckpointError(.mismatch, path: path, expected: "group /optimizer", found: "none")
        }
        let optimizer = try root.openGroup("optimizer")
        let kindName = try optimizer.stringAttribute("kind")
        guard let kind = OptimizerKind(rawValue: kindName) else {
            throw CheckpointError(.mismatch, path: path, expected: "optimizer kind adam, adamw or sgd", found: "\"\(kindName)\"")
        }
        let clip: Float? = try optimizer.hasAttribute("clip_norm") ? try float(optimizer, "clip_norm") : nil
        let momentum: Float = try optimizer.hasAttribute("momentum") ? try float(optimizer, "momentum") : 0
        let nesterov = try optimizer.hasAttribute("nesterov") ? try int(optimizer, "nesterov") != 0 : false
        let config = OptimizerConfig(kind: kind, lr: try float(optimizer, "lr"), beta1: try float(optimizer, "beta1"),
                                     beta2: try float(optimizer, "beta2"), eps: try float(optimizer, "eps"),
                                     weightDecay: try float(optimizer, "weight_decay"), clipNorm: clip,
                                     momentum: momentum, nesterov: nesterov)
        let state: TrainingState
        if kind == .sgd {
            state = TrainingState(parameters: parameters, expAvg: try readTensors("optimizer/momentum_buffer"),
                                  expAvgSq: [Float](repeating: 0, count: table.totalCount), stepCount: try int(optimizer, "step"))
        } else {
            state = TrainingState(parameters: parameters, expAvg: try readTensors("optimizer/exp_avg"),
                                  expAvgSq: try readTensors("optimizer/exp_avg_sq"), stepCount: try int(optimizer, "step"))
        }
        var metrics = MetricsHistory()
        if try root.exists("metrics/step") {
            let group = try root.openGroup("metrics")
            metrics.steps = try group.openDataset("step").read(as: Int64.self).map { Int($0) }
            metrics.loss = try group.exists("loss") ? try group.openDataset("loss").read(as: Float.self) : []
            if try group.exists("accuracy") { metrics.accuracy = try group.openDataset("accuracy").read(as: Float.self) }
            if metrics.loss.count != metrics.steps.count {
                throw CheckpointError(.mismatch, path: path, expected: "/metrics/loss as long as /metrics/step (\(metrics.steps.count))", found: "\(metrics.loss.count)")
            }
        }
        return Checkpoint(metadata: metadata, optimizer: config, state: state, metrics: metrics)
    }

    /// The newest checkpoint of the folder that reads and matches `table`; newer files that
    /// fail are skipped with a warning each.
    public func newest(table: ParameterTable) -> CheckpointSearch {
        var warnings: [String] = []
        for (_, candidate) in list().reversed() {
            do {
                let checkpoint = try CheckpointStore.read(path: candidate, table: table)
                return CheckpointSearch(checkpoint: checkpoint, path: candidate, warnings: warnings)
            } catch {
                warnings.append("skipping \(candidate): \(error.description.split(separator: "\n").first ?? "")")
            }
        }
        return CheckpointSearch(checkpoint: nil, path: nil, warnings: warnings)
    }

    /// The `config` attribute (JSON) of the newest checkpoint in `directory` that has one,
    /// without checking its tensors: what a folder's checkpoints hold when they do not fit
    /// the model at hand. nil when the folder has no readable checkpoint.
    public static func newestStoredConfig(in directory: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
              let store = try? CheckpointStore(directory: directory) else { return nil }
        for (_, candidate) in store.list().reversed() {
            guard (try? HDF5File.isHDF5(path: candidate)) == true, let file = try? HDF5File.open(candidate),
                  let root = try? file.root(), (try? root.hasAttribute("config")) == true,
                  let json = try? root.stringAttribute("config") else { continue }
            return json
        }
        return nil
    }

    /// `newest(table:)` of the folder `directory` without creating it.
    public static func newest(in directory: String, table: ParameterTable) -> CheckpointSearch {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
              let store = try? CheckpointStore(directory: directory) else {
            return CheckpointSearch(checkpoint: nil, path: nil, warnings: ["\(directory): expected a folder of checkpoints, found none"])
        }
        return store.newest(table: table)
    }
}
