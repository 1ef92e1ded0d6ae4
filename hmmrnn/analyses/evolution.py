"""Training evolution (ANALYSES.md §6): how the switching mechanism appears over training epochs.

Works on the per-epoch checkpoints `models/evolution/model_epoch_N.pth`. Every epoch is driven by the
*same* noise sequence (one seed), so differences between epochs come from the weights alone. Per epoch:

- the driven states projected on one common basis, the final epoch's principal axes, so the
  emergence of the final geometry can be followed (plus each epoch's own explained variance);
- the transition rate: argmax-output switches per step, and switches of the emitted (Gumbel-sampled)
  symbols per step, the behaviour (it falls from near-random to the HMM's rate while training);
- the fraction of steps whose step Jacobian D W_hh has an unstable eigenvalue (|lambda| > 1) and the
  fraction with a critical complex pair (Mobius w = (lambda-1)/(lambda+1): |Re w| < re_tol and
  Im w > im_min), on `eig_steps` evenly spaced steps;
- the expected second-order noise term E[dh2] (defined in `second_order_noise`);
- the bifurcation epoch: the first epoch from which the critical fraction stays >= min_fraction for
  `persist` consecutive checkpoints (or through the last one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import driven_run, dwells, spectrum_counts
from hmmrnn.analyses.pca import fit_pca, project
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import Components, NoiseStd, P, Seed, Warmup
from hmmrnn.rnn import hard_gumbel_softmax
from hmmrnn.tree import build_model, evolution_files

_EPOCH_RE = re.compile(r"(\d+)\.pth$")
DIVERGED_NORM = 1e6  # a driven state beyond this has left any regime the analyses can read


@dataclass
class EvolutionResult(Result):
    """Per checkpoint (E epochs, in order): dynamics, behaviour and spectrum.

    epochs (E,); components (C, H), mean (H,): the final epoch's PCA basis; projections (E, steps,
    C): every epoch's driven states on it; basis_variance (E, C): fraction of each epoch's variance
    along each common axis; explained_variance_ratio (E, C): each epoch's own PCA. transition_rate
    (E,) argmax switches per step; sampled_rate (E,) emitted-symbol switches per step;
    unstable_fraction, critical_fraction (E,); second_order (E,) E[dh2]; bifurcation_epoch: the
    epoch number (not index), -1 when critical pairs never persist. dwell_rate (E,): the study's
    transition rate, the mean of 1 / dwell length over the run's complete dwells. diverged (E,):
    checkpoints whose driven run blows up (non-finite, or |h| above DIVERGED_NORM); their
    statistics are nan, never a rate of 0 read off garbage states. second_order_units (E, H):
    E[dh2] per unit (second_order is their sum), the study's units x epochs heat map.
    """

    epochs: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    projections: np.ndarray
    basis_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    transition_rate: np.ndarray
    sampled_rate: np.ndarray
    unstable_fraction: np.ndarray
    critical_fraction: np.ndarray
    second_order: np.ndarray
    bifurcation_epoch: int = -1
    dwell_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    diverged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    second_order_units: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    steps: int = 1000
    eig_steps: int = 200
    persist: int = 5
    min_fraction: float = 0.05


def _checkpoints(source) -> list[tuple[int, Path]]:
    """(epoch, path) pairs from a model folder or an explicit list of paths / (epoch, path) pairs."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        found = evolution_files(folder)
        if not found:
            raise ValueError(
                f"{folder}: no per-epoch checkpoints (expected models/evolution/model_epoch_N.pth; "
                "train with checkpoints per epoch to use this analysis)"
            )
        return found
    pairs = []
    for i, item in enumerate(source):
        if isinstance(item, (tuple, list)):
            pairs.append((int(item[0]), Path(item[1])))
        else:
            m = _EPOCH_RE.search(Path(item).name)
            pairs.append((int(m.group(1)) if m else i, Path(item)))
    if not pairs:
        raise ValueError("no checkpoints given")
    return sorted(pairs)


def _thin(pairs: list, every: int) -> list:
    """Every `every`-th checkpoint, always keeping the last (the basis comes from it)."""
    every = max(1, int(every))
    kept = pairs[::every]
    if kept[-1] is not pairs[-1]:
        kept.append(pairs[-1])
    return kept


@torch.no_grad()
def second_order_noise(
    model, previous: torch.Tensor, noise_std: float, *, per_unit: bool = False
) -> torch.Tensor:
    """E[dh2] per state: the part of one step's noise response that linearisation misses.

    For a state h with noise-free pre-activation a = W_hh h and input x ~ N(0, noise_std^2 I):
        dh2 = ReLU(a + W_ih x) - ReLU(a) - D(a) W_ih x,   D(a) = diag(a > 0),
    i.e. the response to the noise beyond its first-order (Jacobian) term. It is nonzero only in
    units the noise pushes across the ReLU kink: per unit, with b = (W_ih x)_i ~ N(0, s_i^2),
    s_i = noise_std |W_ih[i]|, dh2_i = ReLU(-|a_i| + b') in law (b' = +-b), so
        E[dh2_i^2] = (c^2 + s^2) Phi(c/s) + c s phi(c/s),   c = -|a_i|,
    exactly (no sampling). Returns sum_i E[dh2_i^2] for each state of `previous` (...,), or with
    `per_unit` every E[dh2_i^2] (..., H): the study drew them as a units x epochs heat map.
    """
    a = previous @ model.w_hh.T
    s = noise_std * model.w_ih.norm(dim=1)
    c = -a.abs()
    s = s.expand_as(c)
    ratio = torch.where(s > 0, c / s.clamp_min(1e-30), torch.full_like(c, -math.inf))
    phi = torch.exp(-0.5 * ratio.square()) / math.sqrt(2 * math.pi)
    value = (c.square() + s.square()) * torch.special.ndtr(ratio) + c * s * phi
    value = value.clamp_min(0.0)
    return value if per_unit else value.sum(-1)


def bifurcation_epoch(epochs: np.ndarray, critical: np.ndarray, min_fraction: float, persist: int):
    """First epoch from which critical_fraction >= min_fraction for `persist` checkpoints."""
    ok = np.asarray(critical) >= min_fraction
    persist = max(1, int(persist))
    for i in range(len(ok)):
        if ok[i : i + persist].all():
            return int(epochs[i])
    return -1


@torch.no_grad()
def _epoch_stats(model, noise_gen_seed, steps, warmup, noise_std, eig_idx, re_tol, im_min):
    gen = torch_generator(noise_gen_seed, model.device)
    hidden = driven_run(model, 1, warmup + steps, noise_std=noise_std, generator=gen)[0]
    previous = torch.cat([torch.zeros_like(hidden[:1]), hidden[:-1]])[warmup:]
    hidden = hidden[warmup:]
    if not bool(torch.isfinite(hidden).all()) or float(hidden.abs().max()) > DIVERGED_NORM:
        nan = math.nan
        units = np.full(model.hidden_size, nan)
        return hidden.double().cpu().numpy(), nan, nan, nan, nan, nan, nan, True, units
    logits = model.readout(hidden)  # once: both the argmax output and the sampled symbols use it
    symbols = logits.argmax(dim=-1)
    rate = (symbols[1:] != symbols[:-1]).double().mean().item()
    sample_gen = torch_generator(noise_gen_seed + 1, model.device)
    emitted = hard_gumbel_softmax(logits, model.tau, sample_gen).argmax(-1)
    sampled = (emitted[1:] != emitted[:-1]).double().mean().item()
    counts = spectrum_counts(
        model.w_hh.detach(),
        (hidden[torch.as_tensor(eig_idx, device=hidden.device)] > 0).cpu().numpy(),
        re_tol=re_tol,
        im_min=im_min,
    )
    dh2_units = second_order_noise(model, previous, noise_std, per_unit=True).mean(0)
    dh2 = dh2_units.sum().item()
    runs = dwells(symbols.cpu().numpy())
    lengths = (runs.end - runs.start + 1)[1:-1]  # complete dwells only: the ends are cut off
    return (
        hidden.double().cpu().numpy(),
        rate,
        sampled,
        float((counts.unstable > 0).mean()),
        float((counts.critical > 0).mean()),
        dh2,
        float((1.0 / lengths).mean()) if lengths.size else math.nan,
        False,
        dh2_units.double().cpu().numpy(),
    )


def _own_evr(states: np.ndarray, c: int) -> np.ndarray:
    centred = states - states.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False) ** 2
    total = sv.sum()
    out = np.zeros(c)
    if total > 0:
        out[: min(c, sv.size)] = (sv / total)[:c]
    return out


def training_evolution(
    folder_or_checkpoints: str | Path | Sequence,
    *,
    steps: Annotated[int, P("driven steps per checkpoint", ge=2)] = 1000,
    warmup: Warmup = 20,
    noise_std: NoiseStd = 1.0,
    n_components: Components = 3,
    eig_steps: Annotated[int, P("steps whose Jacobian spectrum is taken", ge=1)] = 200,
    re_tol: Annotated[float, P("critical pair: |Re w| below this (Mobius w)", gt=0)] = 0.1,
    im_min: Annotated[float, P("critical pair: Im w above this", ge=0)] = 0.06,
    min_fraction: Annotated[
        float, P("critical share of steps that marks the bifurcation", ge=0, le=1)
    ] = 0.05,
    persist: Annotated[int, P("checkpoints the critical share must persist", ge=1)] = 5,
    every: Annotated[int, P("use every n-th checkpoint (the last always)", ge=1)] = 1,
    device: str | torch.device | None = None,
    seed: Seed = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> EvolutionResult:
    """Follow the dynamics across training from per-epoch checkpoints (see the module docstring).

    folder_or_checkpoints: a model folder (its models/evolution/ checkpoints), or a list of paths
    or (epoch, path) pairs. every: use every n-th checkpoint (the last is always used).
    """
    progress = progress or no_progress
    if steps < 2 or warmup < 0:
        raise ValueError(f"need steps >= 2 and warmup >= 0 (got {steps}, {warmup})")
    pairs = _thin(_checkpoints(folder_or_checkpoints), every)
    eig_idx = np.unique(np.linspace(0, steps - 1, max(1, min(int(eig_steps), steps))).astype(int))
    rows, sizes = [], None
    for i, (epoch, path) in enumerate(pairs):
        check_cancel(cancel)
        progress(i / len(pairs), f"evolution: epoch {epoch} ({i + 1}/{len(pairs)})")
        model = build_model(path)
        if device is not None:
            model = model.to(device)
        model.eval()
        shape = (model.input_size, model.hidden_size, model.output_size)
        if sizes is not None and shape != sizes:
            raise ValueError(f"{path.name}: sizes {shape} differ from earlier checkpoints {sizes}")
        sizes = shape
        rows.append(_epoch_stats(model, seed, steps, warmup, noise_std, eig_idx, re_tol, im_min))
    states = [r[0] for r in rows]
    diverged = np.array([r[7] for r in rows], dtype=bool)
    if diverged.all():
        raise ValueError("every checkpoint's driven run diverges: nothing to compare")
    basis = fit_pca(states[int(np.flatnonzero(~diverged)[-1])], n_components)
    c = basis.components.shape[0]
    with np.errstate(all="ignore"):  # a diverged epoch's projection is inf/nan, and drawn apart
        projections = np.stack([project(basis, s) for s in states])
    total_var = np.array([s.var(axis=0).sum() for s in states])
    with np.errstate(invalid="ignore", divide="ignore"):
        basis_var = np.where(
            total_var[:, None] > 0, projections.var(axis=1) / total_var[:, None], 0.0
        )
    epochs = np.array([e for e, _ in pairs], dtype=np.int64)
    critical = np.array([r[4] for r in rows])
    ok = ~diverged
    progress(1.0, "evolution: done")
    return EvolutionResult(
        epochs=epochs,
        components=basis.components,
        mean=basis.mean,
        projections=projections,
        basis_variance=basis_var,
        explained_variance_ratio=np.stack(
            [
                np.full(c, np.nan) if d else _own_evr(s, c)
                for s, d in zip(states, diverged, strict=True)
            ]
        ),
        transition_rate=np.array([r[1] for r in rows]),
        sampled_rate=np.array([r[2] for r in rows]),
        unstable_fraction=np.array([r[3] for r in rows]),
        critical_fraction=critical,
        second_order=np.array([r[5] for r in rows]),
        second_order_units=np.stack([r[8] for r in rows]),
        bifurcation_epoch=bifurcation_epoch(epochs[ok], critical[ok], min_fraction, persist),
        dwell_rate=np.array([r[6] for r in rows]),
        diverged=diverged,
        steps=int(steps),
        eig_steps=int(len(eig_idx)),
        persist=int(persist),
        min_fraction=float(min_fraction),
    )


# --- registration ---------------------------------------------------------------------------------


def checkpoints_fingerprint(loaded) -> str:
    """Names, sizes and times of the checkpoints: new or rewritten ones change the cache key."""
    parts = []
    for epoch, path in evolution_files(loaded.folder):
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append(f"{epoch}:{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _summary(r: EvolutionResult) -> list[tuple[str, str]]:
    bif = "none" if r.bifurcation_epoch < 0 else str(r.bifurcation_epoch)
    return [
        ("checkpoints", f"{len(r.epochs)} (epochs {r.epochs[0]}-{r.epochs[-1]})"),
        ("transition rate", f"{r.transition_rate[0]:.3f} -> {r.transition_rate[-1]:.3f}"),
        ("emitted switch rate", f"{r.sampled_rate[0]:.3f} -> {r.sampled_rate[-1]:.3f}"),
        ("mean 1/dwell (the study's rate)", f"{r.dwell_rate[0]:.3f} -> {r.dwell_rate[-1]:.3f}"),
        ("diverged checkpoints", ", ".join(str(int(e)) for e in r.epochs[r.diverged]) or "none"),
        ("critical steps", f"{r.critical_fraction[0]:.1%} -> {r.critical_fraction[-1]:.1%}"),
        ("unstable steps", f"{r.unstable_fraction[0]:.1%} -> {r.unstable_fraction[-1]:.1%}"),
        ("E[dh2]", f"{r.second_order[0]:.4g} -> {r.second_order[-1]:.4g}"),
        ("bifurcation epoch", bif),
    ]


register(
    Analysis(
        name="evolution",
        version=3,  # 3: E[dh2] per unit; 2: diverged checkpoints flagged, the mean-1/dwell rate
        bias_free=True,
        fn=training_evolution,
        result=EvolutionResult,
        help="per-epoch checkpoints: PCA, transition rate, unstable/critical steps, bifurcation",
        summary=_summary,
        subject="folder",
        fingerprint=checkpoints_fingerprint,
        figures=(
            Figure("evolution", "training evolution: stacked PCA, rates, eigenvalues, bifurcation",
                   "hmmrnn.figures.mechanisms:render_evolution"),
            Figure("evolution-noise-units", "E[dh2] per unit and epoch (heat map)",
                   "hmmrnn.figures.mechanisms:render_evolution_noise_units"),
        ),
        views=(
            View("rates", "hmmrnn.figures.terminal:evolution_rates"),
            View("spectrum", "hmmrnn.figures.terminal:evolution_spectrum"),
        ),
    )
)  # fmt: skip
