// swift-tools-version:6.0
import PackageDescription

// Release and debug builds must emit AVX2/FMA: without a target-CPU flag Swift lowers
// SIMD `addingProduct` to a libm `fmaf` call per lane (~100x slower GEMM).
// `-Xcc -march=x86-64-v3` is portable to any AVX2 + FMA machine.
let simdFlags: [SwiftSetting] = [
    .unsafeFlags(["-Xcc", "-march=x86-64-v3"]),
]
// `swift test` builds debug; the numeric kernels would crawl at -Onone (0.07 GFLOP/s),
// so the compute-heavy targets are optimised in debug builds too.
let optimisedInDebug: [SwiftSetting] = simdFlags + [
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let yams: Target.Dependency = .product(name: "Yams", package: "Yams")
let realModule: Target.Dependency = .product(name: "RealModule", package: "swift-numerics")

let package = Package(
    name: "rnn-trainer",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rnn-coord", targets: ["rnn-coord"]),
        .executable(name: "rnn-worker", targets: ["rnn-worker"]),
        .executable(name: "rnn-data", targets: ["rnn-data"]),
        .executable(name: "rnn-bench", targets: ["rnn-bench"]),
        .library(name: "RNNCore", targets: ["RNNCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // C libraries, linked through pkg-config (Debian: libhdf5-dev, libzmq3-dev).
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),

        // No C, no I/O: parameter layout, SIMD kernels, layers, losses, Adam.
        // Dynamic exclusivity checks off in the kernels' module only: the network's per-step
        // reads of its own stored properties (the batch layout) cost ~1 % of a seed-small step
        // in swift_beginAccess / AccessSet::insert (perf); RNNCore's tests run with them on.
        .target(name: "RNNCore", dependencies: [realModule],
                swiftSettings: optimisedInDebug + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        .target(name: "RNNHDF5", dependencies: ["CHDF5"], swiftSettings: simdFlags),
        .target(name: "RNNData", dependencies: ["RNNHDF5", "RNNCore"], swiftSettings: optimisedInDebug),
        .target(name: "RNNCheckpoint", dependencies: ["RNNHDF5", "RNNCore"], swiftSettings: simdFlags),
        .target(name: "RNNTransport", dependencies: ["CZeroMQ"], swiftSettings: optimisedInDebug),
        .target(
            name: "RNNDistributed",
            dependencies: ["RNNCore", "RNNData", "RNNCheckpoint", "RNNTransport", logging],
            swiftSettings: optimisedInDebug
        ),
        // What the user sees: progress reporters, PNG curves, eval/predict formatting, config files.
        .target(name: "RNNReport", dependencies: ["RNNDistributed", "RNNCore", "RNNData", "RNNCheckpoint", "RNNHDF5", yams, logging, argumentParser], swiftSettings: simdFlags),

        // Thin executables.
        .executableTarget(name: "rnn-coord", dependencies: ["RNNDistributed", "RNNCheckpoint", "RNNData", "RNNCore", "RNNReport", argumentParser, logging], swiftSettings: simdFlags),
        .executableTarget(name: "rnn-worker", dependencies: ["RNNDistributed", "RNNReport", argumentParser, logging], swiftSettings: simdFlags),
        .executableTarget(name: "rnn-data", dependencies: ["RNNData", "RNNHDF5", "RNNReport", argumentParser], swiftSettings: simdFlags),
        .executableTarget(name: "rnn-bench", dependencies: ["RNNCore", "RNNData", "RNNCheckpoint", "RNNTransport", "RNNDistributed", "RNNReport", argumentParser], swiftSettings: simdFlags),

        // One test target per source target, plus multi-process tests.
        // Test only: counts the process's heap allocation calls (malloc interposed, glibc).
        .target(name: "MallocCounter", path: "Tests/MallocCounter"),
        .testTarget(name: "RNNCoreTests", dependencies: ["RNNCore", "MallocCounter", realModule], resources: [.copy("Fixtures")], swiftSettings: optimisedInDebug),
        .testTarget(name: "RNNHDF5Tests", dependencies: ["RNNHDF5"], swiftSettings: simdFlags),
        .testTarget(name: "RNNDataTests", dependencies: ["RNNData", "RNNHDF5", "RNNCore"], resources: [.copy("Fixtures")], swiftSettings: simdFlags),
        .testTarget(name: "RNNCheckpointTests", dependencies: ["RNNCheckpoint", "RNNHDF5", "RNNCore"], swiftSettings: simdFlags),
        .testTarget(name: "RNNTransportTests", dependencies: ["RNNTransport"], swiftSettings: simdFlags),
        .testTarget(name: "RNNDistributedTests", dependencies: ["RNNDistributed", "RNNCore", "RNNData", "RNNTransport", "RNNReport"], swiftSettings: simdFlags),
        .testTarget(name: "RNNReportTests", dependencies: ["RNNReport", "RNNDistributed", "RNNCore", "RNNCheckpoint", "RNNHDF5", yams],
                    resources: [.copy("Fixtures")], swiftSettings: simdFlags),
        // Spawning the package's executables and making test hosts in network namespaces.
        .target(name: "MultiProcessSupport", path: "Tests/MultiProcessSupport", swiftSettings: simdFlags),
        .testTarget(name: "MultiProcessTests", dependencies: ["MultiProcessSupport", "RNNCheckpoint", "RNNData", "RNNCore"], swiftSettings: simdFlags),
        // Workers on hosts in network namespaces with shaped links (root; skips otherwise).
        .testTarget(name: "MultiHostTests", dependencies: ["MultiProcessSupport", "RNNCheckpoint", "RNNCore"], swiftSettings: simdFlags),
    ]
)
