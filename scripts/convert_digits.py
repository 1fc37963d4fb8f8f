#!/usr/bin/env python3
"""Converts scikit-learn's bundled copy of the UCI optical digits (sklearn.datasets.load_digits)
into two TensorDataset files: datasets/digits/digits-train.h5 and digits-test.h5.

Each 8x8 image becomes a sequence of T = 8 rows of I = 8 pixels, scaled from 0..16 to [0, 1]
(float32); Y holds the digit 0..9 (int64). The split is stratified, 80 % train / 20 % test,
with a fixed seed, so re-running gives identical files. Run once; the outputs are committed.
"""
import os

import h5py
import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "digits")


def main():
    digits = load_digits()
    x = (digits.images / 16.0).astype("<f4")  # (1797, 8, 8)
    y = digits.target.astype("<i8")
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    os.makedirs(OUT, exist_ok=True)
    for name, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
        path = os.path.join(OUT, f"digits-{name}.h5")
        with h5py.File(path, "w") as f:
            f.create_dataset("X", data=x[idx], chunks=(256, 8, 8), compression="gzip", compression_opts=4, shuffle=True)
            f.create_dataset("Y", data=y[idx], compression="gzip", compression_opts=4, shuffle=True)
            f.attrs["classes"] = 10
            f.attrs["description"] = (
                f"UCI optical recognition of handwritten digits ({name} split, {len(idx)} of 1797), "
                "8x8 images as 8 steps of 8 pixels scaled to [0,1]; from scikit-learn "
                f"{sklearn.__version__} load_digits (a copy of the UCI test set); "
                "stratified 80/20 split, random_state=0")
        print(path, x[idx].shape, np.bincount(y[idx]).tolist())


if __name__ == "__main__":
    main()
