"""PCA of the hidden states a model visits while driven by its noise: the basis every picture uses.

The state space of a trained emulator is high-dimensional but its driven dynamics live near a
low-dimensional set, so all state-space views (trajectories, fixed points, contours, readout
alignment, the mechanistic analyses) project onto the principal components of one long driven run.
`driven_pca(model, seed=s)` is deterministic, so analyses that call it with the same parameters
share the same basis; `project` reuses a fitted basis for any other states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from hmmrnn.analyses.base import Result
from hmmrnn.analyses.registry import Analysis, Figure, register
from hmmrnn.device import torch_generator
from hmmrnn.params import P


@dataclass
class PCAResult(Result):
    """A PCA basis and the driven run it was fitted on.

    components (C, H) rows are unit principal axes; mean (H,) the centre; explained_variance_ratio
    and explained_variance (C,). projections (N, C), outputs (N,) int and logits (N, K) belong to the
    fitted states in run-major order: run r occupies rows r*steps:(r+1)*steps (N = n_runs*steps, so
    with one run N is the time axis).
    """

    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    explained_variance: np.ndarray
    projections: np.ndarray
    outputs: np.ndarray
    logits: np.ndarray
    steps: int = 0
    n_runs: int = 1
    noise_std: float = 1.0

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])


def project(result: PCAResult, states) -> np.ndarray:
    """Coordinates (..., C) of states (..., H) (numpy or torch) in a fitted basis."""
    if isinstance(states, torch.Tensor):
        states = states.detach().cpu().numpy()
    states = np.asarray(states, dtype=np.float64)
    return (states - result.mean) @ result.components.T


def project_directions(result: PCAResult, vectors) -> np.ndarray:
    """Coordinates of *directions* (no centring), e.g. readout rows or eigenvectors."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().numpy()
    return np.asarray(vectors, dtype=np.float64) @ result.components.T


def fit_pca(
    states: np.ndarray,
    n_components: int = 3,
    *,
    outputs: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    steps: int | None = None,
    n_runs: int = 1,
    noise_std: float = 1.0,
) -> PCAResult:
    """PCA of states (N, H) with a sign convention that does not depend on the LAPACK build.

    Each axis is flipped so that its largest-magnitude loading is positive, which keeps pictures
    from mirroring between machines or library upgrades.
    """
    x = np.asarray(states, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 states of shape (N, H), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the driven dynamics diverged (non-finite hidden states); no PCA possible")
    c = max(1, min(int(n_components), x.shape[1], x.shape[0]))
    mean = x.mean(axis=0)
    comps, variance, total = _principal_axes(x - mean, c)
    big = np.abs(comps).argmax(axis=1)
    comps *= np.sign(comps[np.arange(c), big])[:, None]
    n = x.shape[0]
    return PCAResult(
        components=comps,
        mean=mean,
        explained_variance_ratio=variance / total if total > 0 else np.zeros(c),
        explained_variance=variance,
        projections=(x - mean) @ comps.T,
        outputs=np.zeros(n, dtype=np.int64) if outputs is None else np.asarray(outputs),
        logits=np.zeros((n, 0)) if logits is None else np.asarray(logits, dtype=np.float64),
        steps=int(steps if steps is not None else n // max(n_runs, 1)),
        n_runs=int(n_runs),
        noise_std=float(noise_std),
    )


def _principal_axes(xc: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The top-c axes (c, H) of centred states, their variances and the total variance.

    From the H x H covariance (one GEMM and a small symmetric eigensolve) rather than an SVD of the
    N x H states: the same axes for N >> H at a fraction of the cost, and no multithreaded LAPACK
    call that stalls for seconds when the machine's cores are busy.
    """
    n = xc.shape[0]
    cov = (xc.T @ xc) / (n - 1)
    evals, evecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(evals, kind="stable")[::-1][:c]
    variance = np.clip(evals[order], 0.0, None)
    return evecs[:, order].T.copy(), variance, float(np.clip(evals, 0.0, None).sum())


def driven_run(model, *, runs: int, steps: int, warmup: int, noise_std: float, seed: int):
    """States (R, T, H), outputs (R, T), logits (R, T, K) after `warmup` discarded steps.

    Uses the model's own `generate`, so outputs are sampled exactly as in generation.
    """
    if steps < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1, runs >= 1, warmup >= 0 (got {steps}, {runs}, {warmup})")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    gen = torch_generator(seed, model.device)
    run = model.generate(runs, warmup + steps, noise_std=noise_std, generator=gen)
    return (
        run.hidden[:, warmup:].double().cpu().numpy(),
        run.symbols[:, warmup:].cpu().numpy(),
        run.logits[:, warmup:].double().cpu().numpy(),
    )


def driven_pca(
    model,
    *,
    steps: Annotated[int, P("driven steps per run that the PCA is fitted on", ge=2)] = 2000,
    warmup: Annotated[int, P("steps discarded first (from h = 0)", ge=0)] = 20,
    n_runs: Annotated[int, P("independent driven runs", ge=1)] = 1,
    noise_std: Annotated[float, P("std of the input noise", ge=0, config="noise_std")] = 1.0,
    n_components: Annotated[int, P("principal components kept", ge=1)] = 3,
    seed: Annotated[int, P("seed of the driving noise", ge=0)] = 0,
) -> PCAResult:
    """PCA of the hidden states of `n_runs` driven runs of `steps` steps after `warmup` steps."""
    hidden, outputs, logits = driven_run(
        model, runs=n_runs, steps=steps, warmup=warmup, noise_std=noise_std, seed=seed
    )
    h = hidden.shape[-1]
    return fit_pca(
        hidden.reshape(-1, h),
        n_components,
        outputs=outputs.reshape(-1),
        logits=logits.reshape(-1, logits.shape[-1]),
        steps=steps,
        n_runs=n_runs,
        noise_std=noise_std,
    )


# --- registration ---------------------------------------------------------------------------------


def _summary(result: PCAResult) -> list[tuple[str, str]]:
    evr = result.explained_variance_ratio
    rows = [(f"PC{i + 1} variance", f"{v:.1%}") for i, v in enumerate(evr)]
    rows.append((f"PC1-{len(evr)} total", f"{evr.sum():.1%}"))
    rows.append(("states", f"{result.projections.shape[0]} ({result.n_runs} x {result.steps})"))
    counts = np.bincount(result.outputs.astype(np.int64), minlength=result.logits.shape[-1])
    rows.append(("output counts", " ".join(str(int(c)) for c in counts)))
    return rows


register(
    Analysis(
        name="pca",
        fn=driven_pca,
        result=PCAResult,
        help="PCA of hidden states from long driven runs (explained variance, projections)",
        summary=_summary,
        figures=(
            Figure(
                "pca-2d",
                "PC1-PC2 of driven states by output, arrows along time",
                "hmmrnn.figures.statespace:render_pca_2d",
                colors_outputs=True,
            ),
            Figure(
                "pca-3d",
                "PC1-PC3 of driven states by output",
                "hmmrnn.figures.statespace:render_pca_3d",
                colors_outputs=True,
            ),
            Figure(
                "explained-variance",
                "variance explained per principal component",
                "hmmrnn.figures.statespace:render_explained_variance",
            ),
        ),  # fmt: skip
    )
)
