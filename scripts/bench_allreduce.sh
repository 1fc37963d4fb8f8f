#!/usr/bin/env bash
# All-reduce benchmark, Swift (RingAllReduce over ZeroMQ) vs torch gloo, in one run:
# 2 processes x 1 thread each, loopback TCP, float32 sum, 4 KiB .. 64 MiB.
# The machine is shared, so the implementations run interleaved for ROUNDS rounds and the
# table shows the median time per op of each; ratio = gloo time / swift time (> 1: Swift faster).
# Usage: scripts/bench_allreduce.sh [ROUNDS] [extra rnn-bench/gloo args, e.g. --sizes 4096,1048576]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
shift || true
ARGS=("$@")
swift build -c release --product rnn-bench >&2
BIN="$(swift build -c release --show-bin-path)/rnn-bench"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "load before: $(uptime)" >&2
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  python3 scripts/bench_gloo_allreduce.py --json "${ARGS[@]}" >> "$TMP/all.jsonl"
  "$BIN" allreduce --json "${ARGS[@]}" >> "$TMP/all.jsonl"
  "$BIN" allreduce --json --algorithm ring "${ARGS[@]}" >> "$TMP/all.jsonl"
  "$BIN" allreduce --json --io-threads 2 "${ARGS[@]}" | sed 's/"swift-auto"/"swift-auto-io2"/' >> "$TMP/all.jsonl"
done
echo "load after:  $(uptime)" >&2
python3 - "$TMP/all.jsonl" "$ROUNDS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault((r["impl"], r["bytes"]), []).append(r)
def med(impl, b):
    rs = by.get((impl, b))
    if not rs:
        return None
    us = statistics.median(r["us_per_op"] for r in rs)
    return us, 2 * (rs[0]["world"] - 1) / rs[0]["world"] * b / (us * 1e-6) / 1e9, all(r["verified"] for r in rs)
def size(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"
print(f"all-reduce sum float32, 2 processes x 1 thread, loopback TCP, median of {sys.argv[2]} interleaved rounds")
print("ratio = gloo time / swift time (> 1: Swift faster); bus bw = 2(W-1)/W * bytes / time")
print("swift = exchange path for W=2 (default), ring = reduce-scatter + all-gather, io2 = default with 2 ZeroMQ I/O threads")
print(f"{'size':>8} | {'gloo us':>9} {'GB/s':>6} | {'swift us':>9} {'GB/s':>6} {'ratio':>6} | {'ring us':>9} {'GB/s':>6} {'ratio':>6} | {'io2 us':>9} {'GB/s':>6} {'ratio':>6}")
for b in sorted({k[1] for k in by if k[0] == "gloo"}):
    G = med("gloo", b)
    line = f"{size(b):>8} | {G[0]:9.1f} {G[1]:6.3f}"
    for impl in ("swift-auto", "swift-ring", "swift-auto-io2"):
        X = med(impl, b)
        if X is None:
            line += " | (missing)"
            continue
        line += f" | {X[0]:9.1f} {X[1]:6.3f} {G[0] / X[0]:6.2f}" + ("" if X[2] else " WRONG")
    print(line)
# CPU time of both ranks together (all threads) per op: what the machine pays, and less
# sensitive than wall time to other load on a shared machine.
def cpu(impl, b):
    rs = by.get((impl, b))
    if not rs or "cpu_us_per_op" not in rs[0]:
        return None
    return statistics.median(r["cpu_us_per_op"] for r in rs)
print()
print("CPU us per op (both ranks, all threads; median) and ratio gloo / swift")
print(f"{'size':>8} | {'gloo':>9} | {'swift':>9} {'ratio':>6} | {'ring':>9} {'ratio':>6} | {'io2':>9} {'ratio':>6}")
for b in sorted({k[1] for k in by if k[0] == "gloo"}):
    G = cpu("gloo", b)
    if G is None:
        continue
    line = f"{size(b):>8} | {G:9.1f}"
    for impl in ("swift-auto", "swift-ring", "swift-auto-io2"):
        X = cpu(impl, b)
        line += " | (missing)" if X is None else f" | {X:9.1f} {G / X:6.2f}"
    print(line)
PY
