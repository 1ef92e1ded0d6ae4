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
from typing import Annotated

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
    trace: np.ndarray  # (P, G, T) trace of the covariance over rollouts, per step
    distance: np.ndarray  # (P, G, T) mean distance to the mean trajectory, per step
    trace_mean: np.ndarray  # (P, G) averaged over steps
    distance_mean: np.ndarray  # (P, G)
    projections: np.ndarray  # (P, G, N, T + 1, 2) rollouts on PC1-PC2, start included
    components: np.ndarray  # (2, H)
    mean: np.ndarray  # (H,)
    t_cluster: int
    t_kick: int


def spread(states: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Trace of covariance (ddof 1) and mean distance to the mean, over rollouts, per step.

    states: (N, T, H) -> two (T,) arrays.
    """
    centred = states - states.mean(dim=0, keepdim=True)
    trace = (centred**2).sum(dim=(0, 2)) / max(1, states.shape[0] - 1)
    distance = centred.norm(dim=2).mean(dim=0)
    return trace.cpu().numpy().astype(np.float64), distance.cpu().numpy().astype(np.float64)


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
    noise_std: NoiseStd = 1.0,
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
    `locate_params` (through the registry's cache when a `context` is given).
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
    frozen = noise_std * torch.randn((steps, model.input_size), generator=gen, device=dev)
    fresh = noise_std * torch.randn(
        (n_rollouts, steps, model.input_size), generator=gen, device=dev
    )
    components, mean = pc_basis(
        model, n_components=2, steps=pca_steps, warmup=warmup, noise_std=noise_std, seed=seed
    )
    n_p, n_g = len(starts), len(gammas)
    trace = np.zeros((n_p, n_g, steps))
    distance = np.zeros((n_p, n_g, steps))
    proj = np.zeros((n_p, n_g, n_rollouts, steps + 1, components.shape[0]))
    for g, gamma in enumerate(gammas):
        noise = mixed_noise(frozen, fresh, float(gamma))
        for p in range(n_p):
            h0 = starts[p].expand(n_rollouts, -1)
            states = rollout(model, h0, noise)
            trace[p, g], distance[p, g] = spread(states)
            proj[p, g] = project(torch.cat([h0[:, None], states], dim=1), components, mean)
        progress(0.3 + 0.7 * (g + 1) / n_g, f"noise sensitivity: gamma {gamma}")
        check_cancel(cancel)
    return NoiseSensitivityResult(
        gammas=np.asarray(gammas, dtype=np.float64),
        point_names=list(POINT_NAMES),
        points=starts.cpu().numpy(),
        trace=trace,
        distance=distance,
        trace_mean=trace.mean(axis=2),
        distance_mean=distance.mean(axis=2),
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
                    f"trace {r.trace_mean[p, g]:.2f}, distance {r.distance_mean[p, g]:.2f}",
                )
            )
    return rows


register(
    Analysis(
        name="noise-sensitivity",
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
