#!/usr/bin/env bash
# Runs `rnn-bench gemm` and the numpy/OpenBLAS sgemm baseline on the same shapes, one
# thread each, and prints ours / OpenBLAS per shape. Usage: scripts/bench_gemm.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
swift build -c release --product rnn-bench >/dev/null
ours="$(.build/release/rnn-bench gemm --threads "$threads")"
# The environment pins OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for other reasons; the
# baseline must use OpenBLAS's own detection, so both are unset for this command only.
theirs="$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$threads" \
    python3 scripts/bench_gemm_numpy.py)"
echo "$ours"
echo "$theirs"
echo
python3 - "$ours" "$theirs" <<'PY'
import sys
def rows(text):
    out = {}
    for line in text.splitlines()[2:]:
        name, gf, us = line[:34].strip(), *line[34:].split()
        out[name] = float(gf)
    return out
ours, theirs = rows(sys.argv[1]), rows(sys.argv[2])
print(f"{'shape':34}{'ours':>9}{'OpenBLAS':>10}{'ratio':>8}")
for name, g in ours.items():
    t = theirs.get(name)
    print(f"{name:34}{g:9.1f}{t:10.1f}{g / t:8.2f}" if t else f"{name:34}{g:9.1f}")
PY
