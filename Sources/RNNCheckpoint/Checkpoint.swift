// Checkpoint contents and errors. File layout (format_version 1):
//
//   ckpt-<global_step>.h5   root attrs: format = "rnn-trainer-checkpoint", format_version = 1,
//                           global_step, epoch, step_in_epoch, seed, world_size,
//                           config (JSON string), rng_state (uint64 array)
//                           [, lr_scheduler (JSON of RNNCore.LRScheduler: the schedule's state)]
//                           [, best_tracker (JSON: --keep-best / --early-stopping's best epoch)]
//     /model/<torch key>             float32, PyTorch shape (e.g. /model/rnn.weight_ih_l0 (G*H, I))
//     /optimizer                     attrs kind (adam|adamw|sgd), lr, beta1, beta2, eps, weight_decay,
//                                    step [, clip_norm] [, momentum, nesterov (sgd)]
//     /optimizer/exp_avg/<key>       float32, same shape as the parameter (adam, adamw)
//     /optimizer/exp_avg_sq/<key>
//     /optimizer/momentum_buffer/<key>   (sgd, instead of exp_avg and exp_avg_sq)
//     /metrics/step (int64), /metrics/loss (float32) [, /metrics/accuracy (float32)]
//
// Loading into PyTorch (three lines of h5py):
//   with h5py.File(path) as f:
//       state = {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}
//   model.load_state_dict(state)

import Foundation
import RNNCore
import RNNHDF5

/// The `format` root attribute of every checkpoint.
public let checkpointFormat = "rnn-trainer-checkpoint"
/// The `format_version` this code writes and reads.
public let checkpointFormatVersion: Int64 = 1

/// Where training stood when the checkpoint was taken.
public struct CheckpointMetadata: Sendable, Equatable {
    public var globalStep: Int
    public var epoch: Int
    /// Steps of `epoch` already done (the next step to run).
    public var stepInEpoch: Int
    public var seed: UInt64
    public var worldSize: Int
    /// The run's configuration as a JSON string (see `encodeConfig`).
    public var configJSON: String
    /// RNG state words (e.g. `SeededGenerator.state` as [s0, s1]); may be empty.
    public var rngState: [UInt64]
    /// The learning-rate scheduler's state as JSON (`RNNCore.LRScheduler`); "" when the run has none.
    public var schedulerJSON: String = ""
    /// --keep-best / --early-stopping state as JSON (`RNNDistributed.BestTracker`); "" without.
    public var bestTrackerJSON: String = ""

    public init(globalStep: Int, epoch: Int, stepInEpoch: Int, seed: UInt64, worldSize: Int, configJSON: String, rngState: [UInt64] = [],
                schedulerJSON: String = "", bestTrackerJSON: String = "") {
        self.schedulerJSON = schedulerJSON
        self.bestTrackerJSON = bestTrackerJSON
        self.globalStep = globalStep
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.seed = seed
        self.worldSize = worldSize
        self.configJSON = configJSON
        self.rngState = rngState
    }

    /// JSON of a Codable configuration, keys sorted (stable across runs).
    public static func encodeConfig<C: Encodable>(_ config: C) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(config), as: UTF8.self)
    }

    /// Decodes `configJSON` as `C`.
    public func decodeConfig<C: Decodable>(_ type: C.Type) throws -> C {
        try JSONDecoder().decode(C.self, from: Data(configJSON.utf8))
    }
}

/// Loss (and accuracy) history, to re-plot the loss curve.
public struct MetricsHistory: Sendable, Equatable {
    public var steps: [Int]
    public var loss: [Float]
    /// Same length as `steps` when present.
    public var accuracy: [Float]?

    public init(steps: [Int] = [], loss: [Float] = [], accuracy: [Float]? = nil) {
        self.steps = steps
        self.loss = loss
        self.accuracy = accuracy
    }
}

/// Everything a checkpoint holds.
public struct Checkpoint: Sendable, Equatable {
    public var metadata: CheckpointMetadata
    /// The optimizer's settings (kind, lr, betas, ...), stored as attributes of /optimizer.
    public var optimizer: OptimizerConfig
    /// Parameters, optimizer moments and step count: RNNCore's `TrainingState`, the same value
    /// a replica holds and WELCOME/STATE carry. Flat buffers laid out by the ParameterTable.
    public var state: TrainingState
    public var metrics: MetricsHistory

    /// The flat parameter buffer (`state.parameters`).
    public var parameters: [Float] { state.parameters }

    public init(metadata: CheckpointMetadata, optimizer: OptimizerConfig, state: TrainingState, metrics: MetricsHistory = MetricsHistory()) {
        self.metadata = metadata
        self.optimizer = optimizer
        self.state = state
        self.metrics = metrics
    }
}

/// A checkpoint that cannot be written or used.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// No such file or folder.
        case notFound
        /// Not an HDF5 file, or truncated/damaged so that HDF5 cannot read it (or a checksum failed).
        case damaged
        /// An HDF5 file that is not one of our checkpoints (no or another `format`).
        case foreign
        /// A checkpoint of a format version this code does not read.
        case unsupportedVersion
        /// Tensors or attributes do not match the expected ParameterTable/layout.
        case mismatch
        /// Arguments that cannot be written (buffer sizes, metrics lengths).
        case badRequest
        /// Writing, syncing or renaming failed.
        case io
    }

    public var kind: Kind
    public var path: String
    public var expected: String
    public var found: String
    public var hdf5: HDF5Error?

    public init(_ kind: Kind, path: String, expected: String, found: String, hdf5: HDF5Error? = nil) {
        self.kind = kind
        self.path = path
        self.expected = expected
        self.found = found
        self.hdf5 = hdf5
    }

    public var description: String {
        var text = "\(path): expected \(expected), found \(found)"
        if let hdf5 { text += "\n" + hdf5.description }
        return text
    }
}
