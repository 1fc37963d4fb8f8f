#!/usr/bin/env python3
"""Write the greedy-generation fixture replayed by Tests/RNNReportTests/GenerationTests.swift.

The checkpoint Tests/RNNReportTests/Fixtures/generate/char-lstm.h5 was trained by this project:
  rnn-coord start --data datasets/text/sonnets.h5 --cell lstm --hidden 16 --batch-size 32 \
    --epochs 4 --lr 0.02 --seed 7 --shuffle --local-workers 1 --bind 'tcp://127.0.0.1:*' \
    --checkpoint-dir fx --no-plot          (then fx/ckpt-188.h5 copied)
This script loads its /model tensors into nn.LSTM + nn.Linear (the tutorial's model), feeds the
prompt one-hot, then takes the arg-max character LENGTH times, carrying `hidden`, and writes
greedy.json: the vocabulary (from sonnets.h5), the prompt, PyTorch's continuation and the
smallest gap between the two largest logits on the way (how safe the comparison is).

Run: python3 scripts/make_generate_fixture.py   (torch only needed to regenerate)
"""
import json
import os

import h5py
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "Tests", "RNNReportTests", "Fixtures", "generate")
PROMPT = "Shall I compare thee"
LENGTH = 200


def main():
    with h5py.File(os.path.join(ROOT, "datasets", "text", "sonnets.h5"), "r") as f:
        vocab = f.attrs["vocab"]
        vocab = vocab.decode() if isinstance(vocab, bytes) else str(vocab)
    with h5py.File(os.path.join(FOLDER, "char-lstm.h5"), "r") as f:
        config = json.loads(f.attrs["config"])["model"]
        state = {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}
    assert config["cell"] == "lstm" and config["head"] == "every", config
    V, H, L = config["inputSize"], config["hiddenSize"], config["layers"]
    rnn = nn.LSTM(V, H, L, batch_first=True)
    fc = nn.Linear(H, config["outputSize"])
    rnn.load_state_dict({k[len("rnn."):]: v for k, v in state.items() if k.startswith("rnn.")})
    fc.load_state_dict({k[len("fc."):]: v for k, v in state.items() if k.startswith("fc.")})
    index = {c: i for i, c in enumerate(vocab)}

    def one_hot(ids):
        x = torch.zeros(1, len(ids), V)
        for t, i in enumerate(ids):
            x[0, t, i] = 1
        return x

    out_chars = []
    min_gap = float("inf")
    with torch.no_grad():
        out, hidden = rnn(one_hot([index[c] for c in PROMPT]))
        logits = fc(out[0, -1])
        for _ in range(LENGTH):
            top2 = torch.topk(logits, 2).values
            min_gap = min(min_gap, float(top2[0] - top2[1]))
            nxt = int(torch.argmax(logits))
            out_chars.append(vocab[nxt])
            out, hidden = rnn(one_hot([nxt]), hidden)
            logits = fc(out[0, -1])
    data = {"torch": torch.__version__, "vocab": vocab, "prompt": PROMPT, "length": LENGTH,
            "greedy": "".join(out_chars), "minTop2Gap": min_gap}
    with open(os.path.join(FOLDER, "greedy.json"), "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"greedy continuation of {PROMPT!r}: {data['greedy'][:60]!r}..., smallest top-2 logit gap {min_gap:.2e}")


if __name__ == "__main__":
    main()
