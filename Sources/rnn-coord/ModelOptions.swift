// `rnn-coord start`'s model options beyond cell/hidden/layers (PyTorch semantics): an
// embedding, bidirectional layers, inter-layer dropout, and the lengths dataset's name.
import ArgumentParser

struct ModelOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Embedding size E: nn.Embedding(V, E) before the recurrent layers (X must hold token ids with vocab_size V).")
    var embedding: Int?
    @Option(name: .customLong("padding-idx"), parsing: .unconditional, help: "With --embedding: the embedding's padding_idx (its row starts at zero and gets no gradient).")
    var paddingIdx: Int?
    @Flag(help: "Bidirectional recurrent layers (PyTorch's bidirectional=True: _reverse parameters, a 2H head input).")
    var bidirectional = false
    @Option(parsing: .unconditional, help: "Dropout probability on the outputs of every recurrent layer but the last, in training only (needs --layers 2 or more).")
    var dropout: Float = 0
    @Option(name: .customLong("lengths-name"), help: "Name of the optional sequence-lengths dataset (N) in each file.")
    var lengthsName = "lengths"

    func validate() throws {
        if let e = embedding, e < 1 { throw ValidationError("Please specify '--embedding' of at least 1, found \(e).") }
        if paddingIdx != nil && embedding == nil { throw ValidationError("Please specify '--padding-idx' only with '--embedding'.") }
        if let p = paddingIdx, p < 0 { throw ValidationError("Please specify '--padding-idx' of 0 or more, found \(p).") }
        if !(dropout >= 0 && dropout < 1) { throw ValidationError("Please specify '--dropout' in [0, 1), found \(dropout).") }
    }
}
