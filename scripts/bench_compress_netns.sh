#!/usr/bin/env bash
# float32 against --compress bf16 on shaped links: a coordinator on test host 0 and W workers on
# hosts 1..W (scripts/netns-hosts.sh, tbf at RATE both ways), lstm I=8 H=256 on the shipped
# digits (a 1.1 MB gradient), ROUNDS alternating pairs; prints the median all-reduce seconds
# per step (reduce_s in metrics.jsonl, warm-up steps dropped) and samples/s. Needs root and a
# release build.
#   scripts/bench_compress_netns.sh [RATE] [W] [ROUNDS]      # default: 100mbit 2 3
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100mbit}
world=${2:-2}
rounds=${3:-3}
bin=.build/release
[ -x "$bin/rnn-coord" ] || { echo "build first: swift build -c release" >&2; exit 1; }
prefix=rb$$
scripts/netns-hosts.sh up $((world + 1)) --rate "$rate" --prefix "$prefix" >/dev/null
work=$(mktemp -d)
trap 'scripts/netns-hosts.sh down --prefix "$prefix" >/dev/null; rm -rf "$work"' EXIT
run() { # run NAME EXTRA...
  local name=$1; shift
  local dir=$work/$name port=$((20000 + RANDOM % 20000))
  ip netns exec "${prefix}0" "$bin/rnn-coord" start --data datasets/digits/digits-train.h5 --cell lstm --hidden 256 \
    --batch-size 64 --max-steps 40 --lr 0.002 --seed 1 --workers "$world" --bind "tcp://10.77.0.1:$port" \
    --insecure --token "bench-$$" --checkpoint-dir "$dir" --quiet --no-plot "$@" &
  local coord=$!
  sleep 0.5
  for h in $(seq 1 "$world"); do
    ip netns exec "${prefix}$h" "$bin/rnn-worker" --connect "tcp://10.77.0.1:$port" --token "bench-$$" --quiet \
      --advertise-host "10.77.0.$((h + 1))" &
  done
  wait "$coord"
  wait
  python3 - "$dir/metrics.jsonl" "$name" <<'PY'
import json, statistics, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("event", r.get("kind")) in (None, "step") and "reduce_s" in r][5:]
print(f'{sys.argv[2]:8s} reduce_s median {statistics.median(r["reduce_s"] for r in steps) * 1e3:7.1f} ms, '
      f'samples/s median {statistics.median(r["samples_per_s"] for r in steps):8.0f}')
PY
}
echo "W=$world workers on hosts linked at $rate, lstm H=256 (1.1 MB gradient), 40 steps of 64"
for r in $(seq "$rounds"); do
  run "fp32-$r"
  run "bf16-$r" --compress bf16
done
