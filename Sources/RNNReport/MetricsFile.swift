// Reading a run's metrics back: metrics.jsonl (written by the coordinator next to the
// checkpoints, one JSON object per step and per epoch) and a checkpoint's /metrics history.
import Foundation
import RNNCheckpoint

public struct MetricsFileError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension RunCurves {
    /// Curves from the text of a metrics.jsonl file. A file appended by several runs in the same
    /// folder (a restart, a resume) keeps the latest history: a record whose global step is not
    /// past the previous one cuts everything from that step on.
    public static func parseJSONLines(_ text: String, source: String = "metrics.jsonl") throws -> RunCurves {
        var curves = RunCurves()
        var accuracy: [Double] = []
        var anyAccuracy = false
        var lr: [Double] = []
        var anyLR = false
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw MetricsFileError("\(source):\(number + 1): expected one JSON object per line, found '\(trimmed.prefix(60))'")
            }
            let kind = object["kind"] as? String
            guard let step = (object["global_step"] as? NSNumber)?.intValue else { continue }
            func double(_ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }
            switch kind {
            case "step":
                if let last = curves.steps.last, step <= last {
                    let keep = curves.steps.firstIndex { $0 >= step } ?? curves.steps.count
                    curves.steps.removeSubrange(keep...)
                    curves.stepLoss.removeSubrange(keep...)
                    accuracy.removeSubrange(keep...)
                    lr.removeSubrange(keep...)
                    curves.epochs.removeAll { $0.globalStep >= step }
                }
                curves.steps.append(step)
                curves.stepLoss.append(double("loss") ?? .nan)
                let a = double("accuracy")
                anyAccuracy = anyAccuracy || a != nil
                accuracy.append(a ?? .nan)
                let r = double("lr")
                anyLR = anyLR || r != nil
                lr.append(r ?? .nan)
            case "epoch":
                curves.epochs.removeAll { $0.globalStep >= step }
                curves.epochs.append(EpochPoint(epoch: (object["epoch"] as? NSNumber)?.intValue ?? curves.epochs.count + 1,
                                                globalStep: step, loss: double("loss") ?? .nan, accuracy: double("accuracy"),
                                                validationLoss: double("val_loss"), validationAccuracy: double("val_accuracy")))
            default:
                continue
            }
        }
        curves.stepAccuracy = anyAccuracy ? accuracy : nil
        curves.stepLR = anyLR ? lr : nil
        return curves
    }

    /// Curves from a metrics.jsonl file.
    public static func load(jsonLinesAt path: String) throws -> RunCurves {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MetricsFileError("\(path): cannot read the metrics file (expected the metrics.jsonl a run writes next to its checkpoints)")
        }
        return try parseJSONLines(String(decoding: data, as: UTF8.self), source: path)
    }

    /// Curves from a checkpoint's per-step history, plus the epoch summaries of `epochs`
    /// (e.g. from the run's metrics.jsonl) up to the checkpoint's step.
    public init(history: MetricsHistory, epochs: [EpochPoint] = [], title: String = "") {
        let last = history.steps.last ?? Int.max
        self.init(title: title, steps: history.steps, stepLoss: history.loss.map(Double.init),
                  stepAccuracy: history.accuracy.map { $0.map(Double.init) },
                  epochs: epochs.filter { $0.globalStep <= last })
    }

    /// The curves of step records thinned to at most `maxPoints` (mean of each bucket), so a
    /// long run still draws as a line rather than a solid band.
    public func thinned(maxPoints: Int = 600) -> RunCurves {
        guard steps.count > maxPoints, maxPoints > 0 else { return self }
        let bucket = Int((Double(steps.count) / Double(maxPoints)).rounded(.up))
        var out = self
        out.steps = []
        out.stepLoss = []
        var acc: [Double]? = stepAccuracy == nil ? nil : []
        var lr: [Double]? = stepLR == nil ? nil : []
        var i = 0
        while i < steps.count {
            let end = min(steps.count, i + bucket)
            out.steps.append(steps[end - 1])
            out.stepLoss.append(stepLoss[i..<end].reduce(0, +) / Double(end - i))
            if let a = stepAccuracy { acc!.append(a[i..<end].reduce(0, +) / Double(end - i)) }
            if let r = stepLR { lr!.append(r[end - 1]) }
            i = end
        }
        out.stepAccuracy = acc
        out.stepLR = lr
        return out
    }
}
