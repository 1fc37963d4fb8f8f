// The model description shared by every process and file: cell kind, sizes, head, loss.
// It is Codable so it can travel in the WELCOME message and sit in a checkpoint's config.

/// The recurrent cell, named as in the CLI and the checkpoint config.
public enum CellKind: String, Codable, Sendable, CaseIterable {
    case rnnTanh = "rnn_tanh"
    case rnnRelu = "rnn_relu"
    case lstm
    case gru

    /// Gates stacked in the rows of the weight matrices: RNN 1, LSTM 4 (i,f,g,o), GRU 3 (r,z,n).
    public var gateCount: Int {
        switch self {
        case .rnnTanh, .rnnRelu: return 1
        case .lstm: return 4
        case .gru: return 3
        }
    }

    /// The PyTorch module this cell corresponds to (`nn.RNN`, `nn.LSTM`, `nn.GRU`).
    public var torchModule: String {
        switch self {
        case .rnnTanh, .rnnRelu: return "RNN"
        case .lstm: return "LSTM"
        case .gru: return "GRU"
        }
    }
}

/// Where the Linear head reads the hidden state.
public enum HeadMode: String, Codable, Sendable, CaseIterable {
    /// `fc(out[:, -1, :])`: one output per sequence (sequence classification).
    case lastStep = "last"
    /// `fc(out)`: one output per time step (sequence-to-sequence, character models).
    case everyStep = "every"
}

/// The training loss.
public enum LossKind: String, Codable, Sendable, CaseIterable {
    /// `nn.CrossEntropyLoss` on integer class ids, mean over all scored elements.
    case crossEntropy = "cross_entropy"
    /// `nn.MSELoss` on float targets, mean over all elements.
    case mse
}

/// Everything needed to build the network and its parameter table.
///
/// Options beyond the seed tutorial's model follow PyTorch: `tokenInput` (X holds token ids in
/// [0, inputSize); without an embedding they are one-hot in meaning, computed as a gather of
/// W_ih's columns), `embeddingSize` (`nn.Embedding(inputSize, E)` before the recurrent layers,
/// with `paddingIndex` as its `padding_idx`), `bidirectional` and inter-layer `dropout`.
/// Fields added after format 1 decode with their defaults, so older configs still read.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var cell: CellKind
    /// I: features per time step fed to the first layer; with `tokenInput` the vocabulary V.
    public var inputSize: Int
    /// H: hidden units per layer (and per direction).
    public var hiddenSize: Int
    /// L: stacked recurrent layers.
    public var layers: Int
    /// O: outputs of the Linear head (classes for cross-entropy).
    public var outputSize: Int
    public var head: HeadMode
    public var loss: LossKind
    /// X holds integer token ids (B, T) in [0, inputSize) rather than features (B, T, I).
    public var tokenInput: Bool
    /// E of `nn.Embedding(V, E)` (parameter `embedding.weight` (V, E)); nil: no embedding.
    public var embeddingSize: Int?
    /// `padding_idx` of the embedding: row P starts at zero and gets no gradient.
    public var paddingIndex: Int?
    /// `bidirectional=True`: `_reverse` parameters, 2H outputs per step.
    public var bidirectional: Bool
    /// `dropout=P` on the outputs of every recurrent layer but the last, in training only.
    public var dropout: Float

    public init(
        cell: CellKind, inputSize: Int, hiddenSize: Int, layers: Int = 1,
        outputSize: Int, head: HeadMode = .lastStep, loss: LossKind = .crossEntropy,
        tokenInput: Bool = false, embeddingSize: Int? = nil, paddingIndex: Int? = nil,
        bidirectional: Bool = false, dropout: Float = 0
    ) {
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.outputSize = outputSize
        self.head = head
        self.loss = loss
        self.tokenInput = tokenInput
        self.embeddingSize = embeddingSize
        self.paddingIndex = paddingIndex
        self.bidirectional = bidirectional
        self.dropout = dropout
    }

    private enum CodingKeys: String, CodingKey {
        case cell, inputSize, hiddenSize, layers, outputSize, head, loss
        case tokenInput, embeddingSize, paddingIndex, bidirectional, dropout
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cell = try c.decode(CellKind.self, forKey: .cell)
        inputSize = try c.decode(Int.self, forKey: .inputSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        layers = try c.decode(Int.self, forKey: .layers)
        outputSize = try c.decode(Int.self, forKey: .outputSize)
        head = try c.decode(HeadMode.self, forKey: .head)
        loss = try c.decode(LossKind.self, forKey: .loss)
        tokenInput = try c.decodeIfPresent(Bool.self, forKey: .tokenInput) ?? false
        embeddingSize = try c.decodeIfPresent(Int.self, forKey: .embeddingSize)
        paddingIndex = try c.decodeIfPresent(Int.self, forKey: .paddingIndex)
        bidirectional = try c.decodeIfPresent(Bool.self, forKey: .bidirectional) ?? false
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? 0
    }

    /// Writes the options only when they differ from their defaults, so a plain model's config
    /// JSON is the same as before they existed.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cell, forKey: .cell)
        try c.encode(inputSize, forKey: .inputSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(layers, forKey: .layers)
        try c.encode(outputSize, forKey: .outputSize)
        try c.encode(head, forKey: .head)
        try c.encode(loss, forKey: .loss)
        if tokenInput { try c.encode(tokenInput, forKey: .tokenInput) }
        try c.encodeIfPresent(embeddingSize, forKey: .embeddingSize)
        try c.encodeIfPresent(paddingIndex, forKey: .paddingIndex)
        if bidirectional { try c.encode(bidirectional, forKey: .bidirectional) }
        if dropout != 0 { try c.encode(dropout, forKey: .dropout) }
    }

    /// Whether a checkpoint of `saved` continues as this model: equal, or equal but for
    /// `tokenInput` when `saved` predates it (a token-id model then took one-hot rows of the
    /// same V: the same parameters and the same function, now computed as a gather).
    public func continues(_ saved: ModelConfig) -> Bool {
        if saved == self { return true }
        var upgraded = saved
        upgraded.tokenInput = tokenInput
        return !saved.tokenInput && tokenInput && embeddingSize == nil && upgraded == self
    }

    /// D: directions (2 when bidirectional).
    public var directions: Int { bidirectional ? 2 : 1 }

    /// Features the first recurrent layer reads: E with an embedding, else I (V for one-hot ids).
    public var recurrentInputSize: Int { embeddingSize ?? inputSize }

    /// "an lstm H=128 L=1 model" without the last word: "an lstm H=128 L=1 (I=64, O=10, head last, cross_entropy)".
    public var summary: String {
        let article = cell == .lstm ? "an" : "a"
        var options = ""
        if let e = embeddingSize { options += ", embedding \(e)" }
        if bidirectional { options += ", bidirectional" }
        if dropout > 0 { options += ", dropout \(dropout)" }
        return "\(article) \(cell.rawValue) H=\(hiddenSize) L=\(layers) (I=\(inputSize), O=\(outputSize), head \(head.rawValue), \(loss.rawValue)\(options))"
    }

    /// The fields in which this config differs from `other`, in `summary`'s words ("H=256,
    /// L=2"); the whole summary when none differs.
    public func differences(from other: ModelConfig) -> String {
        var parts: [String] = []
        if cell != other.cell { parts.append(cell.rawValue) }
        if hiddenSize != other.hiddenSize { parts.append("H=\(hiddenSize)") }
        if layers != other.layers { parts.append("L=\(layers)") }
        if inputSize != other.inputSize { parts.append("I=\(inputSize) (the data's input features)") }
        if outputSize != other.outputSize { parts.append("O=\(outputSize) (the data's outputs)") }
        if head != other.head { parts.append("head \(head.rawValue)") }
        if loss != other.loss { parts.append(loss.rawValue) }
        if tokenInput != other.tokenInput { parts.append(tokenInput ? "token-id input" : "float input") }
        if embeddingSize != other.embeddingSize { parts.append(embeddingSize.map { "--embedding \($0)" } ?? "no embedding") }
        if paddingIndex != other.paddingIndex { parts.append(paddingIndex.map { "--padding-idx \($0)" } ?? "no padding index") }
        if bidirectional != other.bidirectional { parts.append(bidirectional ? "bidirectional" : "unidirectional") }
        if dropout != other.dropout { parts.append("--dropout \(dropout)") }
        return parts.isEmpty ? summary : parts.joined(separator: ", ")
    }

    /// Throws a sentence naming the field when a size is out of range.
    public func validate() throws(ConfigError) {
        if inputSize < 1 { throw ConfigError("input size must be at least 1, found \(inputSize)") }
        if hiddenSize < 1 { throw ConfigError("hidden size must be at least 1, found \(hiddenSize)") }
        if layers < 1 { throw ConfigError("layers must be at least 1, found \(layers)") }
        if outputSize < 1 { throw ConfigError("output size must be at least 1, found \(outputSize)") }
        if let e = embeddingSize {
            if !tokenInput { throw ConfigError("an embedding needs token-id input (X of integer ids with vocab_size), found float features") }
            if e < 1 { throw ConfigError("embedding size must be at least 1, found \(e)") }
        }
        if let p = paddingIndex {
            if embeddingSize == nil { throw ConfigError("padding index \(p) needs an embedding (--embedding E)") }
            if p < 0 || p >= inputSize { throw ConfigError("padding index must be in [0, \(inputSize)) (the vocabulary), found \(p)") }
        }
        if !(dropout >= 0 && dropout < 1) { throw ConfigError("dropout must be in [0, 1), found \(dropout)") }
    }
}

/// A configuration value that cannot describe a working model or optimizer.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
