// loss.png for issue 16: a log10 loss axis when the loss spans more than a decade (or when
// asked), the best validation epoch marked, and a learning-rate strip when the lr changes.
import Foundation
import XCTest
@testable import RNNReport

final class CurveOptionsTests: XCTestCase {
    private func count(_ image: RGBImage, _ c: RGB, rows: Range<Int>? = nil) -> Int {
        var n = 0
        for y in rows ?? 0..<image.height { for x in 0..<image.width where image[x, y] == c { n += 1 } }
        return n
    }

    func testLogScaleWhenTheLossSpansMoreThanADecade() {
        let steps = Array(1...200)
        var falling = RunCurves(steps: steps, stepLoss: steps.map { 2 * exp(-Double($0) / 20) })  // 1.9 .. 9e-5
        XCTAssertTrue(falling.usesLogScale)
        let flat = RunCurves(steps: steps, stepLoss: steps.map { 0.7 + 0.1 * sin(Double($0)) })
        XCTAssertFalse(flat.usesLogScale)
        var forced = flat
        forced.logScale = true
        XCTAssertTrue(forced.usesLogScale)
        falling.logScale = false
        XCTAssertFalse(falling.usesLogScale)
        XCTAssertEqual(logTicks(lo: log10(9e-5), hi: log10(1.9)), [-5, -4, -3, -2, -1, 0, 1])
        XCTAssertEqual([-5, -2, 0, 2].map { logTickLabel(Double($0)) }, ["1e-05", "0.01", "1", "100"])
        // On a log axis the curve's second half still falls across the panel; on a linear axis it
        // hugs the bottom (rows the curve covers right of the middle).
        falling.logScale = nil
        let log = renderCurves(falling, width: 600, height: 400)
        falling.logScale = false
        let linear = renderCurves(falling, width: 600, height: 400)
        func rawRows(_ image: RGBImage) -> Int {
            (0..<image.height).filter { y in (image.width / 2..<image.width - 30).contains { image[$0, y] == Palette.rawStep || image[$0, y] == Palette.train } }.count
        }
        print("rows the step curve covers: log \(rawRows(log)), linear \(rawRows(linear))")
        XCTAssertGreaterThan(rawRows(log), 3 * rawRows(linear))
    }

    func testBestValidationEpochIsMarkedAndTheLearningRateStripDrawn() {
        let steps = Array(1...60)
        let epochs = (1...6).map { e in
            EpochPoint(epoch: e, globalStep: 10 * e, loss: 1 / Double(e), validationLoss: [1.2, 0.9, 0.7, 0.75, 0.8, 0.95][e - 1])
        }
        var curves = RunCurves(steps: steps, stepLoss: steps.map { 1 / Double($0) }, epochs: epochs)
        XCTAssertEqual(curves.bestValidation?.epoch, 3)
        let plain = renderCurves(curves, width: 800, height: 400)
        XCTAssertEqual(plain.height, 400, "no lr strip without a schedule")
        XCTAssertGreaterThan(count(plain, Palette.best), 150)
        XCTAssertEqual(count(plain, Palette.lr), 0)
        curves.stepLR = steps.map { 0.01 * (1 + cos(Double.pi * Double($0) / 60)) / 2 }
        let withLR = renderCurves(curves, width: 800, height: 400)
        XCTAssertEqual(withLR.height, 400 + 170)
        XCTAssertGreaterThan(count(withLR, Palette.lr, rows: 400..<570), 100, "the lr curve is in the strip")
        // A constant lr draws no strip.
        curves.stepLR = steps.map { _ in 0.01 }
        XCTAssertEqual(renderCurves(curves, width: 800, height: 400).height, 400)
    }

    func testMetricsFileCarriesTheLearningRateIntoTheCurves() throws {
        let text = """
            {"kind":"step","global_step":1,"loss":1.0,"lr":0.001,"time":"2026-12-04T18:00:00.000Z"}
            {"kind":"step","global_step":2,"loss":0.5,"lr":0.002}
            {"kind":"epoch","epoch":1,"global_step":2,"loss":0.75,"val_loss":0.8,"lr":0.002}
            """
        let curves = try RunCurves.parseJSONLines(text)
        XCTAssertEqual(curves.stepLR, [0.001, 0.002])
        XCTAssertEqual(curves.bestValidation?.epoch, 1)
    }
}
