#!/usr/bin/env python3
"""Writes the HDF5 fixtures of Tests/RNNDataTests with h5py (committed; re-run to regenerate).

Every float value is exact in float16: x(g, t, i) = ((7 g + 3 t + i) mod 64) / 8 - 4, where g
is the sample's global row (rows of a second file continue the numbering of the first).
Class labels are y(g) = g mod 3 (per sequence) or (g + t) mod C (per step); float targets
are r(g, t, o) = ((5 g + 2 t + o) mod 32) / 4 - 4. The Swift tests recompute the same formulas.
"""
import os
import sys

import h5py
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "Tests", "RNNDataTests", "Fixtures")


def features(n, t, i, first=0):
    g = np.arange(first, first + n)[:, None, None]
    s = np.arange(t)[None, :, None]
    k = np.arange(i)[None, None, :]
    return ((7 * g + 3 * s + k) % 64) / 8.0 - 4.0


def targets(n, t, o, first=0):
    g = np.arange(first, first + n)[:, None, None]
    s = np.arange(t)[None, :, None]
    k = np.arange(o)[None, None, :]
    return ((5 * g + 2 * s + k) % 32) / 4.0 - 4.0


def labels(n, first=0, classes=3):
    return np.arange(first, first + n) % classes


def step_labels(n, t, classes, first=0):
    g = np.arange(first, first + n)[:, None]
    s = np.arange(t)[None, :]
    return (g + s) % classes


def path(name):
    return os.path.join(OUT, name)


def main():
    os.makedirs(OUT, exist_ok=True)
    gz = dict(compression="gzip", compression_opts=4, shuffle=True)

    # Chunked + gzip + shuffle float32 X, int32 Y; a second part continues the rows.
    with h5py.File(path("chunked_gzip.h5"), "w") as f:
        f.create_dataset("X", data=features(20, 6, 3).astype("<f4"), chunks=(4, 6, 3), **gz)
        f.create_dataset("Y", data=labels(20).astype("<i4"), chunks=(8,), **gz)
        f.attrs["classes"] = 3
        f.attrs["description"] = "fixture: chunked gzip+shuffle float32 X, int32 Y"
    with h5py.File(path("chunked_gzip_part2.h5"), "w") as f:
        f.create_dataset("X", data=features(7, 6, 3, first=20).astype("<f4"), chunks=(2, 6, 3), **gz)
        f.create_dataset("Y", data=labels(7, first=20).astype("<i4"))
        f.attrs["classes"] = 3
    # float64 X, contiguous; int64 Y; custom dataset names.
    with h5py.File(path("float64.h5"), "w") as f:
        f.create_dataset("inputs", data=features(10, 4, 2).astype("<f8"))
        f.create_dataset("labels", data=labels(10).astype("<i8"))
    # Token ids (int16) with vocab_size, per-step class targets, vocab string.
    with h5py.File(path("tokens.h5"), "w") as f:
        x = step_labels(8, 5, 6).astype("<i2")
        d = f.create_dataset("X", data=x, chunks=(3, 5), **gz)
        d.attrs["vocab_size"] = 6
        f.create_dataset("Y", data=step_labels(8, 5, 6, first=1).astype("<i4"))
        f.attrs["vocab"] = "abcdef"
    # Big-endian float32 X and big-endian float64 regression targets (N, O).
    with h5py.File(path("bigendian.h5"), "w") as f:
        f.create_dataset("X", data=features(10, 4, 2).astype(">f4"))
        f.create_dataset("Y", data=targets(10, 1, 3)[:, 0, :].astype(">f8"), chunks=(4, 3), **gz)
    # float16 X, per-step float32 targets (N, T, O).
    with h5py.File(path("float16.h5"), "w") as f:
        f.create_dataset("X", data=features(10, 4, 2).astype("<f2"), chunks=(5, 4, 2), **gz)
        f.create_dataset("Y", data=targets(10, 4, 2).astype("<f4"))

    # A 512-byte user block before the HDF5 data (h5py's userblock_size), contiguous float32.
    with h5py.File(path("userblock.h5"), "w", userblock_size=512) as f:
        f.create_dataset("X", data=features(6, 3, 2).astype("<f4"))
        f.create_dataset("Y", data=labels(6))

    # Bad files, one problem each.
    with open(path("bad_not_hdf5.h5"), "wb") as f:
        f.write(b"this is plain text, not an HDF5 file\n")
    with h5py.File(path("bad_missing_y.h5"), "w") as f:
        f.create_dataset("X", data=features(4, 3, 2).astype("f4"))
        f.create_dataset("labels", data=labels(4))
    with h5py.File(path("bad_rank.h5"), "w") as f:
        f.create_dataset("X", data=features(4, 3, 2).astype("f4").reshape(4, 6))
        f.create_dataset("Y", data=labels(4))
    with h5py.File(path("bad_count.h5"), "w") as f:
        f.create_dataset("X", data=features(10, 3, 2).astype("f4"))
        f.create_dataset("Y", data=labels(9))
    with h5py.File(path("bad_dtype.h5"), "w") as f:
        f.create_dataset("X", data=np.array([[b"ab", b"cd"]] * 3, dtype="S2"))
        f.create_dataset("Y", data=labels(3))
    with h5py.File(path("bad_label.h5"), "w") as f:
        f.create_dataset("X", data=features(6, 3, 2).astype("f4"))
        y = labels(6)
        y[4] = 5
        f.create_dataset("Y", data=y)
        f.attrs["classes"] = 3
    with h5py.File(path("bad_nan.h5"), "w") as f:
        x = features(5, 3, 2).astype("f4")
        x[2, 1, 0] = np.nan
        f.create_dataset("X", data=x, chunks=(2, 3, 2), **gz)
        f.create_dataset("Y", data=labels(5))
    with h5py.File(path("bad_inf_target.h5"), "w") as f:
        f.create_dataset("X", data=features(5, 3, 2).astype("f4"))
        r = targets(5, 1, 2)[:, 0, :].astype("f4")
        r[3, 1] = np.inf
        f.create_dataset("Y", data=r)
    with h5py.File(path("bad_empty.h5"), "w") as f:
        f.create_dataset("X", shape=(0, 3, 2), dtype="f4")
        f.create_dataset("Y", shape=(0,), dtype="i8")
    with h5py.File(path("bad_other_t.h5"), "w") as f:
        f.create_dataset("X", data=features(5, 7, 3).astype("f4"))
        f.create_dataset("Y", data=labels(5).astype("i4"))
    with h5py.File(path("bad_step_t.h5"), "w") as f:
        f.create_dataset("X", data=features(5, 4, 2).astype("f4"))
        f.create_dataset("Y", data=step_labels(5, 3, 2))
    with h5py.File(path("bad_token.h5"), "w") as f:
        x = step_labels(4, 5, 6)
        x[1, 2] = 9
        f.create_dataset("X", data=x).attrs["vocab_size"] = 6
        f.create_dataset("Y", data=step_labels(4, 5, 6))
    with h5py.File(path("bad_no_vocab_size.h5"), "w") as f:
        f.create_dataset("X", data=step_labels(4, 5, 6))
        f.create_dataset("Y", data=step_labels(4, 5, 6))
    print("fixtures written to", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
