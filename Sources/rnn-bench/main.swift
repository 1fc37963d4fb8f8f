// rnn-bench: performance benchmarks (not tests); each subcommand calls one function.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let arguments = Array(CommandLine.arguments.dropFirst())

func usage(_ problem: String) -> Never {
    print("""
        rnn-bench: \(problem)
        usage: rnn-bench gemm [--threads N]
               rnn-bench train [--threads N] [--config NAME[,NAME]] [--seconds S]
               rnn-bench distributed [--config NAME[,NAME]] [--seconds S] [--workers W] [--repeats R] [--bin DIR]
        """)
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

func stringOption(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name) else { return nil }
    guard i + 1 < arguments.count else { usage("'\(name)' expects a value, found nothing") }
    return arguments[i + 1]
}

switch arguments.first {
case "gemm":
    let direct = arguments.contains("--direct-a") ? intOption("--direct-a", default: 256) : nil
    runGemmBenchmark(threads: intOption("--threads", default: 1), directAMaxColumns: direct)
case "train":
    let seconds = stringOption("--seconds").map { text -> Double in
        guard let s = Double(text), s > 0 else { usage("'--seconds' expects a positive number, found '\(text)'") }
        return s
    } ?? 3
    runTrainBenchmark(threads: intOption("--threads", default: 1), only: stringOption("--config"), seconds: seconds)
case "distributed":
    let seconds = stringOption("--seconds").map { text -> Double in
        guard let s = Double(text), s > 0 else { usage("'--seconds' expects a positive number, found '\(text)'") }
        return s
    } ?? 12
    runDistributedBenchmark(only: stringOption("--config"), seconds: seconds, workers: intOption("--workers", default: 2),
                            repeats: intOption("--repeats", default: 1), binDirectory: stringOption("--bin"))
case let other?:
    usage("unknown subcommand '\(other)'")
case nil:
    usage("missing subcommand")
}
