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

A second family in Tests/RNNCoreTests/Fixtures/options/ covers the model options of issue 15
(replayed by Tests/RNNCoreTests/OptionParityTests.swift): bidirectional layers, variable
lengths through pack_padded_sequence(enforce_sorted=False), token ids through nn.Embedding
(with padding_idx) or as one-hot floats (the Swift side gathers W_ih's columns), across every
cell, 1 and 2 layers, both heads, both losses and with or without an initial state, chosen as a
pairwise covering set (every value of each option meets every value of every other). Extra
tensors there: `lengths` (B) int32; token ids are stored in `x` as float32 values; per-step
class targets past a sequence's length are -100 (never read).

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


OPTIONS_OUT = os.path.join(ROOT, "Tests", "RNNCoreTests", "Fixtures", "options")
FACTORS = {
    "cell": list(CELLS), "bidirectional": [False, True], "layers": [1, 2], "lengths": [False, True],
    "input": ["float", "embedding", "onehot"], "head": ["last", "every"], "state": [False, True],
    "loss": ["cross_entropy", "mse"],
}


def pairwise_cases():
    """A greedy pairwise covering subset of the product of FACTORS (deterministic)."""
    names = list(FACTORS)
    full = [dict(zip(names, values)) for values in itertools.product(*FACTORS.values())]
    def pairs(case):
        return {(a, case[a], b, case[b]) for i, a in enumerate(names) for b in names[i + 1:]}
    uncovered = set().union(*(pairs(c) for c in full))
    chosen = []
    while uncovered:
        best = max(full, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    # Beyond pairs: every cell with each (bidirectional, lengths) pair on two layers, the
    # hardest combination, with the other options rotating.
    for i, (cell, bi, lengths) in enumerate(itertools.product(FACTORS["cell"], [False, True], [False, True])):
        chosen.append({"cell": cell, "bidirectional": bi, "layers": 2, "lengths": lengths,
                       "input": FACTORS["input"][i % 3], "head": FACTORS["head"][(i // 3) % 2],
                       "state": i % 2 == 1, "loss": FACTORS["loss"][(i // 2) % 2]})
    return chosen


class OptionModel(nn.Module):
    def __init__(self, cell, I, H, L, O, head, bidirectional, input_kind, V, E, pad):
        super().__init__()
        module, nonlinearity = CELLS[cell]
        kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
        self.input_kind, self.V = input_kind, V
        if input_kind == "embedding":
            self.embedding = nn.Embedding(V, E, padding_idx=pad)
        features = E if input_kind == "embedding" else (V if input_kind == "onehot" else I)
        self.rnn = getattr(nn, module)(features, H, L, batch_first=True, bidirectional=bidirectional, **kwargs)
        self.fc = nn.Linear((2 if bidirectional else 1) * H, O)
        self.head, self.bidirectional = head, bidirectional

    def forward(self, x, hidden=None, lengths=None):
        if self.input_kind == "embedding":
            x = self.embedding(x)
        elif self.input_kind == "onehot":
            x = nn.functional.one_hot(x, self.V).float()
        T = x.shape[1]
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, hidden = self.rnn(packed, hidden)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        else:
            out, hidden = self.rnn(x, hidden)
        if self.head == "every":
            return self.fc(out), hidden
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden
        feature = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
        return self.fc(feature), hidden


def option_loss(kind, head, output, targets, lengths, O):
    if head == "every" and lengths is not None:
        T = output.shape[1]
        mask = torch.arange(T)[None, :] < lengths[:, None]
        output, targets = output[mask], targets[mask]
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(output.reshape(-1, O), targets.reshape(-1).long())
    return nn.functional.mse_loss(output, targets)


def make_option_case(index, f):
    torch.manual_seed(5000 + index)
    cell, bidirectional, layers, head, loss = f["cell"], f["bidirectional"], f["layers"], f["head"], f["loss"]
    I, O, V, E = 3, 3, 7, 4
    H = 4 if layers == 1 else 3
    B, T = (4, 5) if f["lengths"] else (3, 4)
    D = 2 if bidirectional else 1
    pad = 0 if f["input"] == "embedding" else None
    model = OptionModel(cell, I, H, layers, O, head, bidirectional, f["input"], V, E, pad)
    if f["input"] == "float":
        x = torch.randn(B, T, I)
        x_stored = x
    else:
        x = torch.randint(0, V, (B, T))
        x[0, 0] = 0  # the padding id occurs
        x_stored = x.float()
    lengths = None
    tensors = {"x": tensor(x_stored)}
    if f["lengths"]:
        lengths = torch.randint(1, T + 1, (B,))
        lengths[1] = T
        lengths[2] = 1
        tensors["lengths"] = tensor(lengths, "int32")
    target_shape = (B,) if head == "last" else (B, T)
    if loss == "cross_entropy":
        targets = torch.randint(0, O, target_shape, dtype=torch.int32)
        if head == "every" and lengths is not None:
            for b in range(B):
                targets[b, int(lengths[b]):] = -100
    else:
        targets = torch.randn(*target_shape, O)
    tensors["targets"] = tensor(targets, "int32" if loss == "cross_entropy" else "float32")
    h0 = c0 = hidden = None
    if f["state"]:
        h0 = (0.5 * torch.randn(layers * D, B, H)).requires_grad_()
        tensors["h0"] = tensor(h0)
        hidden = h0
        if cell == "lstm":
            c0 = (0.5 * torch.randn(layers * D, B, H)).requires_grad_()
            tensors["c0"] = tensor(c0)
            hidden = (h0, c0)
    for key, value in model.state_dict().items():
        tensors["param." + key] = tensor(value)
    output, final = model(x, hidden, lengths)
    loss_value = option_loss(loss, head, output, targets, lengths, O)
    loss_value.backward()
    correct = 0
    if loss == "cross_entropy":
        scored, ids = output, targets
        if head == "every" and lengths is not None:
            mask = torch.arange(T)[None, :] < lengths[:, None]
            scored, ids = output[mask], targets[mask]
        correct = int((scored.reshape(-1, O).argmax(dim=1) == ids.reshape(-1).long()).sum())
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
    model.zero_grad()
    detached = None
    if f["state"]:
        detached = (h0.detach(), c0.detach()) if cell == "lstm" else h0.detach()
    adam = {"kind": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weightDecay": 0.0}
    trained = copy.deepcopy(model)
    opt = torch.optim.Adam(trained.parameters(), lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]),
                           eps=adam["eps"], weight_decay=adam["weightDecay"], foreach=False)
    for _ in range(3):
        opt.zero_grad()
        out, _ = trained(x, detached, lengths)
        option_loss(loss, head, out, targets, lengths, O).backward()
        opt.step()
    for key, value in trained.state_dict().items():
        tensors["adam." + key] = tensor(value)
    parts = [cell, "bi" if bidirectional else "uni", f"l{layers}", "len" if lengths is not None else "full",
             f["input"], head, "state" if f["state"] else "nostate", "ce" if loss == "cross_entropy" else "mse"]
    name = f"{index:02d}-" + "-".join(parts)
    config = {"cell": cell, "inputSize": I if f["input"] == "float" else V, "hiddenSize": H, "layers": layers,
              "outputSize": O, "head": head, "loss": loss}
    if f["input"] != "float":
        config["tokenInput"] = True
    if f["input"] == "embedding":
        config["embeddingSize"] = E
        config["paddingIndex"] = pad
    if bidirectional:
        config["bidirectional"] = True
    return name, {"name": name, "config": config, "batch": B, "steps": T, "loss": loss_value.item(),
                  "correct": correct, "adam": adam, "adamw": adam, "tensors": tensors}


def write_case(folder, name, case):
    path = os.path.join(folder, name + ".json")
    tensors = case.pop("tensors")
    text = json.dumps(case, indent=1, sort_keys=True)[:-2]
    lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(tensors.items())]
    text += ',\n "tensors": {\n' + ",\n".join(lines) + "\n }\n}\n"
    json.loads(text)
    with open(path, "w") as f:
        f.write(text)
    return os.path.getsize(path)


def main_options():
    os.makedirs(OPTIONS_OUT, exist_ok=True)
    for old in os.listdir(OPTIONS_OUT):
        if old.endswith(".json"):
            os.remove(os.path.join(OPTIONS_OUT, old))
    total = 0
    cases = pairwise_cases()
    for index, f in enumerate(cases):
        name, case = make_option_case(index, f)
        total += write_case(OPTIONS_OUT, name, case)
    print(f"wrote {len(cases)} option cases to {OPTIONS_OUT} ({total / 1024:.0f} KiB)")


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
    main_options()


if __name__ == "__main__":
    main()
