#!/usr/bin/env python3
"""Loads a checkpoint written by the Swift trainer into the tutorial-style PyTorch model.

Usage: scripts/check_torch_load.py CKPT.h5 [OUTPUTS.h5]

OUTPUTS.h5 is what `rnn-coord predict --checkpoint CKPT.h5 --data FILE --outputs OUTPUTS.h5`
wrote: the inputs /X and the Swift model's outputs /outputs. The script runs the PyTorch model
on the same /X and compares; it exits non-zero when any output differs by more than
1e-5 + 1e-4 * |swift|.

The model class is the tutorial's: an nn.RNN/LSTM/GRU with batch_first=True and a Linear head.
Its sizes come from the checkpoint's `config` attribute (ModelConfig JSON). Loading the state
dict is the three h5py lines marked below; load_state_dict(strict=True) checks every name and
shape.
"""
import json
import sys

import h5py
import torch
from torch import nn


class RNNModel(nn.Module):
    def __init__(self, cell, input_size, hidden_size, layers, output_size, head="last"):
        super().__init__()
        kinds = {"rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
                 "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}
        module, extra = kinds[cell]
        self.rnn = module(input_size, hidden_size, layers, batch_first=True, **extra)
        self.fc = nn.Linear(hidden_size, output_size)
        self.head = head

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1, :]) if self.head == "last" else self.fc(out)


def find_model_config(config):
    """The ModelConfig inside the run's config JSON (top level or under a 'model' key)."""
    if "cell" in config:
        return config
    for value in config.values():
        if isinstance(value, dict):
            found = find_model_config(value)
            if found:
                return found
    return None


def main(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "rnn-trainer-checkpoint", f"{path}: not a trainer checkpoint"
        config = find_model_config(json.loads(f.attrs["config"]))
    model = RNNModel(config["cell"], config["inputSize"], config["hiddenSize"], config["layers"],
                     config["outputSize"], config.get("head", "last"))
    # --- the three lines of h5py ---
    with h5py.File(path, "r") as f:
        state = {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}
    model.load_state_dict(state)
    # -------------------------------
    print(f"{path}: loaded {len(state)} tensors into {model.rnn.__class__.__name__}"
          f"(I={config['inputSize']}, H={config['hiddenSize']}, L={config['layers']}) + Linear(O={config['outputSize']})")
    return model


def compare(model, outputs_path):
    """Runs `model` on the inputs Swift saw and compares with Swift's outputs."""
    with h5py.File(outputs_path, "r") as f:
        x = torch.from_numpy(f["X"][()])
        expected = torch.from_numpy(f["outputs"][()])
    with torch.no_grad():
        got = model(x)
    if tuple(got.shape) != tuple(expected.shape):
        sys.exit(f"{outputs_path}: PyTorch outputs have shape {tuple(got.shape)}, Swift's {tuple(expected.shape)}")
    diff = (got - expected).abs()
    bound = 1e-5 + 1e-4 * expected.abs()
    worst = (diff / bound).max().item()
    agree = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    print(f"{outputs_path}: {x.shape[0]} sequences, max |torch - swift| = {diff.max().item():.3g}, "
          f"max relative = {(diff / expected.abs().clamp_min(1e-12)).max().item():.3g}, "
          f"worst / tolerance = {worst:.3g}, argmax agreement = {agree * 100:.2f}%")
    if worst > 1:
        sys.exit("outputs differ beyond tolerance")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: check_torch_load.py CKPT.h5 [OUTPUTS.h5]")
    loaded = main(sys.argv[1])
    if len(sys.argv) == 3:
        compare(loaded, sys.argv[2])
