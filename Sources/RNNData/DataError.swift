// Every problem with a dataset file becomes a DataError that names the file, the dataset,
// what was expected and what was found.

import RNNHDF5

/// A dataset that cannot be used, and why.
public struct DataError: Error, CustomStringConvertible, Sendable {
    /// The class of problem (stable, for tests and exit codes).
    public enum Kind: String, Sendable {
        /// The path does not exist or cannot be read.
        case fileNotFound
        /// The file exists but does not carry the HDF5 signature.
        case notHDF5
        /// X or Y is missing.
        case missingDataset
        /// X or Y has the wrong number of dimensions.
        case rankMismatch
        /// A dimension disagrees with another dataset (T of Y vs T of X, ...).
        case shapeMismatch
        /// N of X differs from N of Y.
        case countMismatch
        /// The stored element type is not one we can read.
        case unsupportedType
        /// A class id outside [0, classes).
        case labelOutOfRange
        /// A token id outside [0, vocab_size).
        case tokenOutOfRange
        /// A sequence length outside [1, T].
        case lengthOutOfRange
        /// NaN or infinity in features or float targets.
        case nonFinite
        /// N, T or I is zero.
        case empty
        /// Several files disagree on T, I or target kind.
        case filesDisagree
        /// A root or dataset attribute is missing or malformed.
        case badAttribute
        /// The caller asked for something impossible (row out of range, batch size 0, ...).
        case badRequest
        /// libhdf5 failed while reading or writing.
        case io
        /// The data does not fit the model (input size, input kind, outputs, head, vocabulary).
        case modelMismatch
    }

    public var kind: Kind
    /// The file concerned (empty for requests that concern no single file).
    public var file: String
    /// The dataset path inside the file, e.g. `/X`, when one is concerned.
    public var dataset: String?
    public var expected: String
    public var found: String
    /// The underlying libhdf5 failure, with its error stack, when there was one.
    public var hdf5: HDF5Error?

    public init(_ kind: Kind, file: String, dataset: String? = nil, expected: String, found: String, hdf5: HDF5Error? = nil) {
        self.kind = kind
        self.file = file
        self.dataset = dataset
        self.expected = expected
        self.found = found
        self.hdf5 = hdf5
    }

    public var description: String {
        var where_ = file
        if let dataset { where_ += where_.isEmpty ? "dataset '\(dataset)'" : ": dataset '\(dataset)'" }
        var text = (where_.isEmpty ? "" : where_ + ": ") + "expected \(expected), found \(found)"
        if let hdf5 { text += "\n" + hdf5.description }
        return text
    }
}

extension DataError {
    static func io(_ error: HDF5Error, file: String, dataset: String? = nil, doing: String) -> DataError {
        DataError(.io, file: file, dataset: dataset, expected: "to succeed \(doing)", found: "an HDF5 error: \(error.innermostCause ?? error.call)", hdf5: error)
    }
}
