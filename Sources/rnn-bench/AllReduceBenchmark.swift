// `rnn-bench allreduce`: W worker processes (this executable re-run as
// `rnn-bench allreduce-rank ...`) all-reduce float32 buffers of 4 KiB .. 64 MiB over
// loopback TCP with `RingAllReduce`; the parent prints time per op and bus bandwidth
// 2 (W - 1) / W * bytes / time. scripts/bench_gloo_allreduce.py measures torch gloo the
// same way; scripts/bench_allreduce.sh prints both side by side.
//
// The parent binds a ROUTER control socket; children say HELLO (rank, data endpoint), get
// WELCOME (all endpoints), run every size (a 1-float all-reduce as barrier before timing),
// and send METRICS (JSON) per size, then BYE.
import ArgumentParser
import Foundation
import RNNDistributed
import RNNTransport

struct AllReduceBenchOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Processes W.") var world = 2
    @Option(parsing: .unconditional, help: ArgumentHelp("Buffer sizes in bytes (default: 4 KiB, 16 KiB, ... 64 MiB).", valueName: "bytes[,bytes]"),
            transform: { try byteCounts($0) })
    var sizes: [Int] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
    @Option(name: .customLong("algorithm"), help: "auto, ring, exchange, halving-doubling or recursive-doubling.")
    var algorithmName = "auto"
    var algorithm: AllReduceAlgorithm { Self.algorithms[algorithmName] ?? .automatic }
    @Option(help: "Gradient compression on the wire.") var compress: GradientCompression = .none
    @Option(name: .customLong("crossover"), help: ArgumentHelp("With --algorithm auto and W >= 3: measured (timed over the ring first, as a training run does), fixed (the documented constants) or RD,HD in bytes.", valueName: "measured|fixed|RD,HD"),
            transform: { text in
                guard let c = CrossoverChoice(argument: text) else {
                    throw ValidationError("expected measured, fixed or two byte counts RD,HD with RD <= HD, found '\(text)'")
                }
                return c
            })
    var crossover: CrossoverChoice = .measured
    @Flag(help: "One JSON line per size (scripts/bench_allreduce.sh, bench_netns.sh).") var json = false
    @Option(name: .customLong("sub-chunk"), parsing: .unconditional, help: ArgumentHelp("RingAllReduce's sub-chunk size (default: its own).", valueName: "bytes"))
    var subChunkBytes: Int?  // nil: RingAllReduce's default
    @Option(name: .customLong("copy-frame"), parsing: .unconditional,
            help: ArgumentHelp("RingAllReduce's copy-frame threshold (-1: never copy; default: its own).", valueName: "bytes"))
    var copyFrameBytes: Int?  // nil: RingAllReduce's default
    @Option(parsing: .unconditional, help: ArgumentHelp("RingAllReduce's send window (default: its own).", valueName: "n")) var sendWindow: Int?
    @Option(name: .customLong("spin"), parsing: .unconditional, help: ArgumentHelp("RingAllReduce's spin before blocking (default: its own).", valueName: "us"))
    var spinMicroseconds: Int?  // nil: RingAllReduce's default
    @Option(name: .customLong("volume"), parsing: .unconditional, help: ArgumentHelp("Total bytes reduced per size (sets the iterations).", valueName: "bytes"))
    var bytesPerSize = 512 << 20  // total bytes reduced per size (sets the iteration count)
    @Option(parsing: .unconditional, help: .hidden) var rank = 0
    @Option(help: .hidden) var control = ""
    @Flag(help: "Keep the default malloc settings (no tuning for large messages).") var defaultMalloc = false
    @Flag(name: .customLong("copy"), help: "Copy sends (no zero-copy).") var copySends = false
    @Option(parsing: .unconditional, help: "ZeroMQ I/O threads per rank.") var ioThreads = 1
    @Option(help: "tcp or ipc (Unix domain sockets).") var transport = "tcp"
    @Option(name: .customLong("sockbuf"), parsing: .unconditional,
            help: ArgumentHelp("SO_SNDBUF/SO_RCVBUF of the ring sockets (default: the OS's).", valueName: "bytes"))
    var sockbuf: Int?
    var kernelBufferBytes: Int { sockbuf ?? 0 }  // ZMQ_SNDBUF/ZMQ_RCVBUF of the ring sockets (0: OS default)
    /// Test hosts (scripts/netns-hosts.sh): rank r runs in namespace NETNS_PREFIX r and binds
    /// SUBNET.(r+1); the parent (run inside host 0) binds its control socket at SUBNET.1.
    @Option(name: .customLong("netns"), help: ArgumentHelp("Rank r in network namespace PREFIXr (scripts/netns-hosts.sh).", valueName: "prefix"))
    var netnsPrefix: String?
    @Option(help: "The test hosts' subnet of --netns.") var subnet = "10.77.0"
    @Option(help: .hidden) var bindHost = "127.0.0.1"  // a rank's ring address

    static let algorithms: [String: AllReduceAlgorithm] = [
        "auto": .automatic, "ring": .ring, "exchange": .exchange, "halving-doubling": .halvingDoubling, "recursive-doubling": .recursiveDoubling,
    ]

    func validate() throws {
        try requireAtLeast(1, "--world", world)
        if Self.algorithms[algorithmName] == nil {
            throw ValidationError("Please specify '--algorithm' as auto, ring, exchange, halving-doubling or recursive-doubling, found '\(algorithmName)'.")
        }
        try requireAtLeast(1, "--sub-chunk", subChunkBytes)
        try requireAtLeast(0, "--send-window", sendWindow)
        try requireAtLeast(0, "--spin", spinMicroseconds)
        try requireAtLeast(1, "--volume", bytesPerSize)
        try requireAtLeast(1, "--io-threads", ioThreads)
        if !["tcp", "ipc"].contains(transport) { throw ValidationError("Please specify '--transport' as tcp or ipc, found '\(transport)'.") }
        try requireAtLeast(1, "--sockbuf", sockbuf)
    }

    func iterations(bytes: Int) -> Int { max(5, min(3000, bytesPerSize / bytes)) }
}

extension GradientCompression: ExpressibleByArgument {}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Result of one size on one rank.
struct AllReduceSample: Codable {
    var rank: Int
    var bytes: Int
    var iterations: Int
    var seconds: Double
    var verified: Bool
    /// CPU time (user + system, all threads) of this rank over the timed loop.
    var cpuSeconds: Double = 0
}

private struct RankHello: Codable { var rank: Int; var endpoint: String }
private struct RankWelcome: Codable { var endpoints: [String] }

/// `sizes` of `--sizes 4096,65536`.
private func byteCounts(_ text: String) throws -> [Int] {
    try text.split(separator: ",").map {
        guard let n = Int($0), n >= 4 else { throw ValidationError("Please specify '--sizes' as byte counts of at least 4, found '\($0)'.") }
        return n
    }
}

struct AllReduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time per op and bus bandwidth of RingAllReduce across W processes (loopback TCP, ipc or test hosts).")

    @OptionGroup var options: AllReduceBenchOptions

    func run() throws {
        let status = allReduceBenchmarkMain("allreduce", options)
        if status != 0 { throw ExitCode(status) }
    }
}

/// One rank of `allreduce` (the parent starts W of them).
struct AllReduceRankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce-rank", abstract: "One rank of 'rnn-bench allreduce' (started by it).", shouldDisplay: false)

    @OptionGroup var options: AllReduceBenchOptions

    func run() throws {
        let status = allReduceBenchmarkMain("allreduce-rank", options)
        if status != 0 { throw ExitCode(status) }
    }
}

/// Entry point for `allreduce` and `allreduce-rank` (`command`).
func allReduceBenchmarkMain(_ command: String, _ opts: AllReduceBenchOptions) -> Int32 {
    do {
        if command == "allreduce-rank" {
            try runAllReduceRank(opts)
        } else {
            try runAllReduceParent(opts)
        }
        return 0
    } catch {
        FileHandle.standardError.write(Data("rnn-bench \(command): \(error)\n".utf8))
        return 1
    }
}

private let benchRunID: UInt64 = 0xA11_2ED0CE

private func runAllReduceParent(_ o: AllReduceBenchOptions) throws {
    let ctx = try ZMQContext()
    let control = try ZMQSocket(ctx, type: .router, lingerMilliseconds: 0)
    try control.setRouterMandatory(true)
    try control.bind(o.netnsPrefix == nil ? "tcp://127.0.0.1:*" : "tcp://\(o.subnet).1:*")
    let controlEndpoint = try control.lastEndpoint()
    let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                  ?? CommandLine.arguments[0])
    var children: [Process] = []
    defer { for c in children where c.isRunning { c.terminate() } }
    for r in 0..<o.world {
        let p = Process()
        var a: [String] = []
        if let prefix = o.netnsPrefix {
            // `ip netns exec HOST rnn-bench allreduce-rank ...`: each rank on its own test host.
            p.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip")
            a = ["netns", "exec", "\(prefix)\(r)", exe.path, "allreduce-rank", "--bind-host", "\(o.subnet).\(r + 1)"]
        } else {
            p.executableURL = exe
            a = ["allreduce-rank"]
        }
        a += [ "--rank", "\(r)", "--world", "\(o.world)", "--control", controlEndpoint]
        a += ["--algorithm", o.algorithmName, "--volume", "\(o.bytesPerSize)", "--compress", o.compress.rawValue, "--crossover", o.crossover.description]
        if let b = o.subChunkBytes { a += ["--sub-chunk", "\(b)"] }
        if let b = o.copyFrameBytes { a += ["--copy-frame", "\(b)"] }
        if let b = o.sendWindow { a += ["--send-window", "\(b)"] }
        if let us = o.spinMicroseconds { a += ["--spin", "\(us)"] }
        a += ["--sizes", o.sizes.map(String.init).joined(separator: ",")]
        if o.defaultMalloc { a.append("--default-malloc") }
        if o.copySends { a.append("--copy") }
        a += ["--io-threads", "\(o.ioThreads)", "--transport", o.transport]
        if o.kernelBufferBytes > 0 { a += ["--sockbuf", "\(o.kernelBufferBytes)"] }
        p.arguments = a
        try p.run()
        children.append(p)
    }
    let decoder = FrameDecoder(expectedRunID: benchRunID)
    // HELLO from every rank.
    var ids = [[UInt8]](repeating: [], count: o.world)
    var endpoints = [String](repeating: "", count: o.world)
    var seen = 0
    let helloDeadline = Deadline.after(seconds: 30)
    while seen < o.world {
        guard let parts = try control.receiveMultipart(deadline: helloDeadline), parts.count == 2 else {
            throw BenchError("only \(seen) of \(o.world) ranks said HELLO on \(controlEndpoint) within 30 s")
        }
        let f = try decoder.decode(parts[1])
        guard f.header.kind == .hello else { continue }
        let h = try JSONPayload.decode(RankHello.self, from: f.payload)
        guard h.rank >= 0 && h.rank < o.world, ids[h.rank].isEmpty else { throw BenchError("bad HELLO rank \(h.rank)") }
        ids[h.rank] = parts[0].bytes
        endpoints[h.rank] = h.endpoint
        seen += 1
    }
    let welcome = Frame(header: FrameHeader(kind: .welcome, runID: benchRunID), payload: try JSONPayload.encode(RankWelcome(endpoints: endpoints)))
    for id in ids {
        try control.sendMultipart([id, welcome.encoded], deadline: .after(seconds: 5))
    }
    // METRICS per size per rank, then BYE.
    var samples: [Int: [AllReduceSample]] = [:]
    var byes = 0
    if !o.json {
        print("all-reduce sum, float32\(o.compress == .bf16 ? " (bf16 on the wire)" : ""), \(o.world) processes, algorithm \(o.algorithmName), \(o.netnsPrefix.map { "TCP between test hosts \($0)0..\($0)\(o.world - 1)" } ?? (o.transport == "tcp" ? "loopback TCP" : "Unix domain sockets (ipc)"))")
        print("     bytes    iters      us/op   busbw GB/s  cpu us/op (all ranks)")
    }
    while byes < o.world {
        // Large sizes may take a while per size; every wait is still bounded.
        guard let parts = try control.receiveMultipart(deadline: .after(seconds: 300)), parts.count == 2 else {
            throw BenchError("ranks went silent (no METRICS for 300 s)")
        }
        let f = try decoder.decode(parts[1])
        switch f.header.kind {
        case .metrics:
            let s = try JSONPayload.decode(AllReduceSample.self, from: f.payload)
            samples[s.bytes, default: []].append(s)
            if samples[s.bytes]!.count == o.world {
                let all = samples[s.bytes]!
                let perOp = all.map { $0.seconds / Double($0.iterations) }.max()!
                let busBW = 2.0 * Double(o.world - 1) / Double(o.world) * Double(s.bytes) / perOp / 1e9
                let ok = all.allSatisfy(\.verified)
                // CPU time of all ranks together per op (robust against other load).
                let cpuPerOp = all.map { $0.cpuSeconds / Double($0.iterations) }.reduce(0, +)
                if o.json {
                    print("{\"impl\":\"swift-\(o.algorithmName)\(o.algorithm == .automatic && o.crossover != .measured ? "-" + (o.crossover == .fixed ? "fixed" : o.crossover.description) : "")\(o.compress == .bf16 ? "-bf16" : "")\(o.transport == "ipc" ? "-ipc" : "")\",\"world\":\(o.world),\"bytes\":\(s.bytes),\"iters\":\(s.iterations),\"us_per_op\":\(perOp * 1e6),\"cpu_us_per_op\":\(cpuPerOp * 1e6),\"busbw_gbps\":\(busBW),\"verified\":\(ok)}")
                } else {
                    print(String(format: "%10d %8d %10.1f %12.3f %12.1f%@", s.bytes, s.iterations, perOp * 1e6, busBW, cpuPerOp * 1e6, ok ? "" : "  WRONG RESULT"))
                }
                fflush(nil)
            }
        case .error:
            throw BenchError("rank \(f.header.sender) failed: \(String(decoding: f.payload, as: UTF8.self))")
        case .bye:
            byes += 1
        default:
            continue
        }
    }
    for c in children {
        let deadline = Deadline.after(seconds: 10)
        while c.isRunning && !deadline.hasPassed { usleep(10_000) }
        if c.isRunning { c.terminate(); throw BenchError("a rank did not exit after BYE") }
        if c.terminationStatus != 0 { throw BenchError("a rank exited with status \(c.terminationStatus)") }
    }
}

private func runAllReduceRank(_ o: AllReduceBenchOptions) throws {
    if !o.defaultMalloc { tuneAllocatorForLargeMessages() }
    let ctx = try ZMQContext(ioThreads: o.ioThreads)
    let control = try ZMQSocket(ctx, type: .dealer, lingerMilliseconds: 2000)
    try control.connect(o.control)
    let rank = o.rank
    let ipcPath = "/tmp/rnn-bench-\(getpid())-\(rank).sock"
    defer { if o.transport == "ipc" { unlink(ipcPath) } }
    let ring = try RingAllReduce(context: ctx, rank: rank, world: o.world, runID: benchRunID,
                                 bindEndpoint: o.transport == "ipc" ? "ipc://" + ipcPath : "tcp://\(o.bindHost):*",
                                 timeoutMilliseconds: 60_000,
                                 socketSetup: o.kernelBufferBytes > 0 ? { [b = o.kernelBufferBytes] s, _ in
                                     try s.setKernelBuffers(sendBytes: b, receiveBytes: b)
                                 } : nil)
    ring.algorithm = o.algorithm
    ring.compression = o.compress
    // Integer test values whose sums bf16 holds exactly (8 significant bits: up to 256).
    let modulus = o.compress == .bf16 ? max(1, 256 / o.world) : 1000
    if let b = o.subChunkBytes { ring.subChunkBytes = b }
    if let b = o.copyFrameBytes { ring.copyFrameBytes = b }
    if let b = o.sendWindow { ring.sendWindow = b }
    if let us = o.spinMicroseconds { ring.spinMicroseconds = us }
    ring.zeroCopy = !o.copySends
    let me = UInt32(rank)
    func sendControl(_ kind: MessageKind, _ payload: [UInt8]) throws {
        try control.send(frame: Frame(header: FrameHeader(kind: kind, runID: benchRunID, sender: me), payload: payload),
                         deadline: .after(seconds: 10))
    }
    do {
        try sendControl(.hello, try JSONPayload.encode(RankHello(rank: rank, endpoint: ring.localEndpoint)))
        let decoder = FrameDecoder(expectedRunID: benchRunID)
        guard let w = try control.receiveFrame(decoder, deadline: .after(seconds: 30)), w.header.kind == .welcome else {
            throw BenchError("rank \(rank): no WELCOME from \(o.control) within 30 s")
        }
        let welcome = try JSONPayload.decode(RankWelcome.self, from: w.payload)
        try ring.connect(peerEndpoints: welcome.endpoints)
        var step: UInt64 = 0
        switch o.crossover {
        case .measured:
            // As a training run does before its first step (AllReduceCrossover.swift).
            let started = monotonicNanoseconds()
            if let m = try ring.measureCrossover(sizes: AllReduceCrossover.sizes(upTo: o.sizes.max() ?? 0), tag: &step), rank == 0 {
                let seconds = String(format: "%.2f", Double(monotonicNanoseconds() - started) / 1e9)
                FileHandle.standardError.write(Data("crossover measured in \(seconds) s: \(m.summary)\n".utf8))
            }
        case .thresholds(let a, let b):
            ring.recursiveDoublingMaxBytes = a
            ring.halvingDoublingMaxBytes = b
        }
        let barrier = AllReduceBuffer(gradientCount: 1, scalarCount: 0)
        for bytes in o.sizes {
            let n = bytes / 4
            let buf = AllReduceBuffer(gradientCount: n, scalarCount: 0)
            // Correctness on this size first (integer values: exact sums).
            buf.withGradients { g in for i in 0..<n { g[i] = Float((i + rank) % modulus) } }
            try buf.allReduce(with: ring, step: step); step += 1
            let verified = buf.withGradients { g in
                (0..<n).allSatisfy { i in g[i] == Float((0..<o.world).reduce(0) { $0 + (i + $1) % modulus }) }
            }
            // Warm-up (first touch, connection buffers), then time.
            buf.withGradients { g in g.update(repeating: 1) }
            for _ in 0..<2 { try buf.allReduce(with: ring, step: step); step += 1 }
            try barrier.allReduce(with: ring, step: step); step += 1
            let iters = o.iterations(bytes: bytes)
            let c0 = processCPUSeconds()
            let t0 = monotonicNanoseconds()
            for _ in 0..<iters { try buf.allReduce(with: ring, step: step); step += 1 }
            let seconds = Double(monotonicNanoseconds() - t0) / 1e9
            let cpu = processCPUSeconds() - c0
            try sendControl(.metrics, try JSONPayload.encode(
                AllReduceSample(rank: rank, bytes: bytes, iterations: iters, seconds: seconds, verified: verified, cpuSeconds: cpu)))
        }
        try sendControl(.bye, [])
    } catch {
        try? sendControl(.error, Array("\(error); rejected frames: \(ring.rejects.snapshot)".utf8))
        throw error
    }
}
