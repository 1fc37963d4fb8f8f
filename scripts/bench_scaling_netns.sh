#!/usr/bin/env bash
# The scaling model against real training (docs/SCALING.md): W = 2 workers (one per core) on
# test hosts 1 and 2, the coordinator on host 0 (scripts/netns-hosts.sh, tbf both ways), one
# configuration of rnn-bench (default lstm-med: batch 64, 32 rows per worker) on each RATE.
# Per round: one worker alone (loopback, 64 rows) gives the per-row compute (median compute_s
# / 64); per rate, `rnn-bench scaling --compute-ms` predicts samples/s from it and alpha/beta (alpha fitted on the W = 2 rows of FIT, a
# scripts/bench_netns.sh --out file; beta = 8 / rate); then the real run's median samples/s,
# compute_s and reduce_s per step (metrics.jsonl, first 5 steps dropped; samples/s = 64 / the median step). Needs root and a
# release build.
#   scripts/bench_scaling_netns.sh --fit FILE [--rates 1gbit,100mbit] [--rounds 3] [--config lstm-med] [--steps 40]
set -euo pipefail
cd "$(dirname "$0")/.."
fit="" rates=1gbit,100mbit rounds=3 config=lstm-med steps=40
while [ $# -gt 0 ]; do
  case "$1" in
    --fit) fit=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) echo "bench_scaling_netns.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -n "$fit" ] || { echo "needs --fit FILE (scripts/bench_netns.sh --out FILE)" >&2; exit 2; }
bin=.build/release
[ -x "$bin/rnn-coord" ] || { echo "build first: swift build -c release" >&2; exit 1; }
case "$config" in
  lstm-med) cell=lstm t=50 i=64 h=256 layers=1 ;;
  gru-med) cell=gru t=50 i=64 h=256 layers=1 ;;
  lstm-large) cell=lstm t=100 i=128 h=512 layers=2 ;;
  *) echo "config $config: lstm-med, gru-med or lstm-large" >&2; exit 2 ;;
esac
prefix=st$$
prefix=${prefix:0:8}
subnet=10.79.$((RANDOM % 200 + 20))
work=$(mktemp -d)
trap 'scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$bin/rnn-data" make random --output "$work/data.h5" -n $((64 * 20)) -t "$t" -i "$i" -c 10 --seed 3 >/dev/null
gbit() { python3 -c 'import sys; r=sys.argv[1]; u={"mbit":1e-3,"gbit":1.0}; print(next(float(r[:-4])*m for k,m in u.items() if r.endswith(k)))' "$1"; }
echo "W=2 training of $config (batch 64: 32 rows per worker) on test hosts, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| round | link | predicted samples/s | measured samples/s | error | model compute ms | measured compute_s ms | model all-reduce ms | measured reduce_s ms |"
echo "|---|---|---|---|---|---|---|---|---|"
compute_ms_per_row() { # one worker on loopback, 64 rows per step: median compute_s / 64 (data read, forward, backward, Adam)
  local dir=$work/w1-$1
  "$bin/rnn-coord" start --data "$work/data.h5" --cell "$cell" --hidden "$h" --layers "$layers" --batch-size 64 \
    --max-steps "$steps" --lr 0.001 --seed 1 --local-workers 1 --bind 'tcp://127.0.0.1:*' --checkpoint-dir "$dir" --quiet --no-plot >/dev/null
  python3 -c 'import json,statistics,sys
r=[json.loads(l) for l in open(sys.argv[1])]; r=[x["compute_s"] for x in r if x.get("kind")=="step"][5:]
print(statistics.median(r)/64*1e3)' "$dir/metrics.jsonl"
}
for round in $(seq "$rounds"); do
  # The model's per-row compute: a real one-worker run of the same configuration in this round
  # (rnn-bench scaling's in-process step leaves out the data read and the worker's own overheads).
  cms=$(compute_ms_per_row "$round")
  for rate in ${rates//,/ }; do
    scripts/netns-hosts.sh up 3 --rate "$rate" --prefix "$prefix" --subnet "$subnet" >/dev/null
    g=$(gbit "$rate")
    pred=$("$bin/rnn-bench" scaling --fit "$fit" --config "$config" --rows 32 --worlds 2 --links "$g" --compute-ms "$config=$cms")
    dir=$work/run-$round-$rate port=$((20000 + RANDOM % 20000))
    ip netns exec "${prefix}0" "$bin/rnn-coord" start --data "$work/data.h5" --cell "$cell" --hidden "$h" --layers "$layers" \
      --batch-size 64 --max-steps "$steps" --lr 0.001 --seed 1 --workers 2 --bind "tcp://$subnet.1:$port" \
      --insecure --token "scal-$$" --checkpoint-dir "$dir" --quiet --no-plot &
    coord=$!
    sleep 0.5
    for hh in 1 2; do
      ip netns exec "${prefix}$hh" "$bin/rnn-worker" --connect "tcp://$subnet.1:$port" --token "scal-$$" --quiet \
        --advertise-host "$subnet.$((hh + 1))" &
    done
    wait "$coord"; wait
    scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null
    python3 - "$dir/metrics.jsonl" "$round" "$rate" "$g" <<PY
import json, re, statistics, sys
pred = """$pred"""
# samples_per_s is the epoch's rate so far: per-step durations from its differences.
recs = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "step"]
durations, epoch, done, prev = [], None, 0, 0.0
for r in recs:
    if r["epoch"] != epoch: epoch, done, prev = r["epoch"], 0, 0.0
    done += 64
    t = done / r["samples_per_s"]
    durations.append(t - prev)
    prev = t
steps = recs[5:]
sps = 64 / statistics.median(durations[5:])
comp = statistics.median(r["compute_s"] for r in steps) * 1e3
red = statistics.median(r["reduce_s"] for r in steps) * 1e3
m = re.search(r"^\| 2 \| ([0-9,.]+) \(", pred, re.M)
p = float(m.group(1).replace(",", ""))
row = re.search(r"^$config\s+\d+\s+([0-9.]+)\s+([0-9.]+)", pred, re.M)
grad_mb, ms_row = float(row.group(1)), float(row.group(2))
alpha = float(re.search(r"# alpha ([0-9.]+) us", pred).group(1)) * 1e-6
ar = (2 * alpha + grad_mb * 1e6 * 8 / (float(sys.argv[4]) * 1e9)) * 1e3
print(f"| {sys.argv[2]} | {sys.argv[3]} | {p:,.0f} | {sps:,.0f} | {100 * (p - sps) / sps:+.1f} % | {32 * ms_row:.1f} | {comp:.1f} | {ar:.1f} | {red:.1f} |")
PY
  done
done
