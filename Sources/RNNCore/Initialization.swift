// PyTorch-style initialisation of the flat parameter buffer.

extension ParameterTable {
    /// Fresh parameters for `config`, as PyTorch initialises `nn.RNN/LSTM/GRU(I, H, L)` and
    /// `nn.Linear(H, O)`: every value uniform in [-1/sqrt(H), 1/sqrt(H)) (for the head this is
    /// nn.Linear's 1/sqrt(in_features) bound, in_features = H), drawn from
    /// `SeededGenerator(seed:)` in table order, each tensor row-major. Same seed, same values.
    public static func initialParameters(config: ModelConfig, seed: UInt64) -> [Float] {
        let table = ParameterTable(config: config)
        var generator = SeededGenerator(seed: seed)
        let bound = 1 / Float(config.hiddenSize).squareRoot()
        var values = [Float](repeating: 0, count: table.totalCount)
        for entry in table.entries {
            for i in entry.range { values[i] = generator.nextFloat(in: -bound, bound) }
        }
        return values
    }
}
