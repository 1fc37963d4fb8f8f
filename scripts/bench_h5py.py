#!/usr/bin/env python3
"""The h5py side of `rnn-bench hdf5` (run by it, in the same run, on the same files).

argv[1]: JSON {"files": [{"name", "file"}], "x", "y", "indices" (int64 binary file), "batch",
               "repeats", "chunk_cache", "ckpt_dir", "tensors": [[name, shape], ...]}
Prints one JSON object of median seconds per measurement, keys "<name>.<measurement>".
"""
import json
import os
import statistics
import sys
import time

import h5py
import numpy as np


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_file(cfg, path, indices, out, prefix):
    repeats, batch = cfg["repeats"], cfg["batch"]
    with h5py.File(path, "r", rdcc_nbytes=cfg["chunk_cache"], rdcc_nslots=20011) as f:
        x = f[cfg["x"]]
        n = x.shape[0]
        out[prefix + "full_read_fresh_s"] = median_time(lambda: x[()], repeats)
        buffer = np.empty(x.shape, dtype=np.float32)
        x.read_direct(buffer)
        out[prefix + "full_read_s"] = median_time(lambda: x.read_direct(buffer), repeats)
        del buffer

        def batched():
            for start in range(0, n, 1024):
                x[start:start + 1024]
        out[prefix + "batched_read_s"] = median_time(batched, repeats)
        y = f[cfg["y"]][()]  # labels in memory, as the Swift side holds them

        def random_rows():
            for start in range(0, len(indices), batch):
                idx = np.sort(indices[start:start + batch])
                x[idx]
                y[idx]
        out[prefix + "random_read_s"] = median_time(random_rows, repeats)
    with h5py.File(path, "r") as f:
        x = f[cfg["x"]]

        def random_rows_default_cache():
            for start in range(0, len(indices), batch):
                x[np.sort(indices[start:start + batch])]
        out[prefix + "random_read_default_cache_s"] = median_time(random_rows_default_cache, repeats)


def main():
    cfg = json.loads(sys.argv[1])
    indices = np.fromfile(cfg["indices"], dtype="<i8")
    out = {}
    for entry in cfg["files"]:
        bench_file(cfg, entry["file"], indices, out, entry["name"] + ".")

    rng = np.random.default_rng(0)
    tensors = [(name, tuple(shape), rng.standard_normal(shape, dtype=np.float32)) for name, shape in cfg["tensors"]]

    def write_checkpoint(fletcher):
        final = os.path.join(cfg["ckpt_dir"], "h5py-ckpt.h5")
        tmp = final + ".tmp"
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "rnn-trainer-checkpoint"
            f.attrs["format_version"] = 1
            for group in ("model", "optimizer/exp_avg", "optimizer/exp_avg_sq"):
                g = f.create_group(group)
                for name, shape, data in tensors:
                    if fletcher:
                        g.create_dataset(name, data=data, chunks=shape, fletcher32=True)
                    else:
                        g.create_dataset(name, data=data)
            f.flush()
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, final)
        dfd = os.open(cfg["ckpt_dir"], os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    out["ckpt_write_s"] = median_time(lambda: write_checkpoint(False), cfg["repeats"])
    out["ckpt_write_fletcher_s"] = median_time(lambda: write_checkpoint(True), cfg["repeats"])
    out["h5py_version"] = h5py.version.version
    out["hdf5_version"] = h5py.version.hdf5_version
    print(json.dumps(out))


if __name__ == "__main__":
    main()
