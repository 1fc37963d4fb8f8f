// The loss/accuracy curve of a run, drawn as a PNG: a loss panel and (for classifiers) an
// accuracy panel, each with axes, ticks, tick labels, a legend and a title.
import Foundation

/// One epoch's summary as the curve shows it.
public struct EpochPoint: Sendable, Equatable {
    public var epoch: Int
    public var globalStep: Int
    public var loss: Double
    public var accuracy: Double?
    public var validationLoss: Double?
    public var validationAccuracy: Double?

    public init(epoch: Int, globalStep: Int, loss: Double, accuracy: Double? = nil,
                validationLoss: Double? = nil, validationAccuracy: Double? = nil) {
        self.epoch = epoch
        self.globalStep = globalStep
        self.loss = loss
        self.accuracy = accuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
    }
}

/// What a curve is drawn from: per-step training loss/accuracy and per-epoch summaries.
public struct RunCurves: Sendable, Equatable {
    public var title: String
    public var steps: [Int]
    public var stepLoss: [Double]
    /// Per-step accuracy in [0, 1] (nil for regression).
    public var stepAccuracy: [Double]?
    public var epochs: [EpochPoint]
    /// Per-step learning rate (metrics.jsonl `lr`), nil when unknown; drawn as a strip below
    /// the panels when it changes during the run.
    public var stepLR: [Double]?
    /// The loss axis: log10 when true, linear when false, nil chooses log10 when the loss
    /// spans more than a decade.
    public var logScale: Bool?

    public init(title: String = "", steps: [Int] = [], stepLoss: [Double] = [], stepAccuracy: [Double]? = nil, epochs: [EpochPoint] = [],
                stepLR: [Double]? = nil, logScale: Bool? = nil) {
        self.title = title
        self.steps = steps
        self.stepLoss = stepLoss
        self.stepAccuracy = stepAccuracy
        self.epochs = epochs
        self.stepLR = stepLR
        self.logScale = logScale
    }

    /// Whether the loss panel uses a log10 axis: forced by `logScale`, else when the positive
    /// losses (per step and per epoch, training and validation) span more than a factor 10.
    public var usesLogScale: Bool {
        if let logScale { return logScale }
        let values = (stepLoss + epochs.flatMap { [$0.loss, $0.validationLoss ?? .nan] }).filter { $0.isFinite && $0 > 0 }
        guard let lo = values.min(), let hi = values.max() else { return false }
        return hi / lo > 10
    }

    /// Whether the learning rate changes during the run (a schedule or warmup).
    var hasLRSchedule: Bool {
        guard let lr = stepLR?.filter({ $0.isFinite }), let first = lr.first else { return false }
        return lr.contains { $0 != first }
    }

    /// The epoch with the lowest validation loss, if any epoch was validated.
    var bestValidation: EpochPoint? {
        epochs.filter { $0.validationLoss?.isFinite == true }.min { $0.validationLoss! < $1.validationLoss! }
    }

    public var isEmpty: Bool { steps.isEmpty && epochs.isEmpty }
    var hasAccuracy: Bool { stepAccuracy != nil || epochs.contains { $0.accuracy != nil || $0.validationAccuracy != nil } }
}

struct Series {
    var label: String
    var points: [(Double, Double)]
    var color: RGB
    var thickness: Int
    var markers: Bool
    /// A single highlighted point (a ring around a large dot), e.g. the best validation epoch.
    var emphasis = false
}

enum Palette {
    static let axis = RGB(40, 40, 40)
    static let grid = RGB(225, 225, 225)
    static let rawStep = RGB(160, 190, 230)
    static let train = RGB(31, 90, 180)
    static let validation = RGB(230, 110, 20)
    static let text = RGB(20, 20, 20)
    static let best = RGB(200, 20, 60)
    static let lr = RGB(40, 150, 70)
}

/// Renders `curves` to an RGB image (`width` x `height`).
/// With a learning-rate schedule a strip of `lrStripHeight` pixels below shows the lr per step.
public func renderCurves(_ curves: RunCurves, width: Int = 1200, height: Int = 520, lrStripHeight: Int = 170) -> RGBImage {
    let strip = curves.hasLRSchedule ? lrStripHeight : 0
    var image = RGBImage(width: width, height: height + strip)
    let scale = 2
    let titleY = 14
    image.draw(text: curves.title.isEmpty ? "TRAINING CURVES" : curves.title, x: max(10, (width - RGBImage.textWidth(curves.title, scale: scale)) / 2),
               y: titleY, scale: scale, color: Palette.text)
    let top = titleY + RGBImage.textHeight(scale: scale) + 16
    let panels = curves.hasAccuracy ? 2 : 1
    let panelWidth = width / panels

    // Loss panel.
    var lossSeries: [Series] = []
    let steps = curves.steps.map(Double.init)
    if !curves.stepLoss.isEmpty {
        lossSeries.append(Series(label: "TRAIN LOSS / STEP", points: Array(zip(steps, curves.stepLoss)), color: Palette.rawStep, thickness: 1, markers: false))
    }
    let epochTrain = curves.epochs.map { (Double($0.globalStep), $0.loss) }
    if epochTrain.isEmpty && curves.stepLoss.count >= 10 {
        lossSeries.append(Series(label: "TRAIN LOSS (MEAN)", points: Array(zip(steps, movingAverage(curves.stepLoss))), color: Palette.train, thickness: 2, markers: false))
    }
    if !epochTrain.isEmpty {
        lossSeries.append(Series(label: "TRAIN LOSS / EPOCH", points: epochTrain, color: Palette.train, thickness: 3, markers: true))
    }
    let epochVal = curves.epochs.compactMap { e in e.validationLoss.map { (Double(e.globalStep), $0) } }
    if !epochVal.isEmpty {
        lossSeries.append(Series(label: "VALIDATION LOSS", points: epochVal, color: Palette.validation, thickness: 3, markers: true))
    }
    if let best = curves.bestValidation, let v = best.validationLoss {
        lossSeries.append(Series(label: "BEST VAL (EPOCH \(best.epoch))", points: [(Double(best.globalStep), v)], color: Palette.best,
                                 thickness: 3, markers: true, emphasis: true))
    }
    let log = curves.usesLogScale
    drawPanel(&image, x: 0, y: top, width: panelWidth, height: height - top, title: log ? "LOSS (LOG SCALE)" : "LOSS", series: lossSeries,
              percent: false, logScale: log)
    if strip > 0, let lr = curves.stepLR {
        let points = zip(steps, lr).filter { $0.1.isFinite }
        drawPanel(&image, x: 0, y: height, width: width, height: strip, title: "LEARNING RATE",
                  series: [Series(label: "LR / STEP", points: Array(points), color: Palette.lr, thickness: 2, markers: false)], percent: false)
    }

    if panels == 2 {
        var accSeries: [Series] = []
        if let acc = curves.stepAccuracy, !acc.isEmpty {
            accSeries.append(Series(label: "TRAIN ACC / STEP", points: Array(zip(steps, acc.map { $0 * 100 })), color: Palette.rawStep, thickness: 1, markers: false))
        }
        let ta = curves.epochs.compactMap { e in e.accuracy.map { (Double(e.globalStep), $0 * 100) } }
        if ta.isEmpty, let acc = curves.stepAccuracy, acc.count >= 10 {
            accSeries.append(Series(label: "TRAIN ACC (MEAN)", points: Array(zip(steps, movingAverage(acc).map { $0 * 100 })), color: Palette.train, thickness: 2, markers: false))
        }
        if !ta.isEmpty { accSeries.append(Series(label: "TRAIN ACC / EPOCH", points: ta, color: Palette.train, thickness: 3, markers: true)) }
        let va = curves.epochs.compactMap { e in e.validationAccuracy.map { (Double(e.globalStep), $0 * 100) } }
        if !va.isEmpty { accSeries.append(Series(label: "VALIDATION ACC", points: va, color: Palette.validation, thickness: 3, markers: true)) }
        drawPanel(&image, x: panelWidth, y: top, width: panelWidth, height: height - top, title: "ACCURACY (%)", series: accSeries, percent: true)
    }
    return image
}

/// A centred moving average over about a thirtieth of the series (NaNs skipped).
func movingAverage(_ values: [Double]) -> [Double] {
    let half = max(1, values.count / 60)
    return values.indices.map { i in
        let window = values[max(0, i - half)...min(values.count - 1, i + half)].filter { $0.isFinite }
        return window.isEmpty ? .nan : window.reduce(0, +) / Double(window.count)
    }
}

/// Writes the curve PNG of `curves` to `path` (atomically: a temporary file, then rename).
public func writeCurvePNG(_ curves: RunCurves, to path: String) throws {
    let bytes = renderCurves(curves).pngData()
    let url = URL(fileURLWithPath: path)
    try Data(bytes).write(to: url, options: .atomic)
}

/// "Nice" tick values covering [lo, hi]: about `count` steps of 1, 2 or 5 times a power of ten.
func niceTicks(lo: Double, hi: Double, count: Int = 5) -> [Double] {
    guard lo.isFinite, hi.isFinite else { return [0, 1] }
    var lo = lo, hi = hi
    if hi - lo < 1e-12 { lo -= 0.5; hi += 0.5 }
    let raw = (hi - lo) / Double(count)
    let magnitude = pow(10, floor(log10(raw)))
    let fraction = raw / magnitude
    let step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude
    let first = floor(lo / step) * step
    let last = ceil(hi / step) * step
    var ticks: [Double] = []
    var v = first
    while v <= last + step * 0.5 {
        ticks.append(abs(v) < step * 1e-9 ? 0 : v)
        v += step
    }
    return ticks
}

/// A tick label with as many decimals as the tick spacing needs.
func tickLabel(_ v: Double, spacing: Double) -> String {
    if spacing >= 1 || spacing <= 0 { return String(Int(v.rounded())) }
    let decimals = min(6, max(0, Int(ceil(-log10(spacing) - 1e-9))))
    return String(format: "%.\(decimals)f", v)
}

/// Ticks of a log10 axis over [lo, hi] (in log10 units): every decade, thinned to about 6.
func logTicks(lo: Double, hi: Double) -> [Double] {
    let a = floor(lo)
    var b = ceil(hi)
    if b <= a { b = a + 1 }
    let every = max(1, Int(ceil((b - a) / 6)))
    return stride(from: a, through: b, by: Double(every)).map { $0 }
}

/// The label of the log10 tick `k`: `100`, `1`, `0.01`, `1e-05`.
func logTickLabel(_ k: Double) -> String {
    let e = Int(k.rounded())
    if e >= 0 && e <= 5 { return String(Int(pow(10, Double(e)))) }
    if e < 0 && e >= -3 { return String(format: "%.\(-e)f", pow(10, Double(e))) }
    return "1e\(e < 0 ? "-" : "+")\(abs(e) < 10 ? "0" : "")\(abs(e))"
}

private func drawPanel(_ image: inout RGBImage, x: Int, y: Int, width: Int, height: Int, title: String, series: [Series], percent: Bool,
                       logScale: Bool = false) {
    // A log axis draws log10 of the values (non-positive values are left out).
    let series = !logScale ? series : series.map { s in
        var t = s
        t.points = s.points.filter { $0.1 > 0 }.map { ($0.0, log10($0.1)) }
        return t
    }
    let scale = 2
    let charW = (BitmapFont.width + 1) * scale
    let textH = RGBImage.textHeight(scale: scale)
    let all = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
    let xs = all.map(\.0), ys = all.map(\.1)
    // The x axis ends at the last step (not the next round tick), so the curve fills the panel.
    let xMax = xs.max() ?? 1
    var xTicks = niceTicks(lo: min(0, xs.min() ?? 0), hi: xMax)
    if xMax > xTicks[0] { xTicks = xTicks.filter { $0 <= xMax + 1e-9 } }
    var yLo = ys.min() ?? 0, yHi = ys.max() ?? 1
    if percent { yHi = min(100, yHi) } else if !logScale { yLo = min(0, yLo) }
    let yTicks = logScale ? logTicks(lo: yLo, hi: yHi) : niceTicks(lo: yLo, hi: yHi)
    let ySpacing = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
    let xSpacing = xTicks.count > 1 ? xTicks[1] - xTicks[0] : 1
    let yLabels = yTicks.map { logScale ? logTickLabel($0) : tickLabel($0, spacing: ySpacing) }
    let labelWidth = (yLabels.map(\.count).max() ?? 1) * charW

    // Plot area inside the panel.
    let left = x + 28 + labelWidth + 10
    let right = x + width - 24
    let plotTop = y + textH + 14
    let bottom = y + height - (textH * 2 + 30)
    guard right - left > 20, bottom - plotTop > 20 else { return }
    let x0 = xTicks.first!, x1 = max(xMax, xTicks.count > 1 ? xTicks.last! : x0 + 1)
    let y0 = yTicks.first!, y1 = yTicks.last!
    func px(_ v: Double) -> Int { left + Int(((v - x0) / (x1 - x0) * Double(right - left)).rounded()) }
    func py(_ v: Double) -> Int { bottom - Int(((v - y0) / (y1 - y0) * Double(bottom - plotTop)).rounded()) }

    image.draw(text: title, x: x + (width - RGBImage.textWidth(title, scale: scale)) / 2, y: y, scale: scale, color: Palette.text)
    // Grid and tick labels.
    for (i, t) in yTicks.enumerated() {
        let yy = py(t)
        image.fill(x: left, y: yy, width: right - left, height: 1, Palette.grid)
        image.fill(x: left - 6, y: yy, width: 6, height: 1, Palette.axis)
        image.draw(text: yLabels[i], x: left - 10 - RGBImage.textWidth(yLabels[i], scale: scale), y: yy - textH / 2, scale: scale, color: Palette.text)
    }
    var lastLabelEnd = Int.min
    for t in xTicks {
        let xx = px(t)
        image.fill(x: xx, y: plotTop, width: 1, height: bottom - plotTop, Palette.grid)
        image.fill(x: xx, y: bottom, width: 1, height: 6, Palette.axis)
        let label = tickLabel(t, spacing: xSpacing)
        let w = RGBImage.textWidth(label, scale: scale)
        // Centred under its tick, but kept inside the panel (a wide last label overshot it).
        let labelX = min(xx - w / 2, x + width - w)
        if labelX > lastLabelEnd + 8 {
            image.draw(text: label, x: labelX, y: bottom + 10, scale: scale, color: Palette.text)
            lastLabelEnd = labelX + w
        }
    }
    let xTitle = "GLOBAL STEP"
    image.draw(text: xTitle, x: (left + right - RGBImage.textWidth(xTitle, scale: scale)) / 2, y: bottom + 20 + textH, scale: scale, color: Palette.text)
    // Axes.
    image.fill(x: left, y: plotTop, width: 2, height: bottom - plotTop + 1, Palette.axis)
    image.fill(x: left, y: bottom, width: right - left + 1, height: 2, Palette.axis)

    if all.isEmpty {
        let msg = "NO DATA"
        image.draw(text: msg, x: (left + right - RGBImage.textWidth(msg, scale: scale)) / 2, y: (plotTop + bottom) / 2, scale: scale, color: Palette.axis)
        return
    }
    // Lines, thin raw series first.
    for s in series {
        let pts = s.points.filter { $0.0.isFinite && $0.1.isFinite }.map { (px($0.0), py(max(y0, min(y1, $0.1)))) }
        if pts.count == 1 { drawDot(&image, pts[0].0, pts[0].1, radius: 3, s.color) }
        for i in 1..<max(1, pts.count) {
            drawLine(&image, pts[i - 1], pts[i], thickness: s.thickness, s.color)
        }
        if s.markers && pts.count <= 40 { for p in pts { drawDot(&image, p.0, p.1, radius: 4, s.color) } }
        if s.emphasis {
            for p in pts {
                drawDot(&image, p.0, p.1, radius: 9, s.color)
                drawDot(&image, p.0, p.1, radius: 6, .white)
                drawDot(&image, p.0, p.1, radius: 4, s.color)
            }
        }
    }
    // Legend in the upper right (loss falls, so the top right is usually empty), or lower right for accuracy.
    let legendLines = series.count
    let legendW = (series.map(\.label.count).max() ?? 0) * charW + 40
    let legendH = legendLines * (textH + 8) + 8
    let lx = right - legendW - 8
    let ly = percent ? bottom - legendH - 8 : plotTop + 8
    image.fill(x: lx, y: ly, width: legendW, height: legendH, .white)
    image.fill(x: lx, y: ly, width: legendW, height: 1, Palette.grid)
    image.fill(x: lx, y: ly + legendH, width: legendW, height: 1, Palette.grid)
    image.fill(x: lx, y: ly, width: 1, height: legendH, Palette.grid)
    image.fill(x: lx + legendW, y: ly, width: 1, height: legendH + 1, Palette.grid)
    for (i, s) in series.enumerated() {
        let ry = ly + 8 + i * (textH + 8)
        image.fill(x: lx + 8, y: ry + textH / 2 - 1, width: 22, height: max(2, s.thickness), s.color)
        image.draw(text: s.label, x: lx + 36, y: ry, scale: scale, color: Palette.text)
    }
}

private func drawDot(_ image: inout RGBImage, _ cx: Int, _ cy: Int, radius: Int, _ color: RGB) {
    for dy in -radius...radius {
        for dx in -radius...radius where dx * dx + dy * dy <= radius * radius {
            image.plot(cx + dx, cy + dy, color)
        }
    }
}

/// Bresenham's line with a square pen of `thickness` pixels.
private func drawLine(_ image: inout RGBImage, _ a: (Int, Int), _ b: (Int, Int), thickness: Int, _ color: RGB) {
    var (x, y) = a
    let dx = abs(b.0 - x), dy = -abs(b.1 - y)
    let sx = x < b.0 ? 1 : -1, sy = y < b.1 ? 1 : -1
    var err = dx + dy
    let half = thickness / 2
    while true {
        if thickness <= 1 { image.plot(x, y, color) } else { image.fill(x: x - half, y: y - half, width: thickness, height: thickness, color) }
        if x == b.0 && y == b.1 { break }
        let e2 = 2 * err
        if e2 >= dy { err += dy; x += sx }
        if e2 <= dx { err += dx; y += sy }
    }
}
