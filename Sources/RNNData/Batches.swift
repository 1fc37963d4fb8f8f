// The one batch loop of evaluation, prediction and export: rows in order, a fixed number at a
// time, read into one reused Batch.
import RNNCore

/// Rows per batch when evaluating or predicting (not training): large enough to amortise the
/// per-batch costs, small enough for the workspace of a wide model.
public let evaluationBatchSize = 256

extension TensorDataset {
    /// Reads `rows` (nil: every row) in order, `batchSize` at a time, into one reused Batch, and
    /// hands each batch to `body`.
    public func forEachBatch(rows: [Int]? = nil, batchSize: Int = evaluationBatchSize, _ body: (Batch) throws -> Void) throws {
        precondition(batchSize > 0, "a batch needs at least one row")
        var batch = Batch()
        let total = rows?.count ?? count
        var start = 0
        while start < total {
            let end = min(start + batchSize, total)
            try read(rows: rows.map { Array($0[start..<end]) } ?? Array(start..<end), into: &batch)
            try body(batch)
            start = end
        }
    }
}

extension RNNNetwork {
    /// The loss sums of `parameters` on `data` (its `rows`, nil: every row): one LossStats per
    /// batch of `batchSize` rows, in order. Summing them in order from zero gives the same bits
    /// however the batches are split among evaluators, as long as each takes whole batches.
    public func evaluateBatches(parameters: [Float], on data: TensorDataset, rows: [Int]? = nil,
                                batchSize: Int = evaluationBatchSize) throws -> [LossStats] {
        var result: [LossStats] = []
        try data.forEachBatch(rows: rows, batchSize: batchSize) { batch in
            result.append(try evaluate(parameters: parameters, input: batch.x, batch: batch.count, steps: data.steps,
                                       targets: batch.targets, lengths: batch.lengths))
        }
        return result
    }
}
