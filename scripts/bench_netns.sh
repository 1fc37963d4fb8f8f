#!/usr/bin/env bash
# All-reduce over test hosts in network namespaces (scripts/netns-hosts.sh, every link shaped
# to RATE both ways with tbf): float32 sum of 4 KiB .. 64 MiB at W = 2, 4, 8 processes, one per
# host. Per round and per W, in this order: ours with the automatic choice (for W >= 3 the
# crossover measured over the ring first, as a training run does: AllReduceCrossover.swift;
# the measured thresholds are printed), ours with the ring alone and with the documented fixed
# crossover (sizes up to 1 MiB: the baselines of the small-buffer target and of the
# measurement), and torch.distributed gloo (MASTER_ADDR on host 0, scripts/bench_gloo_netns.py). Prints time per op (slowest rank), bus bandwidth
# 2(W-1)/W * S / t, and the fraction of the bound 2(W-1)/W * S / B (= bus bandwidth / B), as
# medians over ROUNDS with the min-max of the rounds; raw JSON lines go to OUT.
# Needs root, a release build and torch (pip install torch).
#   scripts/bench_netns.sh [--rate 1gbit] [--rounds 3] [--worlds 2,4,8] [--volume BYTES] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=1gbit rounds=3 worlds=2,4,8 volume=$((128 << 20)) out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --worlds) worlds=$2; shift 2 ;;
    --volume) volume=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench_netns.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
bin=.build/release
[ -x "$bin/rnn-bench" ] || { echo "build first: swift build -c release" >&2; exit 1; }
python3 -c 'import torch.distributed' 2>/dev/null || { echo "needs torch: pip install torch" >&2; exit 1; }
sizes=4096,16384,65536,262144,1048576,4194304,16777216,67108864
small=4096,16384,65536,262144,1048576
prefix=sc$$
prefix=${prefix:0:8}
subnet=10.78.$((RANDOM % 200 + 20))
maxw=$(tr ',' '\n' <<<"$worlds" | sort -n | tail -1)
work=$(mktemp -d)
out=${out:-$work/results.jsonl}
: >"$out"
scripts/netns-hosts.sh up "$maxw" --rate "$rate" --prefix "$prefix" --subnet "$subnet" >/dev/null
trap 'scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null; rm -rf "$work"' EXIT
tag() { python3 -c 'import json,sys
for l in sys.stdin:
    l=l.strip()
    if l.startswith("{"):
        r=json.loads(l); r["round"]=int(sys.argv[1]); print(json.dumps(r))' "$1"; }
gloo() { # gloo W ROUND
  local w=$1 port=$((30000 + RANDOM % 20000)) pids=()
  for r in $(seq 0 $((w - 1))); do
    ip netns exec "${prefix}$r" python3 scripts/bench_gloo_netns.py --rank "$r" --world "$w" --master "$subnet.1" \
      --port "$port" --sizes "$sizes" --volume "$volume" >"$work/gloo-$r.jsonl" &
    pids+=($!)
  done
  wait "${pids[@]}"
  python3 scripts/bench_gloo_netns.py --world "$w" --aggregate $(seq -f "$work/gloo-%g.jsonl" 0 $((w - 1))) | tag "$2" >>"$out"
}
echo "all-reduce over test hosts, links shaped to $rate both ways, W = $worlds, $rounds rounds, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for w in ${worlds//,/ }; do
    ip netns exec "${prefix}0" "$bin/rnn-bench" allreduce --world "$w" --netns "$prefix" --subnet "$subnet" \
      --sizes "$sizes" --volume "$volume" --json 2>"$work/crossover" | tag "$round" >>"$out"
    if [ -s "$work/crossover" ]; then echo "round $round W=$w: $(cat "$work/crossover")" | tee -a "$work/crossovers" >&2; fi
    ip netns exec "${prefix}0" "$bin/rnn-bench" allreduce --world "$w" --netns "$prefix" --subnet "$subnet" \
      --algorithm ring --sizes "$small" --volume "$volume" --json | tag "$round" >>"$out"
    if [ "$w" -ge 3 ]; then
      ip netns exec "${prefix}0" "$bin/rnn-bench" allreduce --world "$w" --netns "$prefix" --subnet "$subnet" \
        --crossover fixed --sizes "$small" --volume "$volume" --json | tag "$round" >>"$out"
    fi
    gloo "$w" "$round"
    echo "round $round W=$w done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
done
[ -s "$work/crossovers" ] && { echo; echo "measured crossovers:"; cat "$work/crossovers"; }
python3 - "$out" "$rate" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rate = sys.argv[2]
unit = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1}
B = next(float(rate[:-len(u)]) * m for u, m in unit.items() if rate.endswith(u)) / 8  # bytes/s
def med(xs): return statistics.median(xs)
def cell(xs):
    return f"{med(xs):,.0f} [{min(xs):,.0f}-{max(xs):,.0f}]" if med(xs) >= 100 else f"{med(xs):.1f} [{min(xs):.1f}-{max(xs):.1f}]"
def t(impl, w, s): return [r["us_per_op"] for r in rows if r["impl"] == impl and r["world"] == w and r["bytes"] == s]
bad = [r for r in rows if not r.get("verified", True)]
if bad: print(f"WRONG RESULTS in {len(bad)} rows")
def size(s): return f"{s >> 20} MiB" if s >= 1 << 20 else f"{s >> 10} KiB"
for w in sorted({r["world"] for r in rows}):
    print(f"\nW = {w}: us per op, median [min-max] of rounds; busbw GB/s and fraction of the bound 2(W-1)/W*S/B (B = {B/1e6:.0f} MB/s) from the medians")
    print("| size | ours (auto) | busbw | of bound | gloo | busbw | of bound | gloo / ours | ring alone | ring / ours | fixed crossover | fixed / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sorted({r["bytes"] for r in rows if r["world"] == w}):
        o, g, ring, fixed = t("swift-auto", w, s), t("gloo", w, s), t("swift-ring", w, s), t("swift-auto-fixed", w, s)
        if not o: continue
        f = 2 * (w - 1) / w * s
        bo = f / (med(o) * 1e-6)
        line = f"| {size(s)} | {cell(o)} | {bo / 1e9:.3f} | {bo / B:.0%} |"
        if g:
            bg = f / (med(g) * 1e-6)
            ratios = [a / b for a, b in zip(sorted(g), sorted(o))]
            line += f" {cell(g)} | {bg / 1e9:.3f} | {bg / B:.0%} | {med(g) / med(o):.2f}x |"
        else:
            line += " | | | |"
        line += f" {cell(ring)} | {med(ring) / med(o):.2f}x |" if ring else " | |"
        line += f" {cell(fixed)} | {med(fixed) / med(o):.2f}x |" if fixed else " | |"
        print(line)
PY
