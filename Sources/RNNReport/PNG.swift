// A minimal PNG writer: 8-bit RGB, no filtering, zlib "stored" (uncompressed) deflate blocks.
// Needs no C library: CRC-32 (PNG chunks) and Adler-32 (zlib stream) are computed here.

/// An RGB raster, row-major, 3 bytes per pixel.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: RGB = .white) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.r
            pixels[3 * i + 1] = background.g
            pixels[3 * i + 2] = background.b
        }
    }

    public subscript(x: Int, y: Int) -> RGB {
        get {
            let i = 3 * (y * width + x)
            return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
        }
        set {
            let i = 3 * (y * width + x)
            pixels[i] = newValue.r
            pixels[i + 1] = newValue.g
            pixels[i + 2] = newValue.b
        }
    }

    /// Sets a pixel if it lies inside the image (drawing code may overshoot the edges).
    public mutating func plot(_ x: Int, _ y: Int, _ color: RGB) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        self[x, y] = color
    }

    /// Fills a rectangle, clipped to the image (it may lie partly or wholly outside).
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ color: RGB) {
        let x0 = max(0, x), x1 = min(width, x + w), y0 = max(0, y), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 {
            for xx in x0..<x1 { self[xx, yy] = color }
        }
    }

    /// The image as PNG file bytes.
    public func pngData() -> [UInt8] {
        encodePNG(width: width, height: height, rgb: pixels)
    }
}

public struct RGB: Sendable, Equatable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }
    public static let white = RGB(255, 255, 255)
    public static let black = RGB(0, 0, 0)
}

/// PNG bytes of an 8-bit RGB image (`rgb` holds width*height*3 bytes).
public func encodePNG(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
    precondition(rgb.count == width * height * 3, "rgb must hold width*height*3 bytes")
    var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    var header: [UInt8] = []
    appendBigEndian(&header, UInt32(width))
    appendBigEndian(&header, UInt32(height))
    header += [8, 2, 0, 0, 0]  // bit depth 8, colour type RGB, deflate, filter 0, no interlace
    appendChunk(&out, type: "IHDR", data: header)
    // Scanlines, each prefixed by filter type 0 (None).
    var raw: [UInt8] = []
    raw.reserveCapacity(height * (width * 3 + 1))
    for y in 0..<height {
        raw.append(0)
        raw.append(contentsOf: rgb[(y * width * 3)..<((y + 1) * width * 3)])
    }
    appendChunk(&out, type: "IDAT", data: zlibStored(raw))
    appendChunk(&out, type: "IEND", data: [])
    return out
}

/// A zlib stream holding `data` in uncompressed deflate blocks (at most 65535 bytes each).
public func zlibStored(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [0x78, 0x01]  // CM 8, 32K window; FCHECK makes 0x7801 divisible by 31
    var start = 0
    repeat {
        let count = min(65_535, data.count - start)
        let final: UInt8 = start + count == data.count ? 1 : 0
        out.append(final)  // BFINAL, BTYPE 00 (stored)
        out.append(UInt8(count & 0xFF))
        out.append(UInt8(count >> 8))
        out.append(UInt8(~count & 0xFF))
        out.append(UInt8((~count >> 8) & 0xFF))
        out.append(contentsOf: data[start..<(start + count)])
        start += count
    } while start < data.count
    appendBigEndian(&out, adler32(data))
    return out
}

public func adler32(_ data: [UInt8]) -> UInt32 {
    var a: UInt32 = 1, b: UInt32 = 0
    var i = 0
    while i < data.count {
        let end = min(data.count, i + 5552)  // the largest run without overflow before the modulo
        while i < end {
            a += UInt32(data[i])
            b += a
            i += 1
        }
        a %= 65_521
        b %= 65_521
    }
    return (b << 16) | a
}

private let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

/// CRC-32 (ISO 3309, as PNG and zlib's crc32 use).
public func crc32<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in bytes { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

private func appendBigEndian(_ out: inout [UInt8], _ v: UInt32) {
    out += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
}

private func appendChunk(_ out: inout [UInt8], type: String, data: [UInt8]) {
    appendBigEndian(&out, UInt32(data.count))
    let typed = Array(type.utf8) + data
    out += typed
    appendBigEndian(&out, crc32(typed))
}
