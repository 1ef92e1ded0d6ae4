#!/usr/bin/env bash
# The GPU checks in one script, for a session lent a device (see benchmarks/README.md):
#   bash benchmarks/gpu.sh OUT_DIR
# the CUDA test, the full benchmark table (CPU then GPU rows) and the GPU memory table, each
# bounded in time so that one run fits a short device lease.
set -u
out="${1:-gpu-results}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
timeout 120 python -m pytest -q tests -k "cuda or device_auto" > "$out/pytest-cuda.txt" 2>&1
timeout 300 python -m benchmarks --size full --only generation --only loss --only loss-precision \
  --only loss-compiled --only step --only epoch --only evaluation --only residency \
  --json "$out/h200.json" > "$out/benchmarks.txt" 2>&1
timeout 150 python -m benchmarks.bench_memory --device cuda --batches 4096 16384 32768 \
  --lengths 30 100 --json "$out/memory.json" > "$out/memory.txt" 2>&1
echo "done: $out"
