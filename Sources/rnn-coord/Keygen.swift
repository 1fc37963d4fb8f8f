// `rnn-coord keygen`: CURVE key pairs for the coordinator and each worker.
import ArgumentParser
import Foundation
import RNNDistributed

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub (public).",
        discussion: """
            One pair for the coordinator and one per worker; the coordinator's allow-list is the
            workers' .pub files put together:
              rnn-coord keygen --out keys --name coord
              rnn-coord keygen --out keys --name worker1
              cat keys/worker*.pub > keys/allowed
              rnn-coord start ... --bind tcp://0.0.0.0:5555 --curve-key keys/coord.key --allow keys/allowed
              rnn-worker --connect tcp://HOST:5555 --curve-key keys/worker1.key --server-key keys/coord.pub
            File format: text lines 'public-key = <40 Z85 characters>' and (only in NAME.key)
            'secret-key = <40 Z85 characters>'; lines starting with '#' are comments.
            """
    )

    @Option(help: "Folder to write the key files into (created if missing).")
    var out = "."
    @Option(help: "Base name of the files: NAME.key and NAME.pub.")
    var name: String

    func run() throws {
        do {
            let files = try CurveKeyFiles.generate(directory: out, name: name)
            print("Wrote \(files.keyFile) (secret, keep it on this machine) and \(files.publicFile) (public)")
        } catch {
            FileHandle.standardError.write(Data("rnn-coord: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
