"""Time the Sinkhorn loss against geomloss on a training-sized batch.

Run ``python benchmarks/bench_loss.py [--batch 4096 --length 30 --repeats 3]``.
Both losses see the same one-hot float32 clouds (K = 3 symbols, D = 3 L);
each timing covers the value and the backward pass.  Timings alternate
between implementations and the best of ``--repeats`` is reported, so a
busy machine penalises both sides alike (the load average is printed too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from hmmrnn.loss import SinkhornLoss, sinkhorn_divergence

K = 3


def one_hot_cloud(batch: int, length: int, seed: int) -> torch.Tensor:
    """Random one-hot sequences flattened to (batch, K * length), float32."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, K, (batch, length), generator=g)
    return torch.nn.functional.one_hot(idx, K).float().reshape(batch, length * K)


def timed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[float, float]:
    """Seconds for value + backward, and the value."""
    xr = x.detach().clone().requires_grad_()
    start = time.perf_counter()
    value = fn(xr)
    value.backward()
    return time.perf_counter() - start, value.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    x = one_hot_cloud(args.batch, args.length, seed=0)
    y = one_hot_cloud(args.batch, args.length, seed=1)
    print(f"B={args.batch} D={x.shape[1]} float32, torch threads={torch.get_num_threads()}")

    cached = SinkhornLoss()
    cached(x, y, target_key="bench")  # warm the target cache
    candidates: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "ours (no cache)": lambda xr: sinkhorn_divergence(xr, y),
        "ours (cache warm)": lambda xr: cached(xr, y, target_key="bench"),
    }
    try:
        from geomloss import SamplesLoss

        ref = SamplesLoss("sinkhorn", p=2, blur=0.2, scaling=0.5, backend="tensorized")
        candidates = {"geomloss": lambda xr: ref(xr, y), **candidates}
    except ImportError:
        print("geomloss not installed: timing ours only")

    times: dict[str, list[float]] = {name: [] for name in candidates}
    values: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            seconds, values[name] = timed(fn, x)
            times[name].append(seconds)

    print(f"load average: {os.getloadavg()[0]:.2f}")
    base = min(times["geomloss"]) if "geomloss" in times else None
    for name in candidates:
        best, median = min(times[name]), statistics.median(times[name])
        ratio = f"  speed-up x{base / best:5.2f}" if base else ""
        print(
            f"{name:18s} best {best:7.3f}s  median {median:7.3f}s{ratio}  value {values[name]:.7f}"
        )
    if "geomloss" in values:
        ref_value = values["geomloss"]
        for name in candidates:
            rel = abs(values[name] - ref_value) / abs(ref_value)
            print(f"{name:18s} relative value difference to geomloss: {rel:.2e}")


if __name__ == "__main__":
    main()
