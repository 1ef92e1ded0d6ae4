#!/usr/bin/env bash
# Fetch, on the development machine, the wheels the device image lacks for benchmarks/gpu.sh:
# the references of the loss (geomloss) and of sampling (hmmlearn), and POT (the weighted exact
# matching, reached when many sequences are equal; 33 MB of the 64 MiB a call may carry). Its
# Python is 3.12. The folder is ignored by git and travels with `carry: [".whl"]`.
set -eu
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "geomloss>=0.3.1" "hmmlearn>=0.3.0" "pot>=0.9.7"
ls -l .whl
