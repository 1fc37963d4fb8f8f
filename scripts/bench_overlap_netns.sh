#!/usr/bin/env bash
# Overlap of the all-reduce with backward, and bf16 on the wire, in real training over shaped
# links (issue 17 item 4): lstm-large (lstm I=128 H=512 L=2 T=100, C=10, a 13.68 MB float32
# gradient), W = 2 workers on test hosts 1 and 2 (one per core), the coordinator on host 0
# (scripts/netns-hosts.sh, tbf both ways), 64 rows per worker per step (global batch 128).
# Per round: the W = 1 baseline (one worker on host 1, batch 64: the same rows per worker),
# then per RATE the four runs {--no-overlap, overlap} x {float32, --compress bf16}, in that
# order, all in the same round. Per run from metrics.jsonl (first 2 steps dropped, medians):
# the step time (from samples_per_s), samples/s, scaling efficiency = step(W = 1) / step(W = 2),
# the slowest rank's compute_s, reduce_s, reduce_exposed_s, reduce_hidden_s, the two ranks'
# compute_s difference (skew), and "idle est." = c1 / (c1 + exposed): the efficiency if each
# worker computed as fast as the W = 1 run (c1, its compute_s) and waited the measured exposed
# time, i.e. with the cores' contention taken out. Beside each,
# the alpha-beta model (`rnn-bench scaling`, RNNReport/ScalingModel.swift) at W = 2 with the
# W = 1 run's compute, alpha from FIT and beta = 8 / rate, once with the overlap fraction 0
# and once with the run's measured hidden fraction (reduce_hidden_s / reduce_s).
# Needs root and a release build.
#   scripts/bench_overlap_netns.sh --fit FILE [--rates 100mbit,1gbit] [--rounds 3] [--steps 8]
set -euo pipefail
cd "$(dirname "$0")/.."
fit="" rates=100mbit,1gbit rounds=3 steps=8
while [ $# -gt 0 ]; do
  case "$1" in
    --fit) fit=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) echo "bench_overlap_netns.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -n "$fit" ] || { echo "needs --fit FILE (scripts/bench_netns.sh --out FILE)" >&2; exit 2; }
bin=.build/release
[ -x "$bin/rnn-coord" ] || { echo "build first: swift build -c release" >&2; exit 1; }
rows=64
prefix=ov$$
prefix=${prefix:0:8}
subnet=10.79.$((RANDOM % 200 + 20))
work=$(mktemp -d)
trap 'scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$bin/rnn-data" make random --output "$work/data.h5" -n $((2 * rows * (steps + 2))) -t 100 -i 128 -c 10 --seed 3 >/dev/null
gbit() { python3 -c 'import sys; r=sys.argv[1]; u={"mbit":1e-3,"gbit":1.0}; print(next(float(r[:-4])*m for k,m in u.items() if r.endswith(k)))' "$1"; }

# run NAME WORKERS BATCH EXTRA...: coordinator on host 0, WORKERS workers on hosts 1.., metrics in $work/NAME.
run() {
  local name=$1 workers=$2 batch=$3; shift 3
  local dir=$work/$name port=$((20000 + RANDOM % 20000))
  ip netns exec "${prefix}0" "$bin/rnn-coord" start --data "$work/data.h5" --cell lstm --hidden 512 --layers 2 \
    --batch-size "$batch" --max-steps "$steps" --lr 0.001 --seed 1 --workers "$workers" --bind "tcp://$subnet.1:$port" \
    --insecure --token "ovl-$$" --checkpoint-dir "$dir" --checkpoint-every 0 --quiet --no-plot "$@" &
  local coord=$!
  sleep 0.5
  for hh in $(seq "$workers"); do
    ip netns exec "${prefix}$hh" "$bin/rnn-worker" --connect "tcp://$subnet.1:$port" --token "ovl-$$" --quiet \
      --advertise-host "$subnet.$((hh + 1))" &
  done
  wait "$coord"; wait
}

# summary DIR BATCH: median step ms, compute, reduce, exposed, hidden (ms) of a run.
summary() {
  python3 - "$1/metrics.jsonl" "$2" <<'PY'
import json, statistics, sys
recs = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "step"]
batch = int(sys.argv[2])
durations, epoch, done, prev = [], None, 0, 0.0
for r in recs:
    if r["epoch"] != epoch: epoch, done, prev = r["epoch"], 0, 0.0
    done += batch
    t = done / r["samples_per_s"]
    durations.append(t - prev)
    prev = t
keep = recs[2:]
med = lambda k: statistics.median(r.get(k, 0.0) for r in keep) * 1e3
skew = statistics.median(max(r["compute_s_by_rank"]) - min(r["compute_s_by_rank"]) for r in keep) * 1e3 if "compute_s_by_rank" in keep[0] else 0
print(statistics.median(durations[2:]) * 1e3, med("compute_s"), med("reduce_s"), med("reduce_exposed_s"), med("reduce_hidden_s"),
      min(durations[2:]) * 1e3, max(durations[2:]) * 1e3, skew)
PY
}

echo "W = 2 training of lstm-large ($rows rows per worker, global batch $((2 * rows))) on test hosts; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $steps steps per run, first 2 dropped"
echo "| round | link | wire | overlap | step ms (median [min-max]) | samples/s | efficiency | idle est. | model f=0 | model f=measured | compute_s ms | skew ms | reduce_s ms | exposed ms | hidden ms | hidden fraction |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  scripts/netns-hosts.sh up 3 --rate "${rates%%,*}" --prefix "$prefix" --subnet "$subnet" >/dev/null
  run "w1-$round" 1 "$rows"
  scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null
  read -r t1 c1 _ <<<"$(summary "$work/w1-$round" "$rows")"
  cms=$(python3 -c "print($c1 / $rows)")
  echo "| $round | - | - | W = 1 | $(printf '%.0f' "$t1") | $(python3 -c "print(f'{$rows / $t1 * 1e3:.1f}')") | 100 % | | | | $(printf '%.0f' "$c1") | | | | | |"
  for rate in ${rates//,/ }; do
    scripts/netns-hosts.sh up 3 --rate "$rate" --prefix "$prefix" --subnet "$subnet" >/dev/null
    g=$(gbit "$rate")
    for wire in fp32 bf16; do
      for ov in off on; do
        extra=()
        [ "$wire" = bf16 ] && extra+=(--compress bf16)
        [ "$ov" = off ] && extra+=(--no-overlap)
        name="w2-$round-$rate-$wire-$ov"
        run "$name" 2 $((2 * rows)) "${extra[@]}"
        read -r t2 c2 r2 e2 h2 lo hi sk <<<"$(summary "$work/$name" $((2 * rows)))"
        frac=$(python3 -c "print(min(1.0, max(0.0, $h2 / $r2)) if $r2 > 0 else 0)")
        compress=()
        [ "$wire" = bf16 ] && compress=(--compress bf16)
        model() { "$bin/rnn-bench" scaling --fit "$fit" --config lstm-large --rows "$rows" --worlds 2 --links "$g" \
                    --compute-ms "lstm-large=$cms" --overlap "$1" "${compress[@]}" | sed -n 's/^| 2 | .*(\([0-9.]*\) %) |$/\1 %/p'; }
        python3 - "$round" "$rate" "$wire" "$ov" "$t1" "$t2" "$lo" "$hi" "$c2" "$r2" "$e2" "$h2" "$frac" "$(model 0)" "$(model "$frac")" "$rows" "$c1" "$sk" <<'PY'
import sys
(round_, rate, wire, ov, t1, t2, lo, hi, c2, r2, e2, h2, frac, m0, mf, rows, c1, sk) = sys.argv[1:]
t1, t2, lo, hi, c2, r2, e2, h2, frac, c1, sk = map(float, (t1, t2, lo, hi, c2, r2, e2, h2, frac, c1, sk))
print(f"| {round_} | {rate} | {wire} | {ov} | {t2:.0f} [{lo:.0f}-{hi:.0f}] | {2 * int(rows) / t2 * 1e3:.1f} | {100 * t1 / t2:.1f} % "
      f"| {100 * c1 / (c1 + e2):.1f} % | {m0} | {mf} | {c2:.0f} | {sk:.0f} | {r2:.0f} | {e2:.0f} | {h2:.0f} | {frac:.2f} |")
PY
      done
    done
    scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null
  done
done
