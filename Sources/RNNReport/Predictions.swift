// What `predict --data` prints beyond the arg-max class: a regression model's predicted values
// and a classifier's class probabilities (softmax of the logits).
import Foundation
import RNNCore
import RNNData

extension LoadedModel {
    /// The raw outputs of every sequence, flat per sample: (O) with a last-step head (with
    /// lengths: of each sequence's own final state), (T, O) per step, or with lengths
    /// (length, O): the real steps only, as `predictClasses` shows them.
    public func outputs(on data: TensorDataset, batchSize: Int = evaluationBatchSize) throws -> [[Float]] {
        let m = config.model
        let perStep = m.head == .lastStep ? 0 : m.outputSize
        let perSample = (m.head == .lastStep ? 1 : data.steps) * m.outputSize
        var result: [[Float]] = []
        try data.forEachBatch(batchSize: batchSize) { batch in
            let out = try network.predict(parameters: checkpoint.parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                          lengths: batch.lengths).outputs
            for b in 0..<batch.count {
                let shown = perStep > 0 ? (batch.lengths?[b] ?? data.steps) * perStep : perSample
                result.append(Array(out[(b * perSample)..<(b * perSample + shown)]))
            }
        }
        return result
    }

    /// Class probabilities of each sequence (softmax of the logits, in double): with a
    /// last-step head of the sequence, with a per-step head of its last (real) step.
    public func probabilities(on data: TensorDataset, batchSize: Int = evaluationBatchSize) throws -> [[Double]] {
        let m = config.model
        guard m.loss == .crossEntropy else { throw ReportError("--probabilities needs a classifier; this checkpoint is a regression (MSE) model") }
        let O = m.outputSize
        return try outputs(on: data, batchSize: batchSize).map { out in
            softmax(out[(out.count - O)...])
        }
    }
}

/// softmax of `logits` in double precision.
func softmax(_ logits: ArraySlice<Float>) -> [Double] {
    let top = Double(logits.max() ?? 0)
    let e = logits.map { exp(Double($0) - top) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
}

/// A float for CSV output with 6 significant digits (`0.123457`, `1.5e-07`).
public func valueText(_ v: Float) -> String {
    String(format: "%.6g", Double(v))
}
