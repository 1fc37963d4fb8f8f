#!/usr/bin/env bash
# Runs `rnn-bench train` and the PyTorch baseline (scripts/bench_torch_train.py) in one go, at
# the same thread count, and prints samples/s side by side with our/PyTorch ratios.
# Usage: scripts/bench_train.sh [--threads N] [--config NAME[,NAME]] [--seconds S]
# Timings are noisy on a shared machine: compare the ratio, and re-run when `uptime` is high.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product rnn-bench >/dev/null
ours=$(mktemp); theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
echo "# load before: $(uptime)"
.build/release/rnn-bench train "$@" | tee "$ours"
python3 scripts/bench_torch_train.py "$@" | tee "$theirs"
echo "# load after: $(uptime)"
echo
# ratio: samples/s ours / PyTorch (wall time); cpu ratio: the same from process CPU time
# per step, which is steadier when other work shares the cores.
echo "config        ours samples/s  torch samples/s   ratio  cpu ratio  ours GFLOP/s  torch GFLOP/s"
awk 'FNR == NR { if ($1 !~ /^#/ && $1 != "config") { s[$1] = $2; g[$1] = $3; c[$1] = $6 }; next }
     $1 !~ /^#/ && $1 != "config" && ($1 in s) {
       printf "%-12s %15.1f %16.1f %7.2fx %9.2fx %13.2f %14.2f\n", $1, s[$1], $2, s[$1] / $2, $6 / c[$1], g[$1], $3 }' \
    "$ours" "$theirs"
