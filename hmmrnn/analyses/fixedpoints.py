"""Fixed and slow points of the autonomous map h -> ReLU(W_hh h), with their Jacobian spectra.

A bias-free ReLU map is positively homogeneous, so h = 0 is always a fixed point and a nonzero one
comes with its whole ray; the search therefore minimises the scale-free speed on unit directions
(see hmmrnn.analyses.statespace for the geometry) from many driven states at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result
from hmmrnn.analyses.pca import PCAResult, driven_pca
from hmmrnn.analyses.registry import Analysis, Figure, register
from hmmrnn.analyses.statespace import (
    basis_fields,
    dedup_labels,
    derive_seed,
    driven_starts,
    project_or_empty,
    tick,
)
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import P

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
CHECK_EVERY = 50  # iterations between renormalisation, convergence check, progress and cancel


@dataclass
class FixedPointsResult(Result):
    """Fixed and slow points of the autonomous map, the origin first.

    points (P, H); q (P,) the scale-free speed 1/2 |F(u) - u|^2 of the unit direction u (0 for the
    origin); is_fixed (P,) q < tol (the rest are slow points, q < slow_tol); kinds: stable |
    marginal | saddle | unstable; eigenvalues_real/imag (P, H) of the Jacobian, sorted by modulus
    (descending); n_unstable (|lambda| > 1 + eig_tol) and n_marginal (||lambda| - 1| <= eig_tol)
    per point; members (P,) how many starts converged there; projections (P, C) on the driven PCs;
    start_q (n_starts,) the final q of every start; origin_growth the asymptotic per-step growth
    factor of the autonomous flow (the origin attracts everything iff it is < 1).
    """

    points: np.ndarray
    q: np.ndarray
    is_fixed: np.ndarray
    eigenvalues_real: np.ndarray
    eigenvalues_imag: np.ndarray
    n_unstable: np.ndarray
    n_marginal: np.ndarray
    members: np.ndarray
    projections: np.ndarray
    start_q: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    kinds: list[str] = field(default_factory=list)
    origin_growth: float = 0.0
    tol: float = 1e-6
    slow_tol: float = 1e-3

    @property
    def eigenvalues(self) -> np.ndarray:
        return self.eigenvalues_real + 1j * self.eigenvalues_imag


def jacobian_spectra(w_hh: torch.Tensor, points: torch.Tensor) -> np.ndarray:
    """Eigenvalues (P, H) of D(W_hh h > 0) W_hh for a batch of states, sorted by modulus (desc)."""
    w = w_hh.double()
    mask = (points.double() @ w.T > 0).double()
    eig = torch.linalg.eigvals(mask[:, :, None] * w).cpu().numpy()
    order = np.argsort(-np.abs(eig), axis=1, kind="stable")
    return np.take_along_axis(eig, order, axis=1)


def classify(eigs: np.ndarray, eig_tol: float = 1e-2) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(n_unstable, n_marginal, kind) per row of eigenvalues (P, H)."""
    mod = np.abs(eigs)
    n_unst = (mod > 1 + eig_tol).sum(axis=1)
    n_marg = (np.abs(mod - 1) <= eig_tol).sum(axis=1)
    kinds = []
    for u, m, row in zip(n_unst, n_marg, mod, strict=True):
        if u == 0:
            kinds.append("marginal" if m else "stable")
        else:
            kinds.append("unstable" if u == row.size else "saddle")
    return n_unst.astype(np.int64), n_marg.astype(np.int64), kinds


def _speed(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """q(u) = 1/2 |ReLU(W u) - u|^2 per row of unit directions u."""
    r = torch.relu(u @ w.T) - u
    return 0.5 * (r * r).sum(dim=1)


@torch.no_grad()
def origin_growth(w_hh: torch.Tensor, starts: torch.Tensor, steps: int = 200):
    """Asymptotic per-step growth of the autonomous flow from `starts` (worst start) and the linear
    piece it settles in. Directions are renormalised each step, so nothing under/overflows."""
    w = w_hh.double()
    u = starts.double()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    logs = torch.zeros(len(u), dtype=torch.float64, device=u.device)
    half = steps // 2
    for t in range(steps):
        f = torch.relu(u @ w.T)
        n = f.norm(dim=1)
        if t >= half:
            logs += torch.log(n.clamp_min(1e-300))
        u = torch.where(n[:, None] > 0, f / n.clamp_min(1e-300)[:, None], u)
    rate = torch.exp(logs / max(steps - half, 1))
    worst = int(rate.argmax())
    return float(rate[worst]), u[worst : worst + 1]


def find_fixed_points(
    model,
    *,
    n_starts: Annotated[int, P("driven states the search starts from", ge=1)] = 256,
    iters: Annotated[int, P("Adam iterations on the scale-free speed", ge=0)] = 2000,
    lr: Annotated[float, P("Adam learning rate (cosine-decayed)", gt=0)] = 0.05,
    tol: Annotated[float, P("speed below which a point is fixed", gt=0)] = 1e-6,
    slow_tol: Annotated[float, P("speed below which a point is slow (kept)", gt=0)] = 1e-3,
    dedup_tol: Annotated[float, P("directions closer than this are one point", gt=0)] = 1e-3,
    eig_tol: Annotated[float, P("|lambda| within 1 +- this is marginal", gt=0)] = 1e-2,
    pca_steps: Annotated[int, P("driven steps of the PC basis (0: no projection)", ge=0)] = 2000,
    n_components: Annotated[int, P("principal components of the projection", ge=1)] = 3,
    seed: Annotated[int, P("seed of the starts and the PC basis' driven run", ge=0)] = 0,
    stall_tol: Annotated[
        float,
        P(f"a start stops when its speed changes less than this in {CHECK_EVERY} steps", ge=0),
    ] = 1e-12,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FixedPointsResult:
    """Fixed and slow points of h -> ReLU(W_hh h) by minimising the scale-free speed q(u) from many
    driven states at once (one Adam batch with a cosine learning-rate decay), then keeping one point
    per linear region (activation pattern; regions whose points lie within dedup_tol on the unit
    sphere merged) and classifying each by its Jacobian spectrum. A point is labelled fixed only
    when its speed is below `tol`; the others are slow points, reported with their speed.
    """
    if n_starts < 1 or iters < 0 or lr <= 0 or tol <= 0 or slow_tol < tol:
        raise ValueError("need n_starts >= 1, iters >= 0, lr > 0 and 0 < tol <= slow_tol")
    tick(progress, cancel, 0.0, "sampling starts")
    with torch.no_grad():
        starts = driven_starts(model, n_starts, seed=derive_seed(seed, 3)).double()
        norms = starts.norm(dim=1)
        gen = torch_generator(derive_seed(seed, 4), model.device)
        fill = torch.rand(starts.shape, generator=gen, device=starts.device, dtype=starts.dtype)
        dead = ~(torch.isfinite(norms) & (norms > 0))
        starts = torch.where(dead[:, None], fill, starts)  # silent or diverged: a random direction
        good = norms[~dead]
        norms = torch.where(dead, good.median() if len(good) else norms.new_tensor(1.0), norms)
    w = model.w_hh.detach().double()
    u = _minimise(
        w, starts / starts.norm(dim=1, keepdim=True), iters, lr, stall_tol, progress, cancel
    )
    q_all = _speed(w, u).cpu().numpy()
    norms = norms.cpu()  # the per-cluster loop below then never syncs with the device
    tick(progress, cancel, 0.9, "classifying")
    keep = np.flatnonzero(q_all < slow_tol)
    labels = region_labels(w, u[keep], dedup_tol)
    reps, members, scales = [], [], []
    for k in range(int(labels.max()) + 1 if len(labels) else 0):
        idx = keep[labels == k]
        reps.append(idx[int(q_all[idx].argmin())])
        members.append(len(idx))
        scales.append(float(norms[idx].median()))  # torch's median: the lower middle value
    growth, piece = origin_growth(w, starts)
    dirs = u[reps] if reps else u[:0]
    pts = torch.cat(
        [
            torch.zeros_like(u[:1]),
            dirs * torch.tensor(scales, dtype=u.dtype, device=u.device)[:, None],
        ]
    )
    eigs = np.concatenate(
        [
            jacobian_spectra(w, piece),
            jacobian_spectra(w, dirs) if reps else np.zeros((0, w.shape[0])),
        ]
    )
    n_unst, n_marg, kinds = classify(eigs, eig_tol)
    kinds[0] = _origin_kind(growth, eig_tol)
    q = np.concatenate([[0.0], q_all[reps]]) if reps else np.zeros(1)
    pca = _try_pca(model, pca_steps, n_components, seed)
    points = pts.cpu().numpy()
    tick(progress, cancel, 1.0, "done")
    return FixedPointsResult(
        points=points,
        q=q,
        is_fixed=q < tol,
        eigenvalues_real=eigs.real.copy(),
        eigenvalues_imag=eigs.imag.copy(),
        n_unstable=n_unst,
        n_marginal=n_marg,
        members=np.array([0, *members], dtype=np.int64),
        projections=project_or_empty(pca, points),
        start_q=q_all,
        kinds=kinds,
        origin_growth=growth,
        tol=float(tol),
        slow_tol=float(slow_tol),
        **basis_fields(pca, points.shape[1]),
    )


def region_labels(w: torch.Tensor, u: torch.Tensor, dedup_tol: float) -> np.ndarray:
    """One label per linear region (activation pattern of W u); regions holding directions within
    dedup_tol of each other are one point. Within a region the map is linear, so its converged
    directions are one eigen-ray; directions astride a region boundary are one point too."""
    if not len(u):
        return np.zeros(0, dtype=np.int64)
    patterns = (u @ w.T > 0).cpu().numpy()
    region = np.unique(patterns, axis=0, return_inverse=True)[1].reshape(-1)
    near = dedup_labels(u.cpu().numpy(), dedup_tol)
    parent = list(range(len(u)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for groups in (region, near):  # join every point to the first of its region / neighbourhood
        first: dict[int, int] = {}
        for i, g in enumerate(groups.tolist()):
            parent[root(i)] = root(first.setdefault(g, i))
    roots = np.array([root(i) for i in range(len(u))])
    return np.unique(roots, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _try_pca(model, steps: int, n_components: int, seed: int) -> PCAResult | None:
    """The driven basis, or None (no projections) when steps is 0 or the driven run diverges:
    fixed points of an unstable network are still worth reporting."""
    if steps <= 0:
        return None
    try:
        return driven_pca(model, steps=steps, n_components=n_components, seed=seed)
    except ValueError:
        return None


def _origin_kind(growth: float, eig_tol: float) -> str:
    if growth < 1 - eig_tol:
        return "stable"
    return "marginal" if growth <= 1 + eig_tol else "unstable"


def _speed_grad(w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Gradient of q(p / |p|) with respect to p, written out: a quarter of autograd's ops.

    With u = p/|p|, a = W u and r = ReLU(a) - u: dq/du = W^T (r * [a > 0]) - r, and the
    projection onto the tangent of the sphere divided by |p| gives dq/dp.
    """
    n = p.norm(dim=1, keepdim=True)
    u = p / n
    a = u @ w.T
    r = torch.relu(a) - u
    gu = torch.where(a > 0, r, 0.0) @ w - r
    return (gu - u * (u * gu).sum(dim=1, keepdim=True)) / n


def _minimise(w, u0, iters, lr, stall_tol, progress, cancel) -> torch.Tensor:
    """Adam with a cosine-decayed step on all starts at once; each start's loss is its own row.

    Every CHECK_EVERY iterations the directions are renormalised (so the scale, and with it Adam's
    step, stays fixed) and a start whose speed changed by less than `stall_tol` since the last check
    is finished and leaves the batch: the rest run on a smaller batch. stall_tol = 0 runs every start
    to the end. One host sync per check, none per iteration.
    """
    b1, b2 = ADAM_BETAS
    eta_min = lr * 1e-3
    p = u0.clone()
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    out = p.clone()
    rows = torch.arange(len(p), device=p.device)
    last_q = torch.full((len(p),), float("inf"), dtype=p.dtype, device=p.device)
    for i in range(iters):
        step_lr = eta_min + (lr - eta_min) * (1 + math.cos(math.pi * i / iters)) / 2
        g = _speed_grad(w, p)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2 ** (i + 1))).add_(ADAM_EPS)
        p.addcdiv_(m, denom, value=-step_lr / (1 - b1 ** (i + 1)))
        if (i + 1) % CHECK_EVERY and i + 1 < iters:
            continue
        p /= p.norm(dim=1, keepdim=True)
        tick(progress, cancel, 0.05 + 0.85 * (i + 1) / iters, f"optimising {i + 1}/{iters}")
        if stall_tol > 0:
            q = _speed(w, p)
            stalled = (last_q - q).abs() < stall_tol
            if bool(stalled.any()):
                out[rows[stalled]] = p[stalled]
                keep = ~stalled
                p, m, v, rows, q = p[keep], m[keep], v[keep], rows[keep], q[keep]
                if len(p) == 0:
                    break
            last_q = q
    out[rows] = p
    return out / out.norm(dim=1, keepdim=True)


# --- registration ---------------------------------------------------------------------------------


def _fmt_eigs(eigs: np.ndarray, k: int = 3) -> str:
    return ", ".join(f"{abs(e):.3f}" for e in eigs[:k])


def _fixed_summary(r: FixedPointsResult) -> list[tuple[str, str]]:
    rows = [
        (
            "points",
            f"{len(r.points)} ({int(r.is_fixed.sum())} fixed, {int((~r.is_fixed).sum())} slow)",
        ),
        ("origin growth / step", f"{r.origin_growth:.4f} ({r.kinds[0]})"),
        ("starts converged", f"{int((r.start_q < r.slow_tol).sum())}/{len(r.start_q)}"),
    ]
    eigs = r.eigenvalues
    shown = min(len(r.points), 11)  # the origin and the first ten others
    for p in range(shown):
        name = "origin" if p == 0 else f"point {p}"
        label = "fixed" if r.is_fixed[p] else "slow"
        rows.append(
            (
                name,
                f"{label} ({r.kinds[p]}), speed q={r.q[p]:.2e}, |h|={np.linalg.norm(r.points[p]):.3g}, "
                f"unstable {r.n_unstable[p]}, top |lambda| {_fmt_eigs(eigs[p])}",
            )
        )
    if shown < len(r.points):
        rows.append(("...", f"{len(r.points) - shown} more points in the result"))
    return rows


register(
    Analysis(
        name="fixed-points",
        version=3,  # 3: one point per linear region; 2: the written-out Adam, early-stopped starts
        bias_free=True,
        fn=find_fixed_points,
        result=FixedPointsResult,
        help="fixed and slow points of the autonomous map with Jacobian spectra",
        summary=_fixed_summary,
        figures=(
            Figure(
                "fixed-points",
                "fixed/slow points and their Jacobian spectra",
                "hmmrnn.figures.statespace:render_fixed_points",
            ),
        ),  # fmt: skip
    )
)
