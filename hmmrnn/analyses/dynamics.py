"""Batched building blocks for the mechanistic analyses: rollouts, switches and Jacobian spectra.

Every analysis of §6 (residency, locating areas, noise sensitivity, ablation, training evolution)
needs the same few operations, done on whole batches of states at once so that nothing loops over
states, samples or `.item()` calls in Python. Only the time loop is in Python, and each of its
iterations advances the whole batch. Everything runs on the model's device.

Public API (stable; other analysis modules import it):

Runs and rollouts
- `driven_run(model, n, steps, *, noise_std=1.0, generator=None, h0=None) -> Tensor (n, steps, H)`
  hidden states of noise-driven runs through the fused RNN (h_0 = 0 unless given).
- `rollout(model, h0 (B,H), noise (B,T,d), *, rec_gain=None, input_gain=None) -> Tensor (B,T,H)`
  explicit-step rollout (supports per-unit gains); hidden after each of the T inputs.
- `mixed_noise(frozen (T,d), fresh (B,T,d), gamma) -> Tensor (B,T,d)`:
  (1-gamma) * frozen + gamma * fresh, the frozen sequence shared by every rollout.
- `argmax_outputs(model, h) -> LongTensor (...)`: argmax of the readout (the deterministic output).
- `time_to_switch(model, h0 (B,H), *, n_samples=20, max_steps=60, noise_std=1.0, generator=None,
  rec_gain=None, input_gain=None, reference=None) -> SwitchTimes`
  noisy rollouts (B x n_samples, alive-masked and compacted) until the argmax output leaves its
  starting value (or `reference`, a (B,) output per state). SwitchTimes fields (numpy, (B, S)):
  `steps` (int, first step at which the output changed; censored at max_steps), `switched` (bool),
  `sign_changes` (int, sign changes of the increments of the starting output's logit along the
  rollout up to the switch). Properties `rt` (B,) mean steps, `mean_sign_changes` (B,).

Switches in a symbol sequence
- `switch_steps(symbols (L,)) -> ndarray`: indices t with symbols[t] != symbols[t-1].
- `dwells(symbols (L,)) -> Dwells(start, end, value)`: maximal constant runs, end inclusive.

Jacobian spectra (J = D W_hh, D = diag(pre > 0); only gating masks are ever stored)
- `gating_masks(model, h, x=None, rec_gain=None, input_gain=None) -> BoolTensor (..., H)`.
- `jacobian_eigvals(w_hh (H,H), masks (N,H), *, rec_gain=None, chunk_elems=...) -> ndarray complex
  (N, H)`: eigenvalues of mask[:, :, None] * (rec_gain[:, None] * W_hh). Computed on the active
  sub-block only (the rows a zero mask removes contribute exact zeros), for each distinct mask once,
  in bounded chunks; the remaining entries are 0.
- `mobius(eigs) -> ndarray complex`: w = (lambda - 1) / (lambda + 1); Re w > 0 iff |lambda| > 1.
- `count_unstable(eigs, radius=1.0) -> (N,)`, `count_critical(eigs, re_tol=0.1, im_min=0.06) -> (N,)`
  (critical complex pairs: |Re w| < re_tol and Im w > im_min, one member per conjugate pair).
- `spectrum_counts(w_hh, masks, *, rec_gain=None, radius=1.0, re_tol=0.1, im_min=0.06)
  -> SpectrumCounts(unstable (N,), critical (N,))`: the counts without keeping eigenvalues around.

PCA basis for projections
- `pc_basis(model, *, n_components=3, steps=2000, warmup=20, noise_std=1.0, seed=0)
  -> (components (C,H) float64 ndarray, mean (H,) float64 ndarray)`: the driven PCA of
  `hmmrnn.analyses.pca` (same basis as the state-space views).
- `project(h, components, mean) -> ndarray (..., C)`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

# --- runs -----------------------------------------------------------------------------------------


@torch.no_grad()
def driven_run(
    model,
    n: int,
    steps: int,
    *,
    noise_std: float = 1.0,
    generator: torch.Generator | None = None,
    h0: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hidden states (n, steps, H) of noise-driven runs, computed by the fused RNN kernel."""
    noise = model.sample_noise(n, steps, noise_std, generator)
    start = None if h0 is None else h0.reshape(1, n, -1).to(noise.dtype)
    hidden, _ = model.rnn(noise, start)
    return hidden


@torch.no_grad()
def rollout(
    model,
    h0: torch.Tensor,
    noise: torch.Tensor,
    *,
    rec_gain: torch.Tensor | None = None,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hidden states (B, T, H) after each input of `noise` (B, T, d), starting from h0 (B, H).

    Uses the explicit step so that per-unit gains (ablations) apply; the time loop advances the
    whole batch per iteration.
    """
    batch, length, _ = noise.shape
    out = torch.empty(batch, length, h0.shape[-1], device=h0.device, dtype=h0.dtype)
    h = h0
    for t in range(length):
        h = model.step(h, noise[:, t], rec_gain, input_gain)
        out[:, t] = h
    return out


def mixed_noise(frozen: torch.Tensor, fresh: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - gamma) * frozen + gamma * fresh: gamma = 0 gives every rollout the same input.

    frozen (..., T, d) is shared by the rollouts of fresh (..., N, T, d) (leading axes: e.g. draws).
    """
    return (1.0 - gamma) * frozen.unsqueeze(-3) + gamma * fresh


def argmax_outputs(model, h: torch.Tensor) -> torch.Tensor:
    """The deterministic output of a state: argmax of its logits."""
    return model.readout(h).argmax(dim=-1)


# --- time to switch -------------------------------------------------------------------------------


@dataclass
class SwitchTimes:
    """Per state and sample: first step at which the output changed (censored), and sign changes."""

    steps: np.ndarray  # (B, S) int
    switched: np.ndarray  # (B, S) bool
    sign_changes: np.ndarray  # (B, S) int

    @property
    def rt(self) -> np.ndarray:
        """Residency time per state: mean steps to switch, censored rollouts counted at max."""
        return self.steps.mean(axis=1)

    @property
    def mean_sign_changes(self) -> np.ndarray:
        return self.sign_changes.mean(axis=1)


@torch.no_grad()
def time_to_switch(
    model,
    h0: torch.Tensor,
    *,
    n_samples: int = 20,
    max_steps: int = 60,
    noise_std: float = 1.0,
    generator: torch.Generator | None = None,
    rec_gain: torch.Tensor | None = None,
    input_gain: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> SwitchTimes:
    """Roll B states x n_samples forward with fresh noise until the argmax output changes.

    Rows that have switched are dropped from the batch (compaction), so the work shrinks as
    rollouts finish and the loop ends as soon as every rollout has switched.
    """
    batch = h0.shape[0]
    rows = batch * n_samples
    h = h0.repeat_interleave(n_samples, dim=0)
    logits = model.readout(h)
    ref = logits.argmax(-1) if reference is None else reference.repeat_interleave(n_samples)
    prev = logits.gather(1, ref[:, None])[:, 0]
    prev_sign = torch.zeros(rows, device=h.device, dtype=torch.int8)
    changes = torch.zeros(rows, device=h.device, dtype=torch.int32)
    idx = torch.arange(rows, device=h.device)
    steps_out = torch.full((rows,), max_steps, device=h.device, dtype=torch.int32)
    changes_out = torch.zeros(rows, device=h.device, dtype=torch.int32)
    switched_out = torch.zeros(rows, device=h.device, dtype=torch.bool)
    d = model.input_size
    for t in range(1, max_steps + 1):
        x = noise_std * torch.randn((h.shape[0], d), generator=generator, device=h.device)
        h = model.step(h, x, rec_gain, input_gain)
        logits = model.readout(h)
        cur = logits.gather(1, ref[:, None])[:, 0]
        sign = torch.sign(cur - prev).to(torch.int8)
        changes += ((sign != 0) & (prev_sign != 0) & (sign != prev_sign)).to(torch.int32)
        prev_sign = torch.where(sign != 0, sign, prev_sign)
        prev = cur
        done = logits.argmax(-1) != ref
        if bool(done.any()):
            hit = idx[done]
            steps_out[hit] = t
            switched_out[hit] = True
            changes_out[hit] = changes[done]
            keep = ~done
            h, ref, prev, prev_sign, changes, idx = (
                a[keep] for a in (h, ref, prev, prev_sign, changes, idx)
            )
            if idx.numel() == 0:
                break
    changes_out[idx] = changes  # censored rollouts: changes over the whole window
    shape = (batch, n_samples)
    return SwitchTimes(
        steps=steps_out.reshape(shape).cpu().numpy().astype(np.int64),
        switched=switched_out.reshape(shape).cpu().numpy(),
        sign_changes=changes_out.reshape(shape).cpu().numpy().astype(np.int64),
    )


# --- switches in a sequence -----------------------------------------------------------------------


@dataclass
class Dwells:
    """Maximal runs of a constant symbol: start and end (inclusive) indices and the symbol."""

    start: np.ndarray
    end: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def switch_steps(symbols: np.ndarray) -> np.ndarray:
    """Indices t at which symbols[t] differs from symbols[t - 1]."""
    symbols = np.asarray(symbols)
    return np.flatnonzero(symbols[1:] != symbols[:-1]) + 1


def dwells(symbols: np.ndarray) -> Dwells:
    symbols = np.asarray(symbols)
    if symbols.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Dwells(empty, empty, empty)
    cuts = switch_steps(symbols)
    start = np.concatenate([[0], cuts]).astype(np.int64)
    end = np.concatenate([cuts - 1, [symbols.size - 1]]).astype(np.int64)
    return Dwells(start, end, symbols[start])


def pair_runs(
    symbols: np.ndarray, pair: tuple[int, int], min_run: int, both: bool = True
) -> list[tuple[int, int]]:
    """Maximal runs (start, end exclusive) of at least min_run steps whose outputs stay in `pair`;
    with `both`, only runs that visit both outputs (one sitting on one output says nothing about
    the switch between them)."""
    inside = np.isin(symbols, pair)
    edges = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = []
    for s, e in zip(starts, ends, strict=True):  # loop over runs (few), not steps
        seg = symbols[s:e]
        if e - s >= min_run and (not both or ((seg == pair[0]).any() and (seg == pair[1]).any())):
            keep.append((int(s), int(e)))
    return keep


# --- Jacobian spectra -----------------------------------------------------------------------------


def gating_masks(
    model,
    h: torch.Tensor,
    x: torch.Tensor | None = None,
    rec_gain: torch.Tensor | None = None,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """D = (pre-activation > 0) of the step taken from h with input x (None: noise-free)."""
    return model.preactivation(h, x, rec_gain, input_gain) > 0


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _unique_masks(masks) -> tuple[np.ndarray, np.ndarray]:
    """Distinct masks (U, H) and, for each state, the row of its mask: states share the work."""
    masks = _as_numpy(masks).astype(bool)
    hidden = masks.shape[1]
    if masks.shape[0] == 0:
        return masks, np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(np.packbits(masks, axis=1), axis=0, return_inverse=True)
    return np.unpackbits(uniq, axis=1, count=hidden).astype(bool), inverse.reshape(-1)


def _weights(w_hh, rec_gain) -> np.ndarray:
    w = _as_numpy(w_hh).astype(np.float64)
    if rec_gain is not None:
        w = _as_numpy(rec_gain).astype(np.float64).reshape(-1, 1) * w
    return w


def _eigvals_single_threaded(blocks: np.ndarray) -> np.ndarray:
    """Eigenvalues of a batch of square blocks, LAPACK single-threaded in this worker thread.

    Multi-threaded geev on small matrices is slower than one thread, and catastrophically so on a
    busy machine (150 x 150: 13 ms on one thread, 100-300 ms on two contended ones). Parallelism
    comes from running several batches at once instead. torch's thread setting is per thread
    (OpenMP), so this only affects the pool's own worker.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigvals(torch.from_numpy(blocks)).numpy()
    finally:
        torch.set_num_threads(previous)


def _blocks(w: np.ndarray, umasks: np.ndarray, chunk_elems: int):
    """Yield (rows, k, active sub-blocks (n, k, k)) of the distinct masks, bounded in size.

    D W_hh with D a 0/1 diagonal is block upper-triangular once the active units come first:
    [[W_aa, W_ai], [0, 0]]. Its eigenvalues are those of W_aa plus zeros, so the eigen-solver only
    sees the active sub-block (about half the units in a ReLU network: ~8x less work).
    """
    active = umasks.sum(axis=1)
    for k in np.unique(active):
        group = np.flatnonzero(active == k)
        per = max(1, chunk_elems // max(1, int(k * k)))
        for lo in range(0, len(group), per):
            part = group[lo : lo + per]
            cols = np.nonzero(umasks[part])[1].reshape(len(part), int(k))
            yield part, int(k), w[cols[:, :, None], cols[:, None, :]]


def _iter_spectra(w: np.ndarray, umasks: np.ndarray, chunk_elems: int):
    """Yield (rows, eigs (n, H) complex128) for the distinct masks, chunks solved in parallel."""
    hidden = w.shape[0]
    workers = max(1, torch.get_num_threads())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for part, k, blocks in _blocks(w, umasks, chunk_elems):
            job = pool.submit(_eigvals_single_threaded, blocks) if k else None
            pending.append((part, k, job))
            if len(pending) > 2 * workers:  # bound the blocks held in memory
                yield _finish(pending.pop(0), hidden)
        for item in pending:
            yield _finish(item, hidden)


def _finish(item, hidden: int):
    part, k, job = item
    eigs = np.zeros((len(part), hidden), dtype=np.complex128)
    if job is not None:
        eigs[:, :k] = job.result()
    return part, eigs


def jacobian_eigvals(w_hh, masks, *, rec_gain=None, chunk_elems: int = 1 << 22) -> np.ndarray:
    """Eigenvalues (N, H) of mask[:, :, None] * W_hh, without building the N dense Jacobians."""
    umasks, inverse = _unique_masks(masks)
    spectra = np.zeros(umasks.shape, dtype=np.complex128)
    for part, eigs in _iter_spectra(_weights(w_hh, rec_gain), umasks, chunk_elems):
        spectra[part] = eigs
    return spectra[inverse]


def mobius(eigs: np.ndarray) -> np.ndarray:
    """w = (lambda - 1) / (lambda + 1): maps the unit circle onto the imaginary axis."""
    eigs = np.asarray(eigs, dtype=np.complex128)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (eigs - 1.0) / (eigs + 1.0)
    return np.where(eigs == -1.0, complex(np.inf, 0.0), w)  # lambda = -1 maps to infinity


def count_unstable(eigs: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """Eigenvalues outside the circle of `radius` (1: Mobius Re w > 0), per row."""
    return (np.abs(eigs) > radius).sum(axis=-1)


def count_critical(eigs: np.ndarray, re_tol: float = 0.1, im_min: float = 0.06) -> np.ndarray:
    """Complex pairs near the unit circle with real rotation: |Re w| < re_tol and Im w > im_min.

    Im w > 0 selects one member of each conjugate pair, so the count is a count of pairs.
    """
    w = mobius(eigs)
    return ((np.abs(w.real) < re_tol) & (w.imag > im_min)).sum(axis=-1)


@dataclass
class SpectrumCounts:
    unstable: np.ndarray  # (N,) int
    critical: np.ndarray  # (N,) int


def spectrum_counts(
    w_hh,
    masks,
    *,
    rec_gain=None,
    radius: float = 1.0,
    re_tol: float = 0.1,
    im_min: float = 0.06,
    chunk_elems: int = 1 << 22,
) -> SpectrumCounts:
    """Unstable-eigenvalue and critical-pair counts per mask, one chunk of spectra at a time."""
    umasks, inverse = _unique_masks(masks)
    unstable = np.zeros(len(umasks), dtype=np.int64)
    critical = np.zeros(len(umasks), dtype=np.int64)
    for part, eigs in _iter_spectra(_weights(w_hh, rec_gain), umasks, chunk_elems):
        unstable[part] = count_unstable(eigs, radius)
        critical[part] = count_critical(eigs, re_tol, im_min)
    return SpectrumCounts(unstable=unstable[inverse], critical=critical[inverse])


# --- PCA basis ------------------------------------------------------------------------------------


def pc_basis(
    model,
    *,
    n_components: int = 3,
    steps: int = 2000,
    warmup: int = 20,
    noise_std: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (C, H) and mean (H,) of a driven run, shared with the state-space views.

    This is `hmmrnn.analyses.pca.driven_pca`, so every analysis projects on the very same basis;
    it is imported here, not at module level, to keep scikit-learn out of importing this module.
    """
    from hmmrnn.analyses.pca import driven_pca

    res = driven_pca(
        model,
        steps=steps,
        warmup=warmup,
        noise_std=noise_std,
        n_components=n_components,
        seed=seed,
    )
    return res.components, res.mean


def project(h, components: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Coordinates of states (..., H) on the principal axes."""
    return (_as_numpy(h).astype(np.float64) - mean) @ components.T
