// Monotonic deadlines: every blocking receive in this package takes one.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on the monotonic clock (nanoseconds since an arbitrary origin).
public struct Deadline: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Nanoseconds on the monotonic clock.
    public let nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The current monotonic time.
    public static func now() -> Deadline { Deadline(nanoseconds: monotonicNanoseconds()) }

    /// A deadline `milliseconds` from now.
    public static func after(milliseconds: Int) -> Deadline {
        Deadline(nanoseconds: monotonicNanoseconds() &+ UInt64(max(0, milliseconds)) &* 1_000_000)
    }

    /// A deadline `seconds` from now.
    public static func after(seconds: Double) -> Deadline {
        Deadline(nanoseconds: monotonicNanoseconds() &+ UInt64(max(0, seconds) * 1e9))
    }

    /// Milliseconds left, rounded up, never negative (0 = expired). Suits `zmq_poll`.
    public var remainingMilliseconds: Int {
        let now = monotonicNanoseconds()
        if now >= nanoseconds { return 0 }
        return Int((nanoseconds - now + 999_999) / 1_000_000)
    }

    /// True once the deadline has passed.
    public var hasPassed: Bool { monotonicNanoseconds() >= nanoseconds }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.nanoseconds < b.nanoseconds }

    public var description: String { "Deadline(in \(remainingMilliseconds) ms)" }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC).
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
