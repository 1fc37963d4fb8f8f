// rnn-worker: joins a coordinator and trains. Parses flags and calls RNNDistributed.Worker.
import ArgumentParser
import Foundation
import Logging
import RNNDistributed
import RNNReport

@main
struct RNNWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnn-worker",
        abstract: "Join an rnn-coord run and train one data-parallel replica.",
        discussion: """
            Example, with 'rnn-coord start ... --workers 2 --bind tcp://0.0.0.0:5555'
            running on coord-host:
              rnn-worker --connect tcp://coord-host:5555 --data-root /mnt/datasets \\
                --advertise-host $(hostname)
            The worker opens the dataset files the coordinator names (by their path,
            or by file name under --data-root) and trains until the run ends.
            """,
        version: "0.1.0"
    )

    @Option(help: "The coordinator's endpoint, e.g. tcp://10.0.0.5:5555.")
    var connect: String
    @Option(name: .customLong("data-root"), help: "Folder where this machine mounts the dataset files (looked up by file name).")
    var dataRoot: String?
    @Option(name: .customLong("data-bind"), help: "Endpoint to bind the ring socket (default: an abstract IPC socket for a loopback coordinator, where all workers share this machine; else tcp://0.0.0.0:* on all interfaces).")
    var dataBind: String?
    @Option(name: .customLong("advertise-host"), help: "Host or address the other workers use to reach this one.")
    var advertiseHost: String?
    @Option(parsing: .unconditional, help: "Compute threads: GEMMs and the recurrent steps (default: the run's --threads); the results do not depend on it.")
    var threads: Int?
    @Option(name: .customLong("join-timeout"), parsing: .unconditional, help: "Seconds to wait for the coordinator to welcome this worker.")
    var joinTimeout: Double = 120
    @Option(parsing: .unconditional, help: "Microseconds a wait for a ring frame keeps polling, yielding the CPU between tries, before it sleeps (0: sleep at once).")
    var spin = 100
    @Flag(help: "Print only errors.")
    var quiet = false
    // MARK: Output (the product layer)
    @Option(name: .customLong("log-format"), help: "text (plain lines) or json (one JSON object per line).")
    var logFormat: LogFormat = .text
    @Option(name: .customLong("log-level"), help: "Lowest log level shown: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info
    // MARK: end of the product block
    // Fault tolerance and security.
    @Option(name: .customLong("reconnect-timeout"), parsing: .unconditional, help: "After losing the coordinator, keep trying to rejoin it for this many seconds (0: exit non-zero at once).")
    var reconnectTimeout: Double = 0
    @Option(help: "The run token (default: RNN_TOKEN, or the coordinator's token file on this machine).")
    var token: String?
    @Option(name: .customLong("curve-key"), help: "This worker's CURVE key file (NAME.key from `rnn-coord keygen`).")
    var curveKey: String?
    @Option(name: .customLong("server-key"), help: "The coordinator's public key: the path of its NAME.pub file, or z85: followed by the 40 Z85 characters.")
    var serverKey: String?

    func validate() throws {
        guard connect.hasPrefix("tcp://") || connect.hasPrefix("ipc://") else {
            throw ValidationError("Please specify '--connect' as tcp://HOST:PORT (or ipc://NAME for a coordinator on this machine), found '\(connect)'.")
        }
        if let t = threads, t < 1 { throw ValidationError("Please specify '--threads' of at least 1.") }
        if !(joinTimeout > 0) { throw ValidationError("Please specify a positive '--join-timeout'.") }
        if reconnectTimeout < 0 { throw ValidationError("Please specify a '--reconnect-timeout' of 0 or more.") }
        if (curveKey == nil) != (serverKey == nil) { throw ValidationError("Please specify '--curve-key' and '--server-key' together.") }
        if spin < 0 { throw ValidationError("Please specify '--spin' of 0 or more microseconds, found \(spin).") }
    }

    func run() throws {
        var options = WorkerOptions(connect: connect, dataRoot: dataRoot, dataBind: dataBind, advertiseHost: advertiseHost,
                                    threads: threads, joinTimeout: joinTimeout, token: token ?? "")
        options.reconnectTimeout = reconnectTimeout
        options.spinMicroseconds = spin
        let (_, logger) = makeConsoleLogger(label: "rnn-worker", format: logFormat, level: quiet ? .error : logLevel)
        // SIGTERM/SIGINT: leave the run cleanly (LEAVE), exit 143/130; a second one exits at once.
        let stop = StopRequest()
        stop.installSignalHandlers()
        options.stop = stop
        // Started by `rnn-coord start --local-workers`: never outlive that coordinator.
        options.parentPID = ProcessInfo.processInfo.environment[LocalWorkerGroup.parentEnvironmentKey].flatMap { Int32($0) }
        do {
            if let curveKey, let serverKey { options.curve = try CurveClientConfig.load(keyFile: curveKey, serverKey: serverKey) }
            let worker = Worker(options: options, log: { line in logger.info("\(line)") })
            _ = try worker.run()
        } catch let interrupted as Interrupted {
            logger.notice("\(interrupted)")
            throw ExitCode(interrupted.exitCode)
        } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
    }
}
