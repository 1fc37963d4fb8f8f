import Foundation

let benchArgs = Array(CommandLine.arguments.dropFirst())
switch benchArgs.first {
case "allreduce", "allreduce-rank":
    exit(allReduceBenchmarkMain(benchArgs))
default:
    print("rnn-bench: not built yet")
}
