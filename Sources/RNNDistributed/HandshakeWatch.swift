// What a failed CURVE handshake means, in words, on both sides of the control socket.
// ZeroMQ keeps such failures to its socket monitor (see RNNTransport's ZMQMonitor for what
// each case looks like on the wire); without this a worker with a wrong key only said
// "no answer from the coordinator" and the coordinator said nothing at all.
import Foundation
import RNNTransport

/// The worker's view: the first handshake failure of its control connection, as a sentence.
final class ClientHandshakeWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var failureText: String?
    private var closedDuringHandshake = 0
    private var monitor: ZMQMonitor?

    /// Starts watching `socket` (before it connects to `endpoint`). `usesCurve`: this worker
    /// was given --curve-key and --server-key.
    init(socket: ZMQSocket, endpoint: String, usesCurve: Bool) throws {
        monitor = try ZMQMonitor(socket) { [weak self] event in
            self?.observe(event.kind, endpoint: endpoint, usesCurve: usesCurve)
        }
    }

    /// Why the coordinator refused this worker's handshake, once it is clear; nil before.
    var failure: String? { lock.lock(); defer { lock.unlock() }; return failureText }

    func stop() { monitor?.stop() }

    deinit { monitor?.stop() }

    private func observe(_ kind: ZMQMonitorEvent.Kind, endpoint: String, usesCurve: Bool) {
        let text: String?
        switch kind {
        case .handshakeSucceeded:
            lock.lock(); closedDuringHandshake = 0; lock.unlock()
            return
        case .authenticationFailed(let status):
            text = "the coordinator at \(endpoint) rejected our CURVE handshake (ZAP status \(status)): this worker's public key "
                + "is not on its allow-list; add this worker's .pub file to the coordinator's --allow file, or check --curve-key"
        case .mechanismMismatch:
            text = usesCurve
                ? "the coordinator at \(endpoint) rejected our CURVE handshake: it does not use CURVE (started without --curve-key?), "
                    + "while this worker was given --curve-key and --server-key"
                : "the coordinator at \(endpoint) requires CURVE: give this worker --curve-key (its NAME.key) and --server-key (the coordinator's .pub)"
        case .cryptographicFailure:
            text = "the coordinator at \(endpoint) rejected our CURVE handshake: check --server-key (it must be the coordinator's public key) and --curve-key"
        case .handshakeFailedNoDetail:
            // A CURVE server that cannot open our HELLO closes the connection without a word;
            // libzmq then retries every ~100 ms. Twice in a row is not a network hiccup.
            lock.lock()
            closedDuringHandshake += 1
            let n = closedDuringHandshake
            lock.unlock()
            guard usesCurve, n >= 2 else { return }
            text = "the coordinator at \(endpoint) rejected our CURVE handshake: check --server-key "
                + "(it must be the coordinator's public key, e.g. coordinator.pub from `rnn-coord keygen`) "
                + "and that the coordinator was started with --curve-key"
        default:
            return
        }
        lock.lock()
        if failureText == nil { failureText = text }
        lock.unlock()
    }
}

/// The coordinator's view: each refused peer logged once per address (rate limited). Key
/// refusals are logged by the ZAP handler, which knows the key; this watch logs what ZAP
/// never sees (a wrong server key at the worker, CURVE on one side only).
final class ServerHandshakeWatch: @unchecked Sendable {
    private let lock = NSLock()
    /// Peer address by connection descriptor (from ACCEPTED), for the failure that follows.
    private var peers: [Int32: String] = [:]
    /// The last failure not yet matched to a peer: reported at the DISCONNECTED that follows.
    private var pendingReason: String?
    private var monitor: ZMQMonitor?
    private let log: RateLimitedLog
    private let rejections: PeerRejections

    init(socket: ZMQSocket, curve: Bool, rejections: PeerRejections, log: @escaping @Sendable (String) -> Void) throws {
        self.log = RateLimitedLog(log: log)
        self.rejections = rejections
        monitor = try ZMQMonitor(socket) { [weak self] event in self?.observe(event.kind, curve: curve) }
    }

    func stop() { monitor?.stop() }

    deinit { monitor?.stop() }

    private func observe(_ kind: ZMQMonitorEvent.Kind, curve: Bool) {
        switch kind {
        case .accepted(let fd, let peer):
            lock.lock(); peers[fd] = peer; lock.unlock()
        case .mechanismMismatch:
            lock.lock()
            pendingReason = curve ? "it does not use CURVE (a worker without --curve-key and --server-key)"
                                  : "it uses CURVE, and this coordinator was started without --curve-key"
            lock.unlock()
        case .cryptographicFailure:
            lock.lock(); pendingReason = "its CURVE handshake does not decrypt (a wrong --server-key at the worker)"; lock.unlock()
        case .handshakeFailedNoDetail:
            // The peer hung up mid-handshake: typically a worker that saw the mismatch first.
            lock.lock()
            if pendingReason == nil {
                pendingReason = curve ? "it closed the connection during the handshake (a worker without --curve-key and --server-key?)"
                                      : "it closed the connection during the handshake (a worker with --curve-key? this coordinator was started without --curve-key)"
            }
            lock.unlock()
        case .disconnected(let fd):
            lock.lock()
            let peer = peers.removeValue(forKey: fd)
            let reason = pendingReason
            pendingReason = nil
            lock.unlock()
            guard let reason else { return }
            let address = peer ?? "an unknown address"
            rejections.record(curve ? "failed CURVE handshake" : "CURVE client without CURVE here")
            // Once per peer host and reason (a worker with a wrong key retries every ~100 ms).
            log(key: (peer.map { String($0.prefix { $0 != ":" }) } ?? "unknown") + " " + reason, "refused a connection from \(address): \(reason)")
        default:
            return
        }
    }
}
