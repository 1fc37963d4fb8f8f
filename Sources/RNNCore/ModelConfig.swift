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
public struct ModelConfig: Codable, Sendable, Equatable {
    public var cell: CellKind
    /// I: features per time step fed to the first layer.
    public var inputSize: Int
    /// H: hidden units per layer.
    public var hiddenSize: Int
    /// L: stacked recurrent layers.
    public var layers: Int
    /// O: outputs of the Linear head (classes for cross-entropy).
    public var outputSize: Int
    public var head: HeadMode
    public var loss: LossKind

    public init(
        cell: CellKind, inputSize: Int, hiddenSize: Int, layers: Int = 1,
        outputSize: Int, head: HeadMode = .lastStep, loss: LossKind = .crossEntropy
    ) {
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.outputSize = outputSize
        self.head = head
        self.loss = loss
    }

    /// "an lstm H=128 L=1 model" without the last word: "an lstm H=128 L=1 (I=64, O=10, head last, cross_entropy)".
    public var summary: String {
        let article = cell == .lstm ? "an" : "a"
        return "\(article) \(cell.rawValue) H=\(hiddenSize) L=\(layers) (I=\(inputSize), O=\(outputSize), head \(head.rawValue), \(loss.rawValue))"
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
        return parts.isEmpty ? summary : parts.joined(separator: ", ")
    }

    /// Throws a sentence naming the field when a size is out of range.
    public func validate() throws(ConfigError) {
        if inputSize < 1 { throw ConfigError("input size must be at least 1, found \(inputSize)") }
        if hiddenSize < 1 { throw ConfigError("hidden size must be at least 1, found \(hiddenSize)") }
        if layers < 1 { throw ConfigError("layers must be at least 1, found \(layers)") }
        if outputSize < 1 { throw ConfigError("output size must be at least 1, found \(outputSize)") }
    }
}

/// A configuration value that cannot describe a working model or optimizer.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
