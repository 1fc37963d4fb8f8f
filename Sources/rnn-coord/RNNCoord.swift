// rnn-coord: the coordinator's command line. Parses flags, builds the config, calls RNNDistributed.
import ArgumentParser
import Foundation
import RNNCore
import RNNDistributed

@main
struct RNNCoord: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnn-coord",
        abstract: "Coordinate data-parallel training of an RNN/LSTM/GRU across rnn-worker processes.",
        version: "0.1.0",
        subcommands: [Start.self, Eval.self, Predict.self, Generate.self, Plot.self, Keygen.self]
    )
}

extension CellKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
