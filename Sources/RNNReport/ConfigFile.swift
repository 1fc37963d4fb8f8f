// Run config files (YAML) that mirror the command-line flags: each key is a long flag name
// without the dashes (`batch-size: 32`, `data: [train.h5]`, `shuffle: true`). Flags given on
// the command line override the file.
import Foundation
import Yams

public struct ConfigFileError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A value of a config key as flags see it.
public enum ConfigValue: Sendable, Equatable {
    case flag(Bool)
    case scalar(String)
    case list([String])
}

public enum ConfigFile {
    /// Parses YAML text into (key, value) pairs in file order. Keys must be flag names
    /// (`known`, without dashes) when `known` is given; the error names the file, the key and
    /// the closest known key.
    public static func parse(_ text: String, source: String, known: Set<String>? = nil) throws -> [(String, ConfigValue)] {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigFileError("\(source): not valid YAML: \(error)")
        }
        guard let node else { return [] }
        guard let mapping = node.mapping else {
            throw ConfigFileError("\(source): expected a mapping of flag names to values (e.g. 'batch-size: 32'), found \(node.kindName)")
        }
        var result: [(String, ConfigValue)] = []
        for (k, v) in mapping {
            guard let rawKey = k.string else { throw ConfigFileError("\(source): expected string keys, found \(k)") }
            let key = rawKey.replacingOccurrences(of: "_", with: "-")
            if let known, !known.contains(key) {
                let hint = closest(to: key, in: known).map { " (did you mean '\($0)'?)" } ?? ""
                throw ConfigFileError("\(source): unknown key '\(rawKey)'\(hint); keys are the long flag names of the command")
            }
            switch v {
            case .scalar(let s):
                if let b = Bool.construct(from: s) { result.append((key, .flag(b))) } else { result.append((key, .scalar(s.string))) }
            case .sequence(let seq):
                var items: [String] = []
                for item in seq {
                    guard let s = item.scalar else { throw ConfigFileError("\(source): key '\(rawKey)': expected a list of plain values, found a nested \(item.kindName)") }
                    items.append(s.string)
                }
                result.append((key, .list(items)))
            default:
                throw ConfigFileError("\(source): key '\(rawKey)': expected a value or a list, found a \(v.kindName)")
            }
        }
        return result
    }

    /// Command-line arguments for `entries`, leaving out keys in `overridden` (flags the user
    /// typed). Booleans become bare flags (true) or nothing (false); lists repeat their values.
    public static func arguments(for entries: [(String, ConfigValue)], overridden: Set<String>, booleanFlags: Set<String>) throws -> [String] {
        var args: [String] = []
        for (key, value) in entries where !overridden.contains(key) {
            switch value {
            case .flag(let on):
                if booleanFlags.contains(key) {
                    if on { args.append("--\(key)") }
                } else {
                    args += ["--\(key)", on ? "true" : "false"]
                }
            case .scalar(let s):
                if booleanFlags.contains(key) {
                    throw ConfigFileError("key '\(key)': expected true or false, found '\(s)'")
                }
                args += ["--\(key)", s]
            case .list(let items):
                if items.isEmpty { continue }
                args.append("--\(key)")
                args += items
            }
        }
        return args
    }

    /// YAML text for `entries` (the effective config printed at start and saved with the run).
    public static func yaml(_ entries: [(String, ConfigValue?)]) -> String {
        var lines: [String] = []
        for (key, value) in entries {
            switch value {
            case nil: lines.append("# \(key): (not set)")
            case .flag(let b)?: lines.append("\(key): \(b)")
            case .scalar(let s)?: lines.append("\(key): \(quoted(s))")
            case .list(let items)?: lines.append("\(key): [\(items.map(quoted).joined(separator: ", "))]")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func quoted(_ s: String) -> String {
        let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "._/-+".contains($0) }
            && !["true", "false", "yes", "no", "null", "on", "off", "~"].contains(s.lowercased())
        if plain { return s }
        return "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

extension Node {
    var kindName: String {
        switch self {
        case .scalar: return "scalar"
        case .mapping: return "mapping"
        case .sequence: return "list"
        default: return "node"
        }
    }
}

/// The entry of `candidates` nearest to `word` by edit distance, if it is close enough to be a typo.
public func closest(to word: String, in candidates: Set<String>) -> String? {
    var best: (String, Int)?
    for c in candidates.sorted() {
        let d = editDistance(word, c)
        if best == nil || d < best!.1 { best = (c, d) }
    }
    guard let best, best.1 <= max(2, word.count / 3) else { return nil }
    return best.0
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}
