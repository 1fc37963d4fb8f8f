#!/usr/bin/env bash
# Ring against halving-doubling and recursive doubling, W processes on loopback TCP:
#   scripts/bench_allreduce_algorithms.sh [ROUNDS] [WORLDS]      # default: 3 rounds, W = 4 8
# Every round runs each algorithm once per W (interleaved, so load drifts hit all alike); the
# table holds each cell's median time per op (the slowest rank's) over the rounds, and the
# ring's time divided by the algorithm's (> 1: faster than the ring).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
worlds=${2:-"4 8"}
sizes=${SIZES:-4096,16384,65536,262144,1048576,4194304}
bench=.build/release/rnn-bench
[ -x "$bench" ] || { echo "build first: swift build -c release" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
  for w in $worlds; do
    for alg in ring halving-doubling recursive-doubling auto; do
      "$bench" allreduce --world "$w" --algorithm "$alg" --sizes "$sizes" --volume $((16 << 20)) --json |
        grep '^{' | sed "s/^{/{\"round\":$round,\"alg\":\"$alg\",/" >>"$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["verified"] for r in rows), "a result was wrong"
cell = {}
for r in rows:
    cell.setdefault((r["world"], r["bytes"], r["alg"]), []).append(r["us_per_op"])
algs = ["ring", "halving-doubling", "recursive-doubling", "auto"]
for w in sorted({k[0] for k in cell}):
    print(f"\nW = {w}, loopback TCP, median us/op over {len(next(iter(cell.values())))} rounds (ring time / this)")
    print("| size | " + " | ".join(algs) + " |")
    print("|---|" + "---|" * len(algs))
    for b in sorted({k[1] for k in cell if k[0] == w}):
        ring = statistics.median(cell[(w, b, "ring")])
        parts = []
        for a in algs:
            m = statistics.median(cell[(w, b, a)])
            parts.append(f"{m:,.0f}" + ("" if a == "ring" else f" ({ring / m:.2f}x)"))
        label = f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"
        print(f"| {label} | " + " | ".join(parts) + " |")
PY
