// Running a command-line tool so that a wrong flag gets one line of error and one of hint
// (`did you mean`, where to find --help) instead of the full usage text.
import ArgumentParser
import Foundation

public enum CommandRunner {
    /// Parses `arguments` (without the program name) for `Root` and its subcommands, runs the
    /// command, and exits. Help and version go to standard output as usual.
    public static func main<Root: ParsableCommand>(_ root: Root.Type, arguments: [String]) -> Never {
        do {
            var command = try Root.parseAsRoot(arguments)
            try command.run()
            Foundation.exit(0)
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)  // the command already said what went wrong
        } catch {
            let code = Root.exitCode(for: error)
            if code == .success { Root.exit(withError: error) }  // --help, --version
            let path = commandPath(Root.self, arguments: arguments)
            let full = Root.message(for: error)
            var first = full.split(separator: "\n").first.map(String.init) ?? "\(error)"
            // A mistyped flag often surfaces as "missing --connect"; name the unknown flag instead.
            let known = knownOptions(Root.self, path: path).union(["help", "version"])
            if !first.contains("Unknown option"),
               let typo = arguments.first(where: { $0.hasPrefix("--") && $0.count > 2 && !known.contains(String($0.dropFirst(2).split(separator: "=").first ?? "")) }) {
                first = "Unknown option '\(typo.split(separator: "=").first ?? "")'"
            }
            if !first.contains("Did you mean"), let bad = unknownOption(in: first), let best = closest(to: bad, in: knownOptions(Root.self, path: path)) {
                first += " (did you mean '--\(best)'?)"
            }
            if first.hasPrefix("Unexpected argument"), path.count == 1, let r = first.range(of: "'"),
               let word = first[r.upperBound...].split(separator: "'").first,
               let best = closest(to: String(word), in: Set(Root.configuration.subcommands.map { $0._commandName })) {
                first += " (did you mean '\(best)'?)"
            }
            let name = path.map { $0._commandName }.joined(separator: " ")
            FileHandle.standardError.write(Data("\(name): error: \(first)\nHint: see '\(name) --help' for every flag and an example.\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }

    /// The command and the subcommands named in `arguments` (e.g. [RNNCoord, Start]).
    public static func commandPath<Root: ParsableCommand>(_ root: Root.Type, arguments: [String]) -> [ParsableCommand.Type] {
        var path: [ParsableCommand.Type] = [Root.self]
        for arg in arguments where !arg.hasPrefix("-") {
            guard let next = path.last!.configuration.subcommands.first(where: { $0._commandName == arg }) else { break }
            path.append(next)
        }
        return path
    }

    /// The long option names (without dashes) the help of the last command of `path` lists.
    public static func knownOptions<Root: ParsableCommand>(_ root: Root.Type, path: [ParsableCommand.Type]) -> Set<String> {
        let help = path.count > 1 ? Root.helpMessage(for: path.last!, columns: 400) : Root.helpMessage(columns: 400)
        var names = Set<String>()
        var i = help.startIndex
        while let r = help.range(of: "--", range: i..<help.endIndex) {
            var j = r.upperBound
            while j < help.endIndex, help[j].isLetter || help[j].isNumber || help[j] == "-" { help.formIndex(after: &j) }
            let name = String(help[r.upperBound..<j])
            if !name.isEmpty, name.first!.isLetter { names.insert(name) }
            i = j > r.upperBound ? j : r.upperBound
        }
        return names
    }

    /// `batchsize` from "Unknown option '--batchsize'".
    static func unknownOption(in message: String) -> String? {
        guard message.contains("Unknown option"), let r = message.range(of: "'--") else { return nil }
        let rest = message[r.upperBound...]
        guard let end = rest.firstIndex(where: { $0 == "'" || $0 == "=" }) else { return nil }
        return String(rest[..<end])
    }
}
