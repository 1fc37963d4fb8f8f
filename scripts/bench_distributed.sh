#!/usr/bin/env bash
# Runs `rnn-bench distributed` (our rnn-coord + rnn-worker processes, 1 and 2 workers x 1
# thread) and the PyTorch DDP baseline (scripts/bench_ddp.py, gloo, 2 processes x 1 thread) in
# one go and prints global samples/s side by side: our 2-worker vs 1-worker scaling efficiency
# and our/DDP ratio.
# Usage: scripts/bench_distributed.sh [--config NAME[,NAME]] [--seconds S] [--repeats R]
# The machine is shared: each figure is the best of R runs; re-run when `uptime` is high.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product rnn-coord >/dev/null
swift build -c release --product rnn-worker >/dev/null
swift build -c release --product rnn-bench >/dev/null
echo "# AVX2/FMA in rnn-worker: $(objdump -d .build/release/rnn-worker | grep -c vfmadd) vfmadd instructions"
ours=$(mktemp); theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
echo "# load before: $(uptime)"
.build/release/rnn-bench distributed --workers 2 "$@" | tee "$ours"
echo "# load between: $(uptime)"
python3 scripts/bench_ddp.py --workers 2 "$@" | tee "$theirs"
echo "# load after: $(uptime)"
echo
echo "samples/s = B / median step time; (mean) = B * steps / total time"
echo "config       ours 1w s/s  ours 2w s/s  efficiency  2w allreduce ms  DDP 2x1 s/s  ours/DDP  (mean: ours 2w  DDP  ratio)"
awk 'FNR == NR { if ($1 == "breakdown") done = 1
                 if (!done && $1 !~ /^#/ && $1 != "config" && NF >= 10) { a[$1] = $2; b[$1] = $3; e[$1] = $4; r[$1] = $7; m[$1] = $10 }
                 next }
     $1 !~ /^#/ && $1 != "config" && ($1 in b) {
       printf "%-12s %11.1f %12.1f %11s %16.3f %12.1f %8.2fx  (%9.1f %9.1f %6.2fx)\n", $1, a[$1], b[$1], e[$1], r[$1], $2, b[$1] / $2, m[$1], $5, m[$1] / $5 }' \
    "$ours" "$theirs"
