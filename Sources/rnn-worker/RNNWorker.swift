// rnn-worker: joins a coordinator and trains. Parses flags and calls RNNDistributed.Worker.
import ArgumentParser
import Foundation
import RNNDistributed

@main
struct RNNWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rnn-worker",
        abstract: "Join an rnn-coord run and train one data-parallel replica."
    )

    @Option(help: "The coordinator's endpoint, e.g. tcp://10.0.0.5:5555.")
    var connect: String
    @Option(name: .customLong("data-root"), help: "Folder where this machine mounts the dataset files (looked up by file name).")
    var dataRoot: String?
    @Option(name: .customLong("data-bind"), help: "Endpoint to bind the ring socket (default: loopback for a loopback coordinator, else all interfaces).")
    var dataBind: String?
    @Option(name: .customLong("advertise-host"), help: "Host or address the other workers use to reach this one.")
    var advertiseHost: String?
    @Option(help: "GEMM threads (default: the run's --threads).")
    var threads: Int?
    @Option(name: .customLong("join-timeout"), help: "Seconds to wait for the coordinator to welcome this worker.")
    var joinTimeout: Double = 120
    @Flag(help: "Print only errors.")
    var quiet = false
    // Fault tolerance and security.
    @Option(name: .customLong("reconnect-timeout"), help: "After losing the coordinator, keep trying to rejoin it for this many seconds (0: exit non-zero at once).")
    var reconnectTimeout: Double = 0
    @Option(help: "The run token (default: RNN_TOKEN, or the coordinator's token file on this machine).")
    var token: String?
    @Option(name: .customLong("curve-key"), help: "This worker's CURVE key file (NAME.key from `rnn-coord keygen`).")
    var curveKey: String?
    @Option(name: .customLong("server-key"), help: "The coordinator's public key: its NAME.pub file or the 40 Z85 characters.")
    var serverKey: String?

    func validate() throws {
        guard connect.hasPrefix("tcp://") || connect.hasPrefix("ipc://") else {
            throw ValidationError("Please specify '--connect' as tcp://HOST:PORT, found '\(connect)'.")
        }
        if let t = threads, t < 1 { throw ValidationError("Please specify '--threads' of at least 1.") }
        if !(joinTimeout > 0) { throw ValidationError("Please specify a positive '--join-timeout'.") }
        if reconnectTimeout < 0 { throw ValidationError("Please specify a '--reconnect-timeout' of 0 or more.") }
        if (curveKey == nil) != (serverKey == nil) { throw ValidationError("Please specify '--curve-key' and '--server-key' together.") }
    }

    func run() throws {
        var options = WorkerOptions(connect: connect, dataRoot: dataRoot, dataBind: dataBind, advertiseHost: advertiseHost,
                                    threads: threads, joinTimeout: joinTimeout, token: token ?? "")
        options.reconnectTimeout = reconnectTimeout
        let quiet = self.quiet
        do {
            if let curveKey, let serverKey { options.curve = try CurveClientConfig.load(keyFile: curveKey, serverKey: serverKey) }
            let worker = Worker(options: options, log: { line in if !quiet { printLine(line) } })
            _ = try worker.run()
        } catch {
            FileHandle.standardError.write(Data("rnn-worker: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
