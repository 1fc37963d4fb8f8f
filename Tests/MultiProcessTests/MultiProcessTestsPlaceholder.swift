import XCTest
final class MultiProcessTestsPlaceholder: XCTestCase { func testPlaceholder() {} }
