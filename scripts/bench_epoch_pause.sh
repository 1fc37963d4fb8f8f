#!/usr/bin/env bash
# The pause at each epoch's end (validation, and whatever else the coordinator does there) on
# the shipped sonnets: LSTM H=256, 2 local workers, a 10 % validation file. From metrics.jsonl:
# pause = (time of the first step record of epoch e+1) - (time of the last step record of
# epoch e) - (the median time between two step records inside an epoch).
# Usage: scripts/bench_epoch_pause.sh [--bin DIR]... [--epochs N] [--hidden H] [--rounds R] [--val-on val|train]
# --val-on train validates on the 1,346 training windows (6 batches of 256, which the workers
# share) instead of the 10 % validation file (134 windows: one batch, which one worker takes).
# Several --bin folders (e.g. an older build's .build/release) run in turn, R rounds each
# (default 2), so that all see the same machine; default: this checkout's release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=()
epochs=4
hidden=256
rounds=2
val_on=val
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bins+=("$2"); shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --hidden) hidden=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --val-on) val_on=$2; shift 2 ;;
        *) echo "bench_epoch_pause.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
if [ ${#bins[@]} -eq 0 ]; then
    swift build -c release --product rnn-coord >/dev/null
    swift build -c release --product rnn-worker >/dev/null
    swift build -c release --product rnn-data >/dev/null
    bins=(.build/release)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${bins[0]}/rnn-data" make text --from datasets/text/sonnets.txt --seq-len 64 --output "$work/train.h5" --val-fraction 0.1 >/dev/null
val="$work/train-val.h5"
[ "$val_on" = train ] && val="$work/train.h5"
for round in $(seq "$rounds"); do
    for bin in "${bins[@]}"; do
        run="$work/run-$round"
        rm -rf "$run"
        "$bin/rnn-coord" start --data "$work/train.h5" --val "$val" --cell lstm --hidden "$hidden" \
            --batch-size 64 --epochs "$epochs" --lr 0.005 --shuffle --local-workers 2 --bind 'tcp://127.0.0.1:*' \
            --checkpoint-dir "$run" --no-plot --quiet
        python3 - "$run/metrics.jsonl" "$bin" "$round" "$(uptime | sed 's/.*load average: //')" <<'EOF'
import json, sys, statistics, datetime
def t(r): return datetime.datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
steps = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"step"' in l]
inside = [t(b) - t(a) for a, b in zip(steps, steps[1:]) if a["epoch"] == b["epoch"]]
step = statistics.median(inside)
pauses = [t(b) - t(a) - step for a, b in zip(steps, steps[1:]) if a["epoch"] != b["epoch"]]
print(f"{sys.argv[2]} round {sys.argv[3]}: epoch-end pause median {statistics.median(pauses) * 1000:.0f} ms "
      f"(each: {', '.join(f'{p * 1000:.0f}' for p in pauses)} ms), step {step * 1000:.1f} ms, load {sys.argv[4]}")
EOF
    done
done
