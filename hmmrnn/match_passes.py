"""The evaluation's matchings' work over their n x m float64 cost matrix, in C.

The study's matching and the exact assignment's guess of its duals take log-sum-exps over the
rows and over the columns of the cost, build the absorbed kernel from it, sweep that kernel
(densely, or over its live pattern) and pick each row's best column; the exact assignment takes
row and column minima, selects pairs by their reduced cost and finds shortest augmenting paths.
numpy takes four to six passes over each block for one of the passes, and on a CPU without
AVX-512 its float64 ``exp`` is libm's, one entry at a time: on a 2-core AMD EPYC (AVX2) at
5,000 x 5,000 a log-sum-exp took 0.25-0.30 s, and an evaluation made 8-10 of them. The kernel's
passes (``absorbed_kernel.c``, built with the loss's) read each entry once per pass and take
the exponential as a polynomial in registers, on the caller's thread and helper threads
together, slab by slab from a shared counter; none holds the GIL, so the evaluation's two
matchings run side by side.

Each function returns None where the kernel is not built, is turned off (``HMMRNN_NATIVE=0``) or
cannot read the arrays (not float64 with contiguous rows); the caller then takes numpy's (or
scipy's) way, whose numbers these equal to a few float64 ulps, or exactly where they are
integers (``tests/test_match_passes.py``, ``tests/test_assignment.py``).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

LOG2E = 1.0 / math.log(2.0)
# Rows per slab: each slab of a column pass keeps its own partial maxima and sums (m each).
SLAB_ROWS = 256


def _native() -> Any:
    """The native entry points, or None."""
    from hmmrnn import sinkhorn_kernel  # deferred: it imports torch

    return sinkhorn_kernel.kernel()


def available() -> bool:
    """Whether the native passes will be used (on arrays they can read)."""
    return _native() is not None


def _kernel(cost: np.ndarray) -> Any:
    """The native entry points, if they can read ``cost`` (float64, rows contiguous)."""
    if cost.dtype != np.float64 or cost.ndim != 2 or cost.strides[1] != cost.itemsize:
        return None
    return _native()


def _threads() -> int:
    """Threads for one pass: torch's intra-op count (what ``--threads`` sets)."""
    import torch

    return max(1, torch.get_num_threads())


@functools.lru_cache(maxsize=4)
def _helpers(count: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(count, "hmmrnn-match")


os.register_at_fork(after_in_child=_helpers.cache_clear)  # a forked child has none of them


def _in_slabs(call: Callable[[int], None], rows: int, threads: int | None = None) -> None:
    """Run ``call(counter address)`` on this thread and on helpers (``threads`` in all, torch's
    count by default) until the slabs are taken; the helpers are waited for whatever happens
    here, since they hold the counter's address.

    Two matchings side by side share the helpers, so two cores stay busy without four threads.
    """
    counter = ctypes.c_int64(0)
    address = ctypes.addressof(counter)
    extra = min(threads or _threads(), -(-rows // SLAB_ROWS)) - 1
    waiting = [_helpers(extra).submit(call, address) for _ in range(extra)] if extra > 0 else []
    try:
        call(address)
    finally:
        for done in waiting:
            done.result()


def _ptr(array: np.ndarray) -> int:
    return array.ctypes.data


def _over_rows(entry: Callable[..., None], matrix: np.ndarray, *args: Any) -> None:
    """``entry(matrix, its row stride, rows, columns, *args, SLAB_ROWS, counter)`` on this
    thread and the helpers (:func:`_in_slabs`)."""
    n, m = matrix.shape
    ld = matrix.strides[0] // matrix.itemsize
    _in_slabs(lambda counter: entry(_ptr(matrix), ld, n, m, *args, SLAB_ROWS, counter), n)


def _vector(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def soft_min_rows(cost: np.ndarray, h: np.ndarray, log_w: np.ndarray, eps: float):
    """LSE_j((h_j - C_ij)/eps + log_w_j) for every row i, or None (see the module)."""
    native = _kernel(cost)
    if native is None:
        return None
    n, m = cost.shape
    shift = _vector((h / eps + log_w) * LOG2E)
    top, total = np.empty(n), np.empty(n)
    _over_rows(native.match_lse_rows, cost, _ptr(shift), LOG2E / eps, _ptr(top), _ptr(total))
    return (top + np.log2(total)) / LOG2E


def soft_min_cols(cost: np.ndarray, h: np.ndarray, log_w: np.ndarray, eps: float):
    """LSE_i((h_i - C_ij)/eps + log_w_i) for every column j, or None: each slab's partial maxima
    and sums, merged here in slab order (so the thread count changes nothing)."""
    native = _kernel(cost)
    if native is None:
        return None
    n, m = cost.shape
    shift = _vector((h / eps + log_w) * LOG2E)
    slabs = -(-n // SLAB_ROWS)
    tops, sums = np.empty((slabs, m)), np.empty((slabs, m))
    threads = _threads()
    peaks = np.empty((threads, m))  # one scratch row per thread that may run a slab
    slots = iter(range(threads))

    def call(counter: int) -> None:
        peak = peaks[next(slots)]
        native.match_lse_cols(_ptr(cost), cost.strides[0] // 8, n, m, _ptr(shift), LOG2E / eps,
                              _ptr(tops), _ptr(sums), _ptr(peak), SLAB_ROWS, counter)  # fmt: skip

    _in_slabs(call, n, threads)
    top = tops.max(axis=0)
    with np.errstate(invalid="ignore"):  # a column of -inf only: NaN, as numpy's passes give
        total = (sums * np.exp2(tops - top)).sum(axis=0)
    return (top + np.log2(total)) / LOG2E


def gibbs_kernel(cost: np.ndarray, f0: np.ndarray, g0: np.ndarray, eps: float, out: np.ndarray):
    """exp((f0_i + g0_j - C_ij) / eps) into the float32 ``out`` (exponent in float64), or None."""
    native = _kernel(cost)
    if native is None or out.dtype != np.float32 or out.strides[1] != out.itemsize:
        return None
    fs, gs = _vector(f0 * (LOG2E / eps)), _vector(g0 * (LOG2E / eps))
    _over_rows(native.match_gibbs, cost, _ptr(fs), _ptr(gs), LOG2E / eps, _ptr(out),
               out.strides[0] // 4)  # fmt: skip
    return out


def row_argmax(cost: np.ndarray, g: np.ndarray):
    """The first column of largest g_j - C_ij in each row (numpy's argmax), or None."""
    native = _kernel(cost)
    if native is None:
        return None
    n, m = cost.shape
    g = _vector(g)
    best = np.empty(n, dtype=np.int64)
    _over_rows(native.match_argmax, cost, _ptr(g), _ptr(best))
    return best.astype(np.intp, copy=False)


def dense_sweep(kernel: np.ndarray, v: np.ndarray, a: np.ndarray):
    """alpha = 1 / (K v) and then 1 / (K^T (alpha a)) over the float32 ``kernel`` in one pass
    (in float32 as numpy's, the slabs' column sums added in float64), or None. numpy's form runs
    BLAS's sgemv on each block, whose helper threads spin between calls: 11% of an evaluation's
    CPU time with two matchings."""
    native = _native()
    if native is None or kernel.dtype != np.float32 or kernel.strides[1] != kernel.itemsize:
        return None
    n, m = kernel.shape
    v, a = np.ascontiguousarray(v, dtype=np.float32), _vector(a)
    alpha = np.empty(n)
    partials = np.empty((-(-n // SLAB_ROWS), m), dtype=np.float32)
    _over_rows(native.match_dense_sweep, kernel, _ptr(v), _ptr(a), _ptr(alpha), _ptr(partials))
    return alpha, 1.0 / partials.sum(axis=0, dtype=np.float64)


# --- the study kernel's live pattern -------------------------------------------------------------

# An entry is live while its term is at least this share of its row's or its column's sum: at the
# study's epsilon most of the kernel is below it (Two h50, n 5,000, L 100: 6% live), and what is
# left out sums to under 2e-10 of any row or column.
LIVE_CUT = 1e-12
# A sweep over the pattern stands only while what it leaves out is certainly under this share of
# every sum, 100x under the float32 kernel's own rounding; else that sweep is taken dense.
LIVE_TOL = 1e-8
# The pattern is kept only with at most this share of the entries live: denser, a sweep over it
# (8 bytes an entry, gathered) saves little over the dense one (4 bytes an entry, streamed).
LIVE_MAX_SHARE = 1 / 8


@dataclass(frozen=True)
class LivePattern:
    """The live entries of a float32 kernel (CSR), what the rest summed to against the
    scalings it was cut at (``v`` over columns, ``w`` over rows), those scalings, and the
    sweeps' buffers (fresh arrays this size would be page-faulted in on every sweep)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    row_dropped: np.ndarray
    col_dropped: np.ndarray
    v: np.ndarray
    w: np.ndarray
    alpha: np.ndarray
    partials: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.indptr) - 1, len(self.col_dropped)


def live_pattern(kernel: np.ndarray, v: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
                 a: np.ndarray) -> LivePattern | None:  # fmt: skip
    """The live pattern of ``kernel`` after a dense sweep (input ``v``, output scalings
    ``alpha``, ``beta``, row weights ``a``), or None: no native kernel, not float32 with
    contiguous rows, or more than :data:`LIVE_MAX_SHARE` live."""
    native = _native()
    if native is None or kernel.dtype != np.float32 or kernel.strides[1] != kernel.itemsize:
        return None
    n, m = kernel.shape
    v, w = _vector(v), _vector(alpha * a)
    row_cut, col_cut = _vector(LIVE_CUT / alpha), _vector(LIVE_CUT / beta)
    cap = int(n * m * LIVE_MAX_SHARE)
    indptr = np.empty(n + 1, dtype=np.int64)
    room = cap + m + 8
    indices, values = np.empty(room, dtype=np.int32), np.empty(room, dtype=np.float32)
    row_dropped, col_dropped, scratch = np.empty(n), np.empty(m), np.empty(m, dtype=np.float32)
    kept = native.match_pattern(
        _ptr(kernel), kernel.strides[0] // 4, n, m, _ptr(v), _ptr(w), _ptr(row_cut),
        _ptr(col_cut), cap, _ptr(indptr), _ptr(indices), _ptr(values), _ptr(row_dropped),
        _ptr(col_dropped), _ptr(scratch))  # fmt: skip
    if kept < 0:
        return None
    partials = np.empty((-(-n // SLAB_ROWS), m))
    return LivePattern(indptr, indices[:kept].copy(), values[:kept].copy(), row_dropped,
                       col_dropped, v, w, np.empty(n), partials)  # fmt: skip


def sparse_sweep(pattern: LivePattern, v: np.ndarray, a: np.ndarray):
    """alpha = 1 / (K v) and then 1 / (K^T (alpha a)) over the live pattern, or None where what
    it leaves out may reach :data:`LIVE_TOL` of a sum: for each row at most its dropped sum
    times the largest growth of ``v`` since the cut, and likewise for each column."""
    native = _native()
    n, m = pattern.shape
    v, a = _vector(v), _vector(a)
    alpha, partials = pattern.alpha, pattern.partials
    _in_slabs(lambda counter: native.match_sparse_sweep(
        _ptr(pattern.indptr), _ptr(pattern.indices), _ptr(pattern.values), n, m, _ptr(v),
        _ptr(a), _ptr(alpha), _ptr(partials), SLAB_ROWS, counter), n)  # fmt: skip
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        beta = 1.0 / partials.sum(axis=0)
        rows_ok = pattern.row_dropped * (np.max(v / pattern.v) * alpha) <= LIVE_TOL
        cols_ok = pattern.col_dropped * (np.max(alpha * a / pattern.w) * beta) <= LIVE_TOL
    if not (rows_ok.all() and cols_ok.all()):
        return None
    return alpha.copy(), beta


# --- the exact assignment's passes ---------------------------------------------------------------


def row_min(cost: np.ndarray, g: np.ndarray):
    """min_j (C_ij - g_j) for every row, or None."""
    native = _kernel(cost)
    if native is None:
        return None
    n, m = cost.shape
    g, out = _vector(g), np.empty(n)
    _over_rows(native.match_row_min, cost, _ptr(g), _ptr(out))
    return out


def col_min(cost: np.ndarray, u: np.ndarray):
    """min_i (C_ij - u_i) for every column, or None."""
    native = _kernel(cost)
    if native is None:
        return None
    n, m = cost.shape
    u, partials = _vector(u), np.empty((-(-n // SLAB_ROWS), m))
    _over_rows(native.match_col_min, cost, _ptr(u), _ptr(partials))
    return partials.min(axis=0)


def pairs(cost: np.ndarray, u: np.ndarray, v: np.ndarray, limit: float, scale: float | None,
          cap: int) -> tuple[int, np.ndarray | None] | None:  # fmt: skip
    """How many pairs have a reduced cost ``q_ij - u_i - v_j`` not above ``limit`` or NaN, with
    ``q = rint(C * scale)`` if a scale is given, else ``C`` (numpy's values), and their keys
    ``i * m + j`` in row-major order, None if more than ``cap``: one pass on one thread. None
    where there is no kernel."""
    native = _kernel(cost)
    if native is None:
        return None
    n, m = cost.shape
    u, v = _vector(u), _vector(v)
    keys, scratch = np.empty(cap, dtype=np.int64), np.empty(m)
    found = native.match_pairs(_ptr(cost), cost.strides[0] // 8, n, m, _ptr(u), _ptr(v),
                               1.0 if scale is None else scale, int(scale is not None), limit,
                               cap, _ptr(keys), _ptr(scratch))  # fmt: skip
    return found, (keys[:found].copy() if found <= cap else None)


def assign_repair(indptr: np.ndarray, cols: np.ndarray, weights: np.ndarray, u: np.ndarray,
                  v: np.ndarray, partners: np.ndarray, free: np.ndarray):  # fmt: skip
    """Rematch the rows ``free`` (unmatched from ``partners``) along shortest augmenting paths
    over the pairs (CSR: ``indptr``, ``cols``, integer ``weights``), from duals ``u``, ``v``
    under which every pair has reduced cost >= 0 and the other matched pairs 0. Returns the new
    partners and ``(u, v)``, or None: no kernel, or a row left without a path."""
    native = _native()
    if native is None:
        return None
    n = len(partners)
    col_of_row = np.ascontiguousarray(partners, dtype=np.int64).copy()
    col_of_row[free] = -1
    row_of_col = np.full(n, -1, dtype=np.int64)
    matched = col_of_row >= 0
    row_of_col[col_of_row[matched]] = np.flatnonzero(matched)
    u, v = _vector(u).copy(), _vector(v).copy()
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    cols, weights = np.ascontiguousarray(cols, dtype=np.int32), _vector(weights)
    free = np.ascontiguousarray(free, dtype=np.int64)
    dist, pred = np.empty(n), np.empty(n, dtype=np.int64)
    done, state = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.uint8)
    room = len(cols) + n
    heap_key, heap_col = np.empty(room), np.empty(room, dtype=np.int32)
    status = native.assign_repair(n, _ptr(indptr), _ptr(cols), _ptr(weights), _ptr(u), _ptr(v),
                                  _ptr(col_of_row), _ptr(row_of_col), _ptr(free), len(free),
                                  _ptr(dist), _ptr(pred), _ptr(done), _ptr(state),
                                  _ptr(heap_key), _ptr(heap_col))  # fmt: skip
    return None if status != 0 else (col_of_row, u, v)
