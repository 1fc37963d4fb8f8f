import Foundation
import XCTest
import RNNHDF5

final class RNNHDF5Tests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("rnnhdf5-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func testFailuresCarryCallContextAndErrorStack() throws {
        let path = dir.appendingPathComponent("missing.h5").path
        do {
            _ = try HDF5File.open(path)
            XCTFail("opening a missing file must fail")
        } catch {
            XCTAssertEqual(error.call, "H5Fopen")
            XCTAssertTrue(error.context.contains(path))
            XCTAssertFalse(error.stack.isEmpty)
            XCTAssertTrue(error.description.contains("unable to open file"), error.description)
        }
        let file = try HDF5File.create(dir.appendingPathComponent("a.h5").path)
        XCTAssertThrowsError(try file.root().openDataset("nope")) { error in
            let e = error as! HDF5Error
            XCTAssertEqual(e.call, "H5Dopen2")
            XCTAssertTrue(e.context.contains("/nope"))
            XCTAssertTrue(e.stack.joined().contains("not found") || e.stack.joined().contains("doesn't exist"), "\(e.stack)")
        }
        // The stack is cleared after each failure: a later success leaves no residue.
        XCTAssertFalse(try file.root().exists("nope"))
    }

    func testRoundTripDatasetsAttributesAndGroups() throws {
        let path = dir.appendingPathComponent("rt.h5").path
        do {
            let file = try HDF5File.create(path)
            let root = try file.root()
            let g = try root.createGroup("model")
            try g.writeDataset("w", shape: [2, 3], values: [Float](stride(from: 0, to: 6, by: 1)))
            let c = try root.writeDataset("c", shape: [100, 4], values: (0..<400).map { Int32($0) },
                                          options: HDF5DatasetOptions(chunks: [16, 4], gzipLevel: 6, shuffle: true, fletcher32: true))
            XCTAssertEqual(c.layout, .chunked([16, 4]))
            XCTAssertEqual(c.filters, [.fletcher32, .shuffle, .deflate(level: 6)])
            try root.writeDataset("be", shape: [3], values: [Float(1.5), -2, 3e10], options: HDF5DatasetOptions(bigEndian: true))
            try root.setAttribute("format", "rnn-trainer-checkpoint ✓")
            try root.setAttribute("version", Int64(1))
            try root.setAttribute("lr", 1e-3)
            try root.setAttribute("state", array: [UInt64.max, 7])
            try root.setAttribute("version", Int64(2))  // replaces
            try file.close()
        }
        let file = try HDF5File.open(path)
        let root = try file.root()
        XCTAssertTrue(try root.exists("model/w"))
        XCTAssertFalse(try root.exists("model/v"))
        XCTAssertEqual(try root.children().map { $0.name }, ["be", "c", "model"])
        XCTAssertEqual(try root.children().map { $0.kind }, [.dataset, .dataset, .group])
        let w = try root.openGroup("model").openDataset("w")
        XCTAssertEqual(w.shape, [2, 3])
        XCTAssertEqual(try w.read(as: Float.self), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try w.read(as: Double.self), [0, 1, 2, 3, 4, 5])
        let c = try root.openDataset("c", chunkCacheBytes: 1 << 20)
        var buffer = [Int64](repeating: -1, count: 2 + 4 * 5)
        try c.readRows([3..<5, 10..<11, 98..<100], into: &buffer, at: 2)
        XCTAssertEqual(Array(buffer[0..<2]), [-1, -1])
        XCTAssertEqual(Array(buffer[2...]), ([3, 4, 10, 98, 99] as [Int64]).flatMap { r in (0..<4).map { r * 4 + $0 } })
        XCTAssertThrowsError(try c.readRows([99..<101], into: &buffer))
        let be = try root.openDataset("be")
        XCTAssertTrue(be.typeInfo.isBigEndian)
        XCTAssertEqual(try be.read(as: Float.self), [1.5, -2, 3e10])
        XCTAssertEqual(try root.stringAttribute("format"), "rnn-trainer-checkpoint ✓")
        XCTAssertEqual(try root.integerAttribute("version"), 2)
        XCTAssertEqual(try root.floatAttribute("lr"), 1e-3)
        XCTAssertEqual(try root.attribute("state"), .integers([-1, 7]))
        XCTAssertEqual(Set(try root.attributeNames()), ["format", "version", "lr", "state"])
        XCTAssertThrowsError(try root.stringAttribute("version"))
    }

    func testNotHDF5AndTruncated() throws {
        let text = dir.appendingPathComponent("t.h5")
        try Data("hello".utf8).write(to: text)
        XCTAssertFalse(try HDF5File.isHDF5(path: text.path))
        let good = dir.appendingPathComponent("g.h5").path
        let file = try HDF5File.create(good)
        try file.root().writeDataset("x", shape: [1000], values: [Double](repeating: 1, count: 1000))
        try file.close()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let cut = dir.appendingPathComponent("cut.h5")
        try bytes.prefix(bytes.count - 100).write(to: cut)
        XCTAssertThrowsError(try HDF5File.open(cut.path)) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
    }

    func testWriteShapeMismatchIsAnError() throws {
        let file = try HDF5File.create(dir.appendingPathComponent("w.h5").path)
        XCTAssertThrowsError(try file.root().writeDataset("x", shape: [2, 2], values: [Float(1), 2, 3])) { error in
            XCTAssertTrue("\(error)".contains("expected 4 values"), "\(error)")
        }
    }
}
