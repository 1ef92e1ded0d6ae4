"""Core performance goals, printed as ratios against reference runs in the same process.

    python benchmarks/bench_core.py [--quick]

1. HMM sampling of 30,000 x 30 against hmmlearn's CategoricalHMM.sample called once per sequence
   (the research code's way); the reference is timed on a subset and extrapolated.
2. RNN generation of 1,000 x 30 outputs at hidden 150, input 100 (goal: under 0.2 s).
3. One training step at B = 4096, L = 30, hidden 150, input 100: the loss alone and the whole step
   (forward, loss, backward, clip, Adam), ours against geomloss on the same batch.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from hmmrnn.config import ExperimentConfig
from hmmrnn.device import torch_generator
from hmmrnn.loss import SinkhornLoss
from hmmrnn.rnn import HMMRNN


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_sampling(n: int, length: int, ref_n: int) -> None:
    hmm = ExperimentConfig.from_preset("Three").build_hmm()
    ours = best_of(lambda: hmm.sample(n, length, np.random.default_rng(0)), 3)
    print(f"HMM sampling {n} x {length}: ours {ours:.3f} s")
    try:
        from hmmlearn.hmm import CategoricalHMM
    except ImportError:
        print("  hmmlearn not installed: no reference")
        return
    ref = CategoricalHMM(n_components=hmm.num_states, init_params="", params="")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = hmm.start, hmm.transition, hmm.emission
    ref.n_features = hmm.num_outputs
    start = time.perf_counter()
    for i in range(ref_n):
        ref.sample(length, random_state=i)
    per_seq = (time.perf_counter() - start) / ref_n
    print(
        f"  hmmlearn per sequence: {per_seq * 1e6:.0f} us -> {per_seq * n:.1f} s for {n} "
        f"(extrapolated from {ref_n}); ratio x{per_seq * n / ours:.0f} (goal >= 50)"
    )


def bench_generation() -> None:
    model = HMMRNN(100, 150, 3)
    gen = torch_generator(0)
    model.generate(10, 30, generator=gen)
    t = best_of(lambda: model.generate(1000, 30, generator=gen), 5)
    print(f"RNN generation 1000 x 30 (hidden 150, input 100): {t:.4f} s (goal < 0.2 s)")


def bench_step(batch: int, length: int) -> None:
    hmm = ExperimentConfig.from_preset("Three").build_hmm()
    sample = hmm.sample(batch, length, np.random.default_rng(0)).one_hot(3)
    y = torch.from_numpy(sample.reshape(batch, -1))
    model = HMMRNN(100, 150, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.9))
    ours = SinkhornLoss()
    losses = {"ours": lambda x: ours(x, y, target_key="bench")}
    try:
        from geomloss import SamplesLoss

        ref = SamplesLoss("sinkhorn", p=2, blur=0.2, scaling=0.5, backend="tensorized")
        losses["geomloss"] = lambda x: ref(x, y)
    except ImportError:
        print("  geomloss not installed: no reference")

    def outputs():
        gen = torch_generator(1)
        noise = model.sample_noise(batch, length, 1.0, gen)
        return model(noise, None, gen).outputs.reshape(batch, -1)

    x_fixed = outputs().detach()
    results = {}
    for name, loss in losses.items():
        loss(x_fixed)  # warm-up (and the target cache for ours)

        def loss_only(loss=loss):
            xr = x_fixed.clone().requires_grad_()
            loss(xr).backward()

        def whole_step(loss=loss):
            opt.zero_grad()
            value = loss(outputs())
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.9)
            opt.step()

        results[name] = (best_of(loss_only, 2), best_of(whole_step, 2), float(loss(x_fixed)))
    for name, (lt, st, v) in results.items():
        print(
            f"step B={batch} L={length} {name:8s}: loss {lt:.3f} s, whole step {st:.3f} s, value {v:.6f}"
        )
    if "geomloss" in results:
        (gl, gs, gv), (ol, os_, ov) = results["geomloss"], results["ours"]
        print(
            f"  ratios: loss x{gl / ol:.2f} (goal >= 1.5), whole step x{gs / os_:.2f}, "
            f"value difference {abs(ov - gv) / abs(gv):.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller step benchmark")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    bench_sampling(30000, 30, ref_n=300 if args.quick else 2000)
    bench_generation()
    bench_step(1024 if args.quick else 4096, 30)


if __name__ == "__main__":
    main()
