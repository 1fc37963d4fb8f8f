// `rnn-coord start`'s flags in groups (data, model, optimizer, run, network, security, output;
// schedule, report and validation in TrainingOptions.swift). Each group checks its own flags;
// the coordinator's numbers are checked by RNNDistributed's `CoordinatorLimits`, the one rule
// set the library applies too.
import ArgumentParser
import Foundation
import Logging
import RNNCore
import RNNDistributed
import RNNReport

struct DataFlags: ParsableArguments {
    @Option(name: .customLong("data"), parsing: .upToNextOption, help: "Training HDF5 file(s), concatenated in order.")
    var data: [String] = []
    @Option(name: .customLong("val"), parsing: .upToNextOption, help: "Validation HDF5 file(s), evaluated after each epoch.")
    var val: [String] = []
    @Option(name: .customLong("x-name"), help: "Name of the features dataset in each file.")
    var xName = "X"
    @Option(name: .customLong("y-name"), help: "Name of the targets dataset in each file.")
    var yName = "Y"

    func validate() throws {
        if data.isEmpty { throw ValidationError("Please specify '--data' with at least one HDF5 file.") }
    }
}

struct ModelFlags: ParsableArguments {
    @Option(help: "Recurrent cell: rnn_tanh, rnn_relu, lstm or gru.")
    var cell: CellKind = .lstm
    @Option(parsing: .unconditional, help: "Hidden units per layer.")
    var hidden = 128
    @Option(parsing: .unconditional, help: "Stacked recurrent layers.")
    var layers = 1
    /// --embedding, --padding-idx, --bidirectional, --dropout, --lengths-name (ModelOptions.swift).
    @OptionGroup var options: ModelOptions

    func validate() throws {
        if hidden < 1 { throw ValidationError("Please specify '--hidden' of at least 1.") }
        if layers < 1 { throw ValidationError("Please specify '--layers' of at least 1.") }
    }
}

struct OptimizerFlags: ParsableArguments {
    @Option(help: "Optimizer: adam, adamw or sgd.")
    var optimizer: OptimizerKind = .adam
    @Option(parsing: .unconditional, help: "Learning rate.")
    var lr: Float = 1e-3
    @Option(parsing: .unconditional, help: "Adam beta1.")
    var beta1: Float = 0.9
    @Option(parsing: .unconditional, help: "Adam beta2.")
    var beta2: Float = 0.999
    @Option(parsing: .unconditional, help: "Adam eps.")
    var eps: Float = 1e-8
    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: "Weight decay (L2 for adam, decoupled for adamw; default 0 / 0.01).")
    var weightDecay: Float?
    @Option(name: .customLong("clip-norm"), parsing: .unconditional, help: "Clip the global gradient norm to this value.")
    var clipNorm: Float?

    func validate() throws {
        if !(lr > 0) || !lr.isFinite { throw ValidationError("Please specify a positive '--lr', found \(lr).") }
        for (flag, beta) in [("--beta1", beta1), ("--beta2", beta2)] where !(beta >= 0 && beta < 1) {
            throw ValidationError("Please specify '\(flag)' in [0, 1), found \(beta).")
        }
        if !(eps > 0) || !eps.isFinite { throw ValidationError("Please specify a positive '--eps', found \(eps).") }
        if let w = weightDecay, !(w >= 0) || !w.isFinite { throw ValidationError("Please specify '--weight-decay' of 0 or more, found \(w).") }
        if let c = clipNorm, !(c > 0) || !c.isFinite { throw ValidationError("Please specify a positive '--clip-norm', found \(c).") }
    }

    func config(momentum: Float, nesterov: Bool) -> OptimizerConfig {
        OptimizerConfig(kind: optimizer, lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, clipNorm: clipNorm,
                        momentum: momentum, nesterov: nesterov)
    }
}

struct RunFlags: ParsableArguments {
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "The global batch size (split among the workers).")
    var batchSize = 64
    @Option(parsing: .unconditional, help: "Epochs to train.")
    var epochs = 10
    @Option(name: .customLong("max-steps"), parsing: .unconditional, help: "Stop after this many global steps in total.")
    var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Seed of the initial parameters and the shuffling.")
    var seed: UInt64 = 0
    @Flag(help: "Shuffle the samples each epoch (a seeded permutation).")
    var shuffle = false
    @Flag(name: .customLong("drop-last"), help: "Drop the last incomplete batch of each epoch.")
    var dropLast = false
    @Option(name: .customLong("checkpoint-dir"), help: "Folder for checkpoints, metrics.jsonl, loss.png and config.yaml.")
    var checkpointDir: String?
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: "A checkpoint every N global steps (0: only at the end).")
    var checkpointEvery = 0
    @Option(parsing: .unconditional, help: "Checkpoints to keep.")
    var keep = 3
    @Option(help: "Continue from the newest valid checkpoint in this folder.")
    var resume: String?

    func validate() throws {
        if batchSize < 1 { throw ValidationError("Please specify '--batch-size' of at least 1.") }
        if epochs < 1 { throw ValidationError("Please specify '--epochs' of at least 1.") }
        if let m = maxSteps, m < 1 { throw ValidationError("Please specify '--max-steps' of at least 1, found \(m).") }
        try validateFolders()
    }

    /// --checkpoint-dir must be (or become) a folder, --resume must be one.
    private func validateFolders() throws {
        var isDirectory: ObjCBool = false
        if let dir = checkpointDir, FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ValidationError("Please specify '--checkpoint-dir' as a folder: \(dir) is a file.")
        }
        if let dir = resume {
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) else {
                throw ValidationError("Please specify '--resume' as a run folder with checkpoints: \(dir) does not exist.")
            }
            if !isDirectory.boolValue { throw ValidationError("Please specify '--resume' as a run folder with checkpoints: \(dir) is a file.") }
        }
    }
}

struct NetworkFlags: ParsableArguments {
    @Option(parsing: .unconditional, help: "Workers that must join before training starts (default: --local-workers).")
    var workers: Int?
    @Option(name: .customLong("local-workers"), parsing: .unconditional, help: "Start this many rnn-worker processes on this machine.")
    var localWorkers = 0
    @Option(parsing: .unconditional, help: "Compute threads per worker: GEMMs and the recurrent steps (split by hidden units); the results do not depend on it.")
    var threads = 1
    @Option(help: "Control endpoint to bind (port * picks a free one).")
    var bind = "tcp://127.0.0.1:5555"
    @Option(name: .customLong("join-timeout"), parsing: .unconditional, help: "Seconds to wait for the workers to join.")
    var joinTimeout: Double = 120
    @Option(name: .customLong("step-timeout"), parsing: .unconditional, help: "Seconds to wait for the workers' results of one step.")
    var stepTimeout: Double = 600
    @Option(parsing: .unconditional, help: "Microseconds a wait for a worker's message (in local workers: for a ring frame) keeps polling, yielding the CPU between tries, before it sleeps (0: sleep at once).")
    var spin = 100
    @Option(name: .customLong("steps-per-message"), parsing: .unconditional, help: "At most this many consecutive short steps per assignment and per report (as many as take ~1 ms; 1: a message per step).")
    var stepsPerMessage = 8
    @Flag(help: "Split each step's rows among the workers in proportion to their measured speed (a slower or busier machine gets fewer rows); runs are then not bitwise reproducible.")
    var balance = false
    @Option(help: "Gradients between workers: none (float32) or bf16 (bfloat16 on the wire, half the bytes; each chunk summed in float32 at its owner; W workers then match 1 worker only to bf16 rounding).")
    var compress: GradientCompression = .none
    @Flag(name: .customLong("flat-allreduce"), help: "Run every worker in the flat all-reduce even when several share a host (default: workers of one host sum over ipc:// first and one leader per host joins the inter-host all-reduce).")
    var flatAllreduce = false
    @Flag(name: .customLong("no-overlap"), help: "All-reduce the gradient buckets only after the whole backward (default: each layer's bucket, the head first, leaves as soon as its backward is done, while the layers below still compute; the same bits either way).")
    var noOverlap = false
    @Option(name: .customLong("allreduce-crossover"), help: ArgumentHelp("Where the all-reduce of 3 or more workers switches from recursive doubling to halving-doubling to the ring: measured (over each new ring, before its first step), fixed (the documented constants), or RD,HD in bytes (as the workers' log line of a measured run names them, to repeat its bits).", valueName: "measured|fixed|RD,HD"), transform: parseCrossover)
    var allreduceCrossover: CrossoverChoice = .measured
    // Fault tolerance (see Heartbeat.swift in RNNDistributed).
    @Option(name: .customLong("heartbeat-interval"), parsing: .unconditional, help: "Seconds between heartbeats, both ways.")
    var heartbeatInterval: Double = 1
    @Option(name: .customLong("heartbeat-timeout"), parsing: .unconditional, help: "A worker silent this long is declared lost; the ring is re-formed without it.")
    var heartbeatTimeout: Double = 10
    @Option(name: .customLong("min-workers"), parsing: .unconditional, help: "Below this many live workers: write a checkpoint and stop with an error.")
    var minWorkers = 1

    func validate() throws {
        if localWorkers < 0 { throw ValidationError("Please specify '--local-workers' of 0 or more.") }
        if workers == nil && localWorkers == 0 { throw ValidationError("Please specify '--workers' (remote workers) or '--local-workers' (started here).") }
        if let w = workers, w >= 1, localWorkers > w { throw ValidationError("'--local-workers' (\(localWorkers)) cannot exceed '--workers' (\(w)).") }
        if threads < 1 { throw ValidationError("Please specify '--threads' of at least 1.") }
    }
}

func parseCrossover(_ text: String) throws -> CrossoverChoice {
    guard let choice = CrossoverChoice(argument: text) else {
        throw ValidationError("expected measured, fixed or two byte counts RD,HD with RD <= HD (such as 65536,1048576), found '\(text)'")
    }
    return choice
}

struct SecurityFlags: ParsableArguments {
    @Option(name: .customLong("curve-key"), help: "The coordinator's CURVE key file (NAME.key from `rnn-coord keygen`): encrypts and authenticates.")
    var curveKey: String?
    @Option(name: .customLong("allow"), help: "With --curve-key: file of the workers' public keys allowed to join (one per line).")
    var allow: String?
    @Option(help: "The run token workers must present (default: random, written to a user-only file for local workers).")
    var token: String?
    @Flag(help: "Allow binding to a non-loopback address without CURVE keys.")
    var insecure = false

    func validate() throws {
        if (curveKey == nil) != (allow == nil) { throw ValidationError("Please specify '--curve-key' and '--allow' together.") }
    }

    /// --token, --insecure, --curve-key/--allow.
    func apply(to options: inout CoordinatorOptions) throws {
        options.token = token
        options.insecure = insecure
        if let curveKey, let allow {
            options.curve = try CurveServerConfig.load(keyFile: curveKey, allowFile: allow)
        }
    }
}

struct OutputFlags: ParsableArguments {
    @Option(help: "A YAML file of flag values (keys are long flag names, e.g. 'batch-size: 32'); flags typed here override it.")
    var config: String?
    @Flag(help: "Print only warnings and errors (no progress, no summary).")
    var quiet = false
    @Option(name: .customLong("log-format"), help: "text (a live progress bar on a terminal, plain lines otherwise) or json (one JSON object per line).")
    var logFormat: LogFormat = .text
    @Option(name: .customLong("log-level"), help: "Lowest log level shown: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "A progress line every N steps (0: one line per epoch).")
    var logEvery = 0
    @Flag(name: .customLong("no-plot"), help: "Do not write the loss/accuracy curve (loss.png) next to the checkpoints.")
    var noPlot = false

    func validate() throws {
        if logEvery < 0 { throw ValidationError("Please specify '--log-every' of 0 or more, found \(logEvery).") }
    }
}
