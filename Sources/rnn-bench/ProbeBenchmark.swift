// `rnn-bench probe`: what one core of this machine delivers right now. A loop of independent
// 8-lane FMAs (12 independent accumulators, no memory traffic) runs alone, then on two threads
// at once.
// The GEMM tiles of a training step run at about this rate, so the probe tells a slow round
// of a benchmark (a busy host, a lower clock, the other vCPU's core shared) from a slow
// program: a round taken while the probe reads 70 GFLOP/s instead of 110 is not comparable
// with one taken at 110, and neither is a 2-process figure taken while two concurrent loops
// slow each other down.
import Foundation

/// GFLOP/s of `seconds` of register-only FMAs on the calling thread.
@inline(never)
func fmaProbe(seconds: Double) -> Double {
    // The accumulators start from an array: started from visible constants, the optimiser
    // merges the chains and lanes into a few 128-bit FMAs (measured: 10 instead of 106
    // GFLOP/s).
    var acc = [SIMD8<Float>](repeating: SIMD8(repeating: 0), count: 12)
    let m = SIMD8<Float>(repeating: 0.999_999), c = SIMD8<Float>(repeating: 1e-7)
    var (a0, a1, a2, a3, a4, a5) = (acc[0], acc[1], acc[2], acc[3], acc[4], acc[5])
    var (a6, a7, a8, a9, a10, a11) = (acc[6], acc[7], acc[8], acc[9], acc[10], acc[11])
    let start = benchmarkSeconds(threadCPU: false)
    var rounds = 0
    var elapsed = 0.0
    repeat {
        for _ in 0..<100_000 {
            a0 = c.addingProduct(a0, m); a1 = c.addingProduct(a1, m)
            a2 = c.addingProduct(a2, m); a3 = c.addingProduct(a3, m)
            a4 = c.addingProduct(a4, m); a5 = c.addingProduct(a5, m)
            a6 = c.addingProduct(a6, m); a7 = c.addingProduct(a7, m)
            a8 = c.addingProduct(a8, m); a9 = c.addingProduct(a9, m)
            a10 = c.addingProduct(a10, m); a11 = c.addingProduct(a11, m)
        }
        rounds += 1
        elapsed = benchmarkSeconds(threadCPU: false) - start
    } while elapsed < seconds
    acc = [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11]
    // Keep the result alive (the loop must not be optimised away).
    if acc.reduce(SIMD8<Float>(), +).sum().isNaN { print("") }
    // 12 FMAs (2 flops per lane) per iteration.
    return Double(rounds) * 100_000 * 12 * 8 * 2 / elapsed / 1e9
}

/// Prints `probe: solo X GFLOP/s, pair A B GFLOP/s` (one line, '#'-prefixed with `comment`).
func runProbe(seconds: Double, comment: Bool) {
    let solo = fmaProbe(seconds: seconds)
    let results = ProbeResults()
    let group = DispatchGroup()
    for i in 0..<2 {
        group.enter()
        Thread.detachNewThread {
            results.set(i, fmaProbe(seconds: seconds))
            group.leave()
        }
    }
    group.wait()
    let pair = results.values
    let line = String(format: "probe: 1 thread %.1f GFLOP/s, 2 threads at once %.1f and %.1f GFLOP/s (register-only FMA loop)",
                      solo, pair[0], pair[1])
    print(comment ? "# " + line : line)
}

private final class ProbeResults: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = [Double](repeating: 0, count: 2)
    func set(_ i: Int, _ v: Double) { lock.lock(); stored[i] = v; lock.unlock() }
    var values: [Double] { lock.lock(); defer { lock.unlock() }; return stored }
}
