// rnn-bench: performance benchmarks (not tests); each subcommand calls one function.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let arguments = Array(CommandLine.arguments.dropFirst())

func usage(_ problem: String) -> Never {
    print("rnn-bench: \(problem)\nusage: rnn-bench gemm [--threads N] [--only NAME-PART] [--direct-a MAX-COLUMNS]")
    exit(2)
}

func intOption(_ name: String, default value: Int) -> Int {
    guard let i = arguments.firstIndex(of: name) else { return value }
    let found = i + 1 < arguments.count ? "'\(arguments[i + 1])'" : "nothing"
    guard i + 1 < arguments.count, let v = Int(arguments[i + 1]), v >= 1 else {
        usage("'\(name)' expects a positive integer, found \(found)")
    }
    return v
}

switch arguments.first {
case "gemm":
    let direct = arguments.contains("--direct-a") ? intOption("--direct-a", default: 256) : nil
    let only = arguments.firstIndex(of: "--only").flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
    runGemmBenchmark(threads: intOption("--threads", default: 1), directAMaxColumns: direct, only: only)
case let other?:
    usage("unknown subcommand '\(other)'")
case nil:
    usage("missing subcommand")
}
