// rnn-bench dispatcher. `rnn-bench hdf5 ...` runs the HDF5 benchmark (HDF5Benchmark.swift).
import Foundation

let benchArguments = Array(CommandLine.arguments.dropFirst())
switch benchArguments.first {
case "hdf5":
    exit(runHDF5Benchmark(arguments: Array(benchArguments.dropFirst())))
default:
    print("rnn-bench: not built yet")
}
