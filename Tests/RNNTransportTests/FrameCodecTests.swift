import XCTest
@testable import RNNTransport

/// SplitMix64: small deterministic generator for property tests.
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class FrameCodecTests: XCTestCase {
    let run: UInt64 = 0x1234_5678_9ABC_DEF0

    func randomFrame(_ rng: inout TestRNG) -> Frame {
        let kind = MessageKind.allCases.randomElement(using: &rng)!
        let n = Int.random(in: 0...300, using: &rng)
        let payload = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let h = FrameHeader(kind: kind, runID: run, generation: UInt32.random(in: 0...9, using: &rng),
                            sender: UInt32.random(in: 0...7, using: &rng), step: UInt64.random(in: 0...1_000_000, using: &rng),
                            sequence: UInt32.random(in: 0...99, using: &rng))
        return Frame(header: h, payload: payload)
    }

    func testValidFramesRoundTrip() throws {
        let decoder = FrameDecoder(expectedRunID: run, maxPayloadBytes: 4096)
        for seed in 0..<500 {
            var rng = TestRNG(seed: UInt64(seed))
            let f = randomFrame(&rng)
            let bytes = f.encoded
            XCTAssertEqual(bytes.count, FrameHeader.size + f.payload.count)
            let back = try decoder.decode(bytes)
            XCTAssertEqual(back, f, "seed \(seed)")
            // Through a real ZeroMQ message too.
            let m = try f.message()
            XCTAssertEqual(try decoder.decode(m), f)
        }
        XCTAssertEqual(decoder.rejects.total, 0)
    }

    func testHeaderLayoutIsLittleEndianAndFixed() {
        let h = FrameHeader(kind: .gradientChunk, runID: 0x0102_0304_0506_0708, generation: 3, sender: 2, step: 77,
                            sequence: 5, payloadLength: 12)
        let b = h.encoded
        XCTAssertEqual(b.count, 48)
        XCTAssertEqual(Array(b[0..<4]), Array("RNNT".utf8))
        XCTAssertEqual(Array(b[4..<6]), [5, 0])  // protocol version 5 (RING and METRICS carry the measured all-reduce crossover)
        XCTAssertEqual(Array(b[6..<8]), [7, 0])
        XCTAssertEqual(Array(b[8..<16]), [8, 7, 6, 5, 4, 3, 2, 1])
        XCTAssertEqual(b[16], 3)
        XCTAssertEqual(b[20], 2)
        XCTAssertEqual(b[24], 77)
        XCTAssertEqual(b[32], 5)
        XCTAssertEqual(Array(b[36..<40]), [0, 0, 0, 0])
        XCTAssertEqual(b[40], 12)
    }

    func expectReject(_ decoder: FrameDecoder, _ bytes: [UInt8], _ reason: RejectReason, _ note: String,
                      file: StaticString = #filePath, line: UInt = #line) {
        let before = decoder.rejects.count(reason)
        do {
            _ = try decoder.decode(bytes)
            XCTFail("accepted a bad frame (\(note))", file: file, line: line)
        } catch {
            XCTAssertEqual(error.reason, reason, "\(note): \(error)", file: file, line: line)
            XCTAssertFalse(error.description.isEmpty)
        }
        XCTAssertEqual(decoder.rejects.count(reason), before + 1, note, file: file, line: line)
    }

    func testMalformedFramesAreRejectedAndCounted() {
        let decoder = FrameDecoder(expectedRunID: run, maxPayloadBytes: 256)
        var expectedTotal = 0
        for seed in 0..<400 {
            var rng = TestRNG(seed: 10_000 + UInt64(seed))
            var f = randomFrame(&rng)
            if f.payload.count > 256 { f = Frame(header: f.header, payload: Array(f.payload.prefix(256))) }
            let good = f.encoded

            // Truncated inside the header.
            let cut = Int.random(in: 0..<FrameHeader.size, using: &rng)
            expectReject(decoder, Array(good.prefix(cut)), .truncated, "seed \(seed) cut \(cut)")
            // Truncated or extended payload.
            if !f.payload.isEmpty {
                expectReject(decoder, Array(good.dropLast()), .lengthMismatch, "seed \(seed) short payload")
            }
            expectReject(decoder, good + [0], .lengthMismatch, "seed \(seed) trailing byte")
            // Wrong magic.
            var b = good; b[Int.random(in: 0..<4, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            expectReject(decoder, b, .badMagic, "seed \(seed) magic")
            // Wrong version.
            b = good; b[4] ^= UInt8.random(in: 1...255, using: &rng)
            expectReject(decoder, b, .badVersion, "seed \(seed) version")
            // Wrong run.
            b = good; b[8 + Int.random(in: 0..<8, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            expectReject(decoder, b, .wrongRun, "seed \(seed) run")
            // Unknown kind.
            b = good
            let badKind = UInt16.random(in: 15...UInt16.max, using: &rng)
            b[6] = UInt8(badKind & 0xFF); b[7] = UInt8(badKind >> 8)
            expectReject(decoder, b, .unknownKind, "seed \(seed) kind \(badKind)")
            b = good; b[6] = 0; b[7] = 0
            expectReject(decoder, b, .unknownKind, "seed \(seed) kind 0")
            // Reserved flags.
            b = good; b[36 + Int.random(in: 0..<4, using: &rng)] |= 1 << UInt8.random(in: 0...7, using: &rng)
            expectReject(decoder, b, .badFlags, "seed \(seed) flags")
            // Declared length: oversized, or not matching.
            b = good
            let declared = UInt64.random(in: 257...UInt64.max, using: &rng)
            withUnsafeBytes(of: declared.littleEndian) { for i in 0..<8 { b[40 + i] = $0[i] } }
            expectReject(decoder, b, .oversized, "seed \(seed) oversized \(declared)")
            b = good
            let wrong = UInt64((f.payload.count + Int.random(in: 1...200, using: &rng)) % 257)
            if wrong != UInt64(f.payload.count) {
                withUnsafeBytes(of: wrong.littleEndian) { for i in 0..<8 { b[40 + i] = $0[i] } }
                expectReject(decoder, b, .lengthMismatch, "seed \(seed) length \(wrong)")
                expectedTotal += 1
            }
            expectedTotal += 9 + (f.payload.isEmpty ? 0 : 1)
        }
        XCTAssertEqual(decoder.rejects.total, expectedTotal)
    }

    func testRandomBytesNeverDecodeOrCrash() {
        let decoder = FrameDecoder(expectedRunID: run, maxPayloadBytes: 1 << 20)
        var accepted = 0
        for seed in 0..<2000 {
            var rng = TestRNG(seed: 77_000 + UInt64(seed))
            let n = Int.random(in: 0...200, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Half of them start with a valid magic+version so deeper checks are exercised.
            if seed % 2 == 0 && n >= 8 { bytes.replaceSubrange(0..<6, with: Array("RNNT".utf8) + [1, 0]) }
            if (try? decoder.decode(bytes)) != nil { accepted += 1 }
        }
        XCTAssertEqual(accepted, 0)
        XCTAssertEqual(decoder.rejects.total, 2000)
    }

    func testAnyRunAcceptedWhenReceiverHasNoRunYet() throws {
        let decoder = FrameDecoder(expectedRunID: nil)
        let f = Frame(header: FrameHeader(kind: .hello, runID: 0), payload: [1, 2, 3])
        XCTAssertEqual(try decoder.decode(f.encoded), f)
    }
}

final class PayloadTests: XCTestCase {
    func testBinaryRoundTrip() throws {
        for seed in 0..<200 {
            var rng = TestRNG(seed: UInt64(seed))
            let floats = (0..<Int.random(in: 0...50, using: &rng)).map { _ in Float.random(in: -1e6...1e6, using: &rng) }
            let s = String((0..<Int.random(in: 0...20, using: &rng)).map { _ in "aé€🙂".randomElement(using: &rng)! })
            let i64 = Int64.random(in: .min ... .max, using: &rng)
            let d = Double.random(in: -1...1, using: &rng)
            var w = BinaryWriter()
            w.write(UInt8(7)); w.write(UInt16(0xBEEF)); w.write(UInt32(0xDEAD_BEEF)); w.write(i64)
            w.write(Float(-0.0)); w.write(d); w.write(true); w.write(s); w.write(floats: floats)
            w.write(bytes: [1, 2, 3]); w.write(Int(-5))
            var r = BinaryReader(w.bytes)
            XCTAssertEqual(try r.readUInt8(), 7)
            XCTAssertEqual(try r.readUInt16(), 0xBEEF)
            XCTAssertEqual(try r.readUInt32(), 0xDEAD_BEEF)
            XCTAssertEqual(try r.readInt64(), i64)
            XCTAssertEqual(try r.readFloat().bitPattern, Float(-0.0).bitPattern)
            XCTAssertEqual(try r.readDouble(), d)
            XCTAssertEqual(try r.readBool(), true)
            XCTAssertEqual(try r.readString(), s)
            XCTAssertEqual(try r.readFloats(), floats)
            XCTAssertEqual(try r.readBytes(), [1, 2, 3])
            XCTAssertEqual(try r.readInt(), -5)
            XCTAssertNoThrow(try r.finish())
        }
    }

    func testReaderRejectsTruncatedAndLying() {
        var w = BinaryWriter()
        w.write(floats: [1, 2, 3])
        // Every strict prefix fails with a truncation naming the field.
        for cut in 0..<w.bytes.count {
            var r = BinaryReader(Array(w.bytes.prefix(cut)))
            XCTAssertThrowsError(try r.readFloats("grad")) { e in
                guard case PayloadError.truncated(let field, _, _) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(field, "grad")
            }
        }
        // A huge declared count is refused before any allocation.
        var big = BinaryWriter(); big.write(UInt64.max)
        var r = BinaryReader(big.bytes)
        XCTAssertThrowsError(try r.readFloats()) { e in
            guard case PayloadError.tooLong = e else { return XCTFail("\(e)") }
        }
        var s = BinaryWriter(); s.write(UInt32(3)); s.write(UInt8(0xFF)); s.write(UInt8(0xFE)); s.write(UInt8(0x41))
        var rs = BinaryReader(s.bytes)
        XCTAssertThrowsError(try rs.readString("name")) { e in XCTAssertEqual(e as? PayloadError, .invalidUTF8(field: "name")) }
        var rb = BinaryReader([2])
        XCTAssertThrowsError(try rb.readBool("flag")) { e in XCTAssertEqual(e as? PayloadError, .invalidValue(field: "flag", found: "2")) }
        let rt = BinaryReader([1, 2])
        XCTAssertThrowsError(try rt.finish()) { e in XCTAssertEqual(e as? PayloadError, .trailingBytes(count: 2)) }
    }

    struct Config: Codable, Equatable { var cell: String; var hidden: Int; var lr: Double }

    func testJSONPayload() throws {
        let c = Config(cell: "lstm", hidden: 128, lr: 1e-3)
        let bytes = try JSONPayload.encode(c)
        XCTAssertEqual(try JSONPayload.decode(Config.self, from: bytes), c)
        XCTAssertThrowsError(try JSONPayload.decode(Config.self, from: Array("{\"cell\":1}".utf8))) { e in
            guard case PayloadError.invalidJSON(let type, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(type, "Config")
        }
    }
}
