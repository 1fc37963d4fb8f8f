// The `time` of each metrics.jsonl record: ISO-8601 UTC with milliseconds
// (2026-12-04T18:08:00.123Z), formatted by hand from the wall clock (a DateFormatter costs
// microseconds per call on every step).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The current wall-clock time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
func isoTimestamp() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return isoTimestamp(seconds: Int(now.tv_sec), milliseconds: Int(now.tv_nsec) / 1_000_000)
}

/// `seconds` since the Unix epoch (UTC) plus `milliseconds`, as ISO-8601.
func isoTimestamp(seconds: Int, milliseconds: Int) -> String {
    var t = time_t(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    let ms = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
}
