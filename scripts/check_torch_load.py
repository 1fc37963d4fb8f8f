#!/usr/bin/env python3
"""Loads a checkpoint written by the Swift trainer into the tutorial-style PyTorch model.

Usage: scripts/check_torch_load.py CKPT.h5

The model class is the tutorial's: an nn.RNN/LSTM/GRU with batch_first=True and a Linear head.
Its sizes come from the checkpoint's `config` attribute (ModelConfig JSON). Loading the state
dict is the three h5py lines marked below; load_state_dict(strict=True) checks every name and
shape. (Comparing the forward output with the Swift model is to be added with the model.)
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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: check_torch_load.py CKPT.h5")
    main(sys.argv[1])
