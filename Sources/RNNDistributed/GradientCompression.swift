// Gradients on the wire as bfloat16 (`rnn-coord start --compress bf16`).
//
// bfloat16 is the top half of a float32: sign, the same 8-bit exponent, 7 mantissa bits
// (relative precision 2^-8). float32 -> bf16 rounds to nearest, ties to even:
// bits + 0x7FFF + (bit 16 of bits), then the top 16 bits; a NaN stays a (quiet) NaN; values
// past the largest bf16 round to infinity, as IEEE rounding does. bf16 -> float32 is exact
// (append 16 zero bits).
//
// What the all-reduce does with it (RingAllReduce, `compression = .bf16`): the gradient part of
// the buffer is cut into W chunks; every rank rounds its gradient to bf16 once and sends chunk
// c straight to rank c; rank c sums the W bf16 values of its chunk in float32 in rank order
// (0, 1, ..., W-1), rounds the sum to bf16 and sends it to every rank; everyone (rank c
// included) expands those bf16 sums. The extra float32 scalars after the gradients (sample
// count, loss sum) travel uncompressed with chunk 0 and are summed at rank 0 in rank order.
// So every rank ends with the same bits, and a run with the same W and data gives the same
// bits again; but the result is bf16(sum of bf16(g_r)), not the float32 sum: W workers no
// longer equal 1 worker (which sends nothing and keeps float32) up to float summation order,
// only to bf16 rounding (~2^-9 relative per gradient element per step).

/// How gradients travel between workers.
public enum GradientCompression: String, Codable, Sendable, CaseIterable {
    /// float32, as computed.
    case none
    /// bfloat16, round to nearest even; each chunk reduced in float32 at its owner.
    case bf16
}

public enum BFloat16 {
    /// float32 -> bf16 bits, round to nearest even (NaN stays NaN).
    @inline(__always)
    public static func bits(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x0040 }
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }

    /// bf16 bits -> float32 (exact).
    @inline(__always)
    public static func float(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// dst[i] = bits(src[i]) for `count` values. A plain loop over the bit patterns, which
    /// the compiler vectorises (1.1-1.7 ms for 4 Mi floats here); the same with SIMD16 types
    /// and `replacing(with:where:)` ran lane by lane, 20x slower.
    public static func round(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, _ count: Int) {
        let s = UnsafeRawPointer(src).assumingMemoryBound(to: UInt32.self)
        let d = dst.bindMemory(to: UInt16.self, capacity: count)
        for i in 0..<count {
            let b = s[i]
            let nearest = (b &+ 0x7FFF &+ ((b &>> 16) & 1)) &>> 16
            let quietNaN = (b &>> 16) | 0x40
            d[i] = UInt16(truncatingIfNeeded: (b & 0x7FFF_FFFF) > 0x7F80_0000 ? quietNaN : nearest)
        }
    }

    /// dst[i] (+)= float(src[i]) for `count` values (`src` may be unaligned).
    public static func expand(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ count: Int, add: Bool) {
        var i = 0
        while i + 16 <= count {
            let h = src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self)
            let f = unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16, to: SIMD16<Float>.self)
            let p = UnsafeMutableRawPointer(dst + i)
            p.storeBytes(of: add ? p.loadUnaligned(as: SIMD16<Float>.self) + f : f, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            let f = float(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            dst[i] = add ? dst[i] + f : f
            i += 1
        }
    }
}
