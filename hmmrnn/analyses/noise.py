"""Noise sensitivity: how much trajectories from the cluster and kick points spread under noise (§6).

From each point, many short rollouts receive (1 - gamma) x one frozen noise sequence shared by all
+ gamma x fresh noise of their own. gamma = 0 shows the deterministic response to one input;
gamma = 1 shows how strongly the state amplifies independent noise. The spread is reported as the
trace of the covariance of the states over rollouts, and as the mean distance to the mean
trajectory, per time step. The same frozen and fresh draws serve every gamma and both points, so
differences between them come from the dynamics, not from the draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import mixed_noise, pc_basis, project, rollout
from hmmrnn.analyses.locate import LocateResult, locate_areas
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import NoiseStd, P, PcaSteps, Seed, Warmup

POINT_NAMES = ["cluster", "kick"]


@dataclass
class NoiseSensitivityResult(Result):
    gammas: np.ndarray  # (G,)
    point_names: list
    points: np.ndarray  # (P, H) start states
    trace: np.ndarray  # (P, G, T) trace of the covariance over rollouts, per step (repeat mean)
    distance: np.ndarray  # (P, G, T) mean distance to the mean trajectory, per step
    trace_mean: np.ndarray  # (P, G) averaged over steps
    distance_mean: np.ndarray  # (P, G)
    # standard errors over the independent draws (nan with one draw): one draw varies by ~15%
    trace_se: np.ndarray  # (P, G, T)
    distance_se: np.ndarray  # (P, G, T)
    trace_mean_se: np.ndarray  # (P, G)
    distance_mean_se: np.ndarray  # (P, G)
    repeats: int
    projections: np.ndarray  # (P, G, N, T + 1, 2) rollouts on PC1-PC2, start included
    components: np.ndarray  # (2, H)
    mean: np.ndarray  # (H,)
    t_cluster: int
    t_kick: int


def spread(states: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Trace of covariance (ddof 1) and mean distance to the mean, over rollouts, per step.

    states: (..., N, T, H) -> two (..., T) arrays (one per leading index, e.g. per draw).
    """
    n = states.shape[-3]
    centred = states - states.mean(dim=-3, keepdim=True)
    trace = (centred**2).sum(dim=(-3, -1)) / max(1, n - 1)
    distance = centred.norm(dim=-1).mean(dim=-2)
    return trace.cpu().numpy().astype(np.float64), distance.cpu().numpy().astype(np.float64)


def _frozen_inputs(points, drawn: torch.Tensor, frozen_from: str, steps: int, d: int):
    """(points, repeats, steps, d) frozen inputs: the located run's own, or the random draws."""
    if frozen_from == "random":
        return drawn.expand(2, *drawn.shape)
    if frozen_from != "run":
        raise ValueError(f"frozen_from must be 'run' or 'random', got {frozen_from!r}")
    own = np.asarray(getattr(points, "run_noise", np.zeros((2, 0, 0))), dtype=np.float32)
    if own.ndim != 3 or own.shape[2] != d or own.shape[1] < steps or np.isnan(own[:, :steps]).any():
        kept = own.shape[1] if own.ndim == 3 else 0
        raise ValueError(
            f"the located run kept {kept} steps of its own input after each point (the run may "
            f"end there), {steps} are needed: fewer steps, or frozen_from='random'"
        )
    run = torch.as_tensor(own[:, :steps], device=drawn.device, dtype=drawn.dtype)
    return run[:, None].expand(-1, drawn.shape[0], -1, -1)


def _se(values: np.ndarray) -> np.ndarray:
    """Standard error of the mean over axis 0 (nan for a single draw)."""
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan)
    return values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])


@torch.no_grad()
def noise_sensitivity(
    model,
    *,
    gammas: Annotated[Sequence[float], P("noise mixes: 0 frozen, 1 fresh noise", ge=0, le=1)] = (
        0.0,
        0.5,
        1.0,
    ),
    n_rollouts: Annotated[int, P("rollouts per point and gamma", ge=2)] = 100,
    steps: Annotated[int, P("steps per rollout", ge=1)] = 5,
    repeats: Annotated[
        int, P("independent draws of the frozen and fresh noise (error bars over them)", ge=1)
    ] = 10,
    noise_std: NoiseStd = 1.0,
    frozen_from: Annotated[
        Literal["run", "random"],
        P("the frozen input: the located run's own noise after each point, or a fresh draw"),
    ] = "run",
    seed: Seed = 0,
    locate_params: Annotated[
        dict | None, P("parameters of the locate analysis that finds the points")
    ] = None,
    points: LocateResult | None = None,
    pca_steps: PcaSteps = 2000,
    warmup: Warmup = 20,
    context=None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> NoiseSensitivityResult:
    """Spread of rollouts from the cluster and kick points for each noise mix gamma.

    `points` is a LocateResult already at hand; otherwise the points are located with
    `locate_params` (through the registry's cache when a `context` is given). With `frozen_from`
    "run" the frozen part is the input the located run itself received after each point (the
    study's protocol: what did the noise the network actually saw do?), the same for every draw;
    "random" draws it anew per repeat.
    """
    progress = progress or no_progress
    if points is None and context is not None:
        points = context.run("locate", locate_params, span=(0.0, 0.3))
    elif points is None:
        points = locate_areas(model, **(locate_params or {}), cancel=cancel)
    check_cancel(cancel)
    dev, dtype = model.device, model.w_hh.dtype
    starts = torch.as_tensor(np.stack([points.h_cluster, points.h_kick]), device=dev, dtype=dtype)
    gen = torch_generator(seed, dev)
    d, n = model.input_size, n_rollouts
    frozen = noise_std * torch.randn((repeats, steps, d), generator=gen, device=dev)
    fresh = noise_std * torch.randn((repeats, n, steps, d), generator=gen, device=dev)
    frozen = _frozen_inputs(points, frozen, frozen_from, steps, d)
    components, mean = pc_basis(
        model, n_components=2, steps=pca_steps, warmup=warmup, noise_std=noise_std, seed=seed
    )
    n_p, n_g = len(starts), len(gammas)
    trace = np.zeros((repeats, n_p, n_g, steps))
    distance = np.zeros((repeats, n_p, n_g, steps))
    proj = np.zeros((n_p, n_g, n, steps + 1, components.shape[0]))
    for g, gamma in enumerate(gammas):
        for p in range(n_p):
            # every draw in one batch: (repeats x rollouts) rollouts, each draw its frozen input
            noise = mixed_noise(frozen[p], fresh, float(gamma)).reshape(repeats * n, steps, d)
            h0 = starts[p].expand(repeats * n, -1)
            states = rollout(model, h0, noise).reshape(repeats, n, steps, -1)
            trace[:, p, g], distance[:, p, g] = spread(states)
            first = torch.cat([h0[:n, None], states[0]], dim=1)  # the figure shows draw 0
            proj[p, g] = project(first, components, mean)
        progress(0.3 + 0.7 * (g + 1) / n_g, f"noise sensitivity: gamma {gamma}")
        check_cancel(cancel)
    return NoiseSensitivityResult(
        gammas=np.asarray(gammas, dtype=np.float64),
        point_names=list(POINT_NAMES),
        points=starts.cpu().numpy(),
        trace=trace.mean(axis=0),
        distance=distance.mean(axis=0),
        trace_mean=trace.mean(axis=(0, 3)),
        distance_mean=distance.mean(axis=(0, 3)),
        trace_se=_se(trace),
        distance_se=_se(distance),
        trace_mean_se=_se(trace.mean(axis=3)),
        distance_mean_se=_se(distance.mean(axis=3)),
        repeats=int(repeats),
        projections=proj.astype(np.float32),
        components=components,
        mean=mean,
        t_cluster=int(points.t_cluster),
        t_kick=int(points.t_kick),
    )


def _summary(r: NoiseSensitivityResult) -> list[tuple[str, str]]:
    rows = []
    for p, name in enumerate(r.point_names):
        for g, gamma in enumerate(r.gammas):
            rows.append(
                (
                    f"{name}, gamma {gamma:g}",
                    f"trace {r.trace_mean[p, g]:.2f} ± {r.trace_mean_se[p, g]:.2f}, distance "
                    f"{r.distance_mean[p, g]:.2f} ± {r.distance_mean_se[p, g]:.2f} "
                    f"(± s.e. over {r.repeats} draws)",
                )
            )
    return rows


register(
    Analysis(
        name="noise-sensitivity",
        version=3,  # 3: the frozen input is the located run's own; 2: repeats with errors
        fn=noise_sensitivity,
        result=NoiseSensitivityResult,
        help="spread of rollouts from the cluster and kick points under frozen/fresh noise mixes",
        summary=_summary,
        figures=(
            Figure("noise-sensitivity", "rollouts per gamma from cluster and kick points, spread",
                   "hmmrnn.figures.mechanisms:render_noise_sensitivity"),
        ),
        views=(
            View("trace", "hmmrnn.figures.terminal:noise_trace"),
            View("distance", "hmmrnn.figures.terminal:noise_distance"),
        ),
    )
)  # fmt: skip
