import XCTest
final class RNNCheckpointTestsPlaceholder: XCTestCase { func testPlaceholder() {} }
