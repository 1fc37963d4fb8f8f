// The one error funnel of RNNHDF5: every libhdf5 call whose result can signal failure goes
// through `h5Call`, which turns a negative return into an `HDF5Error` carrying the call's
// name, the object it worked on and the text of HDF5's error stack.

import CHDF5

/// A failed libhdf5 call: which call, on which object, and HDF5's own explanation.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// The libhdf5 function that failed, e.g. `H5Dread`.
    public var call: String
    /// The object it worked on and what we were doing, e.g. `reading rows 0..<64 of /X in train.h5`.
    public var context: String
    /// HDF5's error stack, innermost last, one line per entry (may be empty).
    public var stack: [String]

    public init(call: String, context: String, stack: [String] = []) {
        self.call = call
        self.context = context
        self.stack = stack
    }

    /// The most specific line of the stack (HDF5 records the deepest cause last).
    public var innermostCause: String? { stack.last }

    public var description: String {
        var text = "\(call) failed while \(context)"
        if !stack.isEmpty {
            text += "\nHDF5 error stack:\n  " + stack.joined(separator: "\n  ")
        }
        return text
    }
}

/// Turns off HDF5's automatic printing of its error stack to stderr for the calling thread
/// (HDF5 keeps that setting per thread), so errors surface only as `HDF5Error`s.
@inline(__always)
func silenceHDF5ErrorPrinting() {
    _ = H5Eset_auto2(CHDF5_H5E_DEFAULT(), nil, nil)
}

/// The funnel: runs `body` (one libhdf5 call), and if it returns a negative value throws an
/// `HDF5Error` naming `call` and `context` with the captured error stack.
@inline(__always)
func h5Call<R: BinaryInteger>(
    _ call: String, _ context: @autoclosure () -> String, _ body: () -> R
) throws(HDF5Error) -> R {
    silenceHDF5ErrorPrinting()
    let result = body()
    if result < 0 {
        throw HDF5Error(call: call, context: context(), stack: captureHDF5ErrorStack())
    }
    return result
}

/// Collects the current thread's HDF5 error stack as text (H5Ewalk2) and clears it.
func captureHDF5ErrorStack() -> [String] {
    final class Lines { var items: [String] = [] }
    let lines = Lines()
    withExtendedLifetime(lines) {
        let context = Unmanaged.passUnretained(lines).toOpaque()
        _ = H5Ewalk2(CHDF5_H5E_DEFAULT(), H5E_WALK_UPWARD, { index, entry, context in
            guard let entry, let context else { return 0 }
            let sink = Unmanaged<Lines>.fromOpaque(context).takeUnretainedValue()
            let e = entry.pointee
            let function = e.func_name.map { String(cString: $0) } ?? "?"
            let description = e.desc.map { String(cString: $0) } ?? ""
            let major = hdf5MessageText(e.maj_num)
            let minor = hdf5MessageText(e.min_num)
            sink.items.append("#\(index) \(function): \(description) [\(major): \(minor)]")
            return 0
        }, context)
    }
    _ = H5Eclear2(CHDF5_H5E_DEFAULT())
    // H5E_WALK_UPWARD lists the innermost error first; keep the outermost first.
    return lines.items.reversed()
}

private func hdf5MessageText(_ id: hid_t) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    let n = buffer.withUnsafeMutableBufferPointer { H5Eget_msg(id, nil, $0.baseAddress, 256) }
    if n <= 0 { return "?" }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
