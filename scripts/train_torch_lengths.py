#!/usr/bin/env python3
"""PyTorch reference for the variable-length token classifier of issue 15: trains
nn.Embedding + nn.LSTM(bidirectional) + nn.Linear on cat(h_n[-2], h_n[-1]) with
pack_padded_sequence on the same HDF5 files `rnn-coord start` trains on, with the same
hyperparameters, and prints the validation accuracy after each epoch (to compare with ours).

Usage: scripts/train_torch_lengths.py TRAIN.h5 VAL.h5 [--hidden 64 --embedding 32 --epochs 6
       --lr 0.005 --batch 64 --seed 3]
"""
import argparse

import h5py
import torch
from torch import nn


def load(path):
    with h5py.File(path, "r") as f:
        return (torch.from_numpy(f["X"][()]).long(), torch.from_numpy(f["Y"][()]).long(),
                torch.from_numpy(f["lengths"][()]).long(), int(f["X"].attrs["vocab_size"]))


class Model(nn.Module):
    def __init__(self, V, E, H, O, padding_idx):
        super().__init__()
        self.embedding = nn.Embedding(V, E, padding_idx=padding_idx)
        self.rnn = nn.LSTM(E, H, 1, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * H, O)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(x), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("train")
    p.add_argument("val")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embedding", type=int, default=32)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    x, y, lengths, V = load(a.train)
    vx, vy, vlengths, _ = load(a.val)
    model = Model(V, a.embedding, a.hidden, int(y.max()) + 1, 0)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(x))
        for s in range(0, len(x), a.batch):
            rows = order[s:s + a.batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[rows], lengths[rows]), y[rows])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(vx, vlengths)
            val_loss = nn.functional.cross_entropy(out, vy).item()
            accuracy = (out.argmax(1) == vy).float().mean().item()
        print(f"Epoch [{epoch + 1}/{a.epochs}], Val Loss: {val_loss:.4f}, Val Accuracy: {accuracy * 100:.2f}%")


if __name__ == "__main__":
    main()
