// Writing metrics.jsonl: one JSON object per step and per epoch (README, "metrics.jsonl"), the
// coordinator's `RunRecordLog`; MetricsFile.swift reads it back.
import Foundation
import RNNDistributed
import RNNTransport

/// Appends one JSON object per line to a file (created on first use). Lines are encoded by
/// hand (JSONSerialization cost ~165 us of coordinator CPU per step, as much as a whole
/// seed-small step) and written in batches: at least every second, at each epoch record, and
/// on `flush()` / deinit.
public final class MetricsLog: RunRecordLog {
    let path: String
    private var handle: FileHandle?
    private var pending: [UInt8] = []
    private var lastFlush = monotonicNanoseconds()

    /// The coordinator's opener (`CoordinatorOptions.recordLog`): DIR/metrics.jsonl, from which a
    /// resume first drops the records it redoes.
    public static let opener: RunRecordLogOpener = { directory, resume in
        let path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        if let resume { truncate(path: path, afterGlobalStep: resume.globalStep, continuingEpoch: resume.continuingEpoch) }
        return MetricsLog(path: path)
    }

    public init(path: String) {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        handle = FileHandle(forWritingAtPath: path)
        handle?.seekToEndOfFile()
    }

    deinit {
        flush()
        try? handle?.close()
    }

    /// One record, with an ISO-8601 UTC `time`: keys sorted; nil and non-finite values left out; values Int, Double,
    /// Float, Bool, String, [Int] or [Double] (a non-finite element as null).
    public func append(_ record: [String: Any?]) {
        var record = record
        if record["time"] == nil { record["time"] = isoTimestamp() }  // MetricsTime.swift
        var line = "{"
        var first = true
        for key in record.keys.sorted() {
            guard let value = record[key] ?? nil, let text = Self.json(value) else { continue }
            if !first { line += "," }
            first = false
            line += Self.quoted(key) + ":" + text
        }
        line += "}\n"
        pending.append(contentsOf: line.utf8)
        let now = monotonicNanoseconds()
        if record["kind"] as? String != "step" || now - lastFlush > 1_000_000_000 || pending.count > 1 << 16 {
            flush()
        }
    }

    /// Before a resume from the checkpoint of `afterGlobalStep` completed steps: removes the
    /// records of later steps (they are redone, and would appear twice), epoch records of
    /// later steps, and the partial record (`--max-steps`) of `continuingEpoch` (1-based),
    /// which the resumed run completes. Rewritten atomically; lines that do not parse stay.
    public static func truncate(path: String, afterGlobalStep step: Int, continuingEpoch: Int?) {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return }
        var kept: [Substring] = []
        var dropped = 0
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let globalStep = object["global_step"] as? Int else {
                kept.append(line)
                continue
            }
            let partialOfContinued = object["kind"] as? String == "epoch" && object["partial"] as? Bool == true
                && (object["epoch"] as? Int).map { continuingEpoch == $0 } == true
            if globalStep > step || partialOfContinued {
                dropped += 1
            } else {
                kept.append(line)
            }
        }
        guard dropped > 0 else { return }
        let body = kept.map { $0 + "\n" }.joined()
        try? Data(body.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Writes the buffered lines.
    public func flush() {
        lastFlush = monotonicNanoseconds()
        guard !pending.isEmpty else { return }
        handle?.write(Data(pending))
        pending.removeAll(keepingCapacity: true)
    }

    private static func json(_ value: Any) -> String? {
        switch value {
        case let v as Bool: return v ? "true" : "false"
        case let v as Int: return String(v)
        case let v as Double: return v.isFinite ? "\(v)" : nil
        case let v as Float: return v.isFinite ? "\(v)" : nil
        case let v as String: return quoted(v)
        case let v as [Int]: return "[" + v.map(String.init).joined(separator: ",") + "]"
        case let v as [Double]: return "[" + v.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ",") + "]"
        default: return nil
        }
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
