"""State-space views of a model: autonomous and driven trajectories, fixed and slow points, variance
contours and how the readout sits relative to the dominant plane.

A bias-free ReLU map F(h) = ReLU(W_hh h) is positively homogeneous: F(c h) = c F(h) for c >= 0.
Two consequences shape this module:
- h = 0 is always a fixed point, and any nonzero fixed point comes with its whole ray {c h*}. The
  Jacobian D(W_hh h > 0) W_hh is the same all along the ray and has eigenvalue exactly 1 along it
  (J h* = F(h*) = h*), so a nonzero fixed point is at best *marginally* stable (a line attractor).
- q(h) = 1/2 |F(h) - h|^2 scales as |h|^2, so minimising it pulls every start towards 0. We therefore
  minimise the scale-free speed q(u) on unit directions u = h/|h| (equal to q(h)/|h|^2) and report
  points at the scale of the driven states they started from.
The origin is not differentiable; its spectrum is that of the linear piece (activation pattern) in
which the autonomous flow settles, and its stability is the measured asymptotic growth factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import contourpy
import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.pca import PCAResult, driven_pca, driven_run, project, project_directions
from hmmrnn.analyses.registry import AnalysisSpec, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator

# --- shared helpers -------------------------------------------------------------------------------


def _tick(progress: ProgressFn | None, cancel: CancelToken | None, frac: float, msg: str) -> None:
    """Report progress, then honour a cancellation requested meanwhile (e.g. from the callback)."""
    (progress or no_progress)(min(max(frac, 0.0), 1.0), msg)
    check_cancel(cancel)


def derive_seed(seed: int, stream: int) -> int:
    """Independent child seed for one random stream of an analysis (starts, driven runs, ...)."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0])


def dedup_labels(points: np.ndarray, tol: float) -> np.ndarray:
    """Cluster labels (0.., in order of first appearance) merging points closer than tol (chains)."""
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    raw = fcluster(linkage(points, method="single"), t=tol, criterion="distance")
    _, first = np.unique(raw, return_index=True)
    order = {raw[i]: k for k, i in enumerate(sorted(first))}
    return np.array([order[r] for r in raw], dtype=np.int64)


def driven_starts(
    model, n: int, *, warmup: int = 20, spread: int = 50, noise_std: float = 1.0, seed: int = 0
) -> torch.Tensor:
    """n states (n, H) sampled from driven runs: run r contributes its state at a random step in
    [warmup, warmup + spread), so the starts cover the visited set rather than one time slice."""
    gen = torch_generator(seed, model.device)
    run = model.generate(n, warmup + spread, noise_std=noise_std, generator=gen)
    t = torch.randint(warmup, warmup + spread, (n,), generator=gen, device=model.device)
    return run.hidden[torch.arange(n, device=model.device), t].detach()


def _basis_fields(pca: PCAResult | None, hidden: int) -> dict:
    if pca is None:
        return {
            "components": np.zeros((0, hidden)),
            "mean": np.zeros(hidden),
            "explained_variance_ratio": np.zeros(0),
        }
    return {
        "components": pca.components,
        "mean": pca.mean,
        "explained_variance_ratio": pca.explained_variance_ratio,
    }


def _project_or_empty(pca: PCAResult | None, states: np.ndarray) -> np.ndarray:
    if pca is None:
        return np.zeros((*states.shape[:-1], 0))
    with np.errstate(all="ignore"):
        out = project(pca, states)
    out[~np.isfinite(out)] = np.nan
    return out


# --- autonomous and driven trajectories -----------------------------------------------------------


@dataclass
class AutonomousResult(Result):
    """Noise-free runs h_{t+1} = ReLU(W_hh h_t) from driven states, in PC coordinates.

    projections (S, T+1, C); end_states (S, H); end_speed (S,) = |F(h_T) - h_T|; diverged (S,);
    end_points (E, H) the distinct end states (merged within dedup_tol x median start norm),
    end_counts (E,), end_labels (S,) (-1 for diverged runs), end_projections (E, C).
    """

    projections: np.ndarray
    end_states: np.ndarray
    end_speed: np.ndarray
    diverged: np.ndarray
    end_points: np.ndarray
    end_counts: np.ndarray
    end_labels: np.ndarray
    end_projections: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray


@dataclass
class DrivenResult(Result):
    """Noise-driven runs after warm-up in PC coordinates: projections (N, T, C), outputs (N, T) the
    sampled symbols, logits (N, T, K)."""

    projections: np.ndarray
    outputs: np.ndarray
    logits: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    noise_std: float = 1.0


@torch.no_grad()
def autonomous_trajectories(
    model,
    *,
    n_starts: int = 50,
    steps: int = 100,
    seed: int = 0,
    pca_steps: int = 2000,
    n_components: int = 3,
    dedup_tol: float = 1e-3,
    pca: PCAResult | None = None,
) -> AutonomousResult:
    """Where the dynamics go without input. In trained emulators everything collapses onto one point
    (usually h = 0), i.e. the noise alone sustains the output switching."""
    if n_starts < 1 or steps < 0:
        raise ValueError(f"need n_starts >= 1 and steps >= 0 (got {n_starts}, {steps})")
    if pca is None and pca_steps > 0:
        pca = driven_pca(model, steps=pca_steps, n_components=n_components, seed=seed)
    h = driven_starts(model, n_starts, seed=derive_seed(seed, 1))
    states = [h]
    for _ in range(steps):
        h = model.step(h, None)
        states.append(h)
    traj = torch.stack(states, dim=1).double().cpu().numpy()  # (S, T+1, H)
    end = traj[:, -1]
    with np.errstate(all="ignore"):
        nxt = model.step(torch.as_tensor(end, dtype=model.w_hh.dtype, device=model.device), None)
        speed = np.linalg.norm(nxt.double().cpu().numpy() - end, axis=1)
        diverged = ~np.isfinite(end).all(axis=1) | (np.abs(end).max(axis=1) > 1e30)
    scale = float(np.median(np.linalg.norm(traj[:, 0], axis=1))) or 1.0
    labels = np.full(n_starts, -1, dtype=np.int64)
    ok = ~diverged
    labels[ok] = dedup_labels(end[ok], dedup_tol * scale)
    n_end = int(labels.max()) + 1 if ok.any() else 0
    end_points = (
        np.stack([end[labels == k].mean(axis=0) for k in range(n_end)])
        if n_end
        else (np.zeros((0, end.shape[1])))
    )
    return AutonomousResult(
        projections=_project_or_empty(pca, traj),
        end_states=end,
        end_speed=speed,
        diverged=diverged,
        end_points=end_points,
        end_counts=np.bincount(labels[ok], minlength=n_end).astype(np.int64),
        end_labels=labels,
        end_projections=_project_or_empty(pca, end_points),
        **_basis_fields(pca, end.shape[1]),
    )


@torch.no_grad()
def driven_trajectories(
    model,
    *,
    n_traj: int = 5,
    steps: int = 200,
    noise_std: float = 1.0,
    seed: int = 0,
    warmup: int = 20,
    pca_steps: int = 2000,
    n_components: int = 3,
    pca: PCAResult | None = None,
) -> DrivenResult:
    """Noise-sustained orbits: where along them each symbol is emitted. The PC basis is the nominal
    (std 1) driven PCA, so runs at other noise levels are comparable with it."""
    if pca is None and pca_steps > 0:
        pca = driven_pca(model, steps=pca_steps, n_components=n_components, seed=seed)
    hidden, outputs, logits = driven_run(
        model,
        runs=n_traj,
        steps=steps,
        warmup=warmup,
        noise_std=noise_std,
        seed=derive_seed(seed, 2),
    )
    return DrivenResult(
        projections=_project_or_empty(pca, hidden),
        outputs=outputs.astype(np.int64),
        logits=logits,
        noise_std=float(noise_std),
        **_basis_fields(pca, hidden.shape[-1]),
    )


@dataclass
class TrajectoriesResult(Result):
    """Autonomous (`autonomous_*`, `end_*`) and driven (`driven_*`) trajectories in one PC basis."""

    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    autonomous: np.ndarray
    autonomous_end_states: np.ndarray
    autonomous_end_speed: np.ndarray
    autonomous_diverged: np.ndarray
    end_points: np.ndarray
    end_counts: np.ndarray
    end_labels: np.ndarray
    end_projections: np.ndarray
    driven: np.ndarray
    driven_outputs: np.ndarray
    driven_logits: np.ndarray


def trajectories(
    model,
    *,
    n_starts: int = 50,
    autonomous_steps: int = 100,
    n_traj: int = 5,
    driven_steps: int = 200,
    noise_std: float = 1.0,
    pca_steps: int = 2000,
    n_components: int = 3,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> TrajectoriesResult:
    """Both kinds of trajectory, sharing one driven-PCA basis."""
    _tick(progress, cancel, 0.0, "driven PCA")
    pca = driven_pca(model, steps=pca_steps, n_components=n_components, seed=seed)
    _tick(progress, cancel, 0.3, "autonomous runs")
    auto = autonomous_trajectories(
        model, n_starts=n_starts, steps=autonomous_steps, seed=seed, pca=pca
    )
    _tick(progress, cancel, 0.7, "driven runs")
    drv = driven_trajectories(
        model, n_traj=n_traj, steps=driven_steps, noise_std=noise_std, seed=seed, pca=pca
    )
    _tick(progress, cancel, 1.0, "done")
    return TrajectoriesResult(
        **_basis_fields(pca, pca.components.shape[1]),
        autonomous=auto.projections,
        autonomous_end_states=auto.end_states,
        autonomous_end_speed=auto.end_speed,
        autonomous_diverged=auto.diverged,
        end_points=auto.end_points,
        end_counts=auto.end_counts,
        end_labels=auto.end_labels,
        end_projections=auto.end_projections,
        driven=drv.projections,
        driven_outputs=drv.outputs,
        driven_logits=drv.logits,
    )


# --- fixed and slow points ------------------------------------------------------------------------


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
    n_starts: int = 256,
    iters: int = 2000,
    lr: float = 0.05,
    tol: float = 1e-6,
    slow_tol: float = 1e-3,
    dedup_tol: float = 1e-3,
    eig_tol: float = 1e-2,
    pca_steps: int = 2000,
    n_components: int = 3,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FixedPointsResult:
    """Fixed and slow points of h -> ReLU(W_hh h) by minimising the scale-free speed q(u) from many
    driven states at once (one Adam batch with a cosine learning-rate decay), then deduplicating the
    directions (within dedup_tol on the unit sphere) and classifying each by its Jacobian spectrum.
    """
    if n_starts < 1 or iters < 0 or lr <= 0 or tol <= 0 or slow_tol < tol:
        raise ValueError("need n_starts >= 1, iters >= 0, lr > 0 and 0 < tol <= slow_tol")
    _tick(progress, cancel, 0.0, "sampling starts")
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
    u = _minimise(w, starts / starts.norm(dim=1, keepdim=True), iters, lr, progress, cancel)
    q_all = _speed(w, u).cpu().numpy()
    norms = norms.cpu()  # the per-cluster loop below then never syncs with the device
    _tick(progress, cancel, 0.9, "classifying")
    keep = np.flatnonzero(q_all < slow_tol)
    labels = dedup_labels(u[keep].cpu().numpy(), dedup_tol)
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
    _tick(progress, cancel, 1.0, "done")
    return FixedPointsResult(
        points=points,
        q=q,
        is_fixed=q < tol,
        eigenvalues_real=eigs.real.copy(),
        eigenvalues_imag=eigs.imag.copy(),
        n_unstable=n_unst,
        n_marginal=n_marg,
        members=np.array([0, *members], dtype=np.int64),
        projections=_project_or_empty(pca, points),
        start_q=q_all,
        kinds=kinds,
        origin_growth=growth,
        tol=float(tol),
        slow_tol=float(slow_tol),
        **_basis_fields(pca, points.shape[1]),
    )


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


def _minimise(w, u0, iters, lr, progress, cancel) -> torch.Tensor:
    """Adam on all starts at once; each start's loss only depends on its own row."""
    param = u0.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iters, 1), eta_min=lr * 1e-3)
    chunk = max(1, iters // 20)
    for i in range(iters):
        u = param / param.norm(dim=1, keepdim=True)
        loss = _speed(w, u).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (i + 1) % chunk == 0:
            with torch.no_grad():
                param /= param.norm(dim=1, keepdim=True)  # keep the scale (and Adam's steps) fixed
            _tick(progress, cancel, 0.05 + 0.85 * (i + 1) / iters, f"optimising {i + 1}/{iters}")
    with torch.no_grad():
        return param / param.norm(dim=1, keepdim=True)


# --- variance contours ----------------------------------------------------------------------------


@dataclass
class ContoursResult(Result):
    """Per input-noise level, the density contour holding `mass` of the driven states in the nominal
    PC1-PC2 plane.

    polygons (P, 2) all contour vertices; polygon_offsets (n_poly + 1,) slice polygons;
    level_offsets (L + 1,) slice the polygon list per level; thresholds (L,) the density level;
    areas (L,) the area above threshold; spread (L,) trace of the 2-D covariance;
    samples (L, N, 2) the projected states; grid_x, grid_y (L, G) and density (L, G, G) [y, x].
    """

    noise_stds: np.ndarray
    polygons: np.ndarray
    polygon_offsets: np.ndarray
    level_offsets: np.ndarray
    thresholds: np.ndarray
    areas: np.ndarray
    spread: np.ndarray
    samples: np.ndarray
    grid_x: np.ndarray
    grid_y: np.ndarray
    density: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    mass: float = 0.95

    def level_polygons(self, level: int) -> list[np.ndarray]:
        """The contour polygons (each (n, 2)) of one noise level."""
        a, b = self.level_offsets[level], self.level_offsets[level + 1]
        off = self.polygon_offsets
        return [self.polygons[off[i] : off[i + 1]] for i in range(a, b)]


def kde_grid(points: np.ndarray, grid: int, floor: float = 1e-9):
    """Gaussian product-kernel density (Scott's bandwidth per axis) on a grid x grid lattice that
    extends three bandwidths beyond the data; vectorised as one (G, N) @ (N, G) product."""
    n = len(points)
    bw = np.maximum(points.std(axis=0) * n ** (-1 / 6), floor)
    lo, hi = points.min(axis=0) - 3 * bw, points.max(axis=0) + 3 * bw
    gx, gy = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    kx = np.exp(-0.5 * ((gx[None, :] - points[:, :1]) / bw[0]) ** 2)  # (N, G)
    ky = np.exp(-0.5 * ((gy[None, :] - points[:, 1:2]) / bw[1]) ** 2)
    dens = (ky.T @ kx) / (n * 2 * np.pi * bw[0] * bw[1])  # (Gy, Gx)
    return gx, gy, dens


def mass_threshold(density: np.ndarray, cell: float, mass: float) -> tuple[float, float]:
    """Density level whose super-level set holds `mass` of the gridded probability, and its area."""
    flat = np.sort(density.ravel())[::-1]
    cum = np.cumsum(flat)
    k = min(int(np.searchsorted(cum, mass * cum[-1])), flat.size - 1)
    return float(flat[k]), float((k + 1) * cell)


def variance_contours(
    model,
    *,
    noise_stds=(0.1, 1, 2, 3, 4),
    steps: int = 2000,
    mass: float = 0.95,
    grid: int = 100,
    warmup: int = 20,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ContoursResult:
    """How far the driven dynamics spread as the input noise grows, in the nominal (std 1) plane.

    All levels share one noise sample (common random numbers), so they differ only by the std.
    With h_0 = 0 a bias-free ReLU net is positively homogeneous in its input: the states at std s
    are exactly s times those at std 1, so the contours are scaled copies about the projected origin.
    """
    stds = np.atleast_1d(np.asarray(noise_stds, dtype=np.float64))
    if stds.size == 0 or (stds < 0).any() or not 0 < mass < 1 or grid < 3:
        raise ValueError("need non-negative noise_stds, 0 < mass < 1 and grid >= 3")
    _tick(progress, cancel, 0.0, "nominal PCA")
    pca = driven_pca(model, steps=steps, warmup=warmup, n_components=2, seed=seed)
    if pca.n_components < 2:
        raise ValueError("variance contours need a hidden size of at least 2")
    scale = float(np.sqrt(pca.explained_variance.sum())) or 1.0
    noise_seed = derive_seed(seed, 10)
    polys, poly_off, level_off = [], [0], [0]
    out = {k: [] for k in ("thr", "area", "spread", "samples", "gx", "gy", "dens")}
    for i, std in enumerate(stds):
        hidden, _, _ = driven_run(
            model, runs=1, steps=steps, warmup=warmup, noise_std=float(std), seed=noise_seed
        )
        pts = project(pca, hidden[0])
        if not np.isfinite(pts).all():
            raise ValueError(f"the driven dynamics diverged at noise std {std:g}")
        gx, gy, dens = kde_grid(pts, grid, floor=1e-6 * scale)
        thr, area = mass_threshold(dens, (gx[1] - gx[0]) * (gy[1] - gy[0]), mass)
        for line in contourpy.contour_generator(gx, gy, dens).lines(thr):
            polys.append(line)
            poly_off.append(poly_off[-1] + len(line))
        level_off.append(len(polys))
        for key, val in zip(
            out, (thr, area, np.trace(np.cov(pts.T)), pts, gx, gy, dens), strict=True
        ):
            out[key].append(val)
        _tick(progress, cancel, (i + 1) / stds.size, f"noise std {std:g}")
    return ContoursResult(
        noise_stds=stds,
        polygons=np.concatenate(polys) if polys else np.zeros((0, 2)),
        polygon_offsets=np.array(poly_off, dtype=np.int64),
        level_offsets=np.array(level_off, dtype=np.int64),
        thresholds=np.array(out["thr"]),
        areas=np.array(out["area"]),
        spread=np.array(out["spread"]),
        samples=np.stack(out["samples"]),
        grid_x=np.stack(out["gx"]),
        grid_y=np.stack(out["gy"]),
        density=np.stack(out["dens"]),
        mass=float(mass),
        **_basis_fields(pca, pca.components.shape[1]),
    )


# --- readout alignment ----------------------------------------------------------------------------


@dataclass
class ReadoutResult(Result):
    """Each readout row r_k (unit norm) against the PC1-PC2 plane: rows (K, H), plane_coords (K, 2)
    its coordinates in the plane, in_plane_norm (K,) in [0, 1], angle_deg (K,) angle between the row
    and the plane. Softmax only sees logit differences, so the same is given for the unit differences
    r_i - r_j of every pair (pairs (D, 2))."""

    rows: np.ndarray
    row_norms: np.ndarray
    plane_coords: np.ndarray
    in_plane_norm: np.ndarray
    angle_deg: np.ndarray
    pairs: np.ndarray
    pair_plane_coords: np.ndarray
    pair_in_plane_norm: np.ndarray
    pair_angle_deg: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray


def _plane_stats(pca: PCAResult, vectors: np.ndarray):
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    coords = project_directions(pca, unit)
    coords = np.pad(
        coords, ((0, 0), (0, 2 - coords.shape[1]))
    )  # hidden size 1: a line, not a plane
    in_plane = np.clip(np.linalg.norm(coords, axis=1), 0.0, 1.0)
    return unit, norms, coords, in_plane, np.degrees(np.arccos(in_plane))


def readout_alignment(
    model,
    *,
    steps: int = 2000,
    warmup: int = 20,
    noise_std: float = 1.0,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ReadoutResult:
    """Is the readout tuned to the plane where the dynamics rotate? Angle 0: fully in-plane."""
    _tick(progress, cancel, 0.0, "driven PCA")
    pca = driven_pca(
        model, steps=steps, warmup=warmup, noise_std=noise_std, n_components=2, seed=seed
    )
    w_out = model.w_out.detach().double().cpu().numpy()
    rows, norms, coords, in_plane, angle = _plane_stats(pca, w_out)
    i, j = np.triu_indices(len(w_out), k=1)
    _, _, pc, pin, pang = _plane_stats(pca, w_out[i] - w_out[j])
    _tick(progress, cancel, 1.0, "done")
    return ReadoutResult(
        rows=rows,
        row_norms=norms,
        plane_coords=coords,
        in_plane_norm=in_plane,
        angle_deg=angle,
        pairs=np.stack([i, j], axis=1).astype(np.int64),
        pair_plane_coords=pc,
        pair_in_plane_norm=pin,
        pair_angle_deg=pang,
        **_basis_fields(pca, w_out.shape[1]),
    )


# --- registry adapters ----------------------------------------------------------------------------


def _adapter(fn, with_hooks: bool = True):
    def run(loaded, params: dict, progress: ProgressFn, cancel: CancelToken | None) -> Result:
        if with_hooks:
            return fn(loaded.model, **params, progress=progress, cancel=cancel)
        return fn(loaded.model, **params)

    return run


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
        rows.append(
            (
                name,
                f"{r.kinds[p]}, q={r.q[p]:.2e}, |h|={np.linalg.norm(r.points[p]):.3g}, "
                f"unstable {r.n_unstable[p]}, top |lambda| {_fmt_eigs(eigs[p])}",
            )
        )
    if shown < len(r.points):
        rows.append(("...", f"{len(r.points) - shown} more points in the result"))
    return rows


def _traj_summary(r: TrajectoriesResult) -> list[tuple[str, str]]:
    ok = ~r.autonomous_diverged
    norms = np.linalg.norm(r.end_points, axis=1)
    return [
        ("autonomous starts", f"{len(ok)} ({int((~ok).sum())} diverged)"),
        ("distinct end points", str(len(r.end_points))),
        ("end point norms", ", ".join(f"{n:.3g}" for n in norms[:5])),
        ("end counts", ", ".join(str(int(c)) for c in r.end_counts[:5])),
        ("max end speed", f"{np.nanmax(r.autonomous_end_speed[ok]):.3g}" if ok.any() else "-"),
        ("driven runs", f"{r.driven.shape[0]} x {r.driven.shape[1]} steps"),
        ("PC variance", ", ".join(f"{v:.1%}" for v in r.explained_variance_ratio)),
    ]


def _contour_summary(r: ContoursResult) -> list[tuple[str, str]]:
    return [
        (
            f"std {s:g}",
            f"area {a:.3g}, spread {sp:.3g}, "
            f"{int(r.level_offsets[i + 1] - r.level_offsets[i])} polygon(s)",
        )
        for i, (s, a, sp) in enumerate(zip(r.noise_stds, r.areas, r.spread, strict=True))
    ]


def _readout_summary(r: ReadoutResult) -> list[tuple[str, str]]:
    rows = [
        (f"output {k}", f"angle {a:.1f} deg, in-plane {n:.3f}, |w| {w:.3g}")
        for k, (a, n, w) in enumerate(zip(r.angle_deg, r.in_plane_norm, r.row_norms, strict=True))
    ]
    rows += [
        (f"outputs {i}-{j}", f"angle {a:.1f} deg, in-plane {n:.3f}")
        for (i, j), a, n in zip(r.pairs, r.pair_angle_deg, r.pair_in_plane_norm, strict=True)
    ]
    return rows


register(
    AnalysisSpec(
        name="fixed-points",
        help="fixed and slow points of the autonomous map with Jacobian spectra",
        result_cls=FixedPointsResult,
        defaults={
            "n_starts": 256,
            "iters": 2000,
            "lr": 0.05,
            "tol": 1e-6,
            "slow_tol": 1e-3,
            "dedup_tol": 1e-3,
            "eig_tol": 1e-2,
            "pca_steps": 2000,
            "n_components": 3,
            "seed": 0,
        },
        run=_adapter(find_fixed_points),
        summary=_fixed_summary,
    )
)

register(
    AnalysisSpec(
        name="trajectories",
        help="autonomous (noise-free) and driven trajectories in the driven PC basis",
        result_cls=TrajectoriesResult,
        defaults={
            "n_starts": 50,
            "autonomous_steps": 100,
            "n_traj": 5,
            "driven_steps": 200,
            "noise_std": 1.0,
            "pca_steps": 2000,
            "n_components": 3,
            "seed": 0,
        },
        run=_adapter(trajectories),
        summary=_traj_summary,
    )
)

register(
    AnalysisSpec(
        name="variance-contours",
        help="density contours holding `mass` of the driven states per input-noise level",
        result_cls=ContoursResult,
        defaults={
            "noise_stds": [0.1, 1.0, 2.0, 3.0, 4.0],
            "steps": 2000,
            "mass": 0.95,
            "grid": 100,
            "warmup": 20,
            "seed": 0,
        },
        run=_adapter(variance_contours),
        summary=_contour_summary,
    )
)

register(
    AnalysisSpec(
        name="readout-alignment",
        help="angle of each readout row (and row difference) to the PC1-PC2 plane",
        result_cls=ReadoutResult,
        defaults={"steps": 2000, "warmup": 20, "noise_std": 1.0, "seed": 0},
        run=_adapter(readout_alignment),
        summary=_readout_summary,
    )
)
