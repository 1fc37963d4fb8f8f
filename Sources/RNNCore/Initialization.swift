// PyTorch-style initialisation of the flat parameter buffer.

extension ParameterTable {
    /// Fresh parameters for `config`, as PyTorch initialises `nn.RNN/LSTM/GRU(I, H, L)` and
    /// `nn.Linear(D*H, O)`: recurrent values uniform in [-1/sqrt(H), 1/sqrt(H)), the head's in
    /// [-1/sqrt(D*H), 1/sqrt(D*H)) (nn.Linear's 1/sqrt(in_features)), and `embedding.weight`
    /// N(0, 1) like nn.Embedding (Box-Muller), its `paddingIndex` row zero; drawn from
    /// `SeededGenerator(seed:)` in table order, each tensor row-major. Same seed, same values.
    public static func initialParameters(config: ModelConfig, seed: UInt64) -> [Float] {
        let table = ParameterTable(config: config)
        var generator = SeededGenerator(seed: seed)
        let bound = 1 / Float(config.hiddenSize).squareRoot()
        let headBound = 1 / Float(config.directions * config.hiddenSize).squareRoot()
        var values = [Float](repeating: 0, count: table.totalCount)
        for entry in table.entries {
            if entry.name == "embedding.weight" {
                for i in entry.range { values[i] = generator.nextNormal() }
                if let p = config.paddingIndex, let e = config.embeddingSize {
                    for k in 0..<e { values[entry.offset + p * e + k] = 0 }
                }
                continue
            }
            let b = entry.name.hasPrefix("fc.") ? headBound : bound
            for i in entry.range { values[i] = generator.nextFloat(in: -b, b) }
        }
        return values
    }
}
