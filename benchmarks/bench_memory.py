"""Peak memory of a training step across batch sizes and sequence lengths.

Run ``python -m benchmarks.bench_memory [--batches 512 2048 8192 16384 --lengths 30 300]``.
Each (B, L) runs in a fresh process: one training epoch of one batch (forward, loss with a cold
target cache, backward, Adam) and one validation batch, on the study's network (hidden 150,
input 100, 3 outputs). It prints the process's peak resident memory above what it held once torch
was imported (ru_maxrss: data, the loss floor, the step), the peak CUDA memory on a GPU, and hmmrnn's own estimate, which `train`
checks against the free memory before it starts. Nothing but the cost matrix grows as B^2: the
transposed copy of it is gone, so the step holds one B x B matrix at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MB = 2**20


def peak_rss() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024 if sys.platform != "darwin" else float(kb)


def one(batch: int, length: int, device_name: str) -> dict:
    """Measure one (B, L) in this process."""
    import torch

    from hmmrnn import resources
    from hmmrnn.config import ExperimentConfig
    from hmmrnn.device import resolve_device
    from hmmrnn.train import Trainer, init_model

    cfg = ExperimentConfig.from_preset(
        "Three", hidden_size=150, input_size=100, seq_len=length, num_seq=3 * batch,
        batch_size=batch, epochs=1, learning_rates=[0.001],
    )  # fmt: skip
    device = resolve_device(device_name)
    resources.require(resources.training_bytes(cfg), f"B {batch}, L {length}", device=device)
    before = peak_rss()  # torch and hmmrnn imported, nothing of the run made yet
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), device, None, None, None)
        model = init_model(cfg, device, Path(tmp))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        trainer.train_epoch(model, optimizer, 0, 1)
        trainer.validate(model, 0, 1)
        out = {
            "batch": batch,
            "length": length,
            "rss_before_mb": before / MB,
            "run_peak_mb": (peak_rss() - before) / MB,
            "estimate_mb": resources.training_bytes(cfg) / MB,
            "cost_matrix_mb": batch * batch * 4 / MB,
        }
        if device.type == "cuda":
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / MB
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[512, 2048, 8192, 16384])
    ap.add_argument("--lengths", type=int, nargs="+", default=[30, 300])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--one", type=int, nargs=2, metavar=("B", "L"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.device)))
        return
    rows = []
    print("     B     L   run peak  cost matrix   estimate   (MB above the imports)")
    for length in args.lengths:
        for batch in args.batches:
            cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--one", str(batch),
                   str(length), "--device", args.device]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if done.returncode:
                print(f"{batch:>6} {length:>4}  failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            cuda = f"   cuda {row['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in row else ""
            print(f"{batch:>6} {length:>4} {row['run_peak_mb']:>10.0f} {row['cost_matrix_mb']:>12.0f}"
                  f" {row['estimate_mb']:>10.0f}{cuda}", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
