import XCTest
final class RNNDistributedTestsPlaceholder: XCTestCase { func testPlaceholder() {} }
