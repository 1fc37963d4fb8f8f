#!/usr/bin/env python3
"""PyTorch DDP baseline for `rnn-bench distributed`: the configurations of `rnn-bench train`
trained by W processes (default 2) x 1 thread with DistributedDataParallel over gloo on
loopback. Same model as scripts/bench_torch_train.py (nn.RNN/LSTM/GRU batch_first + Linear head
on the last step, CrossEntropyLoss, Adam); the global batch B is split evenly among the ranks.

Each process: torch.set_num_threads(1); warm-up steps; rank 0 calibrates the step count for
about --seconds and broadcasts it; barrier; N timed steps; barrier. Every step ends in the
gradient all-reduce, so rank 0's step durations are the global ones. Global samples/s =
B / median step duration (as `rnn-bench distributed`, robust to other processes stealing the
CPU now and then); mean-samples/s = B * N / rank 0's elapsed time.

Prints one row per configuration:  config  samples/s  ms/step(median)  steps  mean-samples/s
Usage: python3 scripts/bench_ddp.py [--workers 2] [--config NAME[,NAME]] [--seconds 12] [--repeats 1]
"""
import argparse
import os
import sys
import socket
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

# The same configurations and model class as the single-process baseline.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch_train import CONFIGS, Model  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, cfg, seconds, results):
    name, module, I, H, L, T, B, C = cfg
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(Model(module, I, H, L, C))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    local = B // world + (1 if rank < B % world else 0)
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(local, T, I, generator=g)
    y = torch.randint(0, C, (local,), generator=g)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: allocation, first touch, gloo connection
        step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    per_step = (time.perf_counter() - start) / 3
    count = torch.tensor([max(10, int(seconds / max(per_step, 1e-6)))])
    dist.broadcast(count, 0)
    steps = int(count.item())
    dist.barrier()
    durations = []
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step()
        durations.append(time.perf_counter() - t)
    dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == 0:
        median = sorted(durations)[len(durations) // 2]
        results.put((B / median, median, steps, B * steps / elapsed))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default=None)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    wanted = set(args.config.split(",")) if args.config else None
    ctx = mp.get_context("spawn")
    print(f"# PyTorch {torch.__version__} DDP gloo: {args.workers} processes x 1 thread, loopback, "
          f"~{args.seconds} s per run, best of {args.repeats}")
    print("config        samples/s    ms/step  steps  mean-samples/s")
    for cfg in CONFIGS:
        if wanted and cfg[0] not in wanted:
            continue
        best = None
        for _ in range(args.repeats):
            # gloo now and then aborts a process group ("terminate called without an active
            # exception", SIGABRT) on this machine; such a run is retried, at most twice.
            for attempt in range(3):
                results = ctx.SimpleQueue()
                try:
                    mp.start_processes(worker, args=(args.workers, free_port(), cfg, args.seconds, results),
                                       nprocs=args.workers, join=True, start_method="spawn")
                    break
                except mp.ProcessExitedException as e:
                    print(f"# {cfg[0]}: a DDP process died ({e}); attempt {attempt + 1} of 3", flush=True)
                    if attempt == 2:
                        raise
            got = results.get()
            if best is None or got[0] > best[0]:
                best = got
        rate, per_step, steps, mean_rate = best
        print(f"{cfg[0]:<12}{rate:>11.1f}{per_step * 1e3:>11.2f}{steps:>7d}{mean_rate:>16.1f}", flush=True)


if __name__ == "__main__":
    main()
