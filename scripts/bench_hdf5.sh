#!/usr/bin/env bash
# HDF5 benchmark: Swift (RNNData/RNNCheckpoint) and h5py side by side in one run, on the same
# files and row indices; prints rows/s, MB/s, checkpoint write times and h5py/Swift ratios.
# Extra arguments go to `rnn-bench hdf5` (e.g. --megabytes 200 --repeats 5).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "load: $(uptime)"
swift build -c release --product rnn-bench >/dev/null
.build/release/rnn-bench hdf5 --script scripts/bench_h5py.py "$@"
