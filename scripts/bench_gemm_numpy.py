#!/usr/bin/env python3
"""OpenBLAS sgemm (through numpy) on the shapes of `rnn-bench gemm`, single thread by default.

Run it with OPENBLAS_NUM_THREADS=1 (scripts/bench_gemm.sh does). Same method as the Swift
side: 0.1 s warm-up, then the median of 7 repetitions, each running enough calls for >= 20 ms,
timed in thread CPU time when single-threaded (the machine is shared).
numpy has no packed-weight API and no beta=1 matmul: the "packed" shapes run as plain
sgemm (transposed view where the Swift side packs op(B) once) and beta=1 shapes as beta=0.
"""
import os
import sys
import time

import numpy as np

# name, transA, transB, m, n, k  (must match Sources/rnn-bench/GemmBenchmark.swift)
SHAPES = [
    ("square 256^3", False, False, 256, 256, 256),
    ("square 512^3", False, False, 512, 512, 512),
    ("recurrent-like 64x1024x512 tB", False, True, 64, 1024, 512),
    ("recurrent-like 64x2048x512 tB", False, True, 64, 2048, 512),
    ("(a) input proj 6400x2048x128 tB", False, True, 6400, 2048, 128),
    ("(b) recurrent 64x2048x512 packed", False, True, 64, 2048, 512),
    ("(c) dW 2048x128x6400 tA b=1", True, False, 2048, 128, 6400),
    ("(d) dX 6400x128x2048", False, False, 6400, 128, 2048),
    ("(e) dh step 64x512x2048 packed", False, False, 64, 512, 2048),
    ("tiny recurrent 32x64x64 packed", False, True, 32, 64, 64),
    ("tiny input proj 320x64x5 tB", False, True, 320, 64, 5),
]


def median_seconds_per_call(call, now):
    start = now()
    while now() - start < 0.1:
        call()
    calls = 1
    while True:
        t = now()
        for _ in range(calls):
            call()
        if now() - t >= 0.02:
            break
        calls *= 2
    samples = []
    for _ in range(7):
        t = now()
        for _ in range(calls):
            call()
        samples.append((now() - t) / calls)
    samples.sort()
    return samples[len(samples) // 2]


def main():
    rng = np.random.default_rng(42)
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "0") or 0)
    # One thread: thread CPU time, as the Swift side (OpenBLAS runs in the calling thread).
    now = time.thread_time if threads == 1 else time.perf_counter
    clock = "thread CPU time" if threads == 1 else "wall time"
    print(f"numpy {np.__version__} sgemm, OPENBLAS_NUM_THREADS={threads or 'unset'} "
          f"({clock}, median of 7 timed repetitions, each >= 20 ms)")
    print(f"{'shape':34}{'GFLOP/s':>10}{'µs/call':>12}")
    for name, trans_a, trans_b, m, n, k in SHAPES:
        a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
        c = np.empty((m, n), dtype=np.float32)
        op_a = a.T if trans_a else a
        op_b = b.T if trans_b else b
        secs = median_seconds_per_call(lambda: np.matmul(op_a, op_b, out=c), now)
        gflops = 2.0 * m * n * k / secs / 1e9
        print(f"{name:34}{gflops:10.1f}{secs * 1e6:12.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
