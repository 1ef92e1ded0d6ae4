"""Locating the "cluster" and "kick" areas of state space along one simulated run (ANALYSES.md §6).

A trained network dwells near an output's cluster and leaves it through a kick zone from which a
switch is all but certain. One driven run is simulated; its longest complete dwell (after skipping
the first switches and steps, which still carry the h_0 transient) gives two points: the midpoint
(cluster point) and the earliest step from which every probe rollout switches within a few steps
(kick point). Only those two states and the outputs around the dwell are kept, not the whole run.

Public API (stable; noise sensitivity, neurons and ablation import it):

- `locate_areas(model, *, steps=2000, skip_switches=4, skip_steps=200, n_probes=100, probe_steps=3,
  max_retries=5, noise_std=1.0, kick_fraction=1.0, margin=20, seed=0) -> LocateResult`
  raises ValueError when no try (seed, seed+1, ...) yields a usable dwell and kick point.
- `LocateResult` fields: h_cluster (H,), h_kick (H,) float32; t_cluster, t_kick, dwell_start,
  dwell_end (inclusive; the switch happens at dwell_end + 1) as steps of the simulated run;
  dwell_output, output_before, output_after; window_start and window_outputs (the argmax outputs
  from window_start to dwell_end + 1 + margin); probe_switch_fraction (dwell length,), the fraction
  of probes switching within probe_steps from each step of the dwell; seed_used, tries, n_switches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import argmax_outputs, dwells
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import NoiseStd, P, Seed


@dataclass
class LocateResult(Result):
    h_cluster: np.ndarray
    h_kick: np.ndarray
    t_cluster: int
    t_kick: int
    dwell_start: int
    dwell_end: int
    dwell_output: int
    output_before: int
    output_after: int
    window_start: int
    window_outputs: np.ndarray
    probe_switch_fraction: np.ndarray
    seed_used: int
    tries: int
    n_switches: int
    # dwells of window_outputs (start, end inclusive, output), as steps of the simulated run
    window_dwell_start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    window_dwell_end: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    window_dwell_output: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # probes' mean first-switch step per step of the dwell (never switching: probe_steps + 1)
    probe_mean_time: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    # (2, KEPT_NOISE, d): the run's own inputs right after the cluster and the kick point (nan
    # past the end of the run)
    run_noise: np.ndarray = field(default_factory=lambda: np.zeros((2, 0, 0), dtype=np.float32))


@torch.no_grad()
def probe_switches(
    model,
    h: torch.Tensor,
    output: int,
    *,
    n_probes: int,
    probe_steps: int,
    noise_std: float,
    generator: torch.Generator,
    chunk_rows: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """For each state of h (T, H), over noisy probes: the fraction leaving `output` within
    probe_steps, and their mean first-switch step (probes that never switch count probe_steps+1)."""
    fractions, times = [], []
    per = max(1, chunk_rows // n_probes)
    for lo in range(0, h.shape[0], per):
        start = h[lo : lo + per].repeat_interleave(n_probes, dim=0)
        first = torch.full((start.shape[0],), probe_steps + 1, dtype=torch.long, device=h.device)
        state = start
        for t in range(1, probe_steps + 1):
            x = noise_std * torch.randn(
                (state.shape[0], model.input_size), generator=generator, device=h.device
            )
            state = model.step(state, x)
            left = argmax_outputs(model, state) != output
            first = torch.where(left & (first > probe_steps), t, first)
        first = first.reshape(-1, n_probes)
        fractions.append((first <= probe_steps).float().mean(1))
        times.append(first.double().mean(1))
    return torch.cat(fractions).cpu().numpy(), torch.cat(times).cpu().numpy()


KEPT_NOISE = 50  # steps of the run's input kept after each point


def _inputs_after(noise: np.ndarray, points) -> np.ndarray:
    """The inputs (T, d) the located run received right after each point."""
    out = np.full((len(points), KEPT_NOISE, noise.shape[1]), np.nan, dtype=np.float32)
    for i, t in enumerate(points):
        follow = noise[t + 1 : t + 1 + KEPT_NOISE]
        out[i, : len(follow)] = follow
    return out


def _pick_dwell(symbols: np.ndarray, skip_switches: int, skip_steps: int):
    """Longest complete dwell starting after the first `skip_switches` switches and `skip_steps`."""
    runs = dwells(symbols)
    # a complete dwell starts at a switch and ends right before one: not the first or last run
    ok = np.zeros(len(runs), dtype=bool)
    ok[1:-1] = True
    ok &= np.arange(len(runs)) > skip_switches  # run i starts at the i-th switch
    ok &= runs.start >= skip_steps
    if not ok.any():
        return None
    lengths = np.where(ok, runs.end - runs.start + 1, -1)
    i = int(np.argmax(lengths))  # ties: the earliest
    return int(runs.start[i]), int(runs.end[i])


@torch.no_grad()
def locate_areas(
    model,
    *,
    steps: Annotated[int, P("steps of the simulated run", ge=2)] = 2000,
    skip_switches: Annotated[int, P("first switches skipped (h0 transient)", ge=0)] = 4,
    skip_steps: Annotated[int, P("first steps skipped", ge=0)] = 200,
    n_probes: Annotated[int, P("probe rollouts per step of the dwell", ge=1)] = 100,
    probe_steps: Annotated[int, P("a probe switches if it does within this many steps", ge=1)] = 25,
    max_mean_time: Annotated[
        float, P("at the kick point the probes' mean switch step is below this", gt=0)
    ] = 3.0,
    max_retries: Annotated[int, P("runs tried (seed, seed+1, ...) before giving up", ge=1)] = 5,
    noise_std: NoiseStd = 1.0,
    kick_fraction: Annotated[
        float, P("share of probes that must switch at the kick point", gt=0, le=1)
    ] = 1.0,
    margin: Annotated[int, P("steps kept after the dwell in the saved window", ge=0)] = 20,
    seed: Seed = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> LocateResult:
    """Cluster point (dwell midpoint) and kick point: the earliest step of the dwell from which
    all probes switch within `probe_steps` and switch on average before step `max_mean_time` (the
    research code's criterion: mean < 3 steps, all within 25). The located run's own inputs after
    both points are kept, so that noise sensitivity can freeze exactly the noise the run received.

    kick_fraction < 1 relaxes "all probes" for networks whose switches are less decisive.
    Tries seeds seed, seed+1, ... up to max_retries times when a run has no usable dwell or no step
    of its longest dwell qualifies as a kick point.
    """
    progress = progress or no_progress
    tries = max(1, int(max_retries))
    total_switches = 0
    failures: list[str] = []
    for attempt in range(tries):
        check_cancel(cancel)
        progress(attempt / tries, f"locate: simulating run {attempt + 1}/{tries}")
        gen = torch_generator(seed + attempt, model.device)
        noise = model.sample_noise(1, steps, noise_std, gen)  # kept: the points' own inputs
        hidden = model.rnn(noise)[0][0]
        symbols = argmax_outputs(model, hidden).cpu().numpy()
        n_switches = int((symbols[1:] != symbols[:-1]).sum())
        total_switches += n_switches
        picked = _pick_dwell(symbols, skip_switches, skip_steps)
        if picked is None:
            failures.append(f"seed {seed + attempt}: {n_switches} switches, no complete dwell")
            continue
        start, end = picked
        check_cancel(cancel)
        fraction, mean_time = probe_switches(
            model,
            hidden[start : end + 1],
            int(symbols[start]),
            n_probes=n_probes,
            probe_steps=probe_steps,
            noise_std=noise_std,
            generator=gen,
        )
        good = np.flatnonzero((fraction >= kick_fraction - 1e-9) & (mean_time < max_mean_time))
        if good.size == 0:
            failures.append(
                f"seed {seed + attempt}: no step of dwell {start}-{end} switched "
                f"{kick_fraction:.0%} of probes within {probe_steps} steps at a mean below "
                f"{max_mean_time:g} (best {fraction.max():.0%}, mean {mean_time.min():.1f})"
            )
            continue
        t_kick = start + int(good[0])
        t_cluster = (start + end) // 2
        lo, hi = max(0, start - margin), min(len(symbols), end + 2 + margin)
        progress(1.0, "locate: done")
        window = dwells(symbols[lo:hi])
        run_noise = _inputs_after(noise[0].cpu().numpy(), (t_cluster, t_kick))
        return LocateResult(
            h_cluster=hidden[t_cluster].cpu().numpy().astype(np.float32),
            h_kick=hidden[t_kick].cpu().numpy().astype(np.float32),
            t_cluster=t_cluster,
            t_kick=t_kick,
            dwell_start=start,
            dwell_end=end,
            dwell_output=int(symbols[start]),
            output_before=int(symbols[start - 1]),
            output_after=int(symbols[end + 1]),
            window_start=lo,
            window_outputs=symbols[lo:hi].astype(np.int64),
            probe_switch_fraction=fraction.astype(np.float32),
            probe_mean_time=mean_time.astype(np.float32),
            run_noise=run_noise,
            seed_used=seed + attempt,
            tries=attempt + 1,
            n_switches=n_switches,
            window_dwell_start=window.start + lo,
            window_dwell_end=window.end + lo,
            window_dwell_output=np.asarray(window.value, dtype=np.int64),
        )
    if total_switches == 0:
        raise ValueError(
            f"the model never switched output in {steps} steps x {tries} tries: its argmax output "
            "stays constant under input noise, so there are no dwells to locate areas in"
        )
    raise ValueError(
        "could not locate cluster and kick points: "
        + "; ".join(failures)
        + " (a lower kick_fraction or more max_retries may help)"
    )


def _summary(r: LocateResult) -> list[tuple[str, str]]:
    return [
        ("dwell", f"steps {r.dwell_start}-{r.dwell_end} on output {r.dwell_output}"),
        ("switch", f"{r.output_before} -> {r.dwell_output} -> {r.output_after}"),
        ("cluster point", f"t = {r.t_cluster}"),
        ("kick point", f"t = {r.t_kick} ({r.dwell_end + 1 - r.t_kick} steps before the switch)"),
        ("seed used", f"{r.seed_used} (try {r.tries})"),
    ]


register(
    Analysis(
        name="locate",
        version=3,  # 3: mean switch time < 3 and all within 25; the run's own inputs kept
        fn=locate_areas,
        result=LocateResult,
        help="cluster point (dwell midpoint) and kick point (switch inevitable) of one run",
        summary=_summary,
        figures=(
            Figure("locate", "the dwell, cluster and kick points, and probe switch shares",
                   "hmmrnn.figures.mechanisms:render_locate", colors_outputs=True),
        ),
        views=(View("run", "hmmrnn.figures.terminal:locate_run"),),
    )
)  # fmt: skip
