#!/usr/bin/env bash
# Runs `rnn-bench train` and the PyTorch baseline (scripts/bench_torch_train.py) side by side at
# the same thread count and prints samples/s with our/PyTorch ratios.
# Usage: scripts/bench_train.sh [--threads N] [--seconds S] [--rounds R] [--config NAME[,NAME]]
# Each configuration runs ours, PyTorch, ours, PyTorch, ... (R rounds, default 2) so both see
# the same machine load; the best round of each counts. Timings are noisy on a shared machine:
# compare the ratios, and re-run when `uptime` is high. "cpu ratio" compares process CPU time
# per step, which is steadier when other work shares the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=1; seconds=3; rounds=2; configs="seed-small,lstm-med,gru-med,lstm-large,bi-lstm-med,embed-lstm,onehot-20k,lstm-med-len"
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --config) configs="$2"; shift 2 ;;
        *) echo "bench_train.sh: unknown option '$1' (expected --threads, --seconds, --rounds, --config)" >&2; exit 2 ;;
    esac
done
swift build -c release --product rnn-bench >/dev/null
ours=$(mktemp); theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
echo "# threads=$threads seconds=$seconds rounds=$rounds; load before: $(uptime)"
for config in ${configs//,/ }; do
    for _ in $(seq "$rounds"); do
        .build/release/rnn-bench train --threads "$threads" --seconds "$seconds" --config "$config" | grep -v '^#' | grep -v '^config' >>"$ours"
        python3 scripts/bench_torch_train.py --threads "$threads" --seconds "$seconds" --config "$config" | grep -v '^#' | grep -v '^config' >>"$theirs"
    done
done
echo "# load after: $(uptime)"
echo "# PyTorch $(python3 -c 'import torch; print(torch.__version__)'), best of $rounds rounds per configuration"
echo "config             ours samples/s  torch samples/s   ratio  cpu ratio  ours GFLOP/s  torch GFLOP/s  ours of probe"
# Columns of both files: config samples/s GFLOP/s ms/step steps cpu-ms/step (ours also
# of-probe: GFLOP/s as a percentage of rnn-bench's FMA probe taken just before).
awk 'FNR == NR { if (!($1 in s) || $2 > s[$1]) { s[$1] = $2; g[$1] = $3; p[$1] = $7 }
                 if (!($1 in c) || $6 < c[$1]) c[$1] = $6; order[++n] = $1; next }
     { if (!($1 in ts) || $2 > ts[$1]) { ts[$1] = $2; tg[$1] = $3 }
       if (!($1 in tc) || $6 < tc[$1]) tc[$1] = $6 }
     END { for (i = 1; i <= n; i++) { k = order[i]; if (k in seen || !(k in ts)) continue; seen[k] = 1
             printf "%-17s %15.1f %16.1f %7.2fx %9.2fx %13.2f %14.2f %14s\n", k, s[k], ts[k], s[k] / ts[k], tc[k] / c[k], g[k], tg[k], p[k] } }' \
    "$ours" "$theirs"
