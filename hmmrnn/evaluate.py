"""Evaluation: are an RNN's output sequences statistically indistinguishable from an HMM's?

All statistics work on integer output arrays of shape (N, L) with values in [0, K) (ANALYSES.md
section 4). They are vectorised over sequences and time; torch tensors are accepted and moved to
numpy.

Matched distance. A sequence is a point in R^(K L) (its flattened one-hot encoding); the Euclidean
distance between two one-hot sequences is sqrt(2 * mismatches). The mismatch matrix between two sets
comes from one matrix product of one-hot arrays. Identical sequences are merged first into weighted
points (a unique sequence with its count), which shrinks the problem when outputs repeat; the
per-sequence distances reported are nevertheless exact, one per input sequence.

Two matchings are offered, and every result says which one it used:

* ``"assignment"`` (default): a one-to-one pairing of the two sets that minimises the sum of
  Euclidean distances (an exact optimal assignment). Without many repeated sequences it is solved
  on the N x N distance matrix by ``hmmrnn.assignment``: a sparse solve over the pairs that a rough
  entropic solve's dual potentials single out, certified optimal against every pair by its duals
  (scipy's dense ``linear_sum_assignment`` took two to five times as long); when merging repeats
  makes the problem at most half as large, by POT's exact network simplex ``ot.emd`` on the
  weighted points, whose integer flow is then expanded back into a permutation. Both give the
  same optimal total.
* ``"study"``: the study's matching, exactly as it computed it (ANALYSES.md section 4). Entropic
  optimal transport between the two uniformly weighted sets with the plain Euclidean cost and an
  absolute epsilon ``reg`` (0.1), by Sinkhorn iterations on the dual potentials, stopped once the
  potentials of all sequences move by less than 0.1 in sum over one iteration; each sequence of
  ``a`` is then paired with the sequence of ``b`` holding the largest plan entry (the study's
  column argmax with the HMM sample as the first set). Not one-to-one: ``unique_fraction`` says how
  many distinct partners were used (about 80% for HMM samples). This reproduces the published
  HMM-HMM baselines (Two 4.55, Three 7.29 at N 5,000, L 100). The potentials and the log-domain
  steps are float64; the Gibbs kernel between them is stored in float32, which halves the memory
  traffic the iterations are bound by, and the potential the pairing reads is taken once more in
  float64 at the stop. Against a float64 kernel at N 5,000, L 100 the partners were the same for
  HMM samples of Two, Three, Four and Five and for an RNN's outputs, and at reg 0.02-0.03 too.

Memory: the distance matrix holds (unique sequences in a) x (unique sequences in b) float64 entries;
above ``MAX_PAIRS`` entries a ValueError is raised rather than exhausting memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from hmmrnn import match_passes
from hmmrnn.analyses.base import Result
from hmmrnn.params import P

MATCH_METHODS = ("assignment", "study")
STUDY_TOL = 0.1  # the study's stop: summed change of all dual potentials in one iteration
STUDY_MAX_ITER = 20_000
MAX_PAIRS = 250_000_000  # 2 GB of float64 distances
DEFAULT_SEQ_LEN = 30  # the config's default sequence length, used when seq_len is None
FREQUENT_ROW_SHARE = 0.05  # transition rows checked by transition_error: symbols emitted >= 5%
_KERNEL_DTYPE = np.float32  # the study's kernel: half the memory traffic of float64 (see above)
# Rows of the study's kernel per block: both products while the block is cached. Measured on a
# 2-core AMD EPYC (1 MB L2, 32 MB L3) at 4,800 x 4,800: a sweep took 8.4 ms with 1 MB blocks,
# 5.4 ms with 2-4 MB (each block's numpy calls cost more than a block from L3 does).
_SWEEP_BYTES = 1 << 22
_LIVE_AFTER = 8  # dense sweeps over a new kernel before its live pattern is cut (see _Sweeps)
_PROGRESS_TICK = 0.5  # seconds between progress reports while the matchings run
_DEDUP_RATIO = 0.5  # merge repeats and use ot.emd when the unique problem is <= half the full one
# The exact assignment's guess of its duals: an entropic solve at a twentieth of the mean distance,
# stopped at a summed move of 1e-4 per potential (the study stops at 0.1 in all). Speed only.
_GUESS_EPS_SHARE = 0.05
# Candidates lie up to this many guess epsilons above the guessed duals. Chosen when every round
# was a scipy solve holding the GIL (~0.2-0.3 s at n 5,000 whatever the candidates' number): at 2
# epsilons Two and Four (n 5,000) took 3 rounds and 0.7-1.1 s of solves, at 3 (with at most 64
# candidates per row) 1 round and 0.26-0.29 s; Three, Five 0.24-0.42 s either way. It is still
# the path without the native kernel; with it, later rounds are 10-40 ms repairs.
_CANDIDATE_SLACK = 3.0
_GUESS_TOL = 1e-4
_GUESS_MAX_ITER = 500
LEGACY_FORMAT = (
    "hmmrnn.evaluation/1"  # flat evaluation.json written before results had a run header
)


# --- validation ----------------------------------------------------------------------------------


def _as_outputs(x: Any, num_outputs: int | None, name: str = "outputs") -> np.ndarray:
    """A validated (N, L) int64 array with values in [0, num_outputs) (only >= 0 if None)."""
    if num_outputs is not None:
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, (int, np.integer)):
            raise ValueError(f"num_outputs must be an integer, got {num_outputs!r}")
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, on any device
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (sequences, steps) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer symbols, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or (num_outputs is not None and hi >= num_outputs):
        bound = "inf" if num_outputs is None else num_outputs
        raise ValueError(f"{name} values must lie in [0, {bound}), found range [{lo}, {hi}]")
    return arr.astype(np.int64, copy=False)


# --- matched distances ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchResult:
    """Distance of each sequence of `a` to its partner in `b` (partners: indices into `b`).

    `mean` and `std` are over the N distances (population std, ddof = 0).
    """

    distances: np.ndarray
    mean: float
    std: float
    method: str
    unique_fraction: float
    partners: np.ndarray


def _dedup(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique rows, index of each row's first occurrence, row -> unique id, counts."""
    uniq, first, inverse, counts = np.unique(
        x, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    return uniq, first, inverse.reshape(-1), counts


def mismatch_matrix(a: np.ndarray, b: np.ndarray, num_outputs: int) -> np.ndarray:
    """Number of differing steps between every sequence of `a` and of `b`, (Na, Nb) int32.

    One GEMM of float32 one-hot arrays (exact: counts are far below 2**24).
    """
    a = _as_outputs(a, num_outputs, "a")
    b = _as_outputs(b, num_outputs, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sequence lengths differ: a has {a.shape[1]} steps, b has {b.shape[1]}")
    return a.shape[1] - np.rint(_match_counts(a, b, num_outputs)).astype(np.int32)


def _match_counts(a: np.ndarray, b: np.ndarray, num_outputs: int) -> np.ndarray:
    """Steps at which each pair agrees, (Na, Nb) float32: one GEMM of one-hot arrays, exact
    (sums of 0/1 products far below 2**24)."""
    eye = np.eye(num_outputs, dtype=np.float32)
    return eye[a].reshape(a.shape[0], -1) @ eye[b].reshape(b.shape[0], -1).T


def distance_matrix(a: np.ndarray, b: np.ndarray, num_outputs: int) -> np.ndarray:
    """Euclidean distance sqrt(2 * mismatches) between every pair, (Na, Nb) float64."""
    return _distances(a, b, num_outputs)[0]


def _distances(a: np.ndarray, b: np.ndarray, num_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """The distance matrix, and the float32 matrix of match counts it was built from, free for
    the caller's use (the entropic solves' kernel: a fresh 100 MB at n 5,000 is page-faulted in
    at about 1 GB/s on this project's virtual machines).

    Built block by block from the match counts, in place: the solvers' input at one write of
    the matrix (the mismatch matrix and a table lookup took four passes).
    """
    a = _as_outputs(a, num_outputs, "a")
    b = _as_outputs(b, num_outputs, "b")
    matches = _match_counts(a, b, num_outputs)
    out = np.empty(matches.shape)
    for rows in _row_blocks(*matches.shape):
        part = out[rows]
        np.subtract(a.shape[1], matches[rows], out=part)
        part *= 2.0
        np.sqrt(part, out=part)
    return out, matches


def _expand_flow(flow: np.ndarray, inv_a: np.ndarray, inv_b: np.ndarray) -> np.ndarray:
    """Turn an integer flow between unique points into a permutation of the original sequences.

    flow[i, j] copies of unique a-point i go to unique b-point j. Returns partners (Na,) with each
    index of b used exactly once.
    """
    rows, cols = np.nonzero(flow)  # row-major: sorted by i, then j
    reps = flow[rows, cols]
    order_a = np.argsort(inv_a, kind="stable")  # positions in a, grouped by unique id
    order_b = np.argsort(inv_b, kind="stable")
    partner_uid = np.repeat(cols, reps)  # aligned with order_a
    by_b = np.argsort(partner_uid, kind="stable")  # group the pairs by their b-point
    partners = np.empty(inv_a.shape[0], dtype=np.int64)
    partners[order_a[by_b]] = order_b
    return partners


def _assign(
    a: np.ndarray, b: np.ndarray, num_outputs: int, dedup: bool | None, on_progress: Any = None
) -> np.ndarray:
    """Partners (indices into b) of an optimal one-to-one assignment minimising summed distance."""
    n = a.shape[0]
    ua, _, inv_a, ca = _dedup(a)
    ub, _, inv_b, cb = _dedup(b)
    small = ua.shape[0] * ub.shape[0] <= _DEDUP_RATIO * n * n
    if not (small if dedup is None else dedup):
        return _full_assignment(a, b, num_outputs, on_progress)
    import ot  # deferred: importing POT takes about a second, and most matchings never need it

    _check_pairs(ua.shape[0], ub.shape[0])
    dist = distance_matrix(ua, ub, num_outputs)
    flow, log = ot.emd(
        ca.astype(np.float64), cb.astype(np.float64), dist, numItermax=10**9, log=True
    )
    if log.get("warning"):
        raise RuntimeError(f"exact assignment (ot.emd) did not finish: {log['warning']}")
    flow_int = np.rint(flow).astype(np.int64)
    # Network simplex on integer margins returns an integer vertex; verify rather than assume.
    if not (
        np.allclose(flow, flow_int, atol=1e-6)
        and np.array_equal(flow_int.sum(axis=1), ca)
        and np.array_equal(flow_int.sum(axis=0), cb)
    ):
        return _full_assignment(a, b, num_outputs, on_progress)
    return _expand_flow(flow_int, inv_a, inv_b)


def _full_assignment(
    a: np.ndarray, b: np.ndarray, num_outputs: int, on_progress: Any = None
) -> np.ndarray:
    """Partners from the certified sparse solver (hmmrnn.assignment) on the full N x N distance
    matrix, its candidate pairs chosen by the dual potentials of a loose entropic solve at an
    epsilon of a twentieth of the mean distance: cheap (a few dozen Sinkhorn iterations) and close
    enough that one to four certification rounds find the optimum. `on_progress(fraction)` is
    told the entropic solve's convergence (up to 60%) and then each round."""
    from hmmrnn.assignment import exact_assignment

    _check_pairs(len(a), len(b))
    cost, spare = _distances(a, b, num_outputs)
    n = cost.shape[0]
    eps = _GUESS_EPS_SHARE * float(cost.mean())
    guess = np.zeros(n)
    if eps > 0:
        told = (lambda f: on_progress(0.6 * f)) if on_progress is not None else None
        try:
            guess = _sinkhorn_potentials(cost, np.ones(n), np.ones(n), eps, told, _GUESS_TOL * 2 * n,
                                         _GUESS_MAX_ITER, spare)  # fmt: skip
        except ValueError:  # unsettled: the plain reductions are a worse guess, not a wrong one
            pass

    def on_round(k: int) -> None:
        if on_progress is not None:
            on_progress(0.6 + 0.4 * (1.0 - 0.5**k))

    return exact_assignment(cost, guess, _CANDIDATE_SLACK * eps, _row_blocks(n, n), on_round)


def _study_match(
    a: np.ndarray, b: np.ndarray, num_outputs: int, eps: float, on_progress: Any = None
) -> np.ndarray:
    """Partners (indices into b) by the study's entropic plan, computed on unique points.

    Copies of a sequence share their dual potentials, so the problem on unique points with counts
    as weights has the same potentials, the same stopping sums (weighted by the counts) and the same
    argmax (ties between copies go to the first copy in `b`, as an argmax over the full plan would).
    """
    ua, _, inv_a, ca = _dedup(a)
    ub, first_b, _, cb = _dedup(b)
    _check_pairs(ua.shape[0], ub.shape[0])
    cost, spare = _distances(ua, ub, num_outputs)
    g = _sinkhorn_potentials(cost, ca.astype(np.float64), cb.astype(np.float64), eps, on_progress,
                             buffer=spare)  # fmt: skip
    best = match_passes.row_argmax(cost, g)  # the argmax of each row of the plan, g_j - C_ij
    if best is None:
        best = np.empty(cost.shape[0], dtype=np.intp)
        for rows in _row_blocks(*cost.shape):
            best[rows] = np.subtract(g, cost[rows]).argmax(axis=1)
    return first_b[best][inv_a]


def _sinkhorn_potentials(
    cost: np.ndarray,
    ca: np.ndarray,
    cb: np.ndarray,
    eps: float,
    on_progress: Any = None,
    tol: float = STUDY_TOL,
    max_iter: int = STUDY_MAX_ITER,
    buffer: np.ndarray | None = None,
):
    """The second set's dual potential g after the study's Sinkhorn iterations.

    The iterates are those of the log-domain updates f = -eps LSE_j((g_j - C_ij)/eps + log b_j),
    g = -eps LSE_i((f_i - C_ij)/eps + log a_i), but most iterations are done as two matrix-vector
    products on the kernel exp((f0 + g0 - C)/eps) around absorbed potentials (f0, g0): a log-sum-exp
    over the N x N cost costs ten times as much. Whenever the scalings grow large, or the first time,
    a step is taken in the log domain and the kernel is rebuilt around it.

    The iterations are bound by memory traffic: both products of an iteration are taken on each
    block of kernel rows while it is in cache (``_kernel_sweep``), one pass over the kernel instead
    of two, and the log-domain steps and the kernel are computed block by block in place.

    The summed move falls about geometrically to the stopping threshold, so log(first move /
    move) against log(first move / threshold) is the share of the way done, told to
    `on_progress` after each iteration (never backwards). `tol` and `max_iter` are the study's
    unless a rougher solve will do (the exact assignment's guess of its duals). ``buffer``, if
    it is a C-contiguous array of the kernel's shape and precision, is overwritten with it.
    """
    la, lb = np.log(ca / ca.sum()), np.log(cb / cb.sum())
    a, b = ca / ca.sum(), cb / cb.sum()
    f, g = np.zeros(len(ca)), np.zeros(len(cb))
    f0, g0, beta = f, g, np.ones(len(cb))
    if (
        buffer is None
        or buffer.dtype != _KERNEL_DTYPE
        or buffer.shape != cost.shape
        or not buffer.flags.c_contiguous
    ):
        buffer = np.empty(cost.shape, dtype=_KERNEL_DTYPE)
    kernel = None
    first, done = None, 0.0  # the first summed move, and the share told so far
    for _ in range(max_iter):
        step, by_kernel = None, kernel is not None
        if kernel is not None:
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                alpha, beta_new = kernel.sweep(beta * b, a)
                la_s, lb_s = np.log(alpha), np.log(beta_new)
            if np.isfinite(la_s).all() and np.isfinite(lb_s).all():
                step, beta = (f0 + eps * la_s, g0 + eps * lb_s), beta_new
                if max(np.abs(la_s).max(), np.abs(lb_s).max()) > 30.0:
                    kernel = None  # absorb: rebuild the kernel around these potentials
        if step is None:  # the log-domain step, always stable
            f_new = -eps * _soft_min_rows(cost, g, lb, eps)
            g_new = -eps * _soft_min_cols(cost, f_new, la, eps)
            step, kernel, by_kernel = (f_new, g_new), None, False
        moved = (ca * np.abs(step[0] - f)).sum() + (cb * np.abs(step[1] - g)).sum()
        f, g = step
        if moved < tol:
            # The same g in exact arithmetic, taken in float64 from f: the float32 kernel's noise
            # (about eps 1e-7) would decide argmax margins that small epsilons make that thin.
            return -eps * _soft_min_cols(cost, f, la, eps) if by_kernel else g
        if on_progress is not None:
            first = first if first is not None else moved
            share = math.log(first / moved) / math.log(first / tol) if first > moved else 0
            done = max(done, min(0.99, share))
            on_progress(done)
        if kernel is None:
            f0, g0, beta = f, g, np.ones(len(cb))
            kernel = _Sweeps(_gibbs_kernel(cost, f0, g0, eps, buffer))
    raise ValueError(
        f"the study's Sinkhorn matching did not settle in {max_iter} iterations "
        f"(epsilon {eps}); use a larger reg"
    )


def _row_blocks(n_rows: int, n_cols: int, itemsize: int = 8) -> list[slice]:
    """Row blocks of about _SWEEP_BYTES each (at least one row)."""
    step = max(1, _SWEEP_BYTES // (itemsize * max(1, n_cols)))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


class _Sweeps:
    """The sweeps over one absorbed kernel: dense for the first :data:`_LIVE_AFTER`, then over
    its live pattern (:func:`hmmrnn.match_passes.live_pattern`) where that is sparse enough.

    At the study's epsilon 94% of the kernel's terms are under 1e-12 of their row's and their
    column's sums, and the pattern hardly moves once the scalings have settled; a sweep over the
    rest reads 8 bytes per live entry instead of 4 per entry (Two h50, n 5,000, L 100: 1.5-2.5
    against 5.5-6 ms). A sweep whose left-out terms may reach 1e-8 of a sum (the scalings have
    grown since the cut) is taken dense instead and the pattern cut again, at once if the last
    one served :data:`_LIVE_AFTER` sweeps, else after twice the wait of the last time (a cut
    costs about seven dense sweeps).
    """

    def __init__(self, kernel: np.ndarray) -> None:
        self.kernel = kernel
        self.pattern: match_passes.LivePattern | None = None
        self.count, self.cut_at, self.wait = 0, 0, _LIVE_AFTER
        self.next_cut: int | None = _LIVE_AFTER  # None: not to be cut (again)

    def sweep(self, v: np.ndarray, a: np.ndarray):
        self.count += 1
        if self.pattern is not None:
            done = match_passes.sparse_sweep(self.pattern, v, a)
            if done is not None:
                return done
            if self.count - self.cut_at <= _LIVE_AFTER:  # let the scalings settle first
                self.wait *= 2
                self.next_cut = self.count + self.wait
            else:
                self.next_cut = self.count
            self.pattern = None
        alpha, beta = _kernel_sweep(self.kernel, v, a)
        if self.next_cut is not None and self.count >= self.next_cut:
            self.pattern = match_passes.live_pattern(self.kernel, v, alpha, beta, a)
            self.cut_at, self.next_cut = self.count, None
        return alpha, beta


def _kernel_sweep(kernel: np.ndarray, v: np.ndarray, a: np.ndarray):
    """alpha = 1 / (K v) and then 1 / (K^T (alpha a)), in one pass over K's row blocks (products
    in the kernel's precision, the sums over blocks and the scalings in float64); natively
    (:func:`hmmrnn.match_passes.dense_sweep`) where it can."""
    native = match_passes.dense_sweep(kernel, v, a)
    if native is not None:
        return native
    alpha = np.empty(kernel.shape[0])
    acc = np.zeros(kernel.shape[1])
    v = v.astype(kernel.dtype)
    for rows in _row_blocks(*kernel.shape, kernel.itemsize):
        block = kernel[rows]
        part = alpha[rows]
        np.divide(1.0, block @ v, out=part)
        acc += (part * a[rows]).astype(kernel.dtype) @ block
    return alpha, 1.0 / acc


def _soft_min_rows(cost: np.ndarray, h: np.ndarray, log_w: np.ndarray, eps: float) -> np.ndarray:
    """LSE_j((h_j - C_ij)/eps + log_w_j) for every row i, block by block."""
    native = match_passes.soft_min_rows(cost, h, log_w, eps)
    if native is not None:
        return native
    out = np.empty(cost.shape[0])
    shift = h / eps + log_w
    for rows in _row_blocks(*cost.shape):
        z = cost[rows] * (-1.0 / eps)
        z += shift
        top = z.max(axis=1, keepdims=True)
        z -= top
        np.exp(z, out=z)
        out[rows] = np.log(z.sum(axis=1)) + top[:, 0]
    return out


def _soft_min_cols(cost: np.ndarray, h: np.ndarray, log_w: np.ndarray, eps: float) -> np.ndarray:
    """LSE_i((h_i - C_ij)/eps + log_w_i) for every column j: two passes over row blocks (the
    column maxima, then the shifted sums), so no transposed copy is made."""
    native = match_passes.soft_min_cols(cost, h, log_w, eps)
    if native is not None:
        return native
    shift = h / eps + log_w
    blocks = _row_blocks(*cost.shape)
    top = np.full(cost.shape[1], -np.inf)
    for rows in blocks:
        z = cost[rows] * (-1.0 / eps)
        z += shift[rows, None]
        np.maximum(top, z.max(axis=0), out=top)
    total = np.zeros(cost.shape[1])
    for rows in blocks:
        z = cost[rows] * (-1.0 / eps)
        z += shift[rows, None]
        z -= top
        np.exp(z, out=z)
        total += z.sum(axis=0)
    return np.log(total) + top


def _gibbs_kernel(cost, f0, g0, eps, out: np.ndarray) -> np.ndarray:
    """exp((f0_i + g0_j - C_ij) / eps) into `out`: the exponent in float64 block by block (its
    terms are hundreds and cancel), stored in the kernel's precision."""
    if match_passes.gibbs_kernel(cost, f0, g0, eps, out) is not None:
        return out
    for rows in _row_blocks(*cost.shape):
        z = cost[rows] * (-1.0 / eps)
        z += (f0[rows] / eps)[:, None]
        z += g0 / eps
        out[rows] = np.exp(z, out=z)
    return out


def _check_pairs(na: int, nb: int) -> None:
    if na * nb > MAX_PAIRS:
        raise ValueError(
            f"matching {na} x {nb} distinct sequences needs {na * nb * 8 / 1e9:.1f} GB of distances "
            f"(limit {MAX_PAIRS * 8 / 1e9:.1f} GB); use fewer sequences"
        )


def matched_distances(
    a: Any,
    b: Any,
    num_outputs: int,
    method: str = "assignment",
    reg: float = 0.1,
    *,
    dedup: bool | None = None,
    on_progress: Any = None,
) -> MatchResult:
    """Pair each sequence of `a` with one of `b` and return the Euclidean distances of the pairs.

    method "assignment" (one-to-one, needs len(a) == len(b)) or "study" (the study's Sinkhorn plan
    with absolute epsilon = reg on the Euclidean cost, argmax pairing). `dedup` forces (True) or forbids
    (False) solving the assignment on merged repeated sequences; None chooses by problem size.
    `on_progress(fraction)` is told how far the iterations have converged (the study's, or the
    exact assignment's guess and rounds; POT's emd on merged repeats tells nothing).
    """
    if method not in MATCH_METHODS:
        raise ValueError(f"method must be one of {MATCH_METHODS}, got {method!r}")
    a = _as_outputs(a, num_outputs, "a")
    b = _as_outputs(b, num_outputs, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sequence lengths differ: a has {a.shape[1]} steps, b has {b.shape[1]}")
    if method == "assignment":
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"a one-to-one assignment needs equal set sizes, got {a.shape[0]} and {b.shape[0]}"
            )
        partners = _assign(a, b, num_outputs, dedup, on_progress)
    else:
        if not (reg > 0 and math.isfinite(reg)):
            raise ValueError(f"reg must be a positive number, got {reg!r}")
        partners = _study_match(a, b, num_outputs, float(reg), on_progress)
    mismatches = (a != b[partners]).sum(axis=1)
    distances = np.sqrt(2.0 * mismatches)
    return MatchResult(
        distances=distances,
        mean=float(distances.mean()),
        std=float(distances.std()),
        method=method,
        unique_fraction=float(np.unique(partners).size / a.shape[0]),
        partners=partners,
    )


# --- sequence statistics -------------------------------------------------------------------------


def volatility(outputs: Any) -> np.ndarray:
    """Number of output changes (o_{t+1} != o_t) in each sequence, (N,) int."""
    x = _as_outputs(outputs, None)
    return (x[:, 1:] != x[:, :-1]).sum(axis=1)


def output_frequencies(outputs: Any, num_outputs: int) -> np.ndarray:
    """Per-sequence frequency of each symbol, (N, K); rows sum to 1."""
    x = _as_outputs(outputs, num_outputs)
    n, length = x.shape
    offsets = (np.arange(n) * num_outputs)[:, None]
    counts = np.bincount((x + offsets).ravel(), minlength=n * num_outputs)
    return counts.reshape(n, num_outputs) / length


def symbol_share(outputs: Any, num_outputs: int) -> np.ndarray:
    """Overall frequency of each symbol over all sequences and steps, (K,)."""
    x = _as_outputs(outputs, num_outputs)
    return np.bincount(x.ravel(), minlength=num_outputs) / x.size


def transition_counts(outputs: Any, num_outputs: int) -> np.ndarray:
    """Counts of consecutive output pairs (o_t = i, o_{t+1} = j) within sequences, (K, K) int."""
    x = _as_outputs(outputs, num_outputs)
    pairs = x[:, :-1] * num_outputs + x[:, 1:]
    counts = np.bincount(pairs.ravel(), minlength=num_outputs * num_outputs)
    return counts.reshape(num_outputs, num_outputs)


def transition_matrix(outputs: Any, num_outputs: int) -> np.ndarray:
    """Row-normalised transition counts P(o_{t+1} = j | o_t = i), (K, K).

    A row whose symbol never precedes another output (never emitted, or only at the last step, or
    L = 1) has no data and is all zeros, not NaN; check `symbol_share` to tell such rows apart.
    """
    counts = transition_counts(outputs, num_outputs).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


# --- how the outputs switch -----------------------------------------------------------------------

EARLY_STEPS = 10  # the first steps from h = 0, where an RNN's transient shows
RARE_RATIO = 2.0  # a symbol emitted more than 2x too often or too rarely is flagged


def interior_runs(outputs: Any, num_outputs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(length, symbol) of every run of one symbol that neither starts a sequence nor ends it.

    Runs cut by the ends of a sequence are shorter than they are, so only interior runs are an
    unbiased sample of dwell times.
    """
    x = _as_outputs(outputs, num_outputs)
    rows, cols = np.nonzero(x[:, 1:] != x[:, :-1])  # row-major: sorted by sequence, then step
    starts = cols + 1  # a new run starts at each switch
    same = rows[1:] == rows[:-1]
    lengths = (starts[1:] - starts[:-1])[same]
    symbols = x[rows[:-1][same], starts[:-1][same]]
    return lengths.astype(np.int64), symbols.astype(np.int64)


def dwell_distribution(outputs: Any, num_outputs: int) -> np.ndarray:
    """Share of interior runs of each length, per symbol: (K, L) with rows summing to 1 (or 0
    for a symbol without an interior run); column j is length j + 1."""
    x = _as_outputs(outputs, num_outputs)
    lengths, symbols = interior_runs(x, num_outputs)
    counts = np.zeros((num_outputs, x.shape[1]), dtype=np.float64)
    np.add.at(counts, (symbols, lengths - 1), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def dwell_tv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Total-variation distance per symbol between two dwell distributions (K,): 0 alike, 1
    disjoint; 1 when only one side has runs of the symbol, NaN when neither has."""
    tv = 0.5 * np.abs(a - b).sum(axis=1)
    has_a, has_b = a.sum(axis=1) > 0, b.sum(axis=1) > 0
    return np.where(has_a & has_b, tv, np.where(has_a | has_b, 1.0, np.nan))


def switch_back_share(outputs: Any) -> float:
    """P(o_{t+1} = o_{t-1} | o_t != o_{t-1}): how often a switch is undone at once (chatter)."""
    x = _as_outputs(outputs, None)
    if x.shape[1] < 3:
        return float("nan")
    switched = x[:, 1:-1] != x[:, :-2]
    back = switched & (x[:, 2:] == x[:, :-2])
    n = int(switched.sum())
    return float(back.sum() / n) if n else float("nan")


def one_step_share(outputs: Any) -> float:
    """Share of interior runs that last a single step."""
    lengths, _ = interior_runs(outputs)
    return float((lengths == 1).mean()) if lengths.size else float("nan")


def early_switch_rate(outputs: Any, steps: int = EARLY_STEPS) -> float:
    """Switches per step over the first `steps` steps of every sequence."""
    x = _as_outputs(outputs, None)
    k = min(steps, x.shape[1]) - 1
    return float((x[:, 1 : k + 1] != x[:, :k]).mean()) if k > 0 else float("nan")


def share_ratio(rnn_share: np.ndarray, hmm_share: np.ndarray) -> np.ndarray:
    """RNN over HMM share per symbol (inf when the HMM never emits what the RNN does)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(rnn_share, dtype=np.float64) / np.asarray(hmm_share, dtype=np.float64)
    return np.where((rnn_share == 0) & (hmm_share == 0), 1.0, ratio)


# --- evaluation result ---------------------------------------------------------------------------

_MATRIX_FIELDS = ("hmm_transition", "rnn_transition", "transition_sq_diff")
_OPTIONAL_VECTORS = ("dwell_tv", "share_ratio", "long_rnn_shares", "long_hmm_shares")
_VECTOR_FIELDS = (
    "hmm_freq_mean", "hmm_freq_std", "rnn_freq_mean", "rnn_freq_std",
    "hmm_symbol_share", "rnn_symbol_share",
)  # fmt: skip


@dataclass
class EvaluationResult(Result):
    """HMM vs RNN statistics on fresh samples (HMM, an independent HMM sample, and the RNN).

    Distances: baseline = second HMM sample matched to the reference HMM sample; rnn = RNN outputs
    matched to the same reference. `transition_error` is the largest |difference| of the transition
    matrices over rows whose symbol the HMM emits >= 5% of the time, and `transition_sq_error` its
    square (the study plots squared differences; the full matrix is in `transition_sq_diff`). Rows of
    rarely emitted symbols are estimated from too few transitions to be judged.
    """

    num_sequences: int
    seq_len: int
    seed: int
    method: str
    noise_std: float
    h0: str
    baseline_mean: float
    baseline_std: float
    baseline_unique_fraction: float
    rnn_mean: float
    rnn_std: float
    rnn_unique_fraction: float
    distance_ratio: float
    hmm_volatility_mean: float
    hmm_volatility_std: float
    rnn_volatility_mean: float
    rnn_volatility_std: float
    volatility_rel_error: float
    hmm_freq_mean: np.ndarray
    hmm_freq_std: np.ndarray
    rnn_freq_mean: np.ndarray
    rnn_freq_std: np.ndarray
    hmm_symbol_share: np.ndarray
    rnn_symbol_share: np.ndarray
    hmm_transition: np.ndarray
    rnn_transition: np.ndarray
    transition_sq_diff: np.ndarray
    transition_error: float
    transition_sq_error: float
    # how the outputs switch (version 2; absent from older files)
    hmm_switch_back: float = float("nan")
    rnn_switch_back: float = float("nan")
    hmm_one_step_share: float = float("nan")
    rnn_one_step_share: float = float("nan")
    dwell_tv: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    hmm_early_switch_rate: float = float("nan")
    rnn_early_switch_rate: float = float("nan")
    share_ratio: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    # output shares of long runs after long_skip steps, against the HMM's stationary shares
    long_steps: int = 0
    long_skip: int = 0
    long_rnn_shares: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    long_hmm_shares: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    long_share_error: float = float("nan")

    @property
    def num_outputs(self) -> int:
        return int(self.hmm_transition.shape[0])

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationResult:
        """The generic reader, plus the shapes: K-vectors and K x K matrices of one K."""
        result = super().from_dict(data)
        k = np.asarray(result.hmm_transition).shape[0] if result.hmm_transition.ndim else 0
        for name in _VECTOR_FIELDS + _MATRIX_FIELDS + _OPTIONAL_VECTORS:
            expected = (k, k) if name in _MATRIX_FIELDS else (k,)
            arr = np.asarray(getattr(result, name), dtype=np.float64)
            if name in _OPTIONAL_VECTORS and arr.size == 0:
                setattr(result, name, arr)
                continue
            if arr.shape != expected:
                raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")
            setattr(result, name, arr)
        return result

    @classmethod
    def load(cls, path: str | Path) -> EvaluationResult:
        """The result held by an evaluation file (either format; see analyses.evaluation)."""
        from hmmrnn.analyses.evaluation import load_evaluation

        return load_evaluation(path).result

    # --- the bar --------------------------------------------------------------------------------

    def passes_bar(
        self,
        max_ratio: float = 1.05,
        max_abs: float = 0.1,
        max_sq: float = 0.01,
        max_vol_rel: float = 0.15,
    ) -> tuple[bool, list[str]]:
        """Whether the RNN emulates the HMM well enough; the list says why not (empty if it does).

        Checks: distance_ratio <= max_ratio, transition_error <= max_abs (frequent rows),
        transition_sq_error <= max_sq (frequent rows), volatility_rel_error <= max_vol_rel. A NaN
        value fails its check.
        """
        checks = (
            ("distance ratio (rnn / baseline)", self.distance_ratio, max_ratio),
            ("transition max |diff| on frequent rows", self.transition_error, max_abs),
            ("transition max squared diff on frequent rows", self.transition_sq_error, max_sq),
            ("volatility relative error", self.volatility_rel_error, max_vol_rel),
        )
        reasons = [
            f"{name} {value:.4g} > {limit:g}"
            for name, value, limit in checks
            if not (value <= limit)  # NaN fails
        ]
        return (not reasons, reasons)

    def passes_dynamics_bar(
        self,
        max_switch_back: float = 0.10,
        max_one_step: float = 0.10,
        max_long: float | None = 0.05,
    ) -> tuple[bool, list[str]]:
        """Whether the RNN switches like the HMM, not only on average: the share of switches
        undone at once and of one-step runs within max_* of the HMM's, and the output shares of
        long runs within max_long of the HMM's stationary shares (None: not checked). NaN
        fails."""
        checks = (
            ("switch-back share |RNN - HMM|", abs(self.rnn_switch_back - self.hmm_switch_back),
             max_switch_back),
            ("one-step run share |RNN - HMM|",
             abs(self.rnn_one_step_share - self.hmm_one_step_share), max_one_step),
            (f"long-run output share error (after step {self.long_skip})", self.long_share_error,
             max_long),
        )  # fmt: skip
        reasons = [
            f"{n} {v:.4g} > {limit:g}"
            for n, v, limit in checks
            if limit is not None and not (v <= limit)
        ]
        return (not reasons, reasons)

    def rare_symbols(self) -> list[int]:
        """Symbols the RNN emits more than RARE_RATIO times too often or too rarely."""
        ratio = np.asarray(self.share_ratio, dtype=np.float64)
        return [int(k) for k in np.flatnonzero((ratio > RARE_RATIO) | (ratio < 1 / RARE_RATIO))]


# --- whole evaluation ----------------------------------------------------------------------------


def _ratio(value: float, reference: float) -> float:
    """value / reference, with 0 / 0 = 1 (both perfect) and x / 0 = inf."""
    if reference == 0:
        return 1.0 if value == 0 else math.inf
    return value / reference


def _relative_error(value: float, reference: float) -> float:
    if reference == 0:
        return 0.0 if value == 0 else math.inf
    return abs(value - reference) / abs(reference)


def compare_outputs(
    hmm_ref: Any,
    hmm_other: Any,
    rnn: Any,
    num_outputs: int,
    *,
    method: str = "assignment",
    reg: float = 0.1,
    seed: int = 0,
    noise_std: float = 1.0,
    h0: str = "zero",
    progress: Any = None,
    cancel: Any = None,
) -> EvaluationResult:
    """All statistics from three output arrays of equal shape: a reference HMM sample, an
    independent HMM sample (the baseline) and the RNN's outputs. `rnn` may also be a function
    that returns the outputs: it is called while the baseline is being matched."""
    from hmmrnn.analyses.base import check_cancel, no_progress

    progress = progress or no_progress
    ref = _as_outputs(hmm_ref, num_outputs, "hmm_ref")
    other = _as_outputs(hmm_other, num_outputs, "hmm_other")
    if ref.shape != other.shape:
        raise ValueError(f"output arrays must share one shape, got {ref.shape} and {other.shape}")

    def outputs() -> np.ndarray:
        gen = _as_outputs(rnn() if callable(rnn) else rnn, num_outputs, "rnn")
        if gen.shape != ref.shape:
            raise ValueError(
                f"output arrays must share one shape, got {ref.shape}, {other.shape} and "
                f"{gen.shape}"
            )
        return gen

    # Each matching is one solver call that reports nothing inside: say what it is and its size.
    kind = "exact" if method == "assignment" else "study"
    # short: a status line also names the model, and the seconds come at the end
    label = f"matching 2 x {ref.shape[0]} x {ref.shape[0]} ({kind})"
    progress(0.0, label)
    base, test, gen = _both_matchings(
        other,
        outputs if callable(rnn) else outputs(),
        ref,
        num_outputs,
        method,
        reg,
        lambda f, m: progress(0.95 * f, m),
        cancel,
        label,
    )
    check_cancel(cancel)
    progress(0.95, "sequence statistics")

    vol_h, vol_r = volatility(ref), volatility(gen)
    freq_h, freq_r = output_frequencies(ref, num_outputs), output_frequencies(gen, num_outputs)
    share_h, share_r = symbol_share(ref, num_outputs), symbol_share(gen, num_outputs)
    trans_h, trans_r = transition_matrix(ref, num_outputs), transition_matrix(gen, num_outputs)
    diff = trans_r - trans_h
    frequent = share_h >= FREQUENT_ROW_SHARE
    trans_err = float(np.abs(diff[frequent]).max()) if frequent.any() else 0.0
    dwell_h, dwell_r = dwell_distribution(ref, num_outputs), dwell_distribution(gen, num_outputs)
    return EvaluationResult(
        num_sequences=int(ref.shape[0]),
        seq_len=int(ref.shape[1]),
        seed=int(seed),
        method=method,
        noise_std=float(noise_std),
        h0=str(h0),
        baseline_mean=base.mean,
        baseline_std=base.std,
        baseline_unique_fraction=base.unique_fraction,
        rnn_mean=test.mean,
        rnn_std=test.std,
        rnn_unique_fraction=test.unique_fraction,
        distance_ratio=_ratio(test.mean, base.mean),
        hmm_volatility_mean=float(vol_h.mean()),
        hmm_volatility_std=float(vol_h.std()),
        rnn_volatility_mean=float(vol_r.mean()),
        rnn_volatility_std=float(vol_r.std()),
        volatility_rel_error=_relative_error(float(vol_r.mean()), float(vol_h.mean())),
        hmm_freq_mean=freq_h.mean(axis=0),
        hmm_freq_std=freq_h.std(axis=0),
        rnn_freq_mean=freq_r.mean(axis=0),
        rnn_freq_std=freq_r.std(axis=0),
        hmm_symbol_share=share_h,
        rnn_symbol_share=share_r,
        hmm_transition=trans_h,
        rnn_transition=trans_r,
        transition_sq_diff=diff**2,
        transition_error=trans_err,
        transition_sq_error=trans_err**2,
        hmm_switch_back=switch_back_share(ref),
        rnn_switch_back=switch_back_share(gen),
        hmm_one_step_share=one_step_share(ref),
        rnn_one_step_share=one_step_share(gen),
        dwell_tv=dwell_tv(dwell_r, dwell_h),
        hmm_early_switch_rate=early_switch_rate(ref),
        rnn_early_switch_rate=early_switch_rate(gen),
        share_ratio=share_ratio(share_r, share_h),
    )


def _side_by_side(method: str) -> bool:
    """Whether the two matchings run at once: where there are two cores, except the study's
    matchings on numpy's passes. Those sweeps are bound by memory bandwidth, and two at once took
    longer than in turn (6.1-6.8 s against 4.8-5.8 s); over their live patterns and with the
    native passes they are not (Two h50, n 5,000, L 100, the evaluation on a 2-core AMD EPYC:
    4.2-4.7 s side by side against 5.2-5.6 s in turn; exact: 5.1-6.0 against 5.2-6.6 s before
    the native shortest paths)."""
    cores = (os.cpu_count() or 1) > 1
    return cores and (method == "assignment" or match_passes.available())


def _matching_bytes(n: int, method: str) -> float:
    """Host memory of the evaluation's two matchings at most (before repeats are merged): each
    holds an n x n float64 distance matrix, the float32 kernel of its entropic solve (the
    study's, or the exact assignment's guess) and that kernel's live pattern (8 bytes for each
    of at most LIVE_MAX_SHARE of the entries); see :func:`_side_by_side`."""
    per_pair = 8 + np.dtype(_KERNEL_DTYPE).itemsize + 8 * match_passes.LIVE_MAX_SHARE
    return (2 if _side_by_side(method) else 1) * n * n * per_pair


def _expected_matching_seconds(n: int, method: str) -> float:
    """Rough time of one matching of n x n sequences, for the progress bar until the matching
    reports its own progress. On this project's 2-core CPU at n 5,000, L 100, with the native
    passes: 0.8-1.4 s for the exact assignment, 1.5-2.7 s for the study's Sinkhorn; both grow
    about as n^2 (passes over the distance matrix)."""
    return max(0.05, (5e-8 if method == "assignment" else 8e-8) * n * n)


def _both_matchings(
    other, gen, ref, num_outputs, method, reg, progress, cancel=None, label="matching"
):
    """The baseline's and the RNN's matchings to the reference, which dominate an evaluation.
    They run side by side where :func:`_side_by_side` says so, else one after the other.

    `gen` may be a function returning the RNN's outputs: it runs once the baseline's matching has
    started, so generating them overlaps with it. Returns both matchings and the outputs.

    Each matching says how far it is (the Sinkhorn iterations' convergence, then the exact
    assignment's certification rounds; POT's emd reports nothing inside), and until it first does,
    the bar moves by the time spent against an expected time (never past 95% of a matching until
    it is done). The message counts the seconds.

    The matchings run in daemon threads, so a cancel, or a failure of either matching or of the
    generation, is answered at once (daemon: quitting never waits for them). A matching left
    behind stops at its next report; what runs between reports (POT's emd whole, a round of the
    exact assignment, its dense fallback) finishes on its own, and its result is dropped.
    """
    import threading
    import time

    from hmmrnn.analyses.base import check_cancel

    results: dict[int, Any] = {}
    began: dict[int, float] = {}
    converged: dict[int, float] = {}  # the study's own measure of how far each matching is
    shown = [0.0, 0.0]  # what the bar showed for each: it never goes back
    abandoned = threading.Event()

    def solve(i: int, x) -> None:
        def report(fraction: float) -> None:
            if abandoned.is_set():
                raise _Abandoned
            converged[i] = fraction

        try:
            results[i] = matched_distances(x, ref, num_outputs, method, reg, on_progress=report)
        except BaseException as exc:  # handed to the waiting caller
            results[i] = exc

    parallel = _side_by_side(method)
    expected = _expected_matching_seconds(len(ref), method)
    sets, started, start, told = [other, gen], 0, time.monotonic(), 0.0
    try:
        while len(results) < 2:
            for value in results.values():
                if isinstance(value, BaseException):
                    raise value
            if started < 2 and (parallel or len(results) == started):  # one core: in turn
                began[started] = time.monotonic()
                threading.Thread(target=solve, args=(started, sets[started]), daemon=True).start()
                started += 1
            if callable(sets[1]):  # while the baseline is matched
                sets[1] = sets[1]()
            check_cancel(cancel)
            now = time.monotonic()
            if now - told >= _PROGRESS_TICK:
                for i in began:
                    by_time = min(0.95, (now - began[i]) / expected)
                    share = 1.0 if i in results else converged.get(i, by_time)
                    shown[i] = max(shown[i], share)
                done = ", baseline done" if 0 in results else ""
                progress(sum(shown) / 2, f"{label}: {now - start:.0f} s{done}")
                told = now
            time.sleep(0.02)
    finally:
        abandoned.set()  # a study matching still running stops at its next iteration
    for value in results.values():
        if isinstance(value, BaseException):
            raise value
    return results[0], results[1], sets[1]


class _Abandoned(Exception):
    """Raised inside a study matching whose evaluation has already ended (cancel or failure)."""


def evaluate_model(
    model: Any,
    hmm: Any,
    num_sequences: Annotated[
        int, P("fresh sequences in each sample (HMM reference, HMM baseline, RNN)", ge=2)
    ] = 5000,
    seq_len: Annotated[
        int | None, P("steps per sequence (none: 30)", ge=1, config="seq_len")
    ] = None,
    seed: Annotated[int, P("seed of the HMM samples and of the RNN's noise", ge=0)] = 0,
    method: Annotated[
        Literal["assignment", "study"],
        P("matching: one-to-one assignment, or the study's entropic plan with argmax pairing"),
    ] = "assignment",
    noise_std: Annotated[float, P("std of the RNN's input noise", ge=0, config="noise_std")] = 1.0,
    h0: Annotated[
        Literal["zero", "random"], P("initial hidden state of the RNN", config="h0")
    ] = "zero",
    reg: Annotated[
        float, P("entropic epsilon of the study matching, in distance units", gt=0)
    ] = 0.1,
    long_steps: Annotated[
        int, P("steps of the long runs whose output shares are checked (0: none)", ge=0)
    ] = 400,
    long_skip: Annotated[int, P("first steps of the long runs left out", ge=0)] = 100,
    long_runs: Annotated[int, P("long runs", ge=1)] = 200,
    progress: Any = None,
    cancel: Any = None,
) -> EvaluationResult:
    """Sample the HMM twice (numpy Generator from `seed`) and the RNN once (torch Generator on the
    model's device from `seed`), then compare. seq_len None means DEFAULT_SEQ_LEN (30).

    Works for a model on CPU or CUDA; the RNN's outputs are moved to numpy. `progress(fraction,
    message)` is told each stage; `cancel` (a CancelToken) is honoured between stages.
    """
    from hmmrnn.analyses.base import check_cancel, no_progress
    from hmmrnn.device import torch_generator

    progress = progress or no_progress
    length = DEFAULT_SEQ_LEN if seq_len is None else seq_len
    for name, value in (("num_sequences", num_sequences), ("seq_len", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if method not in MATCH_METHODS:
        raise ValueError(f"method must be one of {MATCH_METHODS}, got {method!r}")
    k = int(hmm.num_outputs)
    if int(model.output_size) != k:
        raise ValueError(f"the model has {model.output_size} outputs but the HMM has {k}")
    from hmmrnn import resources

    n, steps = int(num_sequences), int(length)
    resources.require(
        resources.generation_bytes(model, n, steps) + n * steps * (3 * 8 + 2 * k * 4),
        f"evaluating {n} sequences of {steps} steps",
    )
    resources.require(
        _matching_bytes(n, method),
        f"matching {n} x {n} sequences ({method})",
        hint="use fewer sequences (the matchings grow as their square)",
    )
    progress(0.0, "sampling the HMM")
    rng = np.random.default_rng(seed)
    ref = hmm.sample(int(num_sequences), int(length), rng).outputs
    other = hmm.sample(int(num_sequences), int(length), rng).outputs
    check_cancel(cancel)

    def rnn() -> np.ndarray:  # generated while the baseline is matched
        was_training = model.training
        model.eval()
        try:
            run = model.generate(int(num_sequences), int(length), noise_std=noise_std, h0=h0,
                                 generator=torch_generator(seed, model.device))  # fmt: skip
        finally:
            model.train(was_training)
        return run.symbols.detach().cpu().numpy()

    result = compare_outputs(
        ref,
        other,
        rnn,
        k,
        method=method,
        reg=reg,
        seed=seed,
        noise_std=noise_std,
        h0=h0 if isinstance(h0, str) else "custom",
        progress=lambda f, m: progress(0.1 + 0.85 * f, m),
        cancel=cancel,
    )
    if long_steps > long_skip:
        progress(0.96, "long runs")
        long = model.generate(int(long_runs), int(long_steps), noise_std=noise_std, h0=h0,
                              generator=torch_generator(seed + 1, model.device))  # fmt: skip
        tail = long.symbols[:, long_skip:].cpu().numpy()
        result.long_steps, result.long_skip = int(long_steps), int(long_skip)
        result.long_rnn_shares = np.bincount(tail.ravel(), minlength=k)[:k] / tail.size
        result.long_hmm_shares = hmm.output_shares()
        result.long_share_error = float(
            np.abs(result.long_rnn_shares - result.long_hmm_shares).max()
        )
    progress(1.0, "done")
    return result
