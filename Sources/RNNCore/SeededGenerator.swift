import RealModule

// A small, fast, seedable generator whose whole state is two words, so that a checkpoint
// can store it and a resumed run continues the same stream bitwise.

/// xoroshiro128** seeded through SplitMix64. Not cryptographic.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Equatable {
    /// The full generator state; store it to resume the stream exactly.
    public var state: (UInt64, UInt64) {
        get { (s0, s1) }
        set { (s0, s1) = newValue }
    }
    private var s0: UInt64
    private var s1: UInt64

    /// A generator for `seed`; `stream` derives independent streams from one seed
    /// (for example one per epoch for the shuffling permutation).
    public init(seed: UInt64, stream: UInt64 = 0) {
        var sm = seed ^ (stream &* 0xD1B5_4A32_D192_ED03)
        s0 = SeededGenerator.splitMix(&sm)
        s1 = SeededGenerator.splitMix(&sm)
        if s0 == 0 && s1 == 0 { s1 = 1 }
    }

    public init(state: (UInt64, UInt64)) {
        s0 = state.0
        s1 = state.1
        if s0 == 0 && s1 == 0 { s1 = 1 }
    }

    public static func == (a: SeededGenerator, b: SeededGenerator) -> Bool {
        a.s0 == b.s0 && a.s1 == b.s1
    }

    private static func splitMix(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        let a = s0
        var b = s1
        let result = ((a &* 5) << 7 | (a &* 5) >> 57) &* 9
        b ^= a
        s0 = (a << 24 | a >> 40) ^ b ^ (b << 16)
        s1 = b << 37 | b >> 27
        return result
    }

    /// A float uniform in [low, high), from the top 24 bits.
    public mutating func nextFloat(in low: Float, _ high: Float) -> Float {
        let unit = Float(next() >> 40) * (1.0 / 16_777_216.0)
        return low + (high - low) * unit
    }

    /// A standard normal value (Box-Muller on two 24-bit uniforms; one value per call).
    public mutating func nextNormal() -> Float {
        let u1 = (Float(next() >> 40) + 1) * (1.0 / 16_777_217.0)
        let u2 = Float(next() >> 40) * (1.0 / 16_777_216.0)
        let r = (-2 * Float.log(u1)).squareRoot()
        return r * Float.cos(2 * Float.pi * u2)
    }

    /// A generator for the dropout masks of one sample in one layer at one global step: the
    /// stream depends only on (seed, step, sample, layer), so every rank that holds the sample
    /// draws the same mask, whatever the split of the batch.
    public init(dropoutSeed seed: UInt64, step: Int, sample: Int, layer: Int) {
        var key = seed ^ 0x5DEE_CE66_D1CE_D00D
        for word in [step, sample, layer] {
            var w = UInt64(truncatingIfNeeded: word)
            key ^= SeededGenerator.splitMix(&w)
            key = (key << 27 | key >> 37) &* 0x9E37_79B9_7F4A_7C15
        }
        self.init(seed: key)
    }
}
