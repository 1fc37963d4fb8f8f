// `--local-workers N`: the coordinator starts N `rnn-worker` processes on this machine, so one
// command trains across processes.
import Foundation

/// Worker processes started by the coordinator; they are terminated if still running when
/// the group is stopped (or released).
public final class LocalWorkerGroup: @unchecked Sendable {
    private var processes: [Process] = []
    private let lock = NSLock()
    private var failures: [String] = []

    /// Starts `count` copies of `executable` with `--connect endpoint` plus `extraArguments`.
    /// Their output goes to this process's standard output and error.
    /// `environment` is added to this process's environment (e.g. RNN_TOKEN, kept out of
    /// the process list).
    public init(count: Int, executable: String, endpoint: String, extraArguments: [String] = [],
                environment: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw CoordinatorError("cannot start local workers: no rnn-worker executable at \(executable)")
        }
        // The workers watch this pid: if the coordinator dies (even by SIGKILL), they exit.
        let environment = environment.merging([Self.parentEnvironmentKey: "\(getpid())"]) { $1 }
        for i in 0..<count {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = ["--connect", endpoint] + extraArguments
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            p.terminationHandler = { [weak self] proc in
                guard proc.terminationStatus != 0 || proc.terminationReason != .exit else { return }
                self?.record("local worker \(i) (pid \(proc.processIdentifier)) exited with status \(proc.terminationStatus)")
            }
            do {
                try p.run()
            } catch {
                stop()
                throw CoordinatorError("cannot start local worker \(i) from \(executable): \(error.localizedDescription)")
            }
            processes.append(p)
        }
    }

    private func record(_ text: String) {
        lock.lock()
        failures.append(text)
        lock.unlock()
    }

    /// Exits of local workers that failed so far.
    public var failed: [String] {
        lock.lock()
        defer { lock.unlock() }
        return failures
    }

    /// The environment variable holding the coordinator's pid (see `WorkerOptions.parentPID`).
    public static let parentEnvironmentKey = "RNN_PARENT_PID"

    /// The workers' process ids.
    public var pids: [Int32] { processes.map(\.processIdentifier) }

    /// Waits up to `seconds` for every worker to exit, then terminates the rest.
    public func stop(waitSeconds seconds: Double = 0) {
        let deadline = Date().addingTimeInterval(seconds)
        for p in processes {
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { p.terminate() }
        }
        for p in processes where p.isRunning {
            usleep(100_000)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
    }

    deinit { stop() }

    /// The `rnn-worker` next to the running executable.
    public static func siblingExecutable(named name: String = "rnn-worker") -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let dir = me.deletingLastPathComponent()
        let candidate = dir.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        if let path = ProcessInfo.processInfo.environment["PATH"] {
            for d in path.split(separator: ":") {
                let c = (String(d) as NSString).appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: c) { return c }
            }
        }
        return candidate
    }
}
