#!/usr/bin/env bash
# Install what is missing, build a release, and (with --train-demo) train an LSTM on the shipped
# digits dataset with a coordinator and 2 local worker processes.
#
#   ./deploy/install.sh --train-demo        # fresh Debian/Ubuntu machine -> trained model + loss.png
#   ./deploy/install.sh --prefix /usr/local # also copy rnn-coord, rnn-worker, rnn-data to /usr/local/bin
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/install.sh [--train-demo] [--prefix DIR] [--run-dir DIR] [--epochs N] [--no-apt]
  --train-demo   after building, train an LSTM on datasets/digits with 2 local workers
  --prefix DIR   copy the release binaries to DIR/bin
  --run-dir DIR  where the demo writes checkpoints, metrics.jsonl and loss.png (default: runs/digits)
  --epochs N     demo epochs (default: 15)
  --no-apt       do not install system packages (libhdf5-dev libzmq3-dev pkg-config)
USAGE
}

demo=0; prefix=""; run_dir="runs/digits"; epochs=15; apt=1
while [ $# -gt 0 ]; do
  case "$1" in
    --train-demo) demo=1 ;;
    --prefix) prefix="${2:?--prefix needs a folder}"; shift ;;
    --run-dir) run_dir="${2:?--run-dir needs a folder}"; shift ;;
    --epochs) epochs="${2:?--epochs needs a number}"; shift ;;
    --no-apt) apt=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: error: unknown option '$1'" >&2; echo "Hint: deploy/install.sh --help" >&2; exit 64 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
say() { printf '==> %s\n' "$*"; }

# 1. System libraries (HDF5, ZeroMQ) through pkg-config.
if [ "$apt" = 1 ] && ! pkg-config --exists hdf5 libzmq 2>/dev/null; then
  say "Installing libhdf5-dev libzmq3-dev pkg-config"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
      echo "install.sh: error: need root or sudo to apt-get install libhdf5-dev libzmq3-dev pkg-config" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends libhdf5-dev libzmq3-dev pkg-config >/dev/null
fi

# 2. Swift toolchain (6.0 or newer).
if ! command -v swift >/dev/null; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH" && break; done
fi
if ! command -v swift >/dev/null; then
  echo "install.sh: error: no Swift toolchain found (expected 'swift' on PATH or in /opt/swift/usr/bin)." >&2
  echo "Hint: install Swift 6 from https://www.swift.org/install/linux/ and rerun." >&2
  exit 1
fi

# 3. Release build.
say "Building release binaries (swift build -c release; the first build takes a few minutes)"
swift build -c release
bin="$(swift build -c release --show-bin-path)"
say "Built $bin/rnn-coord, $bin/rnn-worker, $bin/rnn-data"

if [ -n "$prefix" ]; then
  mkdir -p "$prefix/bin"
  install -m 0755 "$bin/rnn-coord" "$bin/rnn-worker" "$bin/rnn-data" "$prefix/bin/"
  say "Installed to $prefix/bin"
fi

# 4. Demo: 2 local worker processes, digits, checkpoint + loss curve in $run_dir.
if [ "$demo" = 1 ]; then
  say "Training an LSTM on datasets/digits with a coordinator and 2 local workers"
  rm -f "$run_dir"/ckpt-*.h5 "$run_dir"/metrics.jsonl
  "$bin/rnn-coord" start \
    --data datasets/digits/digits-train.h5 --val datasets/digits/digits-test.h5 \
    --cell lstm --hidden 64 --batch-size 32 --epochs "$epochs" --lr 0.01 --shuffle \
    --local-workers 2 --bind 'tcp://127.0.0.1:*' --checkpoint-dir "$run_dir"
  say "Evaluate:  $bin/rnn-coord eval --checkpoint $run_dir --data datasets/digits/digits-test.h5"
  say "Run tests: swift test --disable-swift-testing"
fi
