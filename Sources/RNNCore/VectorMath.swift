// Vectorised activations. Placeholder lane-wise versions until the approximations land.
import RealModule

public enum VectorMath {
    @inlinable @inline(__always)
    public static func sigmoid(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var r = SIMD8<Float>()
        for i in 0..<8 { r[i] = 1 / (1 + Float.exp(-x[i])) }
        return r
    }

    @inlinable @inline(__always)
    public static func tanh(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var r = SIMD8<Float>()
        for i in 0..<8 { r[i] = Float.tanh(x[i]) }
        return r
    }
}
