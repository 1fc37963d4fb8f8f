#!/usr/bin/env python3
"""All-reduce (sum) benchmark of torch.distributed gloo: 2 processes, 1 thread each, loopback.

Mirrors `rnn-bench allreduce`: same sizes, same iteration rule (max(5, min(3000, volume/bytes))),
a barrier before timing, time per op = max over ranks, bus bandwidth 2(W-1)/W * bytes / time.
Prints a table, or JSON lines with --json (consumed by scripts/bench_allreduce.sh).
"""
import argparse
import json
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

DEFAULT_SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]


def iterations(nbytes, volume):
    return max(5, min(3000, volume // nbytes))


def worker(rank, world, port, sizes, volume, queue):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for nbytes in sizes:
        n = nbytes // 4
        t = torch.tensor([(i + rank) % 1000 for i in range(min(n, 4096))], dtype=torch.float32)
        x = torch.empty(n, dtype=torch.float32)
        x[: t.numel()] = t
        x[t.numel():] = 1.0
        dist.all_reduce(x)
        idx = torch.arange(t.numel())
        expect = sum((idx + r) % 1000 for r in range(world)).to(torch.float32)
        verified = bool(torch.equal(x[: t.numel()], expect))
        x.fill_(1.0)
        for _ in range(2):
            dist.all_reduce(x)
        dist.barrier()
        iters = iterations(nbytes, volume)
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        queue.put({"rank": rank, "bytes": nbytes, "iters": iters, "seconds": seconds, "cpu": cpu, "verified": verified})
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--volume", type=int, default=512 << 20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, a.world, port, sizes, a.volume, queue)) for r in range(a.world)]
    for p in procs:
        p.start()
    results = {}
    for _ in range(len(sizes) * a.world):
        r = queue.get(timeout=600)
        results.setdefault(r["bytes"], []).append(r)
    for p in procs:
        p.join(timeout=60)
    if not a.json:
        print(f"all-reduce sum, float32, {a.world} processes, torch {torch.__version__} gloo, loopback TCP")
        print("     bytes    iters      us/op   busbw GB/s  cpu us/op (all ranks)")
    for nbytes in sizes:
        rs = results[nbytes]
        per_op = max(r["seconds"] / r["iters"] for r in rs)
        busbw = 2.0 * (a.world - 1) / a.world * nbytes / per_op / 1e9
        ok = all(r["verified"] for r in rs)
        # CPU time (all threads) of all ranks together per op: robust against other load.
        cpu_per_op = sum(r["cpu"] / r["iters"] for r in rs)
        if a.json:
            print(json.dumps({"impl": "gloo", "world": a.world, "bytes": nbytes, "iters": rs[0]["iters"],
                              "us_per_op": per_op * 1e6, "cpu_us_per_op": cpu_per_op * 1e6, "busbw_gbps": busbw,
                              "verified": ok}))
        else:
            print(f"{nbytes:10d} {rs[0]['iters']:8d} {per_op * 1e6:10.1f} {busbw:12.3f} {cpu_per_op * 1e6:12.1f}"
                  + ("" if ok else "  WRONG RESULT"))


if __name__ == "__main__":
    main()
