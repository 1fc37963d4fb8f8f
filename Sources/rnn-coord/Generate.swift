// `rnn-coord generate`: sample text from a character model's checkpoint.
import ArgumentParser
import Foundation
import RNNCore
import RNNData
import RNNDistributed
import RNNReport

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a character model: feed --prompt, then sample --length characters one at a time.",
        discussion: """
            Each character is drawn from softmax(logits / --temperature) (only among the --top-k
            most likely with --top-k), and fed back with the recurrent state carried on;
            --temperature 0 always takes the most likely character (greedy). The same --seed gives
            the same text. Prints the prompt followed by the generated characters.
            Example:
              rnn-coord generate --checkpoint runs/sonnets --prompt "Shall I" --length 300 --temperature 0.8
            """
    )

    @Option(help: "The checkpoint file (ckpt-<step>.h5) or a run folder (its newest valid checkpoint).")
    var checkpoint: String
    @Option(help: "Text fed to the model before sampling starts.")
    var prompt: String
    @Option(parsing: .unconditional, help: "Characters to generate.")
    var length = 300
    @Option(parsing: .unconditional, help: "Softmax temperature (0: greedy; below 1 more conservative, above 1 more random).")
    var temperature: Double = 1
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Sample only among the K most likely characters.")
    var topK: Int?
    @Option(parsing: .unconditional, help: "Seed of the sampling.")
    var seed: UInt64 = 0
    @Option(name: .customLong("vocab-from"), help: "HDF5 file with the 'vocab' attribute (default: the run's training file).")
    var vocabFrom: String?

    func validate() throws {
        if prompt.isEmpty { throw ValidationError("Please specify a '--prompt' of at least one character.") }
        if length < 1 { throw ValidationError("Please specify '--length' of at least 1, found \(length).") }
        if !(temperature >= 0) || !temperature.isFinite { throw ValidationError("Please specify '--temperature' of 0 or more, found \(temperature).") }
        if let k = topK, k < 1 { throw ValidationError("Please specify '--top-k' of at least 1, found \(k).") }
    }

    func run() throws {
        do {
            let model = try LoadedModel.load(checkpoint: try resolveCheckpoint(checkpoint))
            try model.requireCharacterModel(flag: "generate")
            let vocabFile = vocabFrom ?? model.config.dataFiles.first ?? ""
            let source = try TensorDataset.open(path: vocabFile, options: TensorDatasetOptions(xName: model.config.xName, yName: model.config.yName, memoryBudgetBytes: 0))
            guard let vocabulary = source.vocabulary else {
                throw ReportError("\(vocabFile) has no 'vocab' attribute; pass --vocab-from FILE with the training file's vocabulary")
            }
            var sampler = TokenSampler(temperature: temperature, topK: topK, seed: seed)
            printLine(prompt + (try model.generate(prompt: prompt, length: length, sampler: &sampler, vocabulary: vocabulary)))
        } catch {
            throw fail("generate", error)
        }
    }
}
