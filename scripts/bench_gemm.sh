#!/usr/bin/env bash
# Runs `rnn-bench gemm` and the numpy/OpenBLAS sgemm baseline on the same shapes, alternately
# for a few rounds, and prints the best of each per shape and ours / OpenBLAS.
# Best-of-rounds because the machine is shared: a round disturbed by another process only
# lowers a number. Usage: scripts/bench_gemm.sh [threads] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
rounds="${2:-3}"
swift build -c release --product rnn-bench >/dev/null 2>&1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
    .build/release/rnn-bench gemm --threads "$threads" > "$tmp/ours.$r"
    # The environment pins OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for other reasons; the
    # baseline must use OpenBLAS's own detection, so both are unset for this command only.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$threads" \
        python3 scripts/bench_gemm_numpy.py > "$tmp/theirs.$r"
done
head -1 "$tmp/ours.1"
head -1 "$tmp/theirs.1"
echo "threads=$threads, best of $rounds alternating rounds; load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp" "$rounds" <<'PY'
import sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def best(prefix):
    out = {}
    for r in range(1, rounds + 1):
        for line in open(f"{tmp}/{prefix}.{r}").read().splitlines()[2:]:
            name, gf = line[:34].strip(), float(line[34:].split()[0])
            out[name] = max(out.get(name, 0.0), gf)
    return out
ours, theirs = best("ours"), best("theirs")
print(f"{'shape':34}{'ours':>9}{'OpenBLAS':>10}{'ratio':>8}")
for name, g in ours.items():
    t = theirs.get(name)
    print(f"{name:34}{g:9.1f}{t:10.1f}{g / t:8.2f}" if t else f"{name:34}{g:9.1f}")
PY
