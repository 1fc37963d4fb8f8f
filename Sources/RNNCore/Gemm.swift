// GEMM: C = alpha * op(A) * op(B) + beta * C on row-major float32 matrices.
// Dimension legend: op(A) is (M, K), op(B) is (K, N), C is (M, N).

/// The scalar reference GEMM every optimised kernel is tested against.
public func gemmReference(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum: Float = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                sum += av * bv
            }
            let old = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * sum + old
        }
    }
}

/// An optimised GEMM with reusable packing buffers (no allocation once warmed up) and a
/// thread count for splitting large products across cores.
/// Not thread-safe: one engine per thread of control.
public final class GemmEngine {
    /// Threads a single large product may be split across (1 = the calling thread only).
    public var threads: Int

    public init(threads: Int = 1) {
        precondition(threads >= 1, "GemmEngine needs at least one thread")
        self.threads = threads
    }

    /// C (M, N) = alpha * op(A) * op(B) + beta * C. `beta == 0` ignores C's old contents
    /// (NaN included), as BLAS does.
    public func multiply(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        // Placeholder until the blocked SIMD kernel lands.
        gemmReference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                      a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
}
