import XCTest
final class RNNCoreTestsPlaceholder: XCTestCase { func testPlaceholder() {} }
