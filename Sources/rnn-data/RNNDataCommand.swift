// rnn-data: make and inspect TensorDataset files. Thin: all logic lives in RNNData.

import ArgumentParser
import Foundation
import RNNData
import RNNReport

@main
struct RNNDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnn-data",
        abstract: "Make and inspect TensorDataset HDF5 files (X features, Y targets).",
        subcommands: [Make.self, Inspect.self]
    )

    /// A wrong flag or value gets one error line (and a hint), as in rnn-coord.
    static func main() {
        CommandRunner.main(RNNDataCommand.self, arguments: Array(CommandLine.arguments.dropFirst()))
    }
}

/// Exit with a message on stderr and a non-zero status for every DataError.
func failing<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DataError {
        FileHandle.standardError.write(Data("rnn-data: error: \(error)\n".utf8))
        throw ExitCode(2)
    }
}

struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Output HDF5 file.")
    var output: String

    @Flag(help: "Store X and Y contiguous, without gzip+shuffle compression.")
    var noCompress = false
}

struct Make: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a dataset file.", subcommands: [Hello.self, Random.self, Text.self, Tokens.self])

    struct Tokens: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Variable-length token classification: ids (N, T) padded with 0 at the end, /lengths (N); label = the most frequent keyword id 1...C.")
        @OptionGroup var output: OutputOptions
        @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "Samples N.") var count = 2000
        @Option(name: .customLong("min-length"), parsing: .unconditional, help: "Shortest sequence.") var minLength = 5
        @Option(name: .customLong("max-length"), parsing: .unconditional, help: "Longest sequence (T).") var maxLength = 40
        @Option(name: .customLong("vocab-size"), parsing: .unconditional, help: "Vocabulary V (id 0 is padding, 1...C keywords).") var vocabSize = 100
        @Option(name: [.customShort("c"), .long], parsing: .unconditional, help: "Classes C.") var classes = 4
        @Option(parsing: .unconditional, help: "Random seed.") var seed: UInt64 = 0

        func validate() throws {
            if count < 1 { throw ValidationError("Please specify '--count' of at least 1.") }
            if minLength < 1 || minLength > maxLength { throw ValidationError("Please specify 1 <= '--min-length' <= '--max-length'.") }
            if classes < 2 { throw ValidationError("Please specify '--classes' of at least 2.") }
            if vocabSize < classes + 2 { throw ValidationError("Please specify '--vocab-size' of at least '--classes' + 2.") }
        }
        func run() throws {
            let contents = SyntheticData.variableLengthTokens(count: count, minLength: minLength, maxLength: maxLength,
                                                              vocabularySize: vocabSize, classes: classes, seed: seed)
            try failing { try contents.write(to: output.output, compress: !output.noCompress) }
            print("wrote \(output.output): N=\(count) lengths \(minLength)-\(maxLength) V=\(vocabSize) classes=\(classes) seed=\(seed)")
        }
    }

    struct Hello: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The \"hello\" -> \"elloh\" example: token ids of \"hello\", per-step targets \"elloh\", vocab \"helo\".")
        @OptionGroup var output: OutputOptions
        @Option(parsing: .unconditional, help: "Copies of the single sample (so it can be split among workers).")
        var copies = 1

        func validate() throws {
            if copies < 1 { throw ValidationError("Please specify '--copies' of at least 1.") }
        }
        func run() throws {
            try failing { try SyntheticData.hello(copies: copies).write(to: output.output, compress: !output.noCompress) }
            print("wrote \(output.output): \(copies) x \"hello\" -> \"elloh\"")
        }
    }

    struct Random: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Random sequences X ~ N(0,1) (N, T, I); label = rank bucket of the sum of all features into C equal classes.")
        @OptionGroup var output: OutputOptions
        @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "Samples N.") var count = 1000
        @Option(name: [.customShort("t"), .long], parsing: .unconditional, help: "Time steps T.") var steps = 10
        @Option(name: [.customShort("i"), .long], parsing: .unconditional, help: "Features per step I.") var features = 5
        @Option(name: [.customShort("c"), .long], parsing: .unconditional, help: "Classes C.") var classes = 2
        @Option(parsing: .unconditional, help: "Random seed.") var seed: UInt64 = 0

        func validate() throws {
            if count < 1 { throw ValidationError("Please specify '--count' of at least 1.") }
            if steps < 1 { throw ValidationError("Please specify '--steps' of at least 1.") }
            if features < 1 { throw ValidationError("Please specify '--features' of at least 1.") }
            if classes < 2 { throw ValidationError("Please specify '--classes' of at least 2.") }
            if classes > count { throw ValidationError("Please specify '--classes' of at most '--count' (\(count)).") }
        }
        func run() throws {
            let contents = SyntheticData.random(count: count, steps: steps, features: features, classes: classes, seed: seed)
            try failing { try contents.write(to: output.output, compress: !output.noCompress) }
            print("wrote \(output.output): N=\(count) T=\(steps) I=\(features) classes=\(classes) seed=\(seed)")
        }
    }

    struct Text: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A character language model: X token ids (N, T) with vocab_size, Y the next character (N, T).")
        @OptionGroup var output: OutputOptions
        @Option(help: "UTF-8 text file.") var from: String
        @Option(parsing: .unconditional, help: "Characters per sequence T.") var seqLen = 64
        @Option(parsing: .unconditional, help: "Characters between sequence starts (default: --seq-len, no overlap).") var stride: Int?
        @Option(name: .customLong("vocab-from"), help: "Use the vocabulary (character ids) of this HDF5 file, e.g. the training file, so both files agree.")
        var vocabFrom: String?
        @Option(name: .customLong("val-fraction"), parsing: .unconditional, help: "Also write the text's last F as validation data (--val-output), with the same vocabulary.")
        var valFraction: Double?
        @Option(name: .customLong("val-output"), help: "The validation file of --val-fraction (default: OUTPUT with -val before .h5).")
        var valOutput: String?

        func validate() throws {
            if seqLen < 1 { throw ValidationError("Please specify '--seq-len' of at least 1.") }
            if let stride, stride < 1 { throw ValidationError("Please specify '--stride' of at least 1.") }
            if let f = valFraction, !(f > 0 && f < 1) { throw ValidationError("Please specify '--val-fraction' as a fraction in (0, 1), found \(f).") }
            if valOutput != nil && valFraction == nil { throw ValidationError("'--val-output' needs '--val-fraction'.") }
        }

        /// OUTPUT.h5 -> OUTPUT-val.h5.
        var validationPath: String {
            if let valOutput { return valOutput }
            let o = output.output
            return o.hasSuffix(".h5") ? String(o.dropLast(3)) + "-val.h5" : o + "-val.h5"
        }
        func run() throws {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: from)) } catch {
                FileHandle.standardError.write(Data("rnn-data: error: \(from): expected a readable text file, found: \(error.localizedDescription)\n".utf8))
                throw ExitCode(2)
            }
            guard let text = String(data: data, encoding: .utf8) else {
                FileHandle.standardError.write(Data("rnn-data: error: \(from): expected UTF-8 text, found bytes that are not UTF-8\n".utf8))
                throw ExitCode(2)
            }
            let name = URL(fileURLWithPath: from).lastPathComponent
            var vocabulary: [Unicode.Scalar]?
            if let vocabFrom {
                let source = try failing { try TensorDataset.open(path: vocabFrom, options: TensorDatasetOptions(memoryBudgetBytes: 0)) }
                guard let v = source.vocabulary else {
                    FileHandle.standardError.write(Data("rnn-data: error: --vocab-from \(vocabFrom): expected a 'vocab' attribute (a file from 'rnn-data make text'), found none\n".utf8))
                    throw ExitCode(2)
                }
                vocabulary = v
            }
            if let valFraction {
                let (train, validation) = try failing {
                    try SyntheticData.textSplit(text, steps: seqLen, stride: stride, source: name, validationFraction: valFraction, vocabulary: vocabulary)
                }
                try failing { try train.write(to: output.output, compress: !output.noCompress) }
                try failing { try validation.write(to: validationPath, compress: !output.noCompress) }
                print("wrote \(output.output): \(train.count) sequences of \(seqLen) characters, and \(validationPath): \(validation.count), vocab \(train.classes ?? 0)")
                return
            }
            let contents = try failing { try SyntheticData.text(text, steps: seqLen, stride: stride, source: name, vocabulary: vocabulary) }
            try failing { try contents.write(to: output.output, compress: !output.noCompress) }
            print("wrote \(output.output): \(contents.count) sequences of \(seqLen) characters, vocab \(contents.classes ?? 0)")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a dataset file: shapes, dtypes, chunking/compression, class histogram, first sample.")
    @Argument(help: "HDF5 file.") var file: String
    @Option(help: "Name of the features dataset.") var xName = "X"
    @Option(help: "Name of the targets dataset.") var yName = "Y"
    @Option(help: "Name of the optional sequence-lengths dataset.") var lengthsName = "lengths"

    func run() throws {
        let options = TensorDatasetOptions(xName: xName, yName: yName, lengthsName: lengthsName, tokenIds: true)
        print(try failing { try DatasetInspector.report(path: file, options: options) })
    }
}
