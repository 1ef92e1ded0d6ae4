"""Benchmark of the residency analysis against the research scripts' per-state Python loop.

Runs the study-size job (5,000 states x 20 samples x up to 60 steps, hidden 150, input 100) on a
random network whose recurrent spectral radius is near 1, so that it dwells and switches, then
times the straightforward loop (per state, per sample, per step, `.item()` checks) on a few states,
extrapolates it to the full job and prints the ratio. Then repeats the batched job at hidden 200
and prints peak resident memory (ru_maxrss: the whole process, torch included).

    python benchmarks/bench_analyses.py [--states 5000] [--loop-states 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from hmmrnn.analyses.dynamics import driven_run, gating_masks
from hmmrnn.analyses.residency import residency
from hmmrnn.device import resolve_device, torch_generator
from hmmrnn.rnn import HMMRNN


def random_model(hidden: int, inputs: int, outputs: int = 3, radius: float = 0.95, seed: int = 0):
    """Random bias-free ReLU RNN with W_hh rescaled to the given spectral radius.

    Such a network switches output almost every other step (RT ~ 2.5), far more often than a
    trained one, so it understates the rollout work; see `dwelling_model`.
    """
    g = torch.Generator().manual_seed(seed)
    w_hh = torch.randn(hidden, hidden, generator=g) / hidden**0.5
    w_hh *= radius / torch.linalg.eigvals(w_hh).abs().max()
    state = {
        "rnn.weight_ih_l0": torch.randn(hidden, inputs, generator=g) / inputs**0.5,
        "rnn.weight_hh_l0": w_hh,
        "fc.weight": torch.randn(outputs, hidden, generator=g),
    }
    return HMMRNN.from_state_dict(state)


def dwelling_model(
    hidden: int,
    inputs: int,
    outputs: int = 3,
    excite: float = 1.0,
    inhibit: float = 1.0,
    noise: float = 0.3,
    seed: int = 0,
):
    """Random network plus one self-exciting, mutually inhibiting unit group per output.

    Noise-driven winner-take-all that stays bounded. excite 1, inhibit 1: dwells of ~5 steps.
    excite 0.98, inhibit 3, noise 0.2 ("sticky"): almost no rollout switches within 60 steps,
    the worst case for the rollouts (every one runs the whole window).
    """
    g = torch.Generator().manual_seed(seed)
    group = torch.arange(hidden) % outputs
    same = (group[:, None] == group[None, :]).float()
    size = hidden / outputs
    w_hh = (excite / size) * same - (inhibit / size) * (1 - same)
    w_hh = w_hh + noise * torch.randn(hidden, hidden, generator=g) / hidden**0.5
    w_out = torch.nn.functional.one_hot(group, outputs).T.float()
    state = {
        "rnn.weight_ih_l0": torch.randn(hidden, inputs, generator=g) / inputs**0.5,
        "rnn.weight_hh_l0": w_hh,
        "fc.weight": w_out + 0.1 * torch.randn(outputs, hidden, generator=g),
    }
    return HMMRNN.from_state_dict(state)


@torch.no_grad()
def loop_residency(model: HMMRNN, states: torch.Tensor, n_samples: int, max_steps: int):
    """The research code's way: one state, one sample, one step at a time, `.item()` checks,
    then one dense Jacobian per state for its eigenvalues. Returns (RTs, rollout s, eig s)."""
    rts = []
    t0 = time.perf_counter()
    for h0 in states:
        start = int(model.readout(h0).argmax().item())
        steps = []
        for _ in range(n_samples):
            h = h0.clone()
            t_switch = max_steps
            for t in range(1, max_steps + 1):
                h = model.step(h[None], torch.randn(1, model.input_size))[0]
                if model.readout(h).argmax().item() != start:
                    t_switch = t
                    break
            steps.append(t_switch)
        rts.append(float(np.mean(steps)))
    t1 = time.perf_counter()
    for h0 in states:
        mask = gating_masks(model, h0[None])[0].double()
        jac = (mask[:, None] * model.w_hh.double()).numpy()
        int((np.abs(np.linalg.eigvals(jac)) > 1).sum())
    return np.array(rts), t1 - t0, time.perf_counter() - t1


STICKY = dict(excite=0.98, inhibit=3.0, noise=0.2)


def maxrss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def timed_residency(model, label: str, n_states: int, job: dict):
    t0 = time.perf_counter()
    res = residency(model, n_states=n_states, **job)
    seconds = time.perf_counter() - t0
    print(
        f"batched residency, {label}, input {model.input_size}: {n_states} states x "
        f"{job['n_samples']} samples x <= {job['max_steps']} steps: {seconds:.2f} s"
    )
    print(
        f"  mean RT {res.rt.mean():.2f}, censored rollouts "
        f"{100 * (1 - res.switched_fraction.mean()):.1f}%, unstable eigs/state "
        f"{res.unstable_counts.mean():.2f}, groups "
        + ", ".join(f"{n}={s}" for n, s in zip(res.group_names, res.group_sizes, strict=True))
    )
    return res, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=5000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--loop-states", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    job = dict(n_samples=args.samples, max_steps=args.max_steps)

    cases = [
        ("dwelling model", dwelling_model(150, 100)),
        ("random model (radius 0.95)", random_model(150, 100)),
        ("sticky model (worst case)", dwelling_model(150, 100, **STICKY)),
    ]
    residency(cases[0][1].to(device), n_states=200, pca_steps=200, **job)  # warm-up
    for label, model in cases:
        model = model.to(device)
        _, batched = timed_residency(model, f"{label}, hidden 150", args.states, job)
        # the same states the batched job used (its run, seed 0), evenly spaced
        states = driven_run(model, 1, 20 + args.states, generator=torch_generator(0, device))[
            0, 20:
        ]
        subset = states[:: max(1, args.states // args.loop_states)][: args.loop_states].cpu()
        torch.manual_seed(0)
        loop_rt, roll_s, eig_s = loop_residency(model.cpu(), subset, args.samples, args.max_steps)
        scale = args.states / len(subset)
        loop = (roll_s + eig_s) * scale
        print(
            f"  per-state loop on {len(subset)} of its states (mean RT {loop_rt.mean():.2f}), "
            f"extrapolated to {args.states}: {loop:.0f} s (rollouts {roll_s * scale:.0f} s, "
            f"dense eigs {eig_s * scale:.0f} s) -> batched is {loop / batched:.0f}x faster"
        )

    timed_residency(
        dwelling_model(200, 100, **STICKY).to(device), "sticky model, hidden 200", args.states, job
    )
    print(f"peak resident memory of the process (ru_maxrss): {maxrss_mb():.0f} MB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
