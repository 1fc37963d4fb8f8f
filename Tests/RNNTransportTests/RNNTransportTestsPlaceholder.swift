import XCTest
final class RNNTransportTestsPlaceholder: XCTestCase { func testPlaceholder() {} }
