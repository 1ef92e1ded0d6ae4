"""Would warm-starting the loss from the previous step's potentials pay? (issue 17, goal 0)

Run ``python -m benchmarks.bench_warm_start [--batch 2048 --model Three]``.

Training calls the loss on the same target batch once per epoch, with a fresh sample of the
RNN's outputs each time. The target side's cross potential g (one value per target point) is
therefore defined across calls, and could seed the next call instead of the full annealing. This
script measures what that changes: a shipped model's outputs (two independent samples: the
"previous step" and the "current step") against one HMM target batch.

* annealed: the loss as training computes it (geomloss's schedule, one update per temperature);
* warm k: the cross problem seeded from the previous sample's g, the self problem on x seeded
  from the cached target potential (its soft c-transform onto x), then k symmetric updates at
  the final temperature;
* warm + last m: the same seeds, then the last m temperatures of the schedule;
* converged: the annealed potentials iterated ``--iterations`` more times in float64, the
  reference for every gap.

What it found (benchmarks/README.md): per call, "warm, last 3 temperatures" is as close to the
converged value as the full annealing in half the C-transforms. Built into training as an opt-in
(2026-12-02), it trained far worse: the shipped Three h50 config reached a best validation loss
of 7.81 against 5.37 fully annealed, distance ratio 1.32 against 1.01, volatility 14.4 against
the HMM's 7.5. So the loss does not warm-start; this script keeps the measurement.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from hmmrnn import api
from hmmrnn import loss as L
from hmmrnn.device import torch_generator

SHIPPED = Path(__file__).resolve().parents[1] / "TrainedModels"


def clouds(model_name: str, batch: int, length: int, untrained: bool) -> tuple[torch.Tensor, ...]:
    """Targets y and two independent output samples x1 (previous step), x2 (current step), from
    the shipped model or (untrained) a freshly initialised one of its config, as at epoch 1."""
    from hmmrnn.train import init_model

    loaded = api.load(SHIPPED / model_name / "hidden_50" / "input_10" / "seed_0")
    model, hmm = loaded.model.eval(), loaded.config.build_hmm()
    if untrained:
        model = init_model(loaded.config, torch.device("cpu")).eval()
    k = hmm.num_outputs
    rng = np.random.default_rng(0)
    y = torch.from_numpy(hmm.sample(batch, length, rng).outputs)

    def sample(seed: int) -> torch.Tensor:
        with torch.no_grad():
            run = model.generate(batch, length, generator=torch_generator(seed, model.device))
        return run.symbols

    return tuple(
        torch.nn.functional.one_hot(s, k).float().reshape(batch, -1)
        for s in (y, sample(1), sample(2))
    )


class Problem:
    """The three cost matrices of one divergence and the helpers that evaluate potentials."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, blur: float, scaling: float) -> None:
        self.eps, self.plan = blur**2, L._Plan()
        self.schedule = L.epsilon_schedule(math.sqrt(y.shape[1]), blur, scaling)
        self.log_w = -math.log(x.shape[0])
        self.c, self.cxx, self.cyy = (L._cost(a, b, L._Plan()) for a, b in ((x, y), (x, x), (y, y)))

    def rows(self, cost: torch.Tensor, h: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        e = eps or self.eps
        return L._softmin(e, cost, h / e + self.log_w, self.plan)[0]

    def cols(self, h: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        e = eps or self.eps
        return L._softmin(e, self.c, h / e + self.log_w, self.plan, axis=0)[0]

    def value(self, f: torch.Tensor, g: torch.Tensor, fa: torch.Tensor, gb: torch.Tensor) -> float:
        """The debiased divergence from the four potentials (one last update each, as the loss)."""
        cross = self.rows(self.c, g) - self.rows(self.cxx, fa)
        return float(cross.mean() + (self.cols(f) - self.rows(self.cyy, gb)).mean())

    def symmetric(self, f, g, fa, eps=None):
        """One symmetric update of the cross pair and of the self potential on x."""
        f_new, g_new = self.rows(self.c, g, eps), self.cols(f, eps)
        return 0.5 * (f + f_new), 0.5 * (g + g_new), 0.5 * (fa + self.rows(self.cxx, fa, eps))


def warm(p: Problem, g0: torch.Tensor, gb: torch.Tensor, temps: list[float]) -> float:
    """Seeded from g0 (cross) and the target potential gb (self on x), then one update per temp."""
    f = p.rows(p.c, g0, temps[0] if temps else None)
    g = p.cols(f, temps[0] if temps else None)
    fa = p.rows(p.c, gb, temps[0] if temps else None)  # gb's soft c-transform onto x
    for eps in temps:
        f, g, fa = p.symmetric(f, g, fa, eps)
    return p.value(f, g, fa, gb)


def converged(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> float:
    p = Problem(x.double(), y.double(), args.blur, args.scaling)
    f, g = L._anneal_cross(p.c, p.schedule, p.plan)
    fa = L._anneal_self(p.cxx, p.schedule, p.plan)
    gb = L._anneal_self(p.cyy, p.schedule, p.plan)
    for _ in range(args.iterations):
        f, g, fa = p.symmetric(f, g, fa)
        gb = 0.5 * (gb + p.rows(p.cyy, gb))
    return p.value(f, g, fa, gb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--model", default="Three")
    parser.add_argument("--blur", type=float, default=0.2)
    parser.add_argument("--scaling", type=float, default=0.5)
    parser.add_argument("--iterations", type=int, default=1000, help="of the converged reference")
    parser.add_argument("--untrained", action="store_true", help="a fresh model, as at epoch 1")
    args = parser.parse_args()
    y, x1, x2 = clouds(args.model, args.batch, args.length, args.untrained)
    ref = converged(x2, y, args)
    prev = Problem(x1, y, args.blur, args.scaling)
    _, g0 = L._anneal_cross(prev.c, prev.schedule, prev.plan)
    p = Problem(x2, y, args.blur, args.scaling)
    gb = L._anneal_self(p.cyy, p.schedule, p.plan)
    # training's loss, its target potential cached (as from the second epoch on)
    kw = {"diameter": math.sqrt(y.shape[1]), "target_cache": L.TargetCache(), "target_key": 0}
    L.sinkhorn_divergence(x1, y, args.blur, args.scaling, **kw)
    rows = [
        (
            "annealed (training's loss)",
            lambda: float(L.sinkhorn_divergence(x2, y, args.blur, args.scaling, **kw)),
        )
    ]
    rows += [(f"warm, {k} updates at the final temperature",
              lambda k=k: warm(p, g0, gb, [p.eps] * k)) for k in (1, 3, 10, 30)]  # fmt: skip
    rows += [(f"warm, last {m} temperatures", lambda m=m: warm(p, g0, gb, p.schedule[-m:]))
             for m in (2, 3, 4)]  # fmt: skip
    zero = torch.zeros_like(g0)  # the control: the same short schedule without the seeds
    rows += [(f"cold, last {m} temperatures", lambda m=m: warm(p, zero, zero, p.schedule[-m:]))
             for m in (3, 4)]  # fmt: skip
    kind = "untrained" if args.untrained else "shipped"
    print(f"{args.model} h50 ({kind}), B {args.batch}, L {args.length}; converged {ref:.6f}")
    print("| variant | value | gap to converged | seconds |\n|---|---|---|---|")
    for name, fn in rows:
        start = time.perf_counter()
        value = fn()
        took = time.perf_counter() - start
        print(f"| {name} | {value:.6f} | {(value - ref) / ref:+.2%} | {took:.3f} |")


if __name__ == "__main__":
    main()
