// Matrix transposition for the transposed GEMM forms of the network (see Network.swift).

/// out (C, R) = m^T, or out += m^T when `accumulate`; m is (R, C) row-major.
/// Works on 8 x 8 tiles: eight row vectors of m are loaded, regrouped into eight column
/// vectors, and stored as eight contiguous pieces of out's rows. The eight output rows of a
/// tile stay in L1 while the tile walks down m, even when out's row stride is a multiple of
/// 4 KiB (a one-column-at-a-time walk then thrashes one L1 set). Tails go element by element.
func transpose(_ m: UnsafePointer<Float>, rows R: Int, columns C: Int, into out: UnsafeMutablePointer<Float>,
               accumulate: Bool) {
    let rFull = R / 8 * 8, cFull = C / 8 * 8
    var c0 = 0
    while c0 < cFull {
        var r0 = 0
        while r0 < rFull {
            let a = m + r0 * C + c0
            let v0 = loadLanes(a, 0, 8), v1 = loadLanes(a, C, 8), v2 = loadLanes(a, 2 * C, 8), v3 = loadLanes(a, 3 * C, 8)
            let v4 = loadLanes(a, 4 * C, 8), v5 = loadLanes(a, 5 * C, 8), v6 = loadLanes(a, 6 * C, 8), v7 = loadLanes(a, 7 * C, 8)
            let o = out + c0 * R + r0
            for k in 0..<8 {
                let column = SIMD8<Float>(v0[k], v1[k], v2[k], v3[k], v4[k], v5[k], v6[k], v7[k])
                let target = o + k * R
                storeLanes(accumulate ? loadLanes(target, 0, 8) + column : column, target, 0, 8)
            }
            r0 += 8
        }
        c0 += 8
    }
    // Columns past the last full tile, for the rows of full tiles; then the last rows, all columns.
    for r in 0..<rFull {
        for c in cFull..<C {
            if accumulate { out[c * R + r] += m[r * C + c] } else { out[c * R + r] = m[r * C + c] }
        }
    }
    for r in rFull..<R {
        for c in 0..<C {
            if accumulate { out[c * R + r] += m[r * C + c] } else { out[c * R + r] = m[r * C + c] }
        }
    }
}
