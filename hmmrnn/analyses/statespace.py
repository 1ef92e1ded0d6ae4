"""State-space views of a model: autonomous and driven trajectories, variance contours and how the
readout sits relative to the dominant plane (fixed and slow points: hmmrnn.analyses.fixedpoints).

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import contourpy
import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import pair_runs
from hmmrnn.analyses.pca import (
    PCAResult,
    driven_pca,
    driven_run,
    fit_pca,
    project,
    project_directions,
)
from hmmrnn.analyses.registry import Analysis, Figure, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import P
from hmmrnn.rnn import hard_gumbel_softmax

# --- shared helpers -------------------------------------------------------------------------------


def tick(progress: ProgressFn | None, cancel: CancelToken | None, frac: float, msg: str) -> None:
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
    # deferred: scipy.cluster takes about a second to import, and every analysis run loads this
    # module through the registry
    from scipy.cluster.hierarchy import fcluster, linkage

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


def basis_fields(pca: PCAResult | None, hidden: int) -> dict:
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


def project_or_empty(pca: PCAResult | None, states: np.ndarray) -> np.ndarray:
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
        projections=project_or_empty(pca, traj),
        end_states=end,
        end_speed=speed,
        diverged=diverged,
        end_points=end_points,
        end_counts=np.bincount(labels[ok], minlength=n_end).astype(np.int64),
        end_labels=labels,
        end_projections=project_or_empty(pca, end_points),
        **basis_fields(pca, end.shape[1]),
    )


DYNAMICS = ("full", "recurrence_only", "input_only")
Dynamics = Annotated[
    Literal["full", "recurrence_only", "input_only"],
    P("driven runs after warm-up: both drives, the recurrence alone (no input), the input alone"),
]


@torch.no_grad()
def mode_run(
    model, *, runs: int, steps: int, warmup: int, noise_std: float, seed: int, dynamics: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`driven_run` with one drive switched off after the warm-up (the research code's modes).

    The warm-up always runs the full dynamics, so every mode starts from states on the driven
    orbit: "recurrence_only" then shows where the recurrence alone takes them (no input), and
    "input_only" what the input alone produces once the recurrence is cut, h = ReLU(W_ih x + b).
    Outputs are sampled from the logits as in generation.
    """
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {', '.join(DYNAMICS)}, got {dynamics!r}")
    if dynamics == "full":
        return driven_run(
            model, runs=runs, steps=steps, warmup=warmup, noise_std=noise_std, seed=seed
        )
    gen = torch_generator(seed, model.device)
    noise = model.sample_noise(runs, warmup + steps, noise_std, gen)
    h0 = model.initial_state(runs)
    if warmup:
        h0 = model.rnn(noise[:, :warmup])[0][:, -1]
    if dynamics == "recurrence_only":
        states, h = [], h0
        for _ in range(steps):
            h = model.step(h, None)
            states.append(h)
        hidden = torch.stack(states, dim=1)
    else:
        gain = torch.zeros(model.hidden_size, device=model.device)
        hidden = model.step(h0[:, None].expand(-1, steps, -1), noise[:, warmup:], rec_gain=gain)
    logits = model.readout(hidden)
    symbols = hard_gumbel_softmax(logits, model.tau, gen).argmax(dim=-1)
    return (
        hidden.double().cpu().numpy(),
        symbols.cpu().numpy(),
        logits.double().cpu().numpy(),
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
    dynamics: str = "full",
) -> DrivenResult:
    """Noise-sustained orbits: where along them each symbol is emitted. The PC basis is the nominal
    (std 1) driven PCA, so runs at other noise levels or in other `dynamics` modes are comparable
    with it."""
    if pca is None and pca_steps > 0:
        pca = driven_pca(model, steps=pca_steps, n_components=n_components, seed=seed)
    hidden, outputs, logits = mode_run(
        model,
        runs=n_traj,
        steps=steps,
        warmup=warmup,
        noise_std=noise_std,
        seed=derive_seed(seed, 2),
        dynamics=dynamics,
    )
    return DrivenResult(
        projections=project_or_empty(pca, hidden),
        outputs=outputs.astype(np.int64),
        logits=logits,
        noise_std=float(noise_std),
        **basis_fields(pca, hidden.shape[-1]),
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
    dynamics: str = "full"


def trajectories(
    model,
    *,
    n_starts: Annotated[int, P("autonomous runs, each from a driven state", ge=1)] = 50,
    autonomous_steps: Annotated[int, P("noise-free steps per autonomous run", ge=1)] = 100,
    n_traj: Annotated[int, P("noise-driven runs", ge=1)] = 5,
    driven_steps: Annotated[int, P("steps per driven run after warm-up", ge=1)] = 200,
    noise_std: Annotated[float, P("std of the input noise", ge=0, config="noise_std")] = 1.0,
    pca_steps: Annotated[int, P("driven steps of the PC basis", ge=2)] = 2000,
    n_components: Annotated[int, P("principal components of the projection", ge=1)] = 3,
    seed: Annotated[int, P("seed of the starts, runs and PC basis", ge=0)] = 0,
    dynamics: Dynamics = "full",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> TrajectoriesResult:
    """Both kinds of trajectory, sharing one driven-PCA basis; `dynamics` cuts one drive of the
    driven runs after their warm-up (which drive sustains the orbit?)."""
    tick(progress, cancel, 0.0, "driven PCA")
    pca = driven_pca(model, steps=pca_steps, n_components=n_components, seed=seed)
    tick(progress, cancel, 0.3, "autonomous runs")
    auto = autonomous_trajectories(
        model, n_starts=n_starts, steps=autonomous_steps, seed=seed, pca=pca
    )
    tick(progress, cancel, 0.7, "driven runs")
    drv = driven_trajectories(
        model,
        n_traj=n_traj,
        steps=driven_steps,
        noise_std=noise_std,
        seed=seed,
        pca=pca,
        dynamics=dynamics,
    )
    tick(progress, cancel, 1.0, "done")
    return TrajectoriesResult(
        **basis_fields(pca, pca.components.shape[1]),
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
        dynamics=dynamics,
    )


# --- variance contours ----------------------------------------------------------------------------


@dataclass
class ContoursResult(Result):
    """Per input-noise level, the density contour holding `mass` of the driven states in the nominal
    PC1-PC2 plane.

    polygons (P, 2) all contour vertices; polygon_offsets (n_poly + 1,) slice polygons;
    level_offsets (L + 1,) slice the polygon list per level; thresholds (L,) the density level;
    areas (L,) the area above threshold; spread (L,) trace of the 2-D covariance;
    samples (L, N, 2) the projected states (nan-padded past n_states (L,), the states each level
    kept); grid_x, grid_y (L, G) and density (L, G, G) [y, x]. pair: the output pair whose
    stretches were kept, in their own PC plane (empty: all states, the nominal plane).
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
    pair: list[int] = field(default_factory=list)
    n_states: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

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


PAIR_MIN_STEPS = 10


def _check_pair(pair, k: int) -> tuple[int, int] | None:
    if pair is None or (isinstance(pair, (list, tuple)) and not len(pair)):
        return None
    a, b = (int(v) for v in pair)
    if a == b or not (0 <= a < k and 0 <= b < k):
        raise ValueError(f"pair must be two different outputs in 0..{k - 1}, got {a}, {b}")
    return a, b


def pair_stretches(outputs: np.ndarray, pair: tuple[int, int], min_steps: int) -> np.ndarray:
    """Mask (T,) of the steps inside maximal stretches of >= min_steps outputs all in `pair`."""
    mask = np.zeros(len(outputs), dtype=bool)
    for start, stop in pair_runs(np.asarray(outputs), pair, min_steps, both=False):
        mask[start:stop] = True
    return mask


def _pair_states(hidden, outputs, pair, min_steps: int, std: float) -> np.ndarray:
    mask = pair_stretches(outputs, pair, min_steps)
    if mask.sum() < 3:
        raise ValueError(
            f"at noise std {std:g} the outputs never stay within {pair[0]} and {pair[1]} for "
            f"{min_steps} steps: no subspace to draw (a longer run or a smaller pair_min_steps)"
        )
    return hidden[mask]


def _padded(samples: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(samples), max(len(x) for x in samples), 2), np.nan)
    for i, x in enumerate(samples):
        out[i, : len(x)] = x
    return out


def variance_contours(
    model,
    *,
    noise_stds: Annotated[Sequence[float], P("input-noise stds, one contour level each", ge=0)] = (
        0.1,
        1.0,
        2.0,
        3.0,
        4.0,
    ),
    steps: Annotated[int, P("driven steps per level", ge=2)] = 2000,
    mass: Annotated[float, P("share of the density inside each contour", gt=0, lt=1)] = 0.95,
    grid: Annotated[int, P("density grid cells per axis", ge=3)] = 100,
    warmup: Annotated[int, P("steps discarded first", ge=0)] = 20,
    seed: Annotated[int, P("seed of the shared noise sample", ge=0)] = 0,
    pair: Annotated[
        tuple[int, int] | None,
        P("only stretches whose outputs stay within this output pair, in their own PC plane"),
    ] = None,
    pair_min_steps: Annotated[
        int, P("shortest stretch within the pair that counts", ge=1)
    ] = PAIR_MIN_STEPS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ContoursResult:
    """How far the driven dynamics spread as the input noise grows, in the nominal (std 1) plane.

    All levels share one noise sample (common random numbers), so they differ only by the std.
    With h_0 = 0 a bias-free ReLU net is positively homogeneous in its input: the states at std s
    are exactly s times those at std 1, so the contours are scaled copies about the projected origin.
    With `pair` (a, b) only the stretches of at least `pair_min_steps` steps whose outputs are all
    a or b count, and the plane is their own PCA: the study's subspace view of one switch of a
    model with more than two outputs.
    """
    stds = np.atleast_1d(np.asarray(noise_stds, dtype=np.float64))
    if stds.size == 0 or (stds < 0).any() or not 0 < mass < 1 or grid < 3:
        raise ValueError("need non-negative noise_stds, 0 < mass < 1 and grid >= 3")
    pair = _check_pair(pair, model.output_size)
    tick(progress, cancel, 0.0, "nominal PCA")
    if pair is None:
        pca = driven_pca(model, steps=steps, warmup=warmup, n_components=2, seed=seed)
    else:
        hidden, outputs, _ = driven_run(
            model, runs=1, steps=steps, warmup=warmup, noise_std=1.0, seed=seed
        )
        pca = fit_pca(_pair_states(hidden[0], outputs[0], pair, pair_min_steps, 1.0), 2)
    if pca.n_components < 2:
        raise ValueError("variance contours need a hidden size of at least 2")
    scale = float(np.sqrt(pca.explained_variance.sum())) or 1.0
    noise_seed = derive_seed(seed, 10)
    polys, poly_off, level_off = [], [0], [0]
    out = {k: [] for k in ("thr", "area", "spread", "samples", "gx", "gy", "dens")}
    for i, std in enumerate(stds):
        hidden, outputs, _ = driven_run(
            model, runs=1, steps=steps, warmup=warmup, noise_std=float(std), seed=noise_seed
        )
        states = hidden[0]
        if pair is not None:
            states = _pair_states(states, outputs[0], pair, pair_min_steps, float(std))
        pts = project(pca, states)
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
        tick(progress, cancel, (i + 1) / stds.size, f"noise std {std:g}")
    return ContoursResult(
        noise_stds=stds,
        polygons=np.concatenate(polys) if polys else np.zeros((0, 2)),
        polygon_offsets=np.array(poly_off, dtype=np.int64),
        level_offsets=np.array(level_off, dtype=np.int64),
        thresholds=np.array(out["thr"]),
        areas=np.array(out["area"]),
        spread=np.array(out["spread"]),
        samples=_padded(out["samples"]),
        n_states=np.array([len(x) for x in out["samples"]], dtype=np.int64),
        grid_x=np.stack(out["gx"]),
        grid_y=np.stack(out["gy"]),
        density=np.stack(out["dens"]),
        mass=float(mass),
        pair=[] if pair is None else list(pair),
        **basis_fields(pca, pca.components.shape[1]),
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
    steps: Annotated[int, P("driven steps of the PC basis", ge=2)] = 2000,
    warmup: Annotated[int, P("steps discarded first", ge=0)] = 20,
    noise_std: Annotated[float, P("std of the input noise", ge=0, config="noise_std")] = 1.0,
    seed: Annotated[int, P("seed of the driving noise", ge=0)] = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ReadoutResult:
    """Is the readout tuned to the plane where the dynamics rotate? Angle 0: fully in-plane."""
    tick(progress, cancel, 0.0, "driven PCA")
    pca = driven_pca(
        model, steps=steps, warmup=warmup, noise_std=noise_std, n_components=2, seed=seed
    )
    w_out = model.w_out.detach().double().cpu().numpy()
    rows, norms, coords, in_plane, angle = _plane_stats(pca, w_out)
    i, j = np.triu_indices(len(w_out), k=1)
    _, _, pc, pin, pang = _plane_stats(pca, w_out[i] - w_out[j])
    tick(progress, cancel, 1.0, "done")
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
        **basis_fields(pca, w_out.shape[1]),
    )


# --- registration ---------------------------------------------------------------------------------


_MODE = {  # the default needs no word in a narrow summary column
    "full": "",
    "recurrence_only": ", recurrence only (input off after warm-up)",
    "input_only": ", input only (recurrence cut after warm-up)",
}


def _traj_summary(r: TrajectoriesResult) -> list[tuple[str, str]]:
    ok = ~r.autonomous_diverged
    norms = np.linalg.norm(r.end_points, axis=1)
    return [
        ("autonomous starts", f"{len(ok)} ({int((~ok).sum())} diverged)"),
        ("distinct end points", str(len(r.end_points))),
        ("end point norms", ", ".join(f"{n:.3g}" for n in norms[:5])),
        ("end counts", ", ".join(str(int(c)) for c in r.end_counts[:5])),
        ("max end speed", f"{np.nanmax(r.autonomous_end_speed[ok]):.3g}" if ok.any() else "-"),
        ("driven runs", f"{r.driven.shape[0]} x {r.driven.shape[1]} steps{_MODE[r.dynamics]}"),
        ("PC variance", ", ".join(f"{v:.1%}" for v in r.explained_variance_ratio)),
    ]


def _contour_summary(r: ContoursResult) -> list[tuple[str, str]]:
    head = []
    if len(r.pair):
        kept = ", ".join(str(int(n)) for n in r.n_states)
        head = [("subspace", f"outputs {r.pair[0]} and {r.pair[1]} only · states kept {kept}")]
    return head + [
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
    Analysis(
        name="trajectories",
        fn=trajectories,
        result=TrajectoriesResult,
        help="autonomous (noise-free) and driven trajectories in the driven PC basis",
        summary=_traj_summary,
        figures=(
            Figure(
                "trajectories",
                "autonomous and driven trajectories with their fixed points",
                "hmmrnn.figures.statespace:render_trajectories",
                colors_outputs=True,
            ),
        ),  # fmt: skip
    )
)

register(
    Analysis(
        name="variance-contours",
        fn=variance_contours,
        result=ContoursResult,
        help="density contours holding `mass` of the driven states per input-noise level",
        summary=_contour_summary,
        figures=(
            Figure(
                "variance-contours",
                "95% density contours per input noise std",
                "hmmrnn.figures.statespace:render_variance_contours",
            ),
        ),  # fmt: skip
    )
)

register(
    Analysis(
        name="readout-alignment",
        fn=readout_alignment,
        result=ReadoutResult,
        help="angle of each readout row (and row difference) to the PC1-PC2 plane",
        summary=_readout_summary,
        figures=(
            Figure(
                "readout-alignment",
                "readout rows against the PC1-PC2 plane",
                "hmmrnn.figures.statespace:render_readout_alignment",
                colors_outputs=True,
            ),
        ),  # fmt: skip
    )
)
