// Ring all-reduce (sum) of one contiguous float32 buffer over ZeroMQ.
//
// Topology: rank r binds a PULL data socket (its announced endpoint) and connects a PUSH
// socket to rank (r + 1) % W. Data flows only to the right; each rank receives only from
// its left neighbour (r - 1 + W) % W. TCP keeps the order of frames between two ranks.
//
// Algorithms (all ranks pick the same one from (W, n, algorithm), so they always agree):
//  - W = 1: nothing to do.
//  - exchange: every rank forwards whole buffers around the ring for W - 1 steps, then sums
//    the W contributions in rank order (0, 1, ..., W-1), so every rank computes the same
//    bits. For W = 2 this is one direct exchange and the sum is done on receipt
//    (a + b == b + a exactly in IEEE 754). Used for W = 2 and for tiny buffers.
//  - ring: reduce-scatter then all-gather in W chunks, 2 (W - 1) steps. Each chunk is reduced
//    exactly once (at its final owner) and then copied to everyone, so all ranks hold
//    bitwise identical results.
//  - halving-doubling (W >= 3, mid-size buffers; Rabenseifner): with P the largest power of
//    two <= W, ranks P..W-1 first hand their buffer to rank r - P (which adds it); then P
//    ranks reduce-scatter by recursive halving (log2 P rounds with partner rank XOR P/2, P/4,
//    ..., 1, each round sending half of the current segment and adding the partner's copy of
//    the other half) and all-gather by recursive doubling (the same partners in reverse,
//    copying); finally rank r - P hands the result back to rank r. 2 log2 P (+ 2) rounds
//    instead of the ring's 2 (W - 1): fewer per-message latencies, the same 2 (W-1)/W bytes
//    per rank for powers of two. Each element is summed at exactly one rank, in an order fixed
//    by (W, n), then only copied: every rank holds the same bits, run after run.
//  - recursive doubling (W >= 3, small buffers): the same partners, log2 P rounds, each
//    exchanging the whole buffer and adding (x + y == y + x exactly, so both partners hold the
//    same bits after every round). Fewest rounds; sends log2 P whole buffers.
//  automatic picks, for W >= 3: recursive doubling up to `recursiveDoublingMaxBytes`,
//  halving-doubling up to `halvingDoublingMaxBytes`, the ring above (constants measured with
//  `rnn-bench allreduce`, see their doc comments). These two send to partners other than the
//  right neighbour, over PUSH sockets connected on demand to those ranks' endpoints, always as
//  copied single-part frames; a frame that arrives before it is expected (a partner of a later
//  round, or of the next step) is kept aside until its turn.
//  hierarchical (any algorithm above among leaders): when the ranks' host groups (given to
//  `connect`, or the host part of each TCP endpoint) number two or more and some group holds two
//  or more ranks, each member sends its whole buffer (copied sub-chunks) to its group's leader,
//  the lowest rank of the group, over a local endpoint (`ipc://` under /tmp for a TCP rank); the
//  leader adds them in ascending rank order, runs the automatic (or chosen, or bf16) algorithm
//  among the leaders only (leader index and count in place of rank and world), then copies the
//  result back to its members. The local phases use sequence numbers from `localReduceSequence`
//  and `localBroadcastSequence`, so frames of the leaders' exchange that arrive during them
//  wait aside. One copy of the buffer leaves and enters each host per step.
// Both are pipelined: a chunk is split into sub-chunks of `subChunkBytes` (1 MiB); a
// sub-chunk is forwarded as soon as it has been reduced, so the link stays busy while ranks
// compute. Receiving frame k releases the send of frame k + `sendWindow` (default 1): on
// loopback TCP the machine is CPU bound in the kernel's copies, and with about one
// sub-chunk in flight per direction those copies and the addition hit the cache instead of
// memory (measured: a third less CPU per op than sending everything at once).
//
// Every frame carries the standard header (run id, generation, step, kind GRADIENT_CHUNK,
// sender rank, sequence = step_in_schedule * S + sub_chunk). A payload of up to
// `copyFrameBytes` travels copied inside one single-part ZeroMQ message (header + payload);
// a larger one as a two-part message, the 48-byte header then the payload, so the payload
// can be sent zero-copy straight from the caller's buffer; a sub-chunk is overwritten only
// after libzmq has released the send that reads it, and `allReduceSum` returns only once all
// its sends are released. Frames of an older generation or step are stale leftovers of an
// aborted exchange: dropped and counted. Every receive has a deadline; a silent left
// neighbour yields `AllReduceError.timeout` naming its rank.
//
// Failure semantics: when a rank dies mid-exchange, some ranks may already hold the
// complete sum while others time out. Callers must therefore treat a step as committed only
// when every rank reports success (the coordinator's job), keeping what they need to redo
// the step (parameters are updated only after the commit).
//
// Extra scalars (sample count, loss sum, ...) are reduced by appending them to the same
// buffer; `AllReduceBuffer` lays out gradients followed by scalars in one 64-byte aligned
// allocation.
import RNNTransport
#if canImport(Glibc)
import Glibc
#endif

/// A failed all-reduce. The exchange is then incomplete: the caller must not use the
/// buffer, and re-forms the ring with a new generation before retrying.
public enum AllReduceError: Error, CustomStringConvertible, Sendable {
    /// The peer did not deliver (receive) or accept (send) a frame within the deadline.
    case timeout(operation: String, peerRank: Int, endpoint: String?, milliseconds: Int, generation: UInt32, step: UInt64)
    /// The peer sent a well-formed frame that breaks the exchange (future step, wrong
    /// sequence, wrong size...).
    case protocolViolation(peerRank: Int, FrameError)
    /// A libzmq call failed.
    case transport(ZMQError)
    /// `allReduce` was called before `connect(peerEndpoints:)`.
    case notConnected(rank: Int)
    /// `interruptCheck` returned true while waiting for a frame: the caller abandons the step
    /// (e.g. the coordinator re-forms the ring after losing a peer).
    case interrupted(generation: UInt32, step: UInt64)

    public var description: String {
        switch self {
        case .timeout(let op, let peer, let ep, let ms, let g, let s):
            return "all-reduce \(op) timed out after \(ms) ms waiting for rank \(peer)"
                + (ep.map { " (\($0))" } ?? "") + " at generation \(g) step \(s)"
        case .protocolViolation(let peer, let e):
            return "all-reduce protocol violation by rank \(peer): \(e)"
        case .transport(let e):
            return "all-reduce transport failure: \(e)"
        case .notConnected(let r):
            return "all-reduce on rank \(r) called before connect(peerEndpoints:)"
        case .interrupted(let g, let s):
            return "all-reduce interrupted at generation \(g) step \(s)"
        }
    }
}

/// Which algorithm to run.
public enum AllReduceAlgorithm: Sendable {
    /// W = 2: the exchange; W >= 3: recursive doubling, halving-doubling or the ring by buffer
    /// size (`recursiveDoublingMaxBytes`, `halvingDoublingMaxBytes`; see the file's header).
    case automatic
    /// Reduce-scatter + all-gather.
    case ring
    /// Forward whole buffers, sum in rank order.
    case exchange
    /// Recursive halving reduce-scatter + recursive doubling all-gather (W >= 3; W = 2 uses
    /// the exchange).
    case halvingDoubling
    /// Recursive doubling of whole buffers (W >= 3; W = 2 uses the exchange).
    case recursiveDoubling
}

/// One rank's endpoint of the ring. Use from one thread at a time (it owns ZeroMQ sockets);
/// it may be created on one thread and then handed to another.
public final class RingAllReduce: @unchecked Sendable {
    /// This rank's position; changes only through `reform`.
    public private(set) var rank: Int
    public private(set) var world: Int
    public let runID: UInt64
    /// Frames of an older generation are dropped as stale.
    public private(set) var generation: UInt32
    /// The endpoint other ranks connect to (resolved: a `*` port is replaced by the real one).
    public let localEndpoint: String
    /// Longest wait for any single frame to arrive or leave, in milliseconds.
    public var timeoutMilliseconds: Int
    /// Pipelining granularity in bytes (payload of one frame, at most).
    public var subChunkBytes: Int = 1024 * 1024
    /// Payloads up to this size travel copied inside one single-part frame (header +
    /// payload): cheaper than a zero-copy send, whose release must be tracked and awaited.
    public var copyFrameBytes: Int = 64 * 1024
    /// How many frames a rank sends before it has received (and added) its left
    /// neighbour's first one; after that, receiving frame k releases the send of frame
    /// k + sendWindow (W = 2 exchange and ring; the ring caps it at its S sub-chunks per
    /// chunk, which is also what 0 means there; 0 makes the exchange send all at once). The default 1 keeps about one
    /// sub-chunk per direction in flight, so the sub-chunk a rank adds into was just read
    /// by its send and the peer's data was just written by the kernel: both still sit in
    /// cache. Measured on loopback TCP, 16 MiB: ~35 % less CPU per op than sending all at once.
    public var sendWindow: Int = 1
    /// Buffers up to this size use the exchange path when W > 2 and the automatic choice
    /// finds no faster one (0 = never; the measured crossovers below make it unused).
    public var smallMessageBytes: Int = 0
    /// W >= 3, automatic: buffers up to this size use recursive doubling (measured: see
    /// `AllReduceCrossover` below).
    public var recursiveDoublingMaxBytes: Int = AllReduceCrossover.recursiveDoublingMaxBytes
    /// W >= 3, automatic: buffers up to this size (and above `recursiveDoublingMaxBytes`) use
    /// halving-doubling; larger ones the ring.
    public var halvingDoublingMaxBytes: Int = AllReduceCrossover.halvingDoublingMaxBytes
    public var algorithm: AllReduceAlgorithm = .automatic
    /// Hierarchical all-reduce: when the ranks span two or more host groups and some group has
    /// two or more ranks, each group first sums into its leader (its lowest rank) over local
    /// endpoints (`ipc://` for TCP ranks), the leaders all-reduce among themselves with the
    /// algorithm chosen for their number, and each leader copies the result back to its group.
    /// So one copy of the buffer leaves and enters each host per step. Set before each step;
    /// every rank must agree.
    public var hierarchical = true
    /// The host group of every rank (from `connect`: given, or the host part of each TCP endpoint).
    public private(set) var hostGroups: [Int] = []
    /// Bytes (headers included) this rank sent to other ranks' announced endpoints (TCP in a
    /// real run), and within its host group in the hierarchical path (`ipc://` or `inproc://`).
    public private(set) var endpointBytesSent = 0
    public private(set) var localBytesSent = 0
    private var hierarchy: Hierarchy?
    private var leaderView: View?
    private var localSenders: [Int: ZMQSocket] = [:]
    private var boundLocalEndpoint: String?
    /// In the leaders' view: the global rank of each leader index (for `socketSetup`).
    private var setupRanks: [Int]?
    /// How gradients travel (GradientCompression.swift): with `.bf16`, the first
    /// `compressedCount` floats given to `allReduceSum(_:step:compressedCount:)` go as
    /// bfloat16 to their chunk's owner and back; the rest stay float32.
    public var compression: GradientCompression = .none
    private var bf16Own: [UInt16] = []
    private var bf16Slots: [UInt16] = []
    private var scalarSlots: [Float] = []
    /// How long a receive retries without blocking (yielding the CPU between tries) before
    /// it sleeps in `zmq_poll`; 0 = block at once. A neighbour's frame that arrives within
    /// the spin skips a thread wakeup: measured on the 2-core KVM machine, a 2-rank
    /// exchange of 4-18 KiB takes ~50 µs instead of ~80 µs (`rnn-bench allreduce --spin`).
    public var spinMicroseconds: Int = 100
    /// Send payloads straight from the caller's buffer (libzmq zero-copy); off = copy first.
    /// Never used towards an `inproc://` neighbour: there the receiver reads the sender's
    /// memory until it consumes the frame, so two ranks each waiting for their own send to
    /// be released before overwriting it would wait on each other.
    public var zeroCopy = true
    private var zeroCopyAllowed = false
    /// How long closing waits for queued frames to reach the right neighbour.
    public let closeLingerMilliseconds: Int
    /// Rejected and stale frames by reason.
    public let rejects: RejectCounter
    /// Called every `interruptPollMilliseconds` while a receive waits; returning true
    /// abandons the exchange with `AllReduceError.interrupted`. Runs on the calling thread.
    public var interruptCheck: (() -> Bool)?
    public var interruptPollMilliseconds: Int = 20
    /// Configures each socket before it binds (`peerRank` nil: this rank's receiving socket)
    /// or connects (`peerRank`: the right neighbour), e.g. with CURVE keys.
    public typealias SocketSetup = (ZMQSocket, _ peerRank: Int?) throws -> Void
    private let socketSetup: SocketSetup?

    private static func setUp(_ setup: SocketSetup?, _ socket: ZMQSocket, _ peer: Int?) throws(ZMQError) {
        guard let setup else { return }
        do { try setup(socket, peer) } catch let e as ZMQError { throw e } catch {
            throw ZMQError(call: "ring socket setup (\(error))", endpoint: nil, errno: 0)
        }
    }

    private let receiver: ZMQSocket
    private var sender: ZMQSocket?
    private var rightEndpoint: String?
    /// Every rank's endpoint (from `connect`), for sends to ranks other than the right neighbour.
    private var peerEndpoints: [String] = []
    /// PUSH sockets to ranks other than the right neighbour (halving-doubling), by rank.
    private var peerSenders: [Int: ZMQSocket] = [:]
    /// Frames of this generation that arrived before their turn (a later round's partner, or
    /// the next step), by (step, sender, sequence).
    private var early: [EarlyFrame: [UInt8]] = [:]
    private struct EarlyFrame: Hashable {
        let generation: UInt32
        let step: UInt64
        let sender: UInt32
        let sequence: UInt32
    }
    private let decoder: FrameDecoder
    private let incomingHeader = ZMQMessage()
    private let incomingPayload = ZMQMessage()
    private let tracker = ZMQSendTracker()
    private var lastSend: [Int] = []
    private var scratch: AlignedFloats?

    public var leftRank: Int { (rank + world - 1) % world }
    public var rightRank: Int { (rank + 1) % world }

    /// Binds this rank's data socket at `bindEndpoint` (e.g. `tcp://127.0.0.1:*` or
    /// `inproc://ring-3`). Announce `localEndpoint`, then call `connect(peerEndpoints:)`.
    public init(context: ZMQContext, rank: Int, world: Int, runID: UInt64, generation: UInt32 = 0,
                bindEndpoint: String, timeoutMilliseconds: Int = 10_000, closeLingerMilliseconds: Int = 5_000,
                rejects: RejectCounter = RejectCounter(), socketSetup: SocketSetup? = nil) throws(ZMQError) {
        precondition(world >= 1 && rank >= 0 && rank < world, "rank \(rank) outside world of \(world)")
        self.rank = rank
        self.world = world
        self.runID = runID
        self.generation = generation
        self.timeoutMilliseconds = timeoutMilliseconds
        self.closeLingerMilliseconds = closeLingerMilliseconds
        self.rejects = rejects
        self.socketSetup = socketSetup
        self.decoder = FrameDecoder(expectedRunID: runID, maxPayloadBytes: Int(Int32.max), rejects: rejects)
        let pull = try ZMQSocket(context, type: .pull, lingerMilliseconds: 0)
        try pull.setReceiveHighWaterMark(0)
        // With two or more I/O threads, receiving (thread 0) and sending (thread 1) run in
        // parallel instead of sharing one thread.
        if context.ioThreads >= 2 { try pull.setAffinity(1) }
        try Self.setUp(socketSetup, pull, nil)
        try pull.bind(bindEndpoint)
        self.receiver = pull
        self.localEndpoint = bindEndpoint.hasPrefix("tcp://") ? try pull.lastEndpoint() : bindEndpoint
    }

    /// Connects to the right neighbour. `peerEndpoints[k]` is rank k's `localEndpoint`.
    /// CURVE (authentication and encryption) is configured by the `socketSetup` hook.
    public func connect(peerEndpoints: [String], hostGroups: [Int]? = nil) throws(ZMQError) {
        precondition(peerEndpoints.count == world, "need \(world) endpoints, got \(peerEndpoints.count)")
        precondition(hostGroups == nil || hostGroups!.count == world, "need \(world) host groups")
        closeHierarchy()
        sender?.close(discardPending: true)
        sender = nil
        for (_, s) in peerSenders { s.close(discardPending: true) }
        peerSenders = [:]
        self.peerEndpoints = peerEndpoints
        guard world > 1 else { return }
        // A bounded linger, not 0: after this rank's last all-reduce its final frames may
        // still sit in the queue while the neighbour waits for them; closing must deliver them.
        let push = try ZMQSocket(receiver.context, type: .push, lingerMilliseconds: closeLingerMilliseconds)
        try push.setSendHighWaterMark(0)
        if receiver.context.ioThreads >= 2 { try push.setAffinity(2) }
        try Self.setUp(socketSetup, push, rightRank)
        let ep = peerEndpoints[rightRank]
        try push.connect(ep)
        sender = push
        rightEndpoint = ep
        zeroCopyAllowed = !ep.hasPrefix("inproc://")
        // The halving-doubling partners, connected now so that the first step does not wait
        // for their handshakes.
        if world >= 3 {
            for peer in Self.doublingPartners(rank: rank, world: world) where peer != rightRank {
                _ = try peerSocket(peer)
            }
        }
        try setUpHierarchy(hostGroups ?? Self.hostGroups(of: peerEndpoints))
    }

    // MARK: hierarchy

    /// This rank's place in the hierarchical path.
    struct Hierarchy {
        /// This rank's host group, ascending global ranks; `members[0]` is its leader.
        let members: [Int]
        /// Every group's leader, ascending.
        let leaders: [Int]
        var leader: Int { members[0] }
    }

    /// The state the flat algorithms read: the whole world's, or (for a leader) the leaders'.
    private struct View {
        var rank: Int
        var world: Int
        var sender: ZMQSocket?
        var rightEndpoint: String?
        var peerEndpoints: [String]
        var peerSenders: [Int: ZMQSocket]
        var zeroCopyAllowed: Bool
        var setupRanks: [Int]?
    }

    private var view: View {
        get { View(rank: rank, world: world, sender: sender, rightEndpoint: rightEndpoint, peerEndpoints: peerEndpoints,
                   peerSenders: peerSenders, zeroCopyAllowed: zeroCopyAllowed, setupRanks: setupRanks) }
        set {
            rank = newValue.rank; world = newValue.world; sender = newValue.sender; rightEndpoint = newValue.rightEndpoint
            peerEndpoints = newValue.peerEndpoints; peerSenders = newValue.peerSenders
            zeroCopyAllowed = newValue.zeroCopyAllowed; setupRanks = newValue.setupRanks
        }
    }

    /// Host groups from endpoints: TCP endpoints with the same host are one group (numbered by
    /// first appearance); every non-TCP endpoint (inproc, ipc: one machine) is in group 0's
    /// or a group of their own together.
    static func hostGroups(of endpoints: [String]) -> [Int] {
        var ids: [String: Int] = [:]
        return endpoints.map { ep in
            var host = "local"
            if ep.hasPrefix("tcp://"), let colon = ep.lastIndex(of: ":"), colon > ep.index(ep.startIndex, offsetBy: 6) {
                host = String(ep[ep.index(ep.startIndex, offsetBy: 6)..<colon])
            }
            if let id = ids[host] { return id }
            ids[host] = ids.count
            return ids[host]!
        }
    }

    /// The endpoint ranks of one host group use among themselves: `ipc://` for a TCP endpoint
    /// (a path from the run, generation, host and port), the endpoint itself otherwise.
    func localEndpoint(of endpoint: String) -> String {
        guard endpoint.hasPrefix("tcp://") else { return endpoint }
        let name = endpoint.dropFirst(6).map { $0.isLetter || $0.isNumber || $0 == "." ? $0 : "-" }
        return "ipc:///tmp/rnn-ring-\(String(runID, radix: 16))-\(generation)-\(String(name.prefix(60)))"
    }

    private func setUpHierarchy(_ groups: [Int]) throws(ZMQError) {
        hostGroups = groups
        guard world > 1 else { return }
        var leaderOf: [Int: Int] = [:]
        for r in 0..<world where leaderOf[groups[r]] == nil { leaderOf[groups[r]] = r }
        let leaders = leaderOf.values.sorted()
        guard leaders.count >= 2, leaders.count < world else { return }
        let h = Hierarchy(members: (0..<world).filter { groups[$0] == groups[rank] }, leaders: leaders)
        hierarchy = h
        if h.members.count > 1 {
            let own = localEndpoint(of: peerEndpoints[rank])
            if own != peerEndpoints[rank], boundLocalEndpoint != own {
                try receiver.bind(own)
                boundLocalEndpoint = own
            }
            for peer in rank == h.leader ? Array(h.members.dropFirst()) : [h.leader] {
                let push = try ZMQSocket(receiver.context, type: .push, lingerMilliseconds: closeLingerMilliseconds)
                try push.setSendHighWaterMark(0)
                try Self.setUp(socketSetup, push, peer)
                try push.connect(localEndpoint(of: peerEndpoints[peer]))
                localSenders[peer] = push
            }
        }
        guard rank == h.leader else { return }
        // The leaders' view: leader index, their number, a PUSH to the next leader and the
        // doubling partners among leaders.
        let global = view
        let index = leaders.firstIndex(of: rank)!
        let count = leaders.count
        let right = leaders[(index + 1) % count]
        let push = try ZMQSocket(receiver.context, type: .push, lingerMilliseconds: closeLingerMilliseconds)
        try push.setSendHighWaterMark(0)
        if receiver.context.ioThreads >= 2 { try push.setAffinity(2) }
        try Self.setUp(socketSetup, push, right)
        try push.connect(global.peerEndpoints[right])
        view = View(rank: index, world: count, sender: push, rightEndpoint: global.peerEndpoints[right],
                    peerEndpoints: leaders.map { global.peerEndpoints[$0] }, peerSenders: [:],
                    zeroCopyAllowed: !global.peerEndpoints[right].hasPrefix("inproc://"), setupRanks: leaders)
        defer {
            leaderView = view
            view = global
        }
        if count >= 3 {
            for peer in Self.doublingPartners(rank: index, world: count) where peer != (index + 1) % count {
                _ = try peerSocket(peer)
            }
        }
    }

    private func closeHierarchy(discardPending: Bool = true) {
        for (_, s) in localSenders { s.close(discardPending: discardPending) }
        localSenders = [:]
        if let v = leaderView {
            v.sender?.close(discardPending: discardPending)
            for (_, s) in v.peerSenders { s.close(discardPending: discardPending) }
        }
        leaderView = nil
        hierarchy = nil
    }

    /// Whether the next all-reduce takes the hierarchical path, and this rank's place in it.
    var activeHierarchy: Hierarchy? { hierarchical ? hierarchy : nil }

    /// Sequence numbers of the local phases (far above any flat schedule's).
    static let localReduceSequence = 0x4000_0000
    static let localBroadcastSequence = 0x6000_0000

    /// Local sum into the leader (members in ascending rank order, so the order of additions is
    /// fixed), the leaders' all-reduce, the leader's copy back to its members.
    private func hierarchicalAllReduce(_ base: UnsafeMutablePointer<Float>, _ n: Int, compressed: Int, _ h: Hierarchy,
                                       _ ctx: Exchange) throws(AllReduceError) {
        let S = max(1, (n * 4 + subChunkBytes - 1) / subChunkBytes)
        func sub(_ j: Int) -> Range<Int> { Self.split(n, parts: S, index: j) }
        if rank == h.leader {
            for m in h.members.dropFirst() {
                for j in 0..<S { try receive(into: base, sub(j), add: true, sequence: Self.localReduceSequence + j, ctx, from: m) }
            }
            guard let leaders = leaderView, let leaderSender = leaders.sender else { throw .notConnected(rank: rank) }
            let global = view
            view = leaders
            defer {
                leaderView = view
                view = global
            }
            do {
                try flatAllReduce(base, n, compressed: compressed, Exchange(sender: leaderSender, step: ctx.step))
                try waitForSends(step: ctx.step)
            } catch {
                // Zero-copy sends to the next leader may still read `base`: release them in
                // this view (which may drop that connection; `connect` makes a new one).
                releaseSendsAfterFailure()
                throw error
            }
        } else {
            for j in 0..<S { try sendLocal(base, sub(j), sequence: Self.localReduceSequence + j, to: h.leader, ctx) }
            for j in 0..<S { try receive(into: base, sub(j), add: false, sequence: Self.localBroadcastSequence + j, ctx, from: h.leader) }
            return
        }
        for m in h.members.dropFirst() {
            for j in 0..<S { try sendLocal(base, sub(j), sequence: Self.localBroadcastSequence + j, to: m, ctx) }
        }
    }

    /// A copied single-part frame to a rank of this host group.
    private func sendLocal(_ base: UnsafeMutablePointer<Float>, _ range: Range<Int>, sequence: Int, to peer: Int,
                           _ ctx: Exchange) throws(AllReduceError) {
        guard let socket = localSenders[peer] else { throw .notConnected(rank: rank) }
        let bytes = range.count * 4
        let header = FrameHeader(kind: .gradientChunk, runID: runID, generation: generation, sender: UInt32(rank),
                                 step: ctx.step, sequence: UInt32(sequence), payloadLength: bytes)
        do {
            let m = try ZMQMessage(size: FrameHeader.size + bytes)
            m.withUnsafeMutableBytes { dst in
                header.encode(to: dst.baseAddress!)
                if bytes > 0 { (dst.baseAddress! + FrameHeader.size).copyMemory(from: base + range.lowerBound, byteCount: bytes) }
            }
            try socket.send(m, deadline: .after(milliseconds: timeoutMilliseconds))
            localBytesSent += FrameHeader.size + bytes
        } catch let e as ZMQTimeout {
            throw .timeout(operation: "send", peerRank: peer, endpoint: localEndpoint(of: peerEndpoints[peer]), milliseconds: e.milliseconds,
                           generation: generation, step: ctx.step)
        } catch let e as ZMQError {
            throw .transport(e)
        } catch {
            throw .transport(ZMQError(call: "zmq_msg_send (\(error))", endpoint: nil, errno: 0))
        }
    }

    /// The ranks `rank` exchanges with in halving-doubling and recursive doubling.
    static func doublingPartners(rank: Int, world: Int) -> [Int] {
        var p = 1
        while p * 2 <= world { p *= 2 }
        if rank >= p { return [rank - p] }
        var partners: [Int] = []
        var mask = 1
        while mask < p { partners.append(rank ^ mask); mask *= 2 }
        if rank + p < world { partners.append(rank + p) }
        return partners
    }

    /// The PUSH socket to `peer` (the right neighbour's is `sender`), connected on first use.
    private func peerSocket(_ peer: Int) throws(ZMQError) -> ZMQSocket {
        if peer == rightRank, let sender { return sender }
        if let s = peerSenders[peer] { return s }
        let push = try ZMQSocket(receiver.context, type: .push, lingerMilliseconds: closeLingerMilliseconds)
        try push.setSendHighWaterMark(0)
        if receiver.context.ioThreads >= 2 { try push.setAffinity(2) }
        try Self.setUp(socketSetup, push, setupRanks?[peer] ?? peer)
        try push.connect(peerEndpoints[peer])
        peerSenders[peer] = push
        return push
    }

    /// Closes both sockets. By default frames still queued for the right neighbour get up to
    /// `closeLingerMilliseconds` to leave (when the context terminates); on the error path
    /// pass `discardPending: true`.
    public func close(discardPending: Bool = false) {
        closeHierarchy(discardPending: discardPending)
        sender?.close(discardPending: discardPending)
        for (_, s) in peerSenders { s.close(discardPending: discardPending) }
        receiver.close(discardPending: true)
        // libzmq removes a bound ipc:// file only when the context's reaper gets to it.
        if let ipc = boundLocalEndpoint, ipc.hasPrefix("ipc://") { _ = unlink(String(ipc.dropFirst(6))) }
        boundLocalEndpoint = nil
    }

    /// Sums `buffer` element-wise across all ranks, in place. On return every rank holds the
    /// same bits, and no send still reads `buffer`. `step` tags the frames (stale ones are
    /// dropped); all ranks pass the same value. After an error the buffer content is
    /// undefined; a new ring of a newer generation (a worker makes one on REFORM) redoes the
    /// step, and frames of older generations reaching it are dropped as stale.
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>, step: UInt64) throws(AllReduceError) {
        try allReduceSum(buffer, step: step, compressedCount: 0)
    }

    /// As `allReduceSum(_:step:)`; with `compression` `.bf16` the first `compressedCount`
    /// floats (the gradients) travel as bfloat16 and end as bf16 values on every rank.
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>, step: UInt64, compressedCount: Int) throws(AllReduceError) {
        guard world > 1, buffer.count > 0 else { return }
        precondition(compressedCount >= 0 && compressedCount <= buffer.count)
        guard let sender else { throw .notConnected(rank: rank) }
        let ctx = Exchange(sender: sender, step: step)
        let n = buffer.count
        let base = buffer.baseAddress!
        if !early.isEmpty { early = early.filter { $0.key.generation == generation && $0.key.step >= step } }
        do throws(AllReduceError) {
            if let h = activeHierarchy {
                try hierarchicalAllReduce(base, n, compressed: compressedCount, h, ctx)
            } else {
                try flatAllReduce(base, n, compressed: compressedCount, ctx)
            }
            // The caller may change the buffer as soon as we return: every zero-copy send
            // must have been released by libzmq.
            try waitForSends(step: step)
        } catch {
            releaseSendsAfterFailure()
            throw error
        }
    }

    private func waitForSends(step: UInt64) throws(AllReduceError) {
        guard try waitInterruptibly(.after(milliseconds: timeoutMilliseconds), step: step, { tracker.waitUntilAllComplete(deadline: $0) }) else {
            throw AllReduceError.timeout(operation: "send completion", peerRank: rightRank, endpoint: rightEndpoint,
                                         milliseconds: timeoutMilliseconds, generation: generation, step: step)
        }
    }

    /// The algorithms over the current view (all ranks, or the leaders).
    private func flatAllReduce(_ base: UnsafeMutablePointer<Float>, _ n: Int, compressed compressedCount: Int, _ ctx: Exchange) throws(AllReduceError) {
        if compression == .bf16 && compressedCount > 0 {
            try bf16AllReduce(base, n, compressed: compressedCount, ctx)
        } else { switch chosenAlgorithm(count: n) {
        case .exchange: try exchangeAll(base, n, ctx)
        case .halvingDoubling: try halvingDoubling(base, n, ctx, halve: true)
        case .recursiveDoubling: try halvingDoubling(base, n, ctx, halve: false)
        case .ring, .automatic: try ring(base, n, ctx)
        } }
    }

    /// The algorithm `allReduceSum` runs for `count` floats at the current world size (the
    /// same on every rank: it depends only on W, n and the settings).
    public func chosenAlgorithm(count n: Int) -> AllReduceAlgorithm {
        let bytes = n * 4
        switch algorithm {
        case .automatic:
            if world == 2 || bytes <= smallMessageBytes { return .exchange }
            if bytes <= recursiveDoublingMaxBytes { return .recursiveDoubling }
            if bytes <= halvingDoublingMaxBytes { return .halvingDoubling }
            return .ring
        case .halvingDoubling, .recursiveDoubling:
            return world == 2 ? .exchange : algorithm
        case .ring, .exchange:
            return algorithm
        }
    }

    /// After a failure libzmq may still hold zero-copy frames that point into the caller's
    /// buffer. Give them a moment to leave; if they do not, drop the connection (LINGER 0)
    /// so libzmq releases them, and require `connect` before the next all-reduce.
    private func releaseSendsAfterFailure() {
        incomingHeader.reset()
        incomingPayload.reset()
        if tracker.waitUntilAllComplete(deadline: .after(milliseconds: 200)) { return }
        sender?.close(discardPending: true)
        sender = nil
        _ = tracker.waitUntilAllComplete(deadline: .after(milliseconds: 5000))
    }

    /// Array convenience for `allReduceSum(_:step:)`.
    public func allReduceSum(_ array: inout [Float], step: UInt64) throws(AllReduceError) {
        let result: Result<Void, AllReduceError> = array.withUnsafeMutableBufferPointer { buf in
            do throws(AllReduceError) { try allReduceSum(buf, step: step); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    // MARK: schedule

    /// Split of `count` floats into `parts` ranges whose boundaries fall on 16-float (64-byte)
    /// multiples where possible.
    @inline(__always)
    static func split(_ count: Int, parts: Int, index: Int) -> Range<Int> {
        let blocks = (count + 15) / 16
        let per = blocks / parts, extra = blocks % parts
        let lo = (index * per + min(index, extra)) * 16
        let hi = ((index + 1) * per + min(index + 1, extra)) * 16
        return min(lo, count)..<min(hi, count)
    }

    private struct Exchange {
        let sender: ZMQSocket
        let step: UInt64
    }

    /// Ring reduce-scatter + all-gather over W chunks of S sub-chunks each.
    private func ring(_ base: UnsafeMutablePointer<Float>, _ n: Int, _ ctx: Exchange) throws(AllReduceError) {
        let W = world
        let largestChunk = Self.split(n, parts: W, index: 0).count
        let S = max(1, (largestChunk * 4 + subChunkBytes - 1) / subChunkBytes)
        let steps = 2 * (W - 1)
        tracker.reserve(steps * S)
        // lastSend[c * S + j]: the send slot that last read sub-chunk (c, j), or -1.
        if lastSend.count < W * S { lastSend = [Int](repeating: -1, count: W * S) }
        for i in 0..<(W * S) { lastSend[i] = -1 }
        func sub(_ chunk: Int, _ j: Int) -> Range<Int> {
            let c = Self.split(n, parts: W, index: chunk)
            let s = Self.split(c.count, parts: S, index: j)
            return (c.lowerBound + s.lowerBound)..<(c.lowerBound + s.upperBound)
        }
        func sendChunk(_ t: Int) -> Int { ((rank - t) % W + W) % W }
        func recvChunk(_ t: Int) -> Int { ((rank - t - 1) % W + W) % W }
        let first = sendChunk(0)
        // Frame q = t * S + j goes out in sequence order: for t = 0 our own chunk, later the
        // sub-chunk received as frame q - S (reduced, or final in the all-gather). Receiving
        // frame k releases the send of frame k + window; with window <= S the data of that
        // frame has always arrived by then. window = S forwards each sub-chunk right after
        // receiving it; a smaller window keeps less in flight (see `sendWindow`).
        let total = steps * S
        let window = sendWindow > 0 ? min(sendWindow, S) : S
        func sendFrame(_ q: Int) throws(AllReduceError) {
            let chunk = q < S ? first : recvChunk(q / S - 1)
            try send(base, sub(chunk, q % S), sequence: q, ctx)
            lastSend[chunk * S + q % S] = q
        }
        for q in 0..<window { try sendFrame(q) }
        for k in 0..<total {
            let t = k / S, j = k % S
            let chunk = recvChunk(t)
            // A send may still be reading this sub-chunk (zero-copy): wait before writing.
            if lastSend[chunk * S + j] >= 0 { try awaitSend(lastSend[chunk * S + j], ctx) }
            try receive(into: base, sub(chunk, j), add: t < W - 1, sequence: k, ctx)
            if k + window < total { try sendFrame(k + window) }
        }
    }

    /// Whole-buffer exchange around the ring, then a rank-ordered sum.
    private func exchangeAll(_ base: UnsafeMutablePointer<Float>, _ n: Int, _ ctx: Exchange) throws(AllReduceError) {
        let W = world
        let S = max(1, (n * 4 + subChunkBytes - 1) / subChunkBytes)
        tracker.reserve((W - 1) * S)
        if W == 2 {
            // One step: send mine, add theirs as it arrives (a + b == b + a bitwise, so both
            // ranks agree). Sub-chunk j is overwritten only once its send has been released.
            // At most `sendWindow` sub-chunks of ours go out ahead of the one being received.
            let window = sendWindow > 0 ? min(S, sendWindow) : S
            for j in 0..<window { try send(base, Self.split(n, parts: S, index: j), sequence: j, ctx) }
            for j in 0..<S {
                try awaitSend(j, ctx)
                try receive(into: base, Self.split(n, parts: S, index: j), add: true, sequence: j, ctx)
                if j + window < S { try send(base, Self.split(n, parts: S, index: j + window), sequence: j + window, ctx) }
            }
            return
        }
        // Slot k holds rank k's contribution; slot `rank` is the caller's buffer itself.
        if scratch == nil || scratch!.count < W * n { scratch = AlignedFloats(count: W * n) }
        let slots = scratch!.base
        func slot(_ k: Int) -> UnsafeMutablePointer<Float> { k == rank ? base : slots + k * n }
        let steps = W - 1
        for j in 0..<S { try send(slot(rank), Self.split(n, parts: S, index: j), sequence: j, ctx) }
        for t in 0..<steps {
            let from = ((rank - t - 1) % W + W) % W
            for j in 0..<S {
                let range = Self.split(n, parts: S, index: j)
                try receive(into: slot(from), range, add: false, sequence: t * S + j, ctx)
                if t + 1 < steps { try send(slot(from), range, sequence: (t + 1) * S + j, ctx) }
            }
        }
        // Our own contribution is about to be overwritten: all sends must be done with it.
        for j in 0..<S { try awaitSend(j, ctx) }
        // Rank-ordered sum: ((s0 + s1) + s2) + ..., the same on every rank.
        for i in 0..<n {
            var acc = slot(0)[i]
            for k in 1..<W { acc += slot(k)[i] }
            base[i] = acc
        }
    }

    /// Halving-doubling (`halve`) or recursive doubling; see the header. Sequence numbers: 0
    /// the hand-over from rank r >= P, 1 ... L the halving (or doubling) rounds, L+1 ... 2L the
    /// doubling rounds of halving-doubling, 2L + 1 the hand-back (L = log2 P).
    private func halvingDoubling(_ base: UnsafeMutablePointer<Float>, _ n: Int, _ ctx: Exchange, halve: Bool) throws(AllReduceError) {
        var P = 1
        while P * 2 <= world { P *= 2 }
        var levels = 0
        while (1 << levels) < P { levels += 1 }
        let all = 0..<n
        let handBack = 1 + 2 * levels
        if rank >= P {
            try send(base, all, sequence: 0, ctx, to: rank - P)
            try receive(into: base, all, add: false, sequence: handBack, ctx, from: rank - P)
            return
        }
        let v = rank
        let extra = v + P < world ? v + P : nil
        if let extra { try receive(into: base, all, add: true, sequence: 0, ctx, from: extra) }
        if halve {
            // Level i: partner v XOR P/2^(i+1); both hold the same segment; the rank whose
            // partner bit is 0 keeps the lower half.
            var kept: [Range<Int>] = [], given: [Range<Int>] = []
            kept.reserveCapacity(levels); given.reserveCapacity(levels)
            var segment = all
            for i in 0..<levels {
                let mask = P >> (i + 1)
                let mid = segment.lowerBound + Self.split(segment.count, parts: 2, index: 0).count
                let low = segment.lowerBound..<mid, high = mid..<segment.upperBound
                let (keep, give) = v & mask == 0 ? (low, high) : (high, low)
                try send(base, give, sequence: 1 + i, ctx, to: v ^ mask)
                try receive(into: base, keep, add: true, sequence: 1 + i, ctx, from: v ^ mask)
                kept.append(keep)
                given.append(give)
                segment = keep
            }
            for i in stride(from: levels - 1, through: 0, by: -1) {
                let mask = P >> (i + 1)
                let sequence = 1 + levels + (levels - 1 - i)
                try send(base, kept[i], sequence: sequence, ctx, to: v ^ mask)
                try receive(into: base, given[i], add: false, sequence: sequence, ctx, from: v ^ mask)
            }
        } else {
            for i in 0..<levels {
                try send(base, all, sequence: 1 + i, ctx, to: v ^ (1 << i))
                try receive(into: base, all, add: true, sequence: 1 + i, ctx, from: v ^ (1 << i))
            }
        }
        if let extra { try send(base, all, sequence: handBack, ctx, to: extra) }
    }

    /// bfloat16 on the wire (GradientCompression.swift): rank r rounds its m gradients to bf16
    /// once and sends chunk c to rank c (sequence 0; chunk 0 carries the n - m float32 scalars
    /// too); rank c expands the W contributions of its chunk and adds them in rank order in
    /// float32, rounds the sum to bf16 and sends it to every rank (sequence 1); every rank, c
    /// included, expands those sums. Rank 0 sums the scalars in rank order the same way.
    private func bf16AllReduce(_ base: UnsafeMutablePointer<Float>, _ n: Int, compressed m: Int, _ ctx: Exchange) throws(AllReduceError) {
        let W = world, k = n - m
        func chunk(_ c: Int) -> Range<Int> { Self.split(m, parts: W, index: c) }
        let mine = chunk(rank), len = mine.count
        if bf16Own.count < m { bf16Own = [UInt16](repeating: 0, count: m) }
        if bf16Slots.count < W * max(1, len) { bf16Slots = [UInt16](repeating: 0, count: W * max(1, len)) }
        if scalarSlots.count < W * max(1, k) { scalarSlots = [Float](repeating: 0, count: W * max(1, k)) }
        let scalars = UnsafeRawBufferPointer(start: base + m, count: k * 4)
        try bf16Own.withUnsafeMutableBufferPointer { (own: inout UnsafeMutableBufferPointer<UInt16>) throws(AllReduceError) in
            let ownRaw = UnsafeMutableRawPointer(own.baseAddress!)
            BFloat16.round(base, ownRaw, m)
            func bytes(_ r: Range<Int>) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: ownRaw + 2 * r.lowerBound, count: 2 * r.count) }
            // 1. Each chunk's contribution to its owner.
            for offset in 1..<W {
                let c = (rank + offset) % W
                try sendBytes(bytes(chunk(c)), c == 0 ? scalars : UnsafeRawBufferPointer(start: nil, count: 0), sequence: 0, ctx, to: c)
            }
            // 2. The W contributions of our chunk, slot r = rank r's; summed in rank order.
            try bf16Slots.withUnsafeMutableBufferPointer { (slots: inout UnsafeMutableBufferPointer<UInt16>) throws(AllReduceError) in
                try scalarSlots.withUnsafeMutableBufferPointer { (sc: inout UnsafeMutableBufferPointer<Float>) throws(AllReduceError) in
                    let slotRaw = UnsafeMutableRawPointer(slots.baseAddress!), scRaw = UnsafeMutableRawPointer(sc.baseAddress!)
                    if len > 0 { (slotRaw + 2 * rank * len).copyMemory(from: ownRaw + 2 * mine.lowerBound, byteCount: 2 * len) }
                    if rank == 0 && k > 0 { scRaw.copyMemory(from: scalars.baseAddress!, byteCount: 4 * k) }
                    for r in 0..<W where r != rank {
                        let extra = rank == 0 ? 4 * k : 0
                        try receiveBytes(2 * len + extra, sequence: 0, ctx, from: r) { src in
                            guard let p = src.baseAddress else { return }
                            if len > 0 { (slotRaw + 2 * r * len).copyMemory(from: p, byteCount: 2 * len) }
                            if extra > 0 { (scRaw + 4 * r * k).copyMemory(from: p + 2 * len, byteCount: extra) }
                        }
                    }
                    let dst = base + mine.lowerBound
                    for r in 0..<W { BFloat16.expand(slotRaw + 2 * r * len, dst, len, add: r > 0) }
                    BFloat16.round(dst, ownRaw + 2 * mine.lowerBound, len)
                    BFloat16.expand(ownRaw + 2 * mine.lowerBound, dst, len, add: false)
                    if rank == 0 {
                        for j in 0..<k {
                            var acc = sc[j]
                            for r in 1..<W { acc += sc[r * k + j] }
                            base[m + j] = acc
                        }
                    }
                }
            }
            // 3. Our chunk's sum to everyone; 4. everyone else's sums to us.
            for offset in 1..<W {
                let c = (rank + offset) % W
                try sendBytes(bytes(mine), rank == 0 ? scalars : UnsafeRawBufferPointer(start: nil, count: 0), sequence: 1, ctx, to: c)
            }
            for r in 0..<W where r != rank {
                let theirs = chunk(r), extra = r == 0 ? 4 * k : 0
                try receiveBytes(2 * theirs.count + extra, sequence: 1, ctx, from: r) { src in
                    guard let p = src.baseAddress else { return }
                    BFloat16.expand(p, base + theirs.lowerBound, theirs.count, add: false)
                    if extra > 0 { UnsafeMutableRawPointer(base + m).copyMemory(from: p + 2 * theirs.count, byteCount: extra) }
                }
            }
        }
    }

    /// Sends `first` then `second` as one copied single-part frame `sequence` to `peer`.
    private func sendBytes(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, sequence: Int, _ ctx: Exchange,
                           to peer: Int) throws(AllReduceError) {
        let bytes = first.count + second.count
        let header = FrameHeader(kind: .gradientChunk, runID: runID, generation: generation, sender: UInt32(rank),
                                 step: ctx.step, sequence: UInt32(sequence), payloadLength: bytes)
        do {
            let socket = try peerSocket(peer)
            let m = try ZMQMessage(size: FrameHeader.size + bytes)
            m.withUnsafeMutableBytes { dst in
                header.encode(to: dst.baseAddress!)
                if first.count > 0 { (dst.baseAddress! + FrameHeader.size).copyMemory(from: first.baseAddress!, byteCount: first.count) }
                if second.count > 0 {
                    (dst.baseAddress! + FrameHeader.size + first.count).copyMemory(from: second.baseAddress!, byteCount: second.count)
                }
            }
            try socket.send(m, deadline: .after(milliseconds: timeoutMilliseconds))
            endpointBytesSent += FrameHeader.size + bytes
        } catch let e as ZMQTimeout {
            throw .timeout(operation: "send", peerRank: peer, endpoint: peerEndpoints[peer], milliseconds: e.milliseconds,
                           generation: generation, step: ctx.step)
        } catch let e as ZMQError {
            throw .transport(e)
        } catch {
            throw .transport(ZMQError(call: "zmq_msg_send (\(error))", endpoint: peerEndpoints[peer], errno: 0))
        }
    }

    /// `wait(deadline)` until `deadline`, in slices that consult `interruptCheck` (a send to
    /// a dead or stopped neighbour may never complete; the caller must be able to give up).
    private func waitInterruptibly(_ deadline: Deadline, step: UInt64, _ wait: (Deadline) -> Bool) throws(AllReduceError) -> Bool {
        guard let interruptCheck else { return wait(deadline) }
        while true {
            let slice = Deadline(nanoseconds: min(deadline.nanoseconds,
                                                  monotonicNanoseconds() &+ UInt64(interruptPollMilliseconds) &* 1_000_000))
            if wait(slice) { return true }
            if deadline.hasPassed { return false }
            if interruptCheck() { throw .interrupted(generation: generation, step: step) }
        }
    }

    // MARK: frames

    /// Waits until libzmq has released the bytes of send `slot`.
    private func awaitSend(_ slot: Int, _ ctx: Exchange) throws(AllReduceError) {
        guard try waitInterruptibly(.after(milliseconds: timeoutMilliseconds), step: ctx.step,
                                    { tracker.waitUntilComplete(slot, deadline: $0) }) else {
            throw .timeout(operation: "send completion", peerRank: rightRank, endpoint: rightEndpoint,
                           milliseconds: timeoutMilliseconds, generation: generation, step: ctx.step)
        }
    }

    /// Sends `base[range]` as frame `sequence`: payloads up to `copyFrameBytes` (or any
    /// payload when zero-copy is off or not allowed) as one single-part frame holding the
    /// header and a copy of the payload; larger ones as a 48-byte header frame followed by
    /// the payload frame, sent zero-copy from `base` through tracker slot `sequence`.
    /// `to`: a rank other than the right neighbour; such sends are always copied.
    private func send(_ base: UnsafeMutablePointer<Float>, _ range: Range<Int>, sequence: Int, _ ctx: Exchange,
                      to peer: Int? = nil) throws(AllReduceError) {
        let bytes = range.count * 4
        let peerRank = peer ?? rightRank
        let endpoint = peer.map { peerEndpoints[$0] } ?? rightEndpoint
        let socket: ZMQSocket
        if let peer {
            do { socket = try peerSocket(peer) } catch { throw .transport(error) }
        } else {
            socket = ctx.sender
        }
        let header = FrameHeader(kind: .gradientChunk, runID: runID, generation: generation, sender: UInt32(rank),
                                 step: ctx.step, sequence: UInt32(sequence), payloadLength: bytes)
        let deadline = Deadline.after(milliseconds: timeoutMilliseconds)
        let payload = UnsafeRawBufferPointer(start: base + range.lowerBound, count: bytes)
        do {
            if peer != nil || bytes <= copyFrameBytes || !(zeroCopy && zeroCopyAllowed) {
                let m = try ZMQMessage(size: FrameHeader.size + bytes)
                m.withUnsafeMutableBytes { dst in
                    header.encode(to: dst.baseAddress!)
                    if bytes > 0 { (dst.baseAddress! + FrameHeader.size).copyMemory(from: payload.baseAddress!, byteCount: bytes) }
                }
                try socket.send(m, deadline: deadline)
            } else {
                let h = try ZMQMessage(size: FrameHeader.size)
                h.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!) }
                try ctx.sender.send(h, more: true, deadline: deadline)
                try ctx.sender.sendNoCopy(payload, tracker: tracker, slot: sequence, deadline: deadline)
            }
            endpointBytesSent += FrameHeader.size + bytes
        } catch let e as ZMQTimeout {
            throw .timeout(operation: "send", peerRank: peerRank, endpoint: endpoint, milliseconds: e.milliseconds,
                           generation: generation, step: ctx.step)
        } catch let e as ZMQError {
            throw .transport(e)
        } catch {
            throw .transport(ZMQError(call: "zmq_msg_send (\(error))", endpoint: endpoint, errno: 0))
        }
    }

    /// Receives frame `sequence` of this exchange (header frame + payload frame) and adds
    /// (or copies) its floats into `base[range]`. Garbage and stale frames are counted and
    /// dropped; a well-formed frame that does not fit the schedule is a protocol violation.
    ///
    /// `from`: the sending rank (default: the left neighbour). Frames of this generation for a
    /// later step, or (with `from`) of this step from another rank, are kept aside in `early`
    /// and consumed when their turn comes.
    private func receive(into base: UnsafeMutablePointer<Float>, _ range: Range<Int>, add: Bool, sequence: Int,
                         _ ctx: Exchange, from peer: Int? = nil) throws(AllReduceError) {
        try receiveBytes(range.count * 4, sequence: sequence, ctx, from: peer) { src in
            guard let p = src.baseAddress, range.count > 0 else { return }
            if add {
                addUnaligned(base + range.lowerBound, p, range.count)
            } else {
                UnsafeMutableRawPointer(base + range.lowerBound).copyMemory(from: p, byteCount: range.count * 4)
            }
        }
    }

    /// Receives frame `sequence` of `byteCount` payload bytes from `peer` (default: the left
    /// neighbour) and hands its payload to `consume` (valid only during the call).
    private func receiveBytes(_ byteCount: Int, sequence: Int, _ ctx: Exchange, from peer: Int? = nil,
                              _ consume: (UnsafeRawBufferPointer) -> Void) throws(AllReduceError) {
        let expected = peer ?? leftRank
        if try takeEarly(byteCount, sequence: sequence, ctx, from: expected, consume) { return }
        let started = monotonicNanoseconds()
        let deadline = Deadline(nanoseconds: started &+ UInt64(timeoutMilliseconds) &* 1_000_000)
        defer {
            // Release the frames now: for inproc they are the sender's memory (zero-copy).
            incomingHeader.reset()
            incomingPayload.reset()
        }
        while true {
            guard try receiveMessage(until: deadline, started: started, from: expected, ctx) else { continue }
            let single = !incomingHeader.hasMore
            switch classifyMessage(byteCount, sequence: sequence, ctx, from: expected, anyOrder: peer != nil) {
            case .early(let key):
                // Kept aside: header fields were validated by the decoder.
                func keep(_ src: UnsafeRawBufferPointer) { early[key] = [UInt8](src) }
                if single {
                    incomingHeader.withUnsafeBytes { keep(UnsafeRawBufferPointer(rebasing: $0[FrameHeader.size...])) }
                } else {
                    incomingPayload.withUnsafeBytes { keep($0) }
                }
            case .expected:
                if single {
                    incomingHeader.withUnsafeBytes { consume(UnsafeRawBufferPointer(rebasing: $0[FrameHeader.size...])) }
                } else {
                    incomingPayload.withUnsafeBytes { consume($0) }
                }
                return
            case .stale:
                continue
            case .rejected(let e):
                // Garbage (bad magic, other run...) is counted and dropped; a well-formed frame
                // of this run that does not fit the schedule breaks the exchange.
                if case .unexpected = e { throw .protocolViolation(peerRank: expected, e) }
            }
        }
    }

    /// A frame that arrived before its turn and was kept aside: consumed, true.
    private func takeEarly(_ byteCount: Int, sequence: Int, _ ctx: Exchange, from expected: Int,
                           _ consume: (UnsafeRawBufferPointer) -> Void) throws(AllReduceError) -> Bool {
        guard !early.isEmpty else { return false }
        let key = EarlyFrame(generation: generation, step: ctx.step, sender: UInt32(expected), sequence: UInt32(sequence))
        guard let bytes = early.removeValue(forKey: key) else { return false }
        guard bytes.count == byteCount else {
            throw .protocolViolation(peerRank: expected, decoder.reject(.unexpected(
                "frame gen \(generation) step \(ctx.step) sender \(expected) seq \(sequence) len \(bytes.count); expected len \(byteCount)")))
        }
        bytes.withUnsafeBytes { consume($0) }
        return true
    }

    /// Receives one whole message into `incomingHeader` (and `incomingPayload` when it has two
    /// parts) before `deadline`, in slices that let `interruptCheck` abandon the step. False for
    /// a message of more than two parts (drained, counted, dropped).
    private func receiveMessage(until deadline: Deadline, started: UInt64, from expected: Int, _ ctx: Exchange) throws(AllReduceError) -> Bool {
        func timedOut() -> AllReduceError {
            .timeout(operation: "receive", peerRank: expected, endpoint: nil,
                     milliseconds: Int((monotonicNanoseconds() - started) / 1_000_000), generation: generation, step: ctx.step)
        }
        do {
            if let interruptCheck {
                // Wait in slices so that the caller can abandon the step between them.
                while true {
                    let slice = Deadline(nanoseconds: min(deadline.nanoseconds,
                                                          monotonicNanoseconds() &+ UInt64(interruptPollMilliseconds) &* 1_000_000))
                    if try receiver.receive(into: incomingHeader, deadline: slice, spinMicroseconds: spinMicroseconds) { break }
                    if deadline.hasPassed { throw timedOut() }
                    if interruptCheck() { throw AllReduceError.interrupted(generation: generation, step: ctx.step) }
                }
            } else {
                guard try receiver.receive(into: incomingHeader, deadline: deadline, spinMicroseconds: spinMicroseconds) else { throw timedOut() }
            }
            // A single-part message is a whole frame (header + copied payload); a multipart
            // one is the header frame followed by the payload frame.
            guard incomingHeader.hasMore else { return true }
            guard try receiver.receive(into: incomingPayload, deadline: deadline) else { throw timedOut() }
            guard incomingPayload.hasMore else { return true }
            // More parts than header + payload: drain them, count, drop.
            while incomingPayload.hasMore {
                guard try receiver.receive(into: incomingPayload, deadline: deadline) else { throw timedOut() }
            }
            _ = decoder.reject(.unexpected("multipart message with more than two parts on the data socket"))
            return false
        } catch let e as AllReduceError {
            throw e
        } catch let e as ZMQError {
            throw .transport(e)
        } catch {
            throw .transport(ZMQError(call: "zmq_msg_recv (\(error))", endpoint: nil, errno: 0))
        }
    }

    /// What the received message is to an exchange waiting for frame `sequence` of
    /// `byteCount` bytes from `expected`.
    private enum Received {
        case expected
        /// An older generation or step: dropped (counted as stale).
        case stale
        /// A later frame of this generation: kept aside under this key for its turn.
        case early(EarlyFrame)
        case rejected(FrameError)
    }

    /// Decodes the received header and places it: `anyOrder` (a partner of recursive
    /// doubling or halving-doubling, not the ring neighbour) keeps frames of other senders or
    /// sequences of this step aside too.
    private func classifyMessage(_ byteCount: Int, sequence: Int, _ ctx: Exchange, from expected: Int, anyOrder: Bool) -> Received {
        let single = !incomingHeader.hasMore
        let payloadCount = incomingPayload.count
        return incomingHeader.withUnsafeBytes { headerBytes -> Received in
            do throws(FrameError) {
                let h = single ? try decoder.decodeHeader(headerBytes)
                               : try decoder.decodeSplitHeader(headerBytes, payloadCount: payloadCount)
                guard h.kind == .gradientChunk else {
                    throw decoder.reject(.unexpected("\(h.kind) on the all-reduce data socket"))
                }
                if h.generation < generation || (h.generation == generation && h.step < ctx.step) {
                    _ = decoder.reject(.stale(kind: h.kind, generation: h.generation, step: h.step,
                                              expectedGeneration: generation, expectedStep: ctx.step))
                    return .stale
                }
                if h.generation == generation, h.step > ctx.step
                    || (anyOrder && h.step == ctx.step && (h.sender != UInt32(expected) || h.sequence != UInt32(sequence))),
                   Int(h.sender) < world || hierarchy != nil {
                    let key = EarlyFrame(generation: h.generation, step: h.step, sender: h.sender, sequence: h.sequence)
                    if early[key] == nil && early.count < 4 * world + 64 { return .early(key) }
                }
                guard h.generation == generation, h.step == ctx.step, h.sender == UInt32(expected),
                      h.sequence == UInt32(sequence), h.payloadLength == UInt64(byteCount) else {
                    throw decoder.reject(.unexpected(
                        "frame gen \(h.generation) step \(h.step) sender \(h.sender) seq \(h.sequence) len \(h.payloadLength); "
                        + "expected gen \(generation) step \(ctx.step) sender \(expected) seq \(sequence) len \(byteCount)"))
                }
                return .expected
            } catch {
                return .rejected(error)
            }
        }
    }
}

/// dst[i] += src[i] for `count` floats; `src` may be unaligned (ZeroMQ frame data).
@inline(__always)
func addUnaligned(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafeRawPointer, _ count: Int) {
    let d = UnsafeMutableRawPointer(dst)
    var i = 0
    while i + 16 <= count {
        let a = d.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        let b = src.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        d.storeBytes(of: a + b, toByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        dst[i] += src.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
        i += 1
    }
}

/// A 64-byte aligned float allocation (avoids the glibc memcpy 4 KiB-aliasing trap).
final class AlignedFloats {
    let base: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4, alignment: 64)
        base = raw.initializeMemory(as: Float.self, repeating: 0, count: max(1, count))
    }

    deinit { base.deallocate() }
}

/// The buffer handed to the all-reduce: `gradientCount` gradients followed by
/// `scalarCount` extra scalars (e.g. sample count, loss sum) reduced in the same exchange.
/// One 64-byte aligned allocation, zero-initialised.
public final class AllReduceBuffer: @unchecked Sendable {
    public let gradientCount: Int
    public let scalarCount: Int
    private let storage: AlignedFloats

    public init(gradientCount: Int, scalarCount: Int) {
        self.gradientCount = gradientCount
        self.scalarCount = scalarCount
        storage = AlignedFloats(count: gradientCount + scalarCount)
    }

    public var count: Int { gradientCount + scalarCount }

    /// All floats (gradients then scalars): pass this to `allReduceSum`.
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: storage.base, count: count))
    }

    /// The gradient part.
    public func withGradients<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: storage.base, count: gradientCount))
    }

    /// Extra scalar `i` (after the gradients).
    public subscript(scalar i: Int) -> Float {
        get { precondition(i >= 0 && i < scalarCount); return storage.base[gradientCount + i] }
        set { precondition(i >= 0 && i < scalarCount); storage.base[gradientCount + i] = newValue }
    }

    /// Sets every float to zero.
    public func zero() { storage.base.update(repeating: 0, count: max(1, count)) }

    /// Runs the all-reduce over gradients and scalars together (with `ring.compression`
    /// `.bf16` the gradients travel as bfloat16, the scalars as float32).
    public func allReduce(with ring: RingAllReduce, step: UInt64) throws(AllReduceError) {
        try ring.allReduceSum(UnsafeMutableBufferPointer(start: storage.base, count: count), step: step, compressedCount: gradientCount)
    }
}
