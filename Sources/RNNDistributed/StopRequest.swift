// SIGINT and SIGTERM as a request to stop at the next safe point.
//
// The coordinator checks the request between step groups: it collects the group in flight,
// writes a checkpoint of the last completed step, says BYE to the workers and throws
// `Interrupted`; a worker sends LEAVE and throws `Interrupted`, so the coordinator re-forms the
// ring without it at once. The executables exit 128 + the signal (130 for SIGINT, 143 for
// SIGTERM). A second signal does not wait: the registered last actions run (remove the token
// file, kill local workers) and the process exits at once.
import Foundation

/// A stop asked for by a signal (or by a test).
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var signalNumber: Int32?
    private var lastActions: [@Sendable () -> Void] = []
    private var sources: [DispatchSourceSignal] = []

    public init() {}

    /// The signal that asked to stop, or nil.
    public var requested: Int32? { lock.lock(); defer { lock.unlock() }; return signalNumber }

    /// Asks to stop, as `signal` would (a second request exits the process at once).
    public func request(_ signal: Int32) {
        lock.lock()
        let first = signalNumber == nil
        if first { signalNumber = signal }
        let actions = lastActions
        lock.unlock()
        if !first {
            for action in actions { action() }
            _exit(128 + signal)
        }
        onFirstSignal(signal)
    }

    /// Runs on the first signal (e.g. to say that the run is stopping).
    public var onFirstSignal: @Sendable (Int32) -> Void = { _ in }

    /// Adds an action for a forced exit (the second signal): it must be quick and not wait.
    public func atForcedExit(_ action: @escaping @Sendable () -> Void) {
        lock.lock(); lastActions.append(action); lock.unlock()
    }

    /// Turns SIGINT and SIGTERM (or `signals`) into requests, for the rest of the process.
    public func installSignalHandlers(_ signals: [Int32] = [SIGINT, SIGTERM]) {
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global(qos: .userInitiated))
            source.setEventHandler { [weak self] in self?.request(sig) }
            source.resume()
            lock.lock(); sources.append(source); lock.unlock()
        }
    }

    /// "SIGINT", "SIGTERM" or "signal N".
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(signal)"
        }
    }
}

/// A run stopped by a signal; the executables exit with `exitCode` (128 + the signal).
public struct Interrupted: Error, CustomStringConvertible {
    public var signal: Int32
    /// The checkpoint holding the last completed step (nil: none was written).
    public var checkpoint: String?
    /// Completed global steps.
    public var globalStep: Int
    public var description: String

    public var exitCode: Int32 { 128 + signal }
}
