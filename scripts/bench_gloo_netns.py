#!/usr/bin/env python3
"""One rank of torch.distributed gloo's all_reduce (sum, float32) on a test host.

scripts/bench_netns.sh starts rank r inside namespace PREFIXr (`ip netns exec`), with
MASTER_ADDR on host 0. Same sizes and iteration rule as `rnn-bench allreduce`
(max(5, min(3000, volume / bytes))), two warm-up ops and a barrier before timing. Each rank
prints one JSON line per size; `--aggregate FILE...` reads the ranks' lines and prints, per
size, the slowest rank's time per op (JSON lines, impl "gloo"), as rnn-bench does.
"""
import argparse
import json
import sys
import time


def iterations(nbytes, volume):
    return max(5, min(3000, volume // nbytes))


def rank_main(a):
    import os
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = a.master
    os.environ["MASTER_PORT"] = str(a.port)
    os.environ["GLOO_SOCKET_IFNAME"] = a.ifname
    dist.init_process_group("gloo", rank=a.rank, world_size=a.world)
    for nbytes in [int(s) for s in a.sizes.split(",")]:
        n = nbytes // 4
        x = torch.ones(n, dtype=torch.float32)
        for _ in range(2):
            dist.all_reduce(x)
        verified = bool(x[0].item() == float(a.world ** 2))
        dist.barrier()
        iters = iterations(nbytes, a.volume)
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        print(json.dumps({"rank": a.rank, "bytes": nbytes, "iters": iters, "seconds": seconds, "cpu": cpu,
                          "verified": verified}), flush=True)
    dist.destroy_process_group()


def aggregate(files, world):
    by_size = {}
    for f in files:
        for line in open(f):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                by_size.setdefault(r["bytes"], []).append(r)
    for nbytes in sorted(by_size):
        rs = by_size[nbytes]
        if len(rs) != world:
            continue
        per_op = max(r["seconds"] / r["iters"] for r in rs)
        print(json.dumps({"impl": "gloo", "world": world, "bytes": nbytes, "iters": rs[0]["iters"],
                          "us_per_op": per_op * 1e6, "cpu_us_per_op": sum(r["cpu"] / r["iters"] for r in rs) * 1e6,
                          "busbw_gbps": 2.0 * (world - 1) / world * nbytes / per_op / 1e9,
                          "verified": all(r["verified"] for r in rs)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--master", default="10.77.0.1")
    ap.add_argument("--port", type=int, default=29500)
    ap.add_argument("--ifname", default="eth0")
    ap.add_argument("--sizes", default="4096")
    ap.add_argument("--volume", type=int, default=128 << 20)
    ap.add_argument("--aggregate", nargs="*")
    a = ap.parse_args()
    if a.aggregate is not None:
        aggregate(a.aggregate, a.world)
    else:
        rank_main(a)


if __name__ == "__main__":
    sys.exit(main())
