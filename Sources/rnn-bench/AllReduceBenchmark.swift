// `rnn-bench allreduce`: W worker processes (this executable re-run as
// `rnn-bench allreduce-rank ...`) all-reduce float32 buffers of 4 KiB .. 64 MiB over
// loopback TCP with `RingAllReduce`; the parent prints time per op and bus bandwidth
// 2 (W - 1) / W * bytes / time. scripts/bench_gloo_allreduce.py measures torch gloo the
// same way; scripts/bench_allreduce.sh prints both side by side.
//
// The parent binds a ROUTER control socket; children say HELLO (rank, data endpoint), get
// WELCOME (all endpoints), run every size (a 1-float all-reduce as barrier before timing),
// and send METRICS (JSON) per size, then BYE.
import Foundation
import RNNDistributed
import RNNTransport

struct AllReduceBenchOptions {
    var world = 2
    var sizes: [Int] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
    var algorithm: AllReduceAlgorithm = .automatic
    var algorithmName = "auto"
    var compress: GradientCompression = .none
    var json = false
    var subChunkBytes: Int?  // nil: RingAllReduce's default
    var copyFrameBytes: Int?  // nil: RingAllReduce's default
    var sendWindow: Int?
    var spinMicroseconds: Int?  // nil: RingAllReduce's default
    var bytesPerSize = 512 << 20  // total bytes reduced per size (sets the iteration count)
    var rank = 0
    var control = ""
    var defaultMalloc = false
    var copySends = false
    var ioThreads = 1
    var transport = "tcp"
    var kernelBufferBytes = 0  // ZMQ_SNDBUF/ZMQ_RCVBUF of the ring sockets (0: OS default)
    /// Test hosts (scripts/netns-hosts.sh): rank r runs in namespace NETNS_PREFIX r and binds
    /// SUBNET.(r+1); the parent (run inside host 0) binds its control socket at SUBNET.1.
    var netnsPrefix: String?
    var subnet = "10.77.0"
    var bindHost = "127.0.0.1"  // a rank's ring address

    static let usage = """
        usage: rnn-bench allreduce [--world W] [--sizes 4096,65536,...] [--algorithm auto|ring|exchange|halving-doubling|recursive-doubling] [--compress none|bf16]
                                   [--sub-chunk BYTES] [--copy-frame BYTES] [--send-window N] [--spin US] [--volume BYTES] [--json] [--default-malloc] [--copy] [--io-threads N] [--transport tcp|ipc]
                                   [--sockbuf BYTES] [--netns PREFIX [--subnet 10.77.0]]
        """

    static func parse(_ args: [String]) throws -> AllReduceBenchOptions {
        var o = AllReduceBenchOptions()
        var i = 0
        func value(_ flag: String) throws -> String {
            i += 1
            guard i < args.count else { throw BenchError("'\(flag)' needs a value.\n\(usage)") }
            return args[i]
        }
        func int(_ flag: String) throws -> Int {
            let v = try value(flag)
            guard let n = Int(v), n > 0 else { throw BenchError("'\(flag)' expects a positive integer, found '\(v)'.") }
            return n
        }
        while i < args.count {
            switch args[i] {
            case "--world": o.world = try int("--world")
            case "--rank": o.rank = Int(try value("--rank")) ?? -1
            case "--control": o.control = try value("--control")
            case "--sub-chunk": o.subChunkBytes = try int("--sub-chunk")
            case "--send-window":
                let v = try value("--send-window")
                guard let w = Int(v), w >= 0 else { throw BenchError("'--send-window' expects a count >= 0, found '\(v)'.") }
                o.sendWindow = w
            case "--spin":
                let v = try value("--spin")
                guard let us = Int(v), us >= 0 else { throw BenchError("'--spin' expects microseconds >= 0, found '\(v)'.") }
                o.spinMicroseconds = us
            case "--copy-frame":
                let v = try value("--copy-frame")
                guard let b = Int(v) else { throw BenchError("'--copy-frame' expects a byte count (-1: never copy), found '\(v)'.") }
                o.copyFrameBytes = b
            case "--volume": o.bytesPerSize = try int("--volume")
            case "--compress":
                let v = try value("--compress")
                guard let c = GradientCompression(rawValue: v) else { throw BenchError("'--compress' expects none or bf16, found '\(v)'.") }
                o.compress = c
            case "--json": o.json = true
            case "--default-malloc": o.defaultMalloc = true
            case "--copy": o.copySends = true
            case "--io-threads": o.ioThreads = try int("--io-threads")
            case "--sockbuf": o.kernelBufferBytes = try int("--sockbuf")
            case "--netns": o.netnsPrefix = try value("--netns")
            case "--subnet": o.subnet = try value("--subnet")
            case "--bind-host": o.bindHost = try value("--bind-host")
            case "--transport":
                o.transport = try value("--transport")
                guard ["tcp", "ipc"].contains(o.transport) else {
                    throw BenchError("'--transport' expects tcp or ipc, found '\(o.transport)'.")
                }
            case "--sizes":
                let v = try value("--sizes")
                o.sizes = try v.split(separator: ",").map {
                    guard let n = Int($0), n >= 4 else { throw BenchError("'--sizes' expects byte counts >= 4, found '\($0)'.") }
                    return n
                }
            case "--algorithm":
                let v = try value("--algorithm")
                switch v {
                case "auto": o.algorithm = .automatic
                case "ring": o.algorithm = .ring
                case "exchange": o.algorithm = .exchange
                case "halving-doubling": o.algorithm = .halvingDoubling
                case "recursive-doubling": o.algorithm = .recursiveDoubling
                default: throw BenchError("'--algorithm' expects auto, ring, exchange, halving-doubling or recursive-doubling, found '\(v)'.")
                }
                o.algorithmName = v
            default: throw BenchError("unknown argument '\(args[i])'.\n\(usage)")
            }
            i += 1
        }
        guard o.world >= 1 else { throw BenchError("'--world' must be at least 1.") }
        return o
    }

    func iterations(bytes: Int) -> Int { max(5, min(3000, bytesPerSize / bytes)) }
}

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

/// Entry point for `allreduce` and `allreduce-rank` (args start with the subcommand).
func allReduceBenchmarkMain(_ args: [String]) -> Int32 {
    do {
        let opts = try AllReduceBenchOptions.parse(Array(args.dropFirst()))
        if args.first == "allreduce-rank" {
            try runAllReduceRank(opts)
        } else {
            try runAllReduceParent(opts)
        }
        return 0
    } catch {
        FileHandle.standardError.write(Data("rnn-bench \(args.first ?? ""): \(error)\n".utf8))
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
        a += ["--algorithm", o.algorithmName, "--volume", "\(o.bytesPerSize)", "--compress", o.compress.rawValue]
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
                    print("{\"impl\":\"swift-\(o.algorithmName)\(o.compress == .bf16 ? "-bf16" : "")\(o.transport == "ipc" ? "-ipc" : "")\",\"world\":\(o.world),\"bytes\":\(s.bytes),\"iters\":\(s.iterations),\"us_per_op\":\(perOp * 1e6),\"cpu_us_per_op\":\(cpuPerOp * 1e6),\"busbw_gbps\":\(busBW),\"verified\":\(ok)}")
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
