// Metrics that fit the task, beside the loss: a character/token model (per-step class
// targets) reports perplexity = exp(mean cross-entropy) and bits per character = mean
// cross-entropy / ln 2, per epoch (metrics.jsonl `perplexity`, `bpc`, `val_perplexity`,
// `val_bpc`, and the epoch line) and in `eval`.
import Foundation
import RNNCore

/// Per-step class targets: a character or token language model.
public func isLanguageModel(_ model: ModelConfig) -> Bool {
    model.head == .everyStep && model.loss == .crossEntropy
}

/// exp(loss): the perplexity of a mean cross-entropy in nats.
public func perplexity(_ loss: Double) -> Double { exp(loss) }

/// loss / ln 2: bits per character (token) of a mean cross-entropy in nats.
public func bitsPerCharacter(_ loss: Double) -> Double { loss / M_LN2 }

/// Adds perplexity and bits per character of the record's `loss` and `val_loss` for a language model.
func addLanguageModelMetrics(to record: inout [String: Any?], model: ModelConfig) {
    guard isLanguageModel(model) else { return }
    for (prefix, key) in [("", "loss"), ("val_", "val_loss")] {
        guard let loss = record[key] as? Double else { continue }
        record[prefix + "perplexity"] = perplexity(loss)
        record[prefix + "bpc"] = bitsPerCharacter(loss)
    }
}
