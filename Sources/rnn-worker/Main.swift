// The entry point: a wrong flag gets a one-line error with a hint.
import RNNReport

extension RNNWorkerCommand {
    static func main() {
        CommandRunner.main(RNNWorkerCommand.self, arguments: Array(CommandLine.arguments.dropFirst()))
    }
}
