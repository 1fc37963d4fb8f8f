import XCTest
final class RNNDataTestsPlaceholder: XCTestCase { func testPlaceholder() {} }
