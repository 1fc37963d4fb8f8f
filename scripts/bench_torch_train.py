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
    # name, module, I, H, L, T, B, C, options (issue 15: bidirectional, vocab V, embedding E, lengths (lo, hi))
    ("seed-small", "RNN", 5, 64, 1, 10, 32, 2, {}),
    ("lstm-med", "LSTM", 64, 256, 1, 50, 64, 10, {}),
    ("gru-med", "GRU", 64, 256, 1, 50, 64, 10, {}),
    ("lstm-large", "LSTM", 128, 512, 2, 100, 64, 10, {}),
    ("bi-lstm-med", "LSTM", 64, 256, 1, 50, 64, 10, {"bidirectional": True}),
    ("embed-lstm", "LSTM", 20000, 256, 1, 50, 64, 10, {"vocab": 20000, "embedding": 128}),
    ("onehot-20k", "LSTM", 20000, 256, 1, 50, 64, 10, {"vocab": 20000}),
    ("lstm-med-len", "LSTM", 64, 256, 1, 50, 64, 10, {"lengths": (5, 50)}),
]
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


class Model(nn.Module):
    def __init__(self, module, I, H, L, C, bidirectional=False, vocab=None, embedding=None, lengths=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding) if embedding else None
        self.vocab = vocab
        self.rnn = getattr(nn, module)(embedding or I, H, L, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear((2 if bidirectional else 1) * H, C)
        self.bidirectional = bidirectional

    def forward(self, x, lengths=None):
        if self.embedding is not None:
            x = self.embedding(x)
        elif self.vocab is not None:
            x = nn.functional.one_hot(x, self.vocab).float()
        if lengths is not None:
            x = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, hidden = self.rnn(x)
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden
        if self.bidirectional:
            return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))
        return self.fc(h_n[-1])  # = out[:, -1, :] without lengths


def flops(module, I, H, L, T, B, options, rows=None):
    G = GATES[module]
    D = 2 if options.get("bidirectional") else 1
    rows = rows or B * T
    first = options.get("embedding") or (0 if options.get("vocab") else I)
    forward = sum(2 * rows * ((first if l == 0 else D * H) + H) * G * H * D for l in range(L))
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
    print("config             samples/s    GFLOP/s    ms/step  steps  cpu-ms/step")
    for name, module, I, H, L, T, B, C, options in CONFIGS:
        if wanted and name not in wanted:
            continue
        B = args.batch or B
        model = Model(module, I, H, L, C, **options)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.randint(0, options["vocab"], (B, T)) if options.get("vocab") else torch.randn(B, T, I)
        y = torch.randint(0, C, (B,))
        lengths = None
        if options.get("lengths"):
            lo, hi = options["lengths"]
            lengths = torch.randint(lo, hi + 1, (B,))

        def step():
            opt.zero_grad()
            loss = loss_fn(model(x, lengths), y)
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
        rows = int(lengths.sum()) if lengths is not None else None
        print(f"{name:<17}{B / per_step:>11.1f}{flops(module, I, H, L, T, B, options, rows) / per_step / 1e9:>11.2f}"
              f"{per_step * 1e3:>11.2f}{done:>7d}{cpu_per_step * 1e3:>13.2f}")


if __name__ == "__main__":
    main()
