// The datasets in datasets/ open, pass every check and have the documented shapes.

import Foundation
import XCTest
@testable import RNNData

final class ShippedDatasetTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("datasets")

    func testDigitsTrainAndTest() throws {
        let paths = ["digits-train.h5", "digits-test.h5"].map { root.appendingPathComponent("digits/" + $0).path }
        let both = try TensorDataset.open(paths: paths)
        XCTAssertEqual(both.files.map { $0.rows }, [1437, 360])
        XCTAssertEqual([both.steps, both.inputSize], [8, 8])
        XCTAssertEqual(both.targetKind, .sequenceClasses(classes: 10))
        let batch = try both.read(rows: Array(0..<both.count))
        XCTAssertEqual(batch.x.min(), 0); XCTAssertEqual(batch.x.max(), 1)
        guard case .classIds(let y) = batch.targets else { return XCTFail() }
        XCTAssertEqual(Set(y), Set(0..<10))
    }

    func testSonnetsMatchTheirText() throws {
        let text = try String(contentsOf: root.appendingPathComponent("text/sonnets.txt"), encoding: .utf8)
        let ds = try TensorDataset.open(path: root.appendingPathComponent("text/sonnets.h5").path)
        XCTAssertEqual(ds.targetKind, .stepClasses(classes: 62))
        XCTAssertEqual(ds.steps, 64)
        let batch = try ds.read(rows: [0, 100])
        guard case .classIds(let y) = batch.targets else { return XCTFail() }
        let scalars = Array(text.unicodeScalars)
        XCTAssertEqual(ds.decode(Array(y[64..<128])), String(String.UnicodeScalarView(scalars[6401..<6465])))
    }
}
