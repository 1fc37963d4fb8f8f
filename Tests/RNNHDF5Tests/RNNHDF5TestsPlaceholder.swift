import XCTest
final class RNNHDF5TestsPlaceholder: XCTestCase { func testPlaceholder() {} }
