import XCTest
@testable import RNNReport

final class PNGAndChartTests: XCTestCase {
    func testChecksumsMatchPublishedValues() {
        // CRC-32 of the PNG chunk type "IEND" is the constant every PNG ends with; Adler-32 of
        // "Wikipedia" is the worked example of the Adler-32 definition.
        XCTAssertEqual(crc32(Array("IEND".utf8)), 0xAE42_6082)
        XCTAssertEqual(crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(adler32(Array("Wikipedia".utf8)), 0x11E6_0398)
        XCTAssertEqual(adler32([]), 1)
    }

    /// Reads the stored blocks of a zlib stream back (what any inflater does for BTYPE 00).
    private func inflateStored(_ z: [UInt8]) throws -> [UInt8] {
        XCTAssertEqual((Int(z[0]) << 8 | Int(z[1])) % 31, 0, "zlib header check bits")
        var i = 2, out: [UInt8] = []
        while true {
            let header = z[i]
            XCTAssertEqual(header & 0b110, 0, "stored block")
            let len = Int(z[i + 1]) | Int(z[i + 2]) << 8
            let nlen = Int(z[i + 3]) | Int(z[i + 4]) << 8
            XCTAssertEqual(len ^ 0xFFFF, nlen)
            out += z[(i + 5)..<(i + 5 + len)]
            i += 5 + len
            if header & 1 == 1 { break }
        }
        let adler = UInt32(z[i]) << 24 | UInt32(z[i + 1]) << 16 | UInt32(z[i + 2]) << 8 | UInt32(z[i + 3])
        XCTAssertEqual(adler, adler32(out))
        XCTAssertEqual(i + 4, z.count)
        return out
    }

    func testZlibStoredRoundTripsAcrossBlockBoundaries() throws {
        var bytes = [UInt8]()
        var g = UInt32(7)
        for _ in 0..<(65_535 * 2 + 17) { g = g &* 1_103_515_245 &+ 12345; bytes.append(UInt8(truncatingIfNeeded: g >> 16)) }
        XCTAssertEqual(try inflateStored(zlibStored(bytes)), bytes)
        XCTAssertEqual(try inflateStored(zlibStored([])), [])
    }

    func testPNGChunksAndPixelsRoundTrip() throws {
        var image = RGBImage(width: 7, height: 3)
        image[2, 1] = RGB(10, 20, 30)
        let png = image.pngData()
        XCTAssertEqual(Array(png[0..<8]), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var i = 8, types: [String] = [], idat: [UInt8] = []
        while i < png.count {
            let length = Int(png[i]) << 24 | Int(png[i + 1]) << 16 | Int(png[i + 2]) << 8 | Int(png[i + 3])
            let typed = Array(png[(i + 4)..<(i + 8 + length)])
            let crc = UInt32(png[i + 8 + length]) << 24 | UInt32(png[i + 9 + length]) << 16 | UInt32(png[i + 10 + length]) << 8 | UInt32(png[i + 11 + length])
            XCTAssertEqual(crc, crc32(typed), "chunk CRC")
            let type = String(decoding: typed[0..<4], as: UTF8.self)
            types.append(type)
            if type == "IHDR" { XCTAssertEqual(Array(typed[4..<17]), [0, 0, 0, 7, 0, 0, 0, 3, 8, 2, 0, 0, 0]) }
            if type == "IDAT" { idat += typed[4...] }
            i += 12 + length
        }
        XCTAssertEqual(types, ["IHDR", "IDAT", "IEND"])
        let raw = try inflateStored(idat)
        XCTAssertEqual(raw.count, 3 * (7 * 3 + 1))
        let row1 = Array(raw[22..<44])
        XCTAssertEqual(row1[0], 0, "filter None")
        XCTAssertEqual(Array(row1[(1 + 6)..<(1 + 9)]), [10, 20, 30])
        XCTAssertEqual(Array(row1[1..<4]), [255, 255, 255])
    }

    func testNiceTicksCoverTheRangeWithRoundSteps() {
        XCTAssertEqual(niceTicks(lo: 0, hi: 2.31), [0, 0.5, 1, 1.5, 2, 2.5])
        XCTAssertEqual(niceTicks(lo: 0, hi: 450), [0, 100, 200, 300, 400, 500])
        let t = niceTicks(lo: 5, hi: 5)
        XCTAssertTrue(t.first! <= 5 && t.last! >= 5 && t.count >= 2)
        XCTAssertEqual(tickLabel(0.5, spacing: 0.5), "0.5")
        XCTAssertEqual(tickLabel(200, spacing: 100), "200")
        XCTAssertEqual(tickLabel(0.05, spacing: 0.05), "0.05")
    }

    func testCurveImageDrawsEverySeriesInItsColour() {
        let steps = Array(1...40)
        let curves = RunCurves(title: "lstm test", steps: steps, stepLoss: steps.map { 2 / Double($0) }, stepAccuracy: steps.map { Double($0) / 40 },
                               epochs: [EpochPoint(epoch: 1, globalStep: 20, loss: 0.3, accuracy: 0.6, validationLoss: 0.35, validationAccuracy: 0.55),
                                        EpochPoint(epoch: 2, globalStep: 40, loss: 0.1, accuracy: 0.9, validationLoss: 0.2, validationAccuracy: 0.85)])
        let image = renderCurves(curves, width: 800, height: 400)
        func count(_ c: RGB) -> Int { stride(from: 0, to: image.pixels.count, by: 3).filter { RGB(image.pixels[$0], image.pixels[$0 + 1], image.pixels[$0 + 2]) == c }.count }
        XCTAssertGreaterThan(count(Palette.train), 100)
        XCTAssertGreaterThan(count(Palette.validation), 100)
        XCTAssertGreaterThan(count(Palette.rawStep), 50)
        XCTAssertGreaterThan(count(Palette.text), 500, "title, labels and ticks")
        // Without accuracy the single loss panel spans the picture: no accuracy legend colour on the right half.
        let lossOnly = renderCurves(RunCurves(steps: steps, stepLoss: steps.map { 1 / Double($0) }), width: 800, height: 400)
        var rightHalfRaw = 0
        for y in 0..<400 { for x in 600..<800 where lossOnly[x, y] == Palette.rawStep || lossOnly[x, y] == Palette.train { rightHalfRaw += 1 } }
        XCTAssertGreaterThan(rightHalfRaw, 10, "one panel spans the width")
    }

    /// A 25,000-step run (its last x tick label reaches past the right edge of the image)
    /// renders; before, a glyph pixel outside the image crashed the coordinator at the end
    /// of the run.
    func testLongRunCurveAndOffImageDrawingAreClipped() {
        let steps = Array(1...25_000)
        let curves = RunCurves(title: "rnn_tanh", steps: steps, stepLoss: steps.map { 0.7 + 0.01 * sin(Double($0)) },
                               stepAccuracy: steps.map { 0.5 + 0.01 * cos(Double($0)) },
                               epochs: (1...5).map { EpochPoint(epoch: $0, globalStep: 5_000 * $0, loss: 0.69, accuracy: 0.5) })
        let image = renderCurves(curves)
        XCTAssertEqual(image.pixels.count, 1200 * 520 * 3)
        var small = RGBImage(width: 8, height: 8)
        small.draw(text: "25000", x: 6, y: 6, scale: 2)
        small.fill(x: 20, y: -30, width: 5, height: 100, .black)
        small.fill(x: -10, y: 7, width: 12, height: 9, .black)
        XCTAssertEqual(small[0, 7], .black)
        XCTAssertEqual(small[1, 7], .black)
        XCTAssertEqual(small[2, 7], .white)
        XCTAssertEqual(small[0, 6], .white)
    }

    func testTextIsDrawnFromTheFont() {
        var image = RGBImage(width: 40, height: 10)
        image.draw(text: "1", x: 0, y: 0, scale: 1)
        // The glyph "1": its stem is column 2, rows 0...6; its base row 6 is columns 1...3.
        for y in 0..<7 { XCTAssertEqual(image[2, y], .black) }
        XCTAssertEqual(image[1, 6], .black)
        XCTAssertEqual(image[4, 3], .white)
        XCTAssertEqual(RGBImage.textWidth("ab", scale: 2), 22)
        XCTAssertEqual(BitmapFont.rows("a"), BitmapFont.rows("A"))
    }
}
