// Whether a dataset fits a model: the one check every reader of training or validation data
// runs (the coordinator for the run's files, each worker for its own copy of them).
import RNNCore

extension TensorDataset {
    /// Checks that this dataset has the input size, the kind of input, the targets and the head
    /// `model` was built for; with `training` (the run's training data), also that token ids mean
    /// the same characters in both. `role` names the data in the error ("training data",
    /// "validation data").
    public func checkFits(_ model: ModelConfig, role: String = "dataset", training: TensorDataset? = nil) throws(DataError) {
        let where_ = "\(role) \(files.map(\.path).joined(separator: ", "))"
        func mismatch(_ dataset: String, expected: String, found: String) -> DataError {
            DataError(.modelMismatch, file: where_, dataset: dataset, expected: expected, found: found)
        }
        if let training, case .tokens(let v) = inputEncoding {
            let trainingFiles = training.files.map(\.path).joined(separator: ", ")
            if case .tokens(let trainingV) = training.inputEncoding, v != trainingV {
                throw mismatch("/X", expected: "a vocabulary of \(trainingV) tokens (vocab_size) like the training data \(trainingFiles): "
                    + "token ids must mean the same characters in both; write both files with one vocabulary", found: "\(v) tokens")
            }
            if let a = vocabulary, let b = training.vocabulary, a != b {
                throw mismatch("/X", expected: "the vocabulary of the training data \(trainingFiles) ('\(String(String.UnicodeScalarView(b.prefix(40))))'): "
                    + "token ids must mean the same characters in both", found: "'\(String(String.UnicodeScalarView(a.prefix(40))))'")
            }
        }
        if inputSize != model.inputSize {
            throw mismatch("/X", expected: "\(model.inputSize) input features per step (the model's input size)", found: "\(inputSize)")
        }
        if deliversTokenIds != model.tokenInput {
            throw mismatch("/X", expected: model.tokenInput ? "token ids (the model embeds them)" : "float features (the model's input)",
                           found: inputEncoding == .dense ? "float features" : "token ids")
        }
        if targetKind.outputSize != model.outputSize {
            throw mismatch("/Y", expected: "\(model.outputSize) outputs (the model's output size)", found: "\(targetKind.outputSize) (\(targetKind))")
        }
        if targetKind.head != model.head || targetKind.loss != model.loss {
            throw mismatch("/Y", expected: "targets for the model's head '\(model.head.rawValue)' and loss '\(model.loss.rawValue)'",
                           found: "\(targetKind), which needs head '\(targetKind.head.rawValue)' and loss '\(targetKind.loss.rawValue)'")
        }
    }
}
