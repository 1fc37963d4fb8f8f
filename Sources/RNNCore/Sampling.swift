// Drawing the next token from a model's logits, as a PyTorch sampling loop does it:
// probabilities = softmax(logits / temperature), optionally only over the k largest logits
// (torch.topk, then a renormalised softmax), one draw with a seeded generator; temperature 0 is
// greedy (torch.argmax: the first index of the largest logit).
import RealModule

public struct TokenSampler: Sendable {
    /// Softmax temperature; 0 means greedy.
    public let temperature: Double
    /// Sample only among the k largest logits (nil: all).
    public let topK: Int?
    private var rng: SeededGenerator

    public init(temperature: Double, topK: Int? = nil, seed: UInt64) {
        precondition(temperature >= 0 && temperature.isFinite, "temperature must be >= 0, found \(temperature)")
        precondition(topK.map { $0 >= 1 } ?? true, "top-k must be >= 1")
        self.temperature = temperature
        self.topK = topK
        rng = SeededGenerator(seed: seed, stream: 0x5A3B1E)
    }

    /// The probabilities the next draw uses, over all `logits.count` tokens (zero outside the top k).
    public func probabilities(_ logits: ArraySlice<Float>) -> [Double] {
        let n = logits.count
        let base = logits.startIndex
        var p = [Double](repeating: 0, count: n)
        guard n > 0 else { return p }
        if temperature == 0 {
            p[TokenSampler.argmax(logits)] = 1
            return p
        }
        var allowed = Array(0..<n)
        if let k = topK, k < n {
            // The k largest; among equal logits the lower index first (a stable order).
            allowed = allowed.sorted { a, b in
                logits[base + a] != logits[base + b] ? logits[base + a] > logits[base + b] : a < b
            }
            allowed = Array(allowed.prefix(k))
        }
        let top = allowed.map { Double(logits[base + $0]) }.max()!
        var sum = 0.0
        for i in allowed {
            let e = Double.exp((Double(logits[base + i]) - top) / temperature)
            p[i] = e
            sum += e
        }
        for i in allowed { p[i] /= sum }
        return p
    }

    /// Draws the next token id from `logits`.
    public mutating func next(_ logits: ArraySlice<Float>) -> Int {
        if temperature == 0 { return TokenSampler.argmax(logits) }
        let p = probabilities(logits)
        // u uniform in [0, 1) with 53 random bits.
        let u = Double(rng.next() >> 11) * 0x1p-53
        var cumulative = 0.0
        var last = 0
        for (i, q) in p.enumerated() where q > 0 {
            cumulative += q
            last = i
            if u < cumulative { return i }
        }
        return last  // rounding left the cumulative sum a hair below 1
    }

    /// The first index of the largest value (torch.argmax), relative to the slice's start.
    public static func argmax(_ values: ArraySlice<Float>) -> Int {
        guard var bestValue = values.first else { return 0 }
        var best = 0
        for (i, v) in values.enumerated() where v > bestValue {
            best = i
            bestValue = v
        }
        return best
    }
}
