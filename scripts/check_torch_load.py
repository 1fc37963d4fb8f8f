#!/usr/bin/env python3
"""Loads a checkpoint written by the Swift trainer into the tutorial-style PyTorch model.

Usage: scripts/check_torch_load.py CKPT.h5 [OUTPUTS.h5]

OUTPUTS.h5 is what `rnn-coord predict --checkpoint CKPT.h5 --data FILE --outputs OUTPUTS.h5`
wrote: the inputs /X (float features, or int64 token ids), /lengths when the data has them, and
the Swift model's outputs /outputs. The script runs the PyTorch model on the same /X (through
pack_padded_sequence(..., enforce_sorted=False) when there are lengths) and compares; it exits
non-zero when any output differs by more than 1e-5 + 1e-4 * |swift|.

The model is the tutorial's, with the options of issue 15: an optional nn.Embedding(V, E,
padding_idx=P), an nn.RNN/LSTM/GRU with batch_first=True (bidirectional, dropout between
layers), and a Linear head on the last step (cat(h_n[-2], h_n[-1]) when bidirectional) or on
every step. Token ids without an embedding are one-hot floats. Its sizes come from the
checkpoint's `config` attribute (ModelConfig JSON). Loading the state dict is the three h5py
lines marked below; load_state_dict(strict=True) checks every name and shape.
"""
import json
import sys

import h5py
import torch
from torch import nn


class RNNModel(nn.Module):
    def __init__(self, cell, input_size, hidden_size, layers, output_size, head="last", embedding=None,
                 padding_idx=None, bidirectional=False, dropout=0.0, token_input=False):
        super().__init__()
        kinds = {"rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
                 "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}
        module, extra = kinds[cell]
        self.vocab = input_size if token_input else None
        self.embedding = nn.Embedding(input_size, embedding, padding_idx=padding_idx) if embedding else None
        features = embedding or input_size
        self.rnn = module(features, hidden_size, layers, batch_first=True, bidirectional=bidirectional,
                          dropout=dropout, **extra)
        self.fc = nn.Linear((2 if bidirectional else 1) * hidden_size, output_size)
        self.head = head
        self.bidirectional = bidirectional

    def forward(self, x, lengths=None):
        if self.embedding is not None:
            x = self.embedding(x)
        elif self.vocab is not None:
            x = nn.functional.one_hot(x, self.vocab).float()
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, hidden = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, hidden = self.rnn(x)
        if self.head != "last":
            return self.fc(out)
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1])


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
                     config["outputSize"], config.get("head", "last"), config.get("embeddingSize"),
                     config.get("paddingIndex"), config.get("bidirectional", False), config.get("dropout", 0.0),
                     config.get("tokenInput", False))
    # --- the three lines of h5py ---
    with h5py.File(path, "r") as f:
        state = {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}
    model.load_state_dict(state)
    # -------------------------------
    print(f"{path}: loaded {len(state)} tensors into "
          + (f"Embedding(V={config['inputSize']}, E={config['embeddingSize']}) + " if config.get("embeddingSize") else "")
          + f"{model.rnn.__class__.__name__}(I={config['inputSize']}, H={config['hiddenSize']}, L={config['layers']}"
          + (", bidirectional" if config.get("bidirectional") else "")
          + (f", dropout={config['dropout']}" if config.get("dropout") else "")
          + f") + Linear(O={config['outputSize']})")
    model.eval()  # no dropout at inference
    return model


def compare(model, outputs_path):
    """Runs `model` on the inputs Swift saw and compares with Swift's outputs."""
    with h5py.File(outputs_path, "r") as f:
        x = torch.from_numpy(f["X"][()])
        lengths = torch.from_numpy(f["lengths"][()]) if "lengths" in f else None
        expected = torch.from_numpy(f["outputs"][()])
    if not torch.is_floating_point(x):
        x = x.long()
    with torch.no_grad():
        got = model(x, lengths)
    if tuple(got.shape) != tuple(expected.shape):
        sys.exit(f"{outputs_path}: PyTorch outputs have shape {tuple(got.shape)}, Swift's {tuple(expected.shape)}")
    diff = (got - expected).abs()
    bound = 1e-5 + 1e-4 * expected.abs()
    worst = (diff / bound).max().item()
    agree = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    print(f"{outputs_path}: {x.shape[0]} sequences" + (" (packed by their lengths)" if lengths is not None else "")
          + f", max |torch - swift| = {diff.max().item():.3g}, "
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
