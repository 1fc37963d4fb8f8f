// One flat float32 buffer holds every parameter; gradients and Adam's moments share its layout.
// The table lists (name, shape, offset) in the order of PyTorch's `state_dict` for
//   self.embedding = nn.Embedding(V, E)        (only with an embedding)
//   self.rnn = nn.<RNN|LSTM|GRU>(I, H, L, batch_first=True, bidirectional=D == 2)
//   self.fc = nn.Linear(D*H, O)
// Per layer: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, then the same four
// with the suffix `_reverse` when bidirectional; layer k > 0 reads D*H features.

/// One named tensor inside the flat buffer.
public struct ParameterEntry: Sendable, Equatable {
    /// The PyTorch `state_dict` key, e.g. `rnn.weight_ih_l0`, `fc.bias`.
    public var name: String
    /// Row-major shape, e.g. [G*H, I] for `weight_ih_l0`.
    public var shape: [Int]
    /// Element offset of the first value in the flat buffer.
    public var offset: Int
    /// Number of elements (product of `shape`).
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }
}

/// The layout of the flat parameter buffer, computed once from a `ModelConfig`.
public struct ParameterTable: Sendable, Equatable {
    public let entries: [ParameterEntry]
    /// Total number of float32 elements.
    public let totalCount: Int

    public init(config: ModelConfig) {
        let gh = config.cell.gateCount * config.hiddenSize
        let h = config.hiddenSize
        var entries: [ParameterEntry] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            let entry = ParameterEntry(name: name, shape: shape, offset: offset)
            entries.append(entry)
            offset += entry.count
        }
        let d = config.directions
        if let e = config.embeddingSize { add("embedding.weight", [config.inputSize, e]) }
        for layer in 0..<config.layers {
            let inputs = layer == 0 ? config.recurrentInputSize : d * h
            for suffix in d == 2 ? ["", "_reverse"] : [""] {
                add("rnn.weight_ih_l\(layer)\(suffix)", [gh, inputs])
                add("rnn.weight_hh_l\(layer)\(suffix)", [gh, h])
                add("rnn.bias_ih_l\(layer)\(suffix)", [gh])
                add("rnn.bias_hh_l\(layer)\(suffix)", [gh])
            }
        }
        add("fc.weight", [config.outputSize, d * h])
        add("fc.bias", [config.outputSize])
        self.entries = entries
        self.totalCount = offset
    }

    /// The entry with this `state_dict` key, or nil.
    public func entry(named name: String) -> ParameterEntry? {
        entries.first { $0.name == name }
    }
}
