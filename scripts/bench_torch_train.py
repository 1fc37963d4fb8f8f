#!/usr/bin/env python3
"""PyTorch baseline for `rnn-bench train`: the same configurations and the same full training
step (forward, cross-entropy on the last step's head, backward, Adam) at a fixed thread count.

Prints one row per configuration in the same columns as rnn-bench:
  config  samples/s  GFLOP/s  ms/step  steps  cpu-ms/step (process CPU time per step)
Usage: python3 scripts/bench_torch_train.py [--threads 1] [--config NAME[,NAME]] [--seconds 3] [--batch B]
(--batch overrides every configuration's batch size, as `rnn-bench train --batch` does: B = 32 is
one of two data-parallel workers' share of lstm-med's global batch.)
"""
import argparse
import time

import torch
from torch import nn

CONFIGS = [
    # name, module, I, H, L, T, B, C
    ("seed-small", "RNN", 5, 64, 1, 10, 32, 2),
    ("lstm-med", "LSTM", 64, 256, 1, 50, 64, 10),
    ("gru-med", "GRU", 64, 256, 1, 50, 64, 10),
    ("lstm-large", "LSTM", 128, 512, 2, 100, 64, 10),
]
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


class Model(nn.Module):
    def __init__(self, module, I, H, L, C):
        super().__init__()
        self.rnn = getattr(nn, module)(I, H, L, batch_first=True)
        self.fc = nn.Linear(H, C)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1, :])


def flops(module, I, H, L, T, B):
    G = GATES[module]
    forward = sum(2 * B * ((I if l == 0 else H) + H) * G * H * T for l in range(L))
    return 3 * forward


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default=None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wanted = set(args.config.split(",")) if args.config else None
    print(f"# PyTorch {torch.__version__} train: full step (forward, loss, backward, Adam), threads={args.threads}")
    print("config        samples/s    GFLOP/s    ms/step  steps  cpu-ms/step")
    for name, module, I, H, L, T, B, C in CONFIGS:
        if wanted and name not in wanted:
            continue
        B = args.batch or B
        model = Model(module, I, H, L, C)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.randn(B, T, I)
        y = torch.randint(0, C, (B,))

        def step():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

        step()  # warm-up
        done, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while True:
            step()
            done += 1
            elapsed = time.perf_counter() - start
            if elapsed >= args.seconds:
                break
        per_step = elapsed / done
        cpu_per_step = (time.process_time() - cpu_start) / done
        print(f"{name:<12}{B / per_step:>11.1f}{flops(module, I, H, L, T, B) / per_step / 1e9:>11.2f}"
              f"{per_step * 1e3:>11.2f}{done:>7d}{cpu_per_step * 1e3:>13.2f}")


if __name__ == "__main__":
    main()
