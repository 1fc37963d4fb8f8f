// rnn-bench: performance benchmarks (not tests); each subcommand calls one function.
import ArgumentParser
import RNNReport

struct RNNBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnn-bench",
        abstract: "Performance benchmarks (not tests) of GEMM, training steps, HDF5, all-reduce and multi-process training.",
        subcommands: [GemmCommand.self, TrainCommand.self, HDF5Command.self, AllReduceCommand.self, AllReduceRankCommand.self,
                      ProbeCommand.self, ScalingCommand.self, DistributedCommand.self]
    )
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Samples/s and GFLOP/s of a full training step (forward, loss, backward, Adam) per configuration.")

    @Option(parsing: .unconditional, help: "Compute threads (GEMMs and the recurrent steps).") var threads = 1
    @Option(help: ArgumentHelp("Configurations, comma-separated (default: all): \(trainBenchConfigNames()).", valueName: "name[,name]"))
    var config: String?
    @Option(parsing: .unconditional, help: "Seconds per configuration, after a warm-up step.") var seconds = 3.0
    @Option(parsing: .unconditional, help: "Exactly this many timed steps instead of --seconds (no FMA probe).") var steps: Int?
    @Option(parsing: .unconditional, help: "Batch size of every configuration (default: each configuration's own).") var batch: Int?

    func validate() throws {
        try requireAtLeast(1, "--threads", threads)
        try requireKnownConfigs(config)
        try requirePositive("--seconds", seconds)
        try requireAtLeast(1, "--steps", steps)
        try requireAtLeast(1, "--batch", batch)
    }

    func run() {
        runTrainBenchmark(threads: threads, only: config, seconds: seconds, fixedSteps: steps, batch: batch)
    }
}

struct DistributedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distributed",
        abstract: "Samples/s of real multi-process training (rnn-coord start --local-workers W --threads 1) at 1 and W workers.")

    @Option(help: ArgumentHelp("Configurations, comma-separated (default: all): \(trainBenchConfigNames()).", valueName: "name[,name]"))
    var config: String?
    @Option(parsing: .unconditional, help: "About this many seconds per run.") var seconds = 12.0
    @Option(parsing: .unconditional, help: "Workers W of the multi-worker run.") var workers = 2
    @Option(parsing: .unconditional, help: "Runs per configuration and W (the best counts).") var repeats = 1
    @Option(help: ArgumentHelp("Folder of rnn-coord and rnn-worker (default: this executable's).", valueName: "dir")) var bin: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Passed to rnn-coord start.", valueName: "us")) var spin: Int?
    @Option(parsing: .unconditional, help: "Passed to rnn-coord start.") var stepsPerMessage: Int?
    @Flag(help: "Passed to rnn-coord start.") var balance = false

    func validate() throws {
        try requireKnownConfigs(config)
        try requirePositive("--seconds", seconds)
        try requireAtLeast(1, "--workers", workers)
        try requireAtLeast(1, "--repeats", repeats)
        try requireAtLeast(0, "--spin", spin)
        try requireAtLeast(0, "--steps-per-message", stepsPerMessage)
    }

    func run() {
        let extraArguments = (spin.map { ["--spin", "\($0)"] } ?? []) + (stepsPerMessage.map { ["--steps-per-message", "\($0)"] } ?? [])
            + (balance ? ["--balance"] : [])
        runDistributedBenchmark(only: config, seconds: seconds, workers: workers, repeats: repeats, binDirectory: bin,
                                extraArguments: extraArguments)
    }
}

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "GFLOP/s of a register-only FMA loop on 1 thread, then on 2 at once (what a core delivers right now).")

    @Option(parsing: .unconditional, help: "Seconds per measurement.") var seconds = 0.5
    @Flag(help: "Print the line as a '#' comment.") var comment = false

    func validate() throws {
        try requirePositive("--seconds", seconds)
    }

    func run() {
        runProbe(seconds: seconds, comment: comment)
    }
}

/// The names `--config` takes.
func trainBenchConfigNames() -> String { trainBenchConfigs.map(\.name).joined(separator: ", ") }

/// Throws "Please specify 'FLAG' of at least MINIMUM, found VALUE." when a given `value` is smaller.
func requireAtLeast(_ minimum: Int, _ flag: String, _ value: Int?) throws {
    guard let value, value < minimum else { return }
    throw ValidationError(minimum == 0 ? "Please specify '\(flag)' of 0 or more, found \(value)."
                                       : "Please specify '\(flag)' of at least \(minimum), found \(value).")
}

/// Throws "Please specify a positive 'FLAG', found VALUE." unless `value` is positive and finite.
func requirePositive(_ flag: String, _ value: Double) throws {
    if !(value > 0) || !value.isFinite { throw ValidationError("Please specify a positive '\(flag)', found \(value).") }
}

/// Throws unless every name of the comma-separated `names` is one of `trainBenchConfigs`.
func requireKnownConfigs(_ names: String?) throws {
    guard let names else { return }
    let known = Set(trainBenchConfigs.map(\.name))
    if let unknown = names.split(separator: ",").map(String.init).first(where: { !known.contains($0) }) {
        throw ValidationError("Please specify '--config' from \(trainBenchConfigNames()), found '\(unknown)'.")
    }
}

/// A wrong flag or value gets one error line (and a hint), as in the other programs.
CommandRunner.main(RNNBench.self, arguments: Array(CommandLine.arguments.dropFirst()))
