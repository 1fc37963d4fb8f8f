// Who takes part in the run: the control ROUTER socket and what guards it (CURVE/ZAP or the run
// token), the heartbeat thread, the members of the current generation (index = rank), the
// workers waiting to join, and ring formation. Losses are values (`LostMembers`) returned to
// the caller, which decides what a loss means at that point of the run.
//
// Every wait on the control socket runs in slices of at most 100 ms and checks liveness: a
// member silent on the heartbeat socket past `heartbeatTimeout`, whose connection failed on a
// send, or that said LEAVE, is lost. A lost member is expelled (its heartbeats are answered
// with ERROR). Workers that say HELLO while training runs wait in `pending` for the
// coordinator to admit them at a step boundary.
import Foundation
import RNNCore
import RNNTransport

/// One peer that joined.
struct Member {
    var identity: [UInt8]
    var rank: Int
    var host: String
    var pid: Int
    var dataEndpoint = ""
    /// Its ring socket's CURVE public key ("" without CURVE).
    var publicKey = ""
    /// Has not received WELCOME yet.
    var isNew = true
    var name: String { "rank \(rank) (\(host), pid \(pid))" }
}

/// Members declared lost: their ranks in the current generation and why.
struct LostMembers: Equatable {
    var ranks: [Int]
    var reasons: [String]
}

/// What a wait on the control socket gives.
enum Incoming {
    /// A frame of this run from the member of this rank.
    case frame(rank: Int, Frame)
    /// Members were lost (the frame wait stopped at once).
    case lost(LostMembers)
    /// The deadline passed.
    case timedOut
}

final class Membership {
    private let options: CoordinatorOptions
    private let report: @Sendable (TrainingEvent) -> Void
    let runID: UInt64
    private let context: ZMQContext
    private let router: ZMQSocket
    private let heartbeats: HeartbeatServer
    private let authenticator: ZAPAuthenticator?
    /// Logs peers whose handshake failed outside ZAP (wrong server key, CURVE on one side only).
    private let handshakes: ServerHandshakeWatch?
    /// The resolved control endpoint (with the real port when bound to `*`).
    let endpoint: String
    /// For a loopback bind: the same socket on an abstract IPC name, for local workers.
    let localEndpoint: String?
    /// The run token workers must present in HELLO (nil with CURVE), and its file.
    let token: String?
    let tokenFile: String?
    let rejects = RejectCounter()
    let peerRejections = PeerRejections()

    /// The live members of the current generation, index = rank.
    private(set) var members: [Member] = []
    /// Workers that said HELLO and wait to be admitted.
    private(set) var pending: [Member] = []
    /// Members whose connection is gone (a send failed): lost at the next wait.
    private var unreachable: [[UInt8]: String] = [:]
    private(set) var generation: UInt32 = 0
    /// Every worker declared lost, as "rank r (host, pid p): why".
    private(set) var lostNames: [String] = []
    /// Ring formations after the first.
    private(set) var reforms = 0
    /// How long a wait polls before it sleeps (see `CoordinatorOptions.spinMicroseconds`).
    var spinMicroseconds: Int
    /// Called with the new world size whenever a ring is formed (ranks change).
    var onRingFormed: (Int) -> Void = { _ in }
    /// The all-reduce crossovers measured in this run, one per (leader) world; every RING carries them.
    private(set) var crossovers: [CrossoverThresholds] = []

    init(options: CoordinatorOptions, events: @escaping @Sendable (TrainingEvent) -> Void) throws {
        self.options = options
        report = events
        spinMicroseconds = options.spinMicroseconds
        var generator = SystemRandomNumberGenerator()
        var id: UInt64 = 0
        while id == 0 { id = generator.next() }
        runID = id
        context = try ZMQContext()
        let rejections = peerRejections
        let warn: @Sendable (String) -> Void = { events(.message(.warning, $0)) }
        if let curve = options.curve {
            guard zmqHas("curve") else {
                context.shutdown()
                throw CoordinatorError("CURVE keys were given but this libzmq was built without CURVE support")
            }
            authenticator = try ZAPAuthenticator(context: context, allowed: curve.allowedClientKeys, rejections: rejections, log: warn)
        } else {
            authenticator = nil
        }
        router = try ZMQSocket(context, type: .router, lingerMilliseconds: 1000)
        handshakes = try? ServerHandshakeWatch(socket: router, curve: options.curve != nil, rejections: rejections, log: warn)
        let closeAll = { [router, handshakes, authenticator, context] in
            handshakes?.stop()
            router.close()
            authenticator?.stop()
            context.shutdown()
        }
        do {
            try router.setRouterMandatory(true)
            try options.curve?.configure(router)
            try router.bind(options.bind)
        } catch {
            closeAll()
            throw CoordinatorError("cannot bind the coordinator to \(options.bind): \(error)")
        }
        endpoint = options.bind.hasPrefix("tcp://") ? ((try? router.lastEndpoint()) ?? options.bind) : options.bind
        let loopback = Endpoint.host(of: endpoint).map(Endpoint.isLoopback) ?? false
        if loopback {
            let ipc = "ipc://@rnn-coord-\(String(runID, radix: 16))"
            localEndpoint = (try? router.bind(ipc)) != nil ? ipc : nil
        } else {
            localEndpoint = nil
        }
        do {
            heartbeats = try HeartbeatServer(context: context, controlBind: options.bind, runID: runID, curve: options.curve, rejects: rejects)
        } catch {
            closeAll()
            throw error
        }
        if options.curve != nil {
            token = nil
            tokenFile = nil
        } else {
            let t = options.token ?? RunToken.generate()
            token = t
            var file = options.tokenFile
            if file == nil, loopback, let port = Endpoint.port(of: endpoint) { file = RunToken.defaultPath(port: port) }
            if let f = file {
                try? RunToken.write(t, to: f)
                options.stop?.atForcedExit { unlink(f) }
            }
            tokenFile = file
        }
    }

    deinit {
        handshakes?.stop()
        heartbeats.stop()
        authenticator?.stop()
        router.close()
        context.shutdown()
        removeTokenFile()
    }

    /// Once the run is over nobody may join with this token.
    func removeTokenFile() {
        if let tokenFile { unlink(tokenFile) }
    }

    var heartbeatEndpoint: String { heartbeats.endpoint }

    /// One line on how workers authenticate, for the start-up message.
    var securityDescription: String {
        var text = options.curve.map { "CURVE, \($0.allowedClientKeys.count) allowed key(s)" } ?? "run token"
        if let tokenFile { text += " in \(tokenFile)" }
        return text
    }

    // MARK: Members

    /// The waiting workers become members (of the next ring); returns their names.
    func admitPending() -> [String] {
        let names = pending.map { "\($0.host) pid \($0.pid)" }
        members += pending
        pending = []
        return names
    }

    /// Removes the lost members, tells the heartbeat thread to refuse them, logs each by rank,
    /// host and pid; returns their names ("rank r (host, pid p): why"), lowest rank first.
    @discardableResult
    func drop(_ lost: LostMembers) -> [String] {
        var names: [String] = []
        for (rank, reason) in zip(lost.ranks, lost.reasons).sorted(by: { $0.0 > $1.0 }) {
            let m = members.remove(at: rank)
            let name = "\(m.name): \(reason)"
            names.append(name)
            lostNames.append(name)
            unreachable[m.identity] = nil
            heartbeats.expel(m.identity, reason: "this worker (\(m.name)) was declared lost by the coordinator (\(reason)) and may not rejoin this run")
            report(.message(.warning, "Lost worker \(name)"))
        }
        return names.reversed()
    }

    /// The member of `rank`'s name, or "rank r" for one that is gone.
    func name(ofRank rank: Int) -> String {
        members.indices.contains(rank) ? members[rank].name : "rank \(rank)"
    }

    // MARK: Ring formation

    /// Forms the ring of the current members under a new generation: WELCOME to new members
    /// (with `state`), REFORM to the others (they drop any unfinished step and roll back to
    /// `completed` steps), READY from all, then RING. Members lost meanwhile are dropped and
    /// the ring is formed again. Throws when too few members remain (`belowMinimum` allows
    /// fewer than --min-workers: the survivors only hand over their state).
    func formRing(state: TrainingState, completed: Int, reason: String, belowMinimum: Bool = false) throws {
        var attempts = 0
        while true {
            attempts += 1
            if attempts > 10 { throw CoordinatorError("could not form the ring after \(attempts - 1) attempts (\(reason))") }
            if members.isEmpty || (members.count < options.minWorkers && !belowMinimum) {
                throw CoordinatorError("\(members.count) worker(s) left, fewer than --min-workers \(options.minWorkers); lost \(lostNames.joined(separator: "; "))")
            }
            generation += 1
            if generation > 1 { reforms += 1 }
            onRingFormed(members.count)
            sendMembership(state: state, completed: completed, reason: reason)
            if let lost = try collectReady() {
                drop(lost)
                continue
            }
            let ring = RingMessage(generation: generation, endpoints: members.map(\.dataEndpoint), publicKeys: members.map(\.publicKey),
                                   crossovers: crossovers)
            for m in members { send(ring, to: m) }
            if generation > 1 {
                report(.message(.info, "Ring generation \(generation): \(members.count) worker(s) (\(reason))"))
            }
            return
        }
    }

    /// WELCOME to each new member, REFORM to the others, with its rank in the new ring.
    /// A crossover rank 0 measured (METRICS): later rings of its world use it.
    func record(_ crossover: CrossoverThresholds) {
        crossovers.removeAll { $0.world == crossover.world }
        crossovers.append(crossover)
    }

    private func sendMembership(state: TrainingState, completed: Int, reason: String) {
        let world = members.count
        let configJSON = options.config.jsonString()
        for i in members.indices {
            members[i].rank = i
            members[i].dataEndpoint = ""
        }
        for i in members.indices {
            let m = members[i]
            guard m.isNew else {
                send(ReformMessage(rank: i, world: world, completedSteps: completed, reason: reason), to: m)
                continue
            }
            let welcome = WelcomeMessage(
                rank: i, world: world, configJSON: configJSON,
                // No worker waits on its ring longer than the coordinator waits for a step.
                ringTimeoutMilliseconds: Int(min(options.ringTimeout, options.stepTimeout) * 1000), completedSteps: completed,
                heartbeatEndpoint: heartbeats.endpoint, heartbeatIntervalMilliseconds: Int(options.heartbeatInterval * 1000),
                heartbeatTimeoutMilliseconds: Int(options.heartbeatTimeout * 1000), state: state)
            heartbeats.register(m.identity, grace: options.heartbeatTimeout)
            members[i].isNew = false
            send(welcome, to: m)
        }
    }

    /// Waits for READY of every member of this generation; the lost members if any are lost.
    private func collectReady() throws -> LostMembers? {
        var ready = 0
        let deadline = Deadline.after(seconds: options.joinTimeout)
        while ready < members.count {
            switch try next(deadline: deadline) {
            case .lost(let lost):
                return lost
            case .timedOut:
                let missing = members.filter { $0.dataEndpoint.isEmpty }.map(\.name).joined(separator: ", ")
                throw CoordinatorError("no READY from \(missing) within \(Int(options.joinTimeout)) s")
            case .frame(let rank, let frame):
                guard frame.header.kind == .ready, frame.header.generation == generation,
                      let msg = try? ReadyMessage.decode(frame) else {
                    rejects.record(frame.header.generation < generation ? .stale : .unexpected)
                    continue
                }
                if let curve = options.curve, !curve.allowedClientKeys.contains(msg.publicKey) {
                    throw CoordinatorError("\(members[rank].name) announced a ring key that is not on the allow-list")
                }
                if members[rank].dataEndpoint.isEmpty { ready += 1 }
                members[rank].dataEndpoint = msg.dataEndpoint
                members[rank].publicKey = msg.publicKey
            }
        }
        return nil
    }

    // MARK: Waiting

    /// Members silent past the heartbeat timeout or whose connection failed, if any.
    func lostMembers() -> LostMembers? {
        var ranks: [Int] = [], reasons: [String] = []
        for (i, m) in members.enumerated() {
            if let why = unreachable[m.identity] {
                ranks.append(i); reasons.append(why)
            } else if let silent = heartbeats.silence(m.identity), silent > options.heartbeatTimeout {
                ranks.append(i); reasons.append(String(format: "no heartbeat for %.1f s", silent))
            }
        }
        return ranks.isEmpty ? nil : LostMembers(ranks: ranks, reasons: reasons)
    }

    /// Serves the control socket for `seconds` (joins, stale frames): the members lost
    /// meanwhile, or nil when all stayed.
    func waitForLoss(seconds: Double) throws -> LostMembers? {
        let deadline = Deadline.after(seconds: seconds)
        while true {
            switch try next(deadline: deadline) {
            case .lost(let lost): return lost
            case .timedOut: return nil
            case .frame: rejects.record(.stale)
            }
        }
    }

    /// The next valid frame of this run from a member, with its rank. HELLOs of new workers
    /// go to `pending`; foreign frames are counted and dropped; a member's ERROR ends the run
    /// (thrown). Waits in slices of at most 100 ms and returns `.lost` as soon as a member is
    /// lost (a LEAVE is a loss too).
    func next(deadline: Deadline) throws -> Incoming {
        let decoder = FrameDecoder(expectedRunID: nil, maxPayloadBytes: 1 << 31 - 1, rejects: rejects)
        while true {
            if let lost = lostMembers() { return .lost(lost) }
            let slice = Deadline(nanoseconds: min(deadline.nanoseconds, Deadline.after(milliseconds: 100).nanoseconds))
            guard let parts = try router.receiveMultipart(deadline: slice, spinMicroseconds: spinMicroseconds) else {
                if deadline.hasPassed { return .timedOut }
                continue
            }
            guard parts.count == 2 else {
                rejects.record(.unexpected)
                continue
            }
            guard let frame = try? decoder.decode(parts[1]) else { continue }
            let identity = parts[0].bytes
            guard let rank = members.firstIndex(where: { $0.identity == identity }) else {
                handleStranger(identity, frame)
                continue
            }
            guard frame.header.runID == runID else {
                rejects.record(.wrongRun)
                continue
            }
            switch frame.header.kind {
            case .error:
                let text = (try? ErrorMessage.decode(frame).text) ?? "unreadable error"
                throw CoordinatorError("worker \(members[rank].name) failed: \(text)")
            case .leave:
                let text = (try? LeaveMessage.decode(frame).reason) ?? "no reason given"
                return .lost(LostMembers(ranks: [rank], reasons: ["it left (\(text))"]))
            default:
                return .frame(rank: rank, frame)
            }
        }
    }

    /// A HELLO (or anything) from a peer that is not a member.
    private func handleStranger(_ identity: [UInt8], _ frame: Frame) {
        if frame.header.kind == .leave, let i = pending.firstIndex(where: { $0.identity == identity }) {
            let left = pending.remove(at: i)
            heartbeats.expel(left.identity, reason: "this worker left the run")
            report(.message(.info, "Worker \(left.host) pid \(left.pid) left before training with it began"))
            return
        }
        guard frame.header.kind == .hello, frame.header.runID == 0, let hello = try? HelloMessage.decode(frame) else {
            rejects.record(frame.header.runID == runID || frame.header.runID == 0 ? .unexpected : .wrongRun)
            return
        }
        if pending.contains(where: { $0.identity == identity }) { return }
        if let why = refusal(of: hello) {
            peerRejections.record(why.kind)
            let n = peerRejections.total
            if n <= 10 || n % 1000 == 0 {  // a flood of refusals must not flood the log
                report(.message(.warning, "Refused a worker on \(hello.host), pid \(hello.pid): \(why.text) (\(n) refused so far)"))
            }
            // Never wait for a refused peer (one that does not read must not slow the run down).
            try? sendRaw(ErrorMessage(text: why.text, refusal: why.refusal).frame(runID: 0), to: identity, deadline: .after(milliseconds: 0))
            return
        }
        pending.append(Member(identity: identity, rank: -1, host: hello.host, pid: hello.pid))
        report(.message(.info, "Worker \(hello.host) pid \(hello.pid) joined (\(pending.count + members.count)/\(options.workers))"))
    }

    /// Why a HELLO is refused (the sentence for the worker, the counter's key, the code), or nil.
    private func refusal(of hello: HelloMessage) -> (text: String, kind: String, refusal: ErrorMessage.Refusal)? {
        if hello.protocolVersion != protocolVersion {
            return ("protocol version \(hello.protocolVersion) is not \(protocolVersion)", "wrong protocol version", .wrongProtocolVersion)
        }
        if let token, hello.token != token {
            return (hello.token.isEmpty ? "this run needs its token (--token, RNN_TOKEN or the token file of the coordinator)"
                                        : "wrong run token", "wrong run token", .wrongToken)
        }
        return nil
    }

    // MARK: Sending

    /// Sends `message` to `member` under the current generation; a member whose connection
    /// fails is lost at the next wait.
    func send<M: ControlMessage>(_ message: M, to member: Member, step: Int = 0, deadline: Deadline? = nil) {
        do {
            try sendRaw(message.frame(runID: runID, generation: generation, step: UInt64(step)), to: member.identity,
                        deadline: deadline ?? .after(seconds: min(options.stepTimeout, options.heartbeatTimeout)))
        } catch {
            unreachable[member.identity] = "its connection failed (\(error))"
        }
    }

    /// Tells every member and waiting worker that the run failed (short deadline each).
    func sendError(_ text: String) {
        for m in members + pending {
            try? sendRaw(ErrorMessage(text: text).frame(runID: runID), to: m.identity, deadline: .after(milliseconds: 500))
        }
    }

    /// BYE to every member and waiting worker.
    func sendBye(_ reason: String) {
        for m in members + pending { send(ByeMessage(reason: reason), to: m, deadline: .after(seconds: 5)) }
    }

    private func sendRaw(_ frame: Frame, to identity: [UInt8], deadline: Deadline) throws {
        try router.sendMultipart([identity, frame.encoded], deadline: deadline)
    }
}
