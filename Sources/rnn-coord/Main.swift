// The entry point: a run config file (`start --config FILE`) becomes flags (the ones typed on the
// command line win), and a wrong flag gets a one-line error with a hint.
import ArgumentParser
import Foundation
import RNNReport

extension RNNCoord {
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        do {
            arguments = try expandConfigFile(arguments)
        } catch {
            FileHandle.standardError.write(Data("rnn-coord start: error: \(error)\nHint: keys are the long flags of 'rnn-coord start --help', e.g. 'batch-size: 32'.\n".utf8))
            Foundation.exit(64)
        }
        CommandRunner.main(RNNCoord.self, arguments: arguments)
    }

    /// `start ... --config run.yaml ...` -> `start <flags from run.yaml not typed> ...`.
    /// `start --resume DIR` without `--config` reads DIR/config.yaml (the settings of the run
    /// being continued), and its checkpoints stay in DIR unless `--checkpoint-dir` is typed.
    static func expandConfigFile(_ arguments: [String]) throws -> [String] {
        guard let startIndex = arguments.firstIndex(of: "start") else { return arguments }
        var path: String?
        var resume: String?
        for (i, arg) in arguments.enumerated() where i > startIndex {
            if arg == "--config", i + 1 < arguments.count { path = arguments[i + 1] }
            if arg.hasPrefix("--config=") { path = String(arg.dropFirst("--config=".count)) }
            if arg == "--resume", i + 1 < arguments.count { resume = arguments[i + 1] }
            if arg.hasPrefix("--resume=") { resume = String(arg.dropFirst("--resume=".count)) }
        }
        var arguments = arguments
        if path == nil, let resume {
            let saved = (resume as NSString).appendingPathComponent("config.yaml")
            if FileManager.default.fileExists(atPath: saved) {
                path = saved
                let typed = arguments[(startIndex + 1)...].contains { $0 == "--checkpoint-dir" || $0.hasPrefix("--checkpoint-dir=") }
                if !typed { arguments.insert(contentsOf: ["--checkpoint-dir", resume], at: startIndex + 1) }
            }
        }
        guard let path else { return arguments }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigFileError("--config \(path): cannot read the file")
        }
        let help = RNNCoord.helpMessage(for: Start.self, columns: 400)
        let known = CommandRunner.knownOptions(RNNCoord.self, path: [RNNCoord.self, Start.self]).subtracting(["help", "config"])
        let booleans = Set(known.filter { !help.contains("--\($0) <") })
        let entries = try ConfigFile.parse(String(decoding: data, as: UTF8.self), source: path, known: known)
        let typed = Set(arguments[(startIndex + 1)...].filter { $0.hasPrefix("--") }.map { arg -> String in
            let name = arg.dropFirst(2)
            return String(name.split(separator: "=", maxSplits: 1).first ?? name)
        })
        let extra = try ConfigFile.arguments(for: entries, overridden: typed, booleanFlags: booleans)
        var result = arguments
        result.insert(contentsOf: extra, at: startIndex + 1)
        return result
    }
}
