// rnn-bench: performance benchmarks (not tests); each subcommand lives in its own file.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let benchArguments = Array(CommandLine.arguments.dropFirst())

/// Prints the problem and the usage, exits with status 2.
func benchUsage(_ problem: String) -> Never {
    print("rnn-bench: \(problem)\nusage: rnn-bench gemm [--threads N]")
    exit(2)
}

switch benchArguments.first {
case "gemm":
    runGemmBenchmarkCommand(Array(benchArguments.dropFirst()))
case let other?:
    benchUsage("unknown subcommand '\(other)'")
case nil:
    benchUsage("missing subcommand")
}
