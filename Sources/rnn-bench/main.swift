// rnn-bench: performance benchmarks (not tests); each subcommand calls one function.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let benchArguments = Array(CommandLine.arguments.dropFirst())
let benchArgs = benchArguments
let arguments = benchArguments

/// Prints the problem and the usage, exits with status 2.
func benchUsage(_ problem: String) -> Never {
    print("""
        rnn-bench: \(problem)
        usage: rnn-bench gemm [--threads N]
               rnn-bench train [--threads N] [--config NAME[,NAME]] [--seconds S] [--steps N] [--batch N]
               rnn-bench hdf5 [options]
               rnn-bench allreduce [options]
               rnn-bench probe [--seconds S] [--comment]
               rnn-bench scaling [--fit FILE] [--validate FILE] [--alpha-us A] [--rows N] [--overlap F] [--compress bf16] [--worlds 1,2,..] [--links 1,10,25] [--png FILE] [--config NAME[,NAME]]
               rnn-bench distributed [--config NAME[,NAME]] [--seconds S] [--workers W] [--repeats R] [--bin DIR] [--spin US] [--steps-per-message N] [--balance]
        """)
    exit(2)
}

func usage(_ problem: String) -> Never { benchUsage(problem) }

func intOption(_ name: String, default value: Int) -> Int {
    guard let i = arguments.firstIndex(of: name) else { return value }
    let found = i + 1 < arguments.count ? "'\(arguments[i + 1])'" : "nothing"
    guard i + 1 < arguments.count, let v = Int(arguments[i + 1]), v >= 1 else {
        usage("'\(name)' expects a positive integer, found \(found)")
    }
    return v
}

/// `--seconds S` as a positive number, or `value` when absent.
func secondsOption(default value: Double) -> Double {
    stringOption("--seconds").map { text -> Double in
        guard let s = Double(text), s > 0 else { usage("'--seconds' expects a positive number, found '\(text)'") }
        return s
    } ?? value
}

func stringOption(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name) else { return nil }
    guard i + 1 < arguments.count else { usage("'\(name)' expects a value, found nothing") }
    return arguments[i + 1]
}

switch benchArguments.first {
case "gemm":
    runGemmBenchmarkCommand(Array(benchArguments.dropFirst()))
case "train":
    let trainOptions: Set<String> = ["--threads", "--config", "--seconds", "--steps", "--batch"]
    var index = 1
    while index < arguments.count {
        guard trainOptions.contains(arguments[index]) else {
            usage("'train' does not take '\(arguments[index])' (options: --threads N, --config NAME[,NAME], --seconds S, --steps N, --batch N)")
        }
        index += 2
    }
    let seconds = secondsOption(default: 3)
    let steps = arguments.contains("--steps") ? intOption("--steps", default: 1) : nil
    runTrainBenchmark(threads: intOption("--threads", default: 1), only: stringOption("--config"), seconds: seconds,
                      fixedSteps: steps, batch: arguments.contains("--batch") ? intOption("--batch", default: 1) : nil)
case "distributed":
    let seconds = secondsOption(default: 12)
    runDistributedBenchmark(only: stringOption("--config"), seconds: seconds, workers: intOption("--workers", default: 2),
                            repeats: intOption("--repeats", default: 1), binDirectory: stringOption("--bin"),
                            extraArguments: ["--spin", "--steps-per-message"].flatMap { flag in
                                stringOption(flag).map { text -> [String] in
                                    guard let n = Int(text), n >= 0 else { usage("'\(flag)' expects an integer >= 0, found '\(text)'") }
                                    return [flag, "\(n)"]
                                } ?? []
                            } + (arguments.contains("--balance") ? ["--balance"] : []))
case "probe":
    var probeIndex = 1
    while probeIndex < arguments.count {
        switch arguments[probeIndex] {
        case "--seconds": probeIndex += 2
        case "--comment": probeIndex += 1
        default: usage("'probe' does not take '\(arguments[probeIndex])' (options: --seconds S, --comment)")
        }
    }
    let seconds = secondsOption(default: 0.5)
    runProbe(seconds: seconds, comment: arguments.contains("--comment"))
case "hdf5":
    exit(runHDF5Benchmark(arguments: Array(benchArguments.dropFirst())))
case "scaling":
    exit(runScalingCommand(Array(benchArguments.dropFirst())))
case "allreduce", "allreduce-rank":
    exit(allReduceBenchmarkMain(benchArgs))
case let other?:
    benchUsage("unknown subcommand '\(other)'")
case nil:
    benchUsage("missing subcommand")
}
