#!/usr/bin/env bash
# Runs `rnn-bench distributed` (our rnn-coord + rnn-worker processes, 1 and 2 workers x 1
# thread) and the PyTorch DDP baseline (scripts/bench_ddp.py, gloo, 2 processes x 1 thread) and
# prints global samples/s side by side: our 2-worker vs 1-worker scaling efficiency and our/DDP
# ratio.
# Usage: scripts/bench_distributed.sh [--config NAME[,NAME]] [--seconds S] [--repeats R] [rnn-bench options]
# Each configuration runs ours (1 then 2 workers) and DDP in turn, R rounds (default 2), so that
# both see the same machine: this shared machine's speed drifts by 10-20 % over minutes. Each
# figure is the best of its R rounds; re-run when `uptime` is high. Each round first prints
# `rnn-bench probe` (a register-only FMA loop on 1 thread, then on 2 at once): on a shared VM
# it tells a busy-host round from a slow program. Other options (--spin, --steps-per-message,
# --balance) go to `rnn-bench distributed`.
set -euo pipefail
cd "$(dirname "$0")/.."
configs=seed-small,lstm-med,gru-med,lstm-large
seconds=8
repeats=2
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --config) configs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done
swift build -c release --product rnn-coord >/dev/null
swift build -c release --product rnn-worker >/dev/null
swift build -c release --product rnn-bench >/dev/null
echo "# AVX2/FMA in rnn-worker: $(objdump -d .build/release/rnn-worker | grep -c vfmadd) vfmadd instructions"
ours=$(mktemp); theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
for config in ${configs//,/ }; do
    for round in $(seq "$repeats"); do
        echo "# $config, round $round of $repeats; load: $(uptime)"
        # What a core delivers right now, alone and with the other core busy (rnn-bench probe):
        # a round taken while two concurrent loops slow each other down is a busy-host round.
        .build/release/rnn-bench probe --seconds 0.3 --comment
        .build/release/rnn-bench distributed --workers 2 --config "$config" --seconds "$seconds" --repeats 1 \
            ${extra[@]+"${extra[@]}"} | tee -a "$ours"
        python3 scripts/bench_ddp.py --workers 2 --config "$config" --seconds "$seconds" --repeats 1 | tee -a "$theirs" \
            || echo "# DDP failed for $config in round $round"
    done
done
echo "# load after: $(uptime)"
echo
echo "samples/s = B / median step time; (mean) = B * steps / total time; best of $repeats rounds each"
echo "config       ours 1w s/s  ours 2w s/s  efficiency  2w allreduce ms  DDP 2x1 s/s  ours/DDP  (mean: ours 2w  DDP  ratio)"
# Ours: the result rows have 10 fields (the breakdown rows 7); DDP's have 5.
awk 'FNR == NR { if ($1 !~ /^#/ && $1 != "config" && NF == 10) {
                   if (!($1 in b) || $3 > b[$1]) { b[$1] = $3; r[$1] = $7 }
                   if ($2 > a[$1]) a[$1] = $2
                   if ($10 > m[$1]) m[$1] = $10 }
                 next }
     $1 !~ /^#/ && $1 != "config" && NF == 5 { if ($2 > d[$1]) d[$1] = $2; if ($5 > dm[$1]) dm[$1] = $5 }
     END { n = split(order, names, ",")
           for (i = 1; i <= n; i++) { c = names[i]; if (!(c in b)) continue
             if (c in d) printf "%-12s %11.1f %12.1f %10.1f%% %16.3f %12.1f %8.2fx  (%9.1f %9.1f %6.2fx)\n", c, a[c], b[c], 100 * b[c] / (2 * a[c]), r[c], d[c], b[c] / d[c], m[c], dm[c], m[c] / dm[c]
             else printf "%-12s %11.1f %12.1f %10.1f%% %16.3f %12s\n", c, a[c], b[c], 100 * b[c] / (2 * a[c]), r[c], "(no DDP)" } }' \
    order="$configs" "$ours" "$theirs"
