#!/usr/bin/env bash
# The GPU checks in one script, for a session lent a device (see benchmarks/README.md, "GPU"):
#   bash benchmarks/gpu_wheels.sh        # here, once: the test references the device lacks
#   device run, carry [".whl"]:  bash benchmarks/gpu.sh "$OUT"
# The CUDA tests, the GPU rows of the benchmark table (the CPU rows are measured on the
# development machine, and would eat a short lease) and the GPU memory table, each bounded in
# time so that one run fits the lease with time left to rerun it.
set -u
out="${1:-gpu-results}"
py="${PYTHON:-python3}"  # the device image's python3 is the one that holds its CUDA torch
mkdir -p "$out"
export PYTHONUNBUFFERED=1  # a step stopped at its limit still leaves what it printed
if compgen -G ".whl/*.whl" > /dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl > "$out/wheels.txt" 2>&1 && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
{ nvidia-smi; "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"; } \
  > "$out/machine.txt" 2>&1
# Only the files that hold the CUDA tests: the others import the TUI stack the image lacks.
timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/test_loss.py tests/test_train.py \
  -k "cuda or device_auto" > "$out/pytest-cuda.txt" 2>&1
# The rows run in the order named: the compiled loss last, its compiler being the likeliest to
# take long or fail on a new image.
timeout 300 "$py" -m benchmarks --size full --device cuda --only generation --only loss \
  --only loss-precision --only step --only epoch --only evaluation --only residency \
  --only loss-compiled --json "$out/h200.json" > "$out/benchmarks.txt" 2>&1
timeout 120 "$py" -m benchmarks.bench_memory --device cuda --batches 4096 16384 32768 \
  --lengths 30 100 --json "$out/memory.json" > "$out/memory.txt" 2>&1
echo "done: $out"
