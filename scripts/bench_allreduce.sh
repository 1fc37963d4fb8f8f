#!/usr/bin/env bash
# All-reduce benchmark, Swift ring vs torch gloo, in one run: 2 processes each, loopback TCP.
# Usage: scripts/bench_allreduce.sh [--sizes 4096,...] [--volume BYTES]
# Prints both tables side by side with ratios (gloo time / swift time: > 1 means Swift is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=("$@")
swift build -c release --product rnn-bench >&2
BIN="$(swift build -c release --show-bin-path)/rnn-bench"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "load before: $(uptime)" >&2
python3 scripts/bench_gloo_allreduce.py --json "${ARGS[@]}" > "$TMP/gloo.jsonl"
"$BIN" allreduce --json "${ARGS[@]}" > "$TMP/swift.jsonl"
"$BIN" allreduce --json --algorithm ring "${ARGS[@]}" > "$TMP/ring.jsonl"
echo "load after:  $(uptime)" >&2
python3 - "$TMP" <<'PY'
import json, sys, os
d = sys.argv[1]
def load(name):
    return {r["bytes"]: r for r in map(json.loads, open(os.path.join(d, name)))}
g, s, r = load("gloo.jsonl"), load("swift.jsonl"), load("ring.jsonl")
def size(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"
print("all-reduce sum float32, 2 processes x 1 thread, loopback; ratio = gloo time / swift time")
print(f"{'size':>8} | {'gloo us':>9} {'GB/s':>6} | {'swift us':>9} {'GB/s':>6} {'ratio':>6} | {'ring us':>9} {'GB/s':>6} {'ratio':>6}")
for b in sorted(g):
    G, S, R = g[b], s.get(b), r.get(b)
    line = f"{size(b):>8} | {G['us_per_op']:9.1f} {G['busbw_gbps']:6.3f}"
    for X in (S, R):
        if X is None:
            line += " | (missing)"
            continue
        bad = "" if X["verified"] else " WRONG"
        line += f" | {X['us_per_op']:9.1f} {X['busbw_gbps']:6.3f} {G['us_per_op'] / X['us_per_op']:6.2f}{bad}"
    print(line)
PY
