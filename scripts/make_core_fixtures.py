#!/usr/bin/env python3
"""Write the PyTorch parity fixtures replayed by Tests/RNNCoreTests/ParityTests.swift.

One JSON file per case in Tests/RNNCoreTests/Fixtures/core/, for every
cell (rnn_tanh, rnn_relu, lstm, gru) x head (last, every) x layers (1, 2) x initial state
(with, without). Each file holds the model config (same keys as Swift's ModelConfig), the
optimizer configs (same keys as OptimizerConfig) and named tensors, each as
{"shape": [...], "dtype": "float32"|"int32", "data": base64 of the little-endian values}:

  param.<key>    the state_dict of  rnn = nn.<RNN|LSTM|GRU>(I, H, L, batch_first=True),
                 fc = nn.Linear(H, O)  (PyTorch's own initialisation, seeded)
  x (B, T, I), targets ((B) / (B, T) int32 class ids, or (B, O) / (B, T, O) float),
  h0, c0 (L, B, H) when the case has an initial state
  output         the head's output (B, O) or (B, T, O)
  hn, cn         final states (L, B, H)
  grad.<key>     gradients of the mean loss; grad.h0, grad.c0 for the initial state
  adam.<key>     parameters after 3 steps of torch.optim.Adam on the same batch
  adamw.<key>    parameters after 3 steps of torch.optim.AdamW on the same batch
The loss value and the count of correct arg-max predictions are plain numbers.
Cross-entropy and MSE alternate between cases; 2-layer cases clip the gradient norm.

Run: python3 scripts/make_core_fixtures.py   (torch only needed to regenerate)
"""
import base64
import copy
import itertools
import json
import os

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "RNNCoreTests", "Fixtures", "core")

CELLS = {"rnn_tanh": ("RNN", "tanh"), "rnn_relu": ("RNN", "relu"), "lstm": ("LSTM", None), "gru": ("GRU", None)}


def tensor(t, dtype="float32"):
    arr = t.detach().cpu().numpy()
    arr = arr.astype("<i4" if dtype == "int32" else "<f4")
    return {"shape": list(arr.shape), "dtype": dtype, "data": base64.b64encode(arr.tobytes()).decode("ascii")}


class Model(nn.Module):
    def __init__(self, cell, I, H, L, O, head):
        super().__init__()
        module, nonlinearity = CELLS[cell]
        kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
        self.rnn = getattr(nn, module)(I, H, L, batch_first=True, **kwargs)
        self.fc = nn.Linear(H, O)
        self.head = head

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(x, hidden)
        out = out[:, -1, :] if self.head == "last" else out
        return self.fc(out), hidden


def loss_of(kind, output, targets, O):
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(output.reshape(-1, O), targets.reshape(-1).long())
    return nn.functional.mse_loss(output, targets)


def run_optimizer(model, make_opt, clip, x, targets, hidden, kind, O):
    model = copy.deepcopy(model)
    opt = make_opt(model.parameters())
    for _ in range(3):
        opt.zero_grad()
        output, _ = model(x, hidden)
        loss_of(kind, output, targets, O).backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    return model


def make_case(index, cell, head, layers, with_state):
    torch.manual_seed(1000 + index)
    I, O = 3, 3
    H = 4 if layers == 1 else 5
    T = 3 if with_state else 4
    B = 2 if head == "every" else 3
    loss = "mse" if (layers == 2) != with_state else "cross_entropy"
    model = Model(cell, I, H, layers, O, head)
    x = torch.randn(B, T, I)
    target_shape = (B,) if head == "last" else (B, T)
    if loss == "cross_entropy":
        targets = torch.randint(0, O, target_shape, dtype=torch.int32)
    else:
        targets = torch.randn(*target_shape, O)
    tensors = {"x": tensor(x), "targets": tensor(targets, "int32" if loss == "cross_entropy" else "float32")}
    h0 = c0 = hidden = None
    if with_state:
        h0 = (0.5 * torch.randn(layers, B, H)).requires_grad_()
        tensors["h0"] = tensor(h0)
        hidden = h0
        if cell == "lstm":
            c0 = (0.5 * torch.randn(layers, B, H)).requires_grad_()
            tensors["c0"] = tensor(c0)
            hidden = (h0, c0)
    for key, value in model.state_dict().items():
        tensors["param." + key] = tensor(value)

    output, final = model(x, hidden)
    loss_value = loss_of(loss, output, targets, O)
    loss_value.backward()
    correct = 0
    if loss == "cross_entropy":
        correct = int((output.reshape(-1, O).argmax(dim=1) == targets.reshape(-1).long()).sum())
    tensors["output"] = tensor(output)
    if cell == "lstm":
        tensors["hn"], tensors["cn"] = tensor(final[0]), tensor(final[1])
    else:
        tensors["hn"] = tensor(final)
    for key, p in model.named_parameters():
        tensors["grad." + key] = tensor(p.grad)
    if h0 is not None:
        tensors["grad.h0"] = tensor(h0.grad)
    if c0 is not None:
        tensors["grad.c0"] = tensor(c0.grad)

    clip = None
    if layers == 2:
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
        clip = round(0.5 * norm, 6)
    model.zero_grad()
    detached = None
    if with_state:
        detached = (h0.detach(), c0.detach()) if cell == "lstm" else h0.detach()
    adam = {"kind": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weightDecay": 0.01}
    adamw = {"kind": "adamw", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "weightDecay": 0.1}
    if clip is not None:
        adam["clipNorm"] = clip
        adamw["clipNorm"] = clip
    trained = run_optimizer(model, lambda ps: torch.optim.Adam(
        ps, lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]), eps=adam["eps"],
        weight_decay=adam["weightDecay"], foreach=False), clip, x, targets, detached, loss, O)
    for key, value in trained.state_dict().items():
        tensors["adam." + key] = tensor(value)
    trained = run_optimizer(model, lambda ps: torch.optim.AdamW(
        ps, lr=adamw["lr"], betas=(adamw["beta1"], adamw["beta2"]), eps=adamw["eps"],
        weight_decay=adamw["weightDecay"], foreach=False), clip, x, targets, detached, loss, O)
    for key, value in trained.state_dict().items():
        tensors["adamw." + key] = tensor(value)

    name = f"{cell}-{head}-l{layers}-{'state' if with_state else 'nostate'}"
    return name, {
        "name": name,
        "config": {"cell": cell, "inputSize": I, "hiddenSize": H, "layers": layers, "outputSize": O,
                   "head": head, "loss": loss},
        "batch": B, "steps": T,
        "loss": loss_value.item(), "correct": correct,
        "adam": adam, "adamw": adamw,
        "tensors": tensors,
    }


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    cases = itertools.product(CELLS, ["last", "every"], [1, 2], [False, True])
    total = 0
    for index, (cell, head, layers, with_state) in enumerate(cases):
        name, case = make_case(index, cell, head, layers, with_state)
        path = os.path.join(OUT, name + ".json")
        tensors = case.pop("tensors")
        text = json.dumps(case, indent=1, sort_keys=True)[:-2]
        lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(tensors.items())]
        text += ',\n "tensors": {\n' + ",\n".join(lines) + "\n }\n}\n"
        json.loads(text)
        with open(path, "w") as f:
            f.write(text)
        total += os.path.getsize(path)
    print(f"wrote {index + 1} cases to {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
