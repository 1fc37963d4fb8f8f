// `rnn-coord generate`: text from a character model, as the PyTorch tutorial's sampling loop
// does it: feed the prompt, then one character at a time drawn from softmax(logits / T) (or the
// arg-max at T = 0), carrying the recurrent state (`hidden`) from step to step.
import RNNCore

extension LoadedModel {
    /// Checks that this checkpoint is a character model over `vocabulary` (per-step class
    /// targets, one input and one class per character).
    func checkCharacterModel(vocabulary: [Unicode.Scalar], flag: String) throws {
        let m = config.model
        try requireCharacterModel(flag: flag)
        guard vocabulary.count == m.inputSize, m.outputSize == m.inputSize else {
            throw ReportError("\(flag) needs a character model whose inputs and classes are the vocabulary's \(vocabulary.count) characters; this checkpoint takes \(m.inputSize) inputs and predicts \(m.outputSize) classes")
        }
    }

    /// The vocabulary ids of `text`'s characters; the error names the first one not in it.
    func tokenIds(_ text: String, vocabulary: [Unicode.Scalar], flag: String) throws -> [Int] {
        var index: [Unicode.Scalar: Int] = [:]
        for (i, c) in vocabulary.enumerated() where index[c] == nil { index[c] = i }
        var ids: [Int] = []
        for c in text.unicodeScalars {
            guard let i = index[c] else {
                let shown = vocabulary.map { $0 == "\n" ? "\\n" : String($0) }.joined()
                throw ReportError("\(flag): the character '\(c)' is not in the model's vocabulary (\(shown))")
            }
            ids.append(i)
        }
        guard !ids.isEmpty else { throw ReportError("\(flag): expected at least one character") }
        return ids
    }

    /// The network's input for token ids: the ids themselves for a token-id model (a gather of
    /// W_ih's columns, or an embedding), one-hot rows (T, V) for a model of float features.
    func networkInput(_ ids: [Int]) -> [Float] {
        if config.model.tokenInput { return ids.map { Float($0) } }
        let V = config.model.inputSize
        var x = [Float](repeating: 0, count: ids.count * V)
        for (t, id) in ids.enumerated() { x[t * V + id] = 1 }
        return x
    }

    /// The `length` characters that follow `prompt`: the prompt runs through the network in one
    /// pass, then each drawn character is fed back with the carried state.
    public func generate(prompt: String, length: Int, sampler: inout TokenSampler, vocabulary: [Unicode.Scalar]) throws -> String {
        try checkCharacterModel(vocabulary: vocabulary, flag: "generate")
        if config.model.bidirectional {
            // Its reverse direction reads each character's future: fed one character at a
            // time with the state carried on, it would see none.
            throw ReportError("generate needs a unidirectional model; this checkpoint is bidirectional (its reverse direction reads the text from the end), so it cannot continue a text one character at a time")
        }
        let ids = try tokenIds(prompt, vocabulary: vocabulary, flag: "--prompt")
        let V = config.model.outputSize
        var p = try network.predict(parameters: checkpoint.parameters, input: networkInput(ids), batch: 1, steps: ids.count)
        var text = String.UnicodeScalarView()
        var logits = p.outputs[((ids.count - 1) * V)..<(ids.count * V)]
        for i in 0..<length {
            let next = sampler.next(logits)
            text.append(vocabulary[next])
            if i == length - 1 { break }
            p = try network.predict(parameters: checkpoint.parameters, input: networkInput([next]), batch: 1, steps: 1,
                                    initialState: p.finalState)
            logits = p.outputs[0..<V]
        }
        return String(text)
    }

    /// The probability of each character following `text` (softmax of the last step's logits),
    /// most likely first.
    public func nextCharacterProbabilities(_ text: String, vocabulary: [Unicode.Scalar]) throws -> [(Unicode.Scalar, Double)] {
        try checkCharacterModel(vocabulary: vocabulary, flag: "--text")
        let ids = try tokenIds(text, vocabulary: vocabulary, flag: "--text")
        let V = config.model.outputSize
        let out = try network.predict(parameters: checkpoint.parameters, input: networkInput(ids), batch: 1, steps: ids.count).outputs
        let p = softmax(out[((ids.count - 1) * V)..<(ids.count * V)])
        return p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }.map { (vocabulary[$0], p[$0]) }
    }
}
