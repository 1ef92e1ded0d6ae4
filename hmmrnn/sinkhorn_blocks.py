"""Block machinery of the Sinkhorn loss, and its one-exponential-per-entry update.

Every Sinkhorn update of the loss is a soft C-transform, ``-eps log sum exp((h - C) / eps)``, over
a (N, M) cost matrix. Its time is the exponential of every entry: the rest of a pass is adds and
reductions that stay in cache. The log-domain form (``hmmrnn.loss._softmin``) needs one exponential
per entry and per transform, because each transform is shifted by its own row (or column) maxima.

With the current potentials folded into the exponent, ``z_ij = (f_i + g_j - C_ij) / eps``, both
halves of a symmetric update read the same numbers:

    f_new_i = f_i - eps log mean_j exp(z_ij),    g_new_j = g_j - eps log mean_i exp(z_ij),

so one exponential per entry serves the update on x and the update on y. For a cloud against
itself (``C`` symmetric, ``g = f``) the block above the diagonal also stands for the one below it:
half the entries. This module computes those means (and the barycentres the gradient needs) block
by block; :func:`absorbed_update` returns ``None`` when a mean leaves the range where it is exact,
and the caller then takes the log-domain transforms instead.

Why the range holds: Sinkhorn's potentials are nearly feasible, ``f_i + g_j <= C_ij`` up to a few
``eps`` of the previous temperature, so every row and column has entries near ``z = 0`` and none
near float overflow. The check reads the means back once per update (free on a CPU); on a GPU, where
that read is a host sync, the loss keeps the log-domain form.

Both forms take ``exp2`` of base-2 exponents (3x faster than ``exp`` on the CPU) on worker threads
that flush subnormal results to zero (the far-negative exponents then need no clamping pass), one
block of rows at a time.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hmmrnn import sinkhorn_kernel

# Entries per block on CPU (4 MB in float32): measured at B 4096 on 2 cores, 2^20 beat 2^17-2^19
# (op overheads) and 2^21 (two workers' blocks crowd the shared L3).
CPU_BLOCK_ELEMENTS = 1 << 20
# On accelerators, launches dominate: use large blocks, only bounding memory.
GPU_BLOCK_ELEMENTS = 1 << 25
LOG2E, LN2 = 1.0 / math.log(2.0), math.log(2.0)
# A mean of exponentials is exact to ~1e-10 when it exceeds every clamped entry by this factor (log).
_CLAMP_MARGIN = 23.0


def exp_floor(dtype: torch.dtype) -> float:
    """Exponent below which ``exp`` is negligible yet still a normal number.

    Clamping there avoids the slow underflow path of the CPU ``exp`` kernel (about 10x slower on
    subnormal results); the dropped mass is below ``exp(-79)`` in float32.
    """
    return math.log(torch.finfo(dtype).tiny) + 8.0


def exp2_floor(dtype: torch.dtype) -> float:
    """:func:`exp_floor` for ``exp2``, which the blocks use: it is 3x faster than ``exp`` on this
    project's CPUs (0.30 against 0.86-0.99 ns per float32 entry, in cache), and as exact."""
    return exp_floor(dtype) * LOG2E


def default_block(cost: Tensor, reduced: int) -> int:
    """Rows (or columns) per block so that one block of the cost matrix stays cache-sized.

    Small matrices are not split further to keep every worker busy: at B 512-2048 on 2 cores,
    two or four blocks per worker made the loss 1.2-1.8x slower (each op's overhead then
    outweighs its arithmetic).
    """
    budget = GPU_BLOCK_ELEMENTS if cost.is_cuda else CPU_BLOCK_ELEMENTS
    return max(1, budget // max(1, reduced))


_THREAD_STATE = threading.local()


def work_buffer(size: int, like: Tensor) -> Tensor:
    """This thread's block buffer, grown when needed and reused across calls.

    A fresh large allocation per block would be page-faulted in every time, which costs more than
    the arithmetic.
    """
    buf = getattr(_THREAD_STATE, "buffer", None)
    if buf is None or buf.numel() < size or buf.dtype != like.dtype or buf.device != like.device:
        buf = _THREAD_STATE.buffer = like.new_empty(size)
    return buf


def _start_worker(started: threading.Barrier) -> bool:
    """Put a new block worker on one intra-op thread with subnormal results flushed to zero;
    whether the flush is supported (x86 and ARM)."""
    torch.set_num_threads(1)
    flushes = torch.set_flush_denormal(True)
    started.wait()
    return flushes


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> tuple[ThreadPoolExecutor, bool]:
    """Block workers, each on one intra-op thread, and whether they flush subnormals to zero.

    With the flush, ``exp2`` of a far-negative exponent costs what any other does (0.30 against
    0.66 ns per entry), so the blocks need no clamping pass. ``torch.set_num_threads`` in a
    worker also sets the process-wide default that every thread started later takes on its first
    parallel op: left so, a training or analysis thread started after the first loss would run
    on one thread. The workers are started here, all at once, and the caller's count is then set
    again, which restores the default and leaves the workers at 1.
    """
    caller = torch.get_num_threads()
    pool = ThreadPoolExecutor(threads, "hmmrnn-loss")
    started = threading.Barrier(threads)
    flushes = [
        done.result() for done in [pool.submit(_start_worker, started) for _ in range(threads)]
    ]
    torch.set_num_threads(caller)
    return pool, all(flushes)


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the threads


def block_threads(cost: Tensor, n_blocks: int) -> int:
    """Worker threads for the blocks: torch's intra-op thread count, on the CPU.

    Each op on a block used to open its own parallel region (six per block, about 6,000 per loss
    at B 4096), and on a shared machine every region waited for the busiest core. Whole blocks
    on single-threaded workers wait only at the end of a pass. Measured on 2 cores with a third
    process busy: 0.9-1.3 s per loss and backward against 2.2-3.2 s; idle, the same.
    """
    return max(1, min(torch.get_num_threads(), n_blocks))


def exp2_clamp(cost: Tensor) -> float | None:
    """The exponent at which the blocks clamp before ``exp2``, or None where they need not.

    On the CPU, ``exp2`` of a far-negative number takes a slow path (2x) unless subnormals are
    flushed, which the block workers do where the CPU supports it; a GPU has no such path. The
    workers asked are those a large loss uses (one per intra-op thread), so asking starts none
    that would sit idle.
    """
    if cost.is_cuda or _pool(max(1, torch.get_num_threads()))[1]:
        return None
    return exp2_floor(cost.dtype)


def run_blocks(cost: Tensor, starts: range, work: Callable[[Iterator[int]], object]) -> list:
    """Run ``work`` over the block starts; the results of each call.

    On the CPU the blocks always run on the block workers (:func:`block_threads` of them), each
    taking the next block from one shared iterator, so a stalled core delays nobody and the
    numbers do not depend on the thread count. CUDA work stays on the caller's thread, whose
    current stream it must use.
    """
    if cost.is_cuda:
        return [work(iter(starts))]
    threads = block_threads(cost, len(starts))
    pool, _ = _pool(threads)
    shared = iter(starts)
    return [done.result() for done in [pool.submit(work, shared) for _ in range(threads)]]


# ----------------------------------------------------------------------------
# The absorbed update: one exponential per entry for both potentials
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Absorbed:
    """New potentials of one symmetric update, and the row barycentre if asked for.

    ``bary[i] = sum_j P_ij q_j / sum_j P_ij`` over the column points ``q``, with ``P`` the
    entropic plan of the update's input potentials: the gradient of ``f_i`` is ``x_i - bary[i]``.
    """

    f: Tensor
    g: Tensor | None
    bary: Tensor | None


def absorbed_update(
    eps: float,
    cost: Tensor,
    f: Tensor,
    g: Tensor | None,
    *,
    points: Tensor | None = None,
    block: int | None = None,
) -> Absorbed | None:
    """One symmetric Sinkhorn update of ``(f, g)`` with uniform weights, or None out of range.

    ``g=None`` means a cloud against itself: ``cost`` is symmetric and ``g`` is ``f``; without a
    barycentre only the blocks on and above the diagonal are computed, each also standing for its
    mirror image. ``points`` (one row per column of ``cost``) asks for the row barycentre. Returns
    None, having changed nothing, when a row or column mean is not finite or so small that
    entries clamped or flushed to zero could matter in it.

    The result does not depend on the number of threads or on which worker took which slab: each
    slab writes its own rows and its own row of column partials, summed in slab order.
    """
    symmetric = g is None
    n, m = cost.shape
    step = block or default_block(cost, m)
    starts = range(0, n, step)
    triangle = symmetric and points is None
    scale = LOG2E / eps  # exponents in base 2
    fs = (f * scale).contiguous()
    gs = fs if symmetric else (g * scale).contiguous()
    # Everything is made here without filling: a parallel op on this thread would leave OpenMP
    # helpers spinning through the blocks, taking a core from the block workers (2 cores, B 4096:
    # 12 against 5-9 ms per update). Each slab writes its own rows, partials and barycentres.
    rows = f.new_empty(n)
    bary = None if points is None else f.new_empty(n, points.shape[1])
    cols = None if symmetric and not triangle else f.new_empty(len(starts), m)
    native = sinkhorn_kernel.kernel() if _native_reads(cost, f) else None
    sweep = sinkhorn_kernel.Sweep(cost, step, triangle, fs, gs, scale, rows, cols)
    if native is not None and bary is None:  # every slab in C, each worker taking the next
        counter = ctypes.c_int64(0)

        def work(_todo: Iterator[int]) -> None:
            sinkhorn_kernel.update(native, sweep, counter)

    else:
        work = _slabs(native, sweep, points, bary)
    run_blocks(cost, starts, work)
    if triangle:
        rows.add_(_column_total(cols))  # the mirror images of the blocks above the diagonal
    rows_mean = rows / m
    cols_mean = None if symmetric else _column_total(cols) / n
    floor = exp2_floor(f.dtype)
    if not _exact(rows_mean, floor) or (cols_mean is not None and not _exact(cols_mean, floor)):
        return None
    g_new = None if cols_mean is None else g - eps * _log(cols_mean)
    return Absorbed(f - eps * _log(rows_mean), g_new, bary)


def _native_reads(cost: Tensor, f: Tensor) -> bool:
    """Whether the C kernel can take this update: a cost it reads, float32 potentials."""
    return sinkhorn_kernel.usable(cost) and f.dtype == torch.float32


def _slabs(
    native: sinkhorn_kernel.Kernel | None,
    sweep: sinkhorn_kernel.Sweep,
    points: Tensor | None,
    bary: Tensor | None,
) -> Callable[[Iterator[int]], None]:
    """A block worker's loop over the slabs it takes, in Python: the eager passes, or the
    kernel's barycentre slabs (the barycentre rows with many live entries then go to a GEMM)."""
    cost, step, triangle, fs, gs = sweep.cost, sweep.step, sweep.triangle, sweep.fs, sweep.gs
    scale, rows, cols = sweep.scale, sweep.rows, sweep.cols
    n, m = cost.shape
    clamp = None if native is not None else exp2_clamp(fs)
    # the barycentre summed over the live entries reads its points padded, in float32
    sparse = None if native is None or points is None else sinkhorn_kernel.padded_points(points)
    ones = fs.new_ones(min(step, n))

    def work(todo: Iterator[int]) -> None:
        buffer = work_buffer(min(step, n) * m, fs)
        picks = torch.empty(min(step, n), dtype=torch.int64)
        for start in todo:
            stop = min(start + step, n)
            first = start if triangle else 0  # a triangle's slab starts at the diagonal
            part = cost[start:stop, first:]
            z = buffer[: part.numel()].view(part.shape)
            col = None if cols is None else cols[start // step]
            dense = None  # the barycentre rows left to z @ points (None: all)
            if sparse is None:
                _eager_slab(part, fs[start:stop], gs[first:], scale, clamp, z, rows[start:stop],
                            None if col is None else col[first:], ones)  # fmt: skip
            else:
                k = sinkhorn_kernel.slab(native, part, fs[start:], gs, scale, rows[start:stop],
                                         col, z, (sparse, bary[start:stop], picks))  # fmt: skip
                dense = picks[:k]
            if col is not None and triangle:
                # only the entries right of the diagonal block stand for columns
                col[:stop].zero_()
            if bary is not None:
                _dense_bary(z, points, bary[start:stop], dense)
                bary[start:stop].div_(rows[start:stop, None])

    return work


def _eager_slab(
    part: Tensor,
    fs: Tensor,
    gs: Tensor,
    scale: float,
    clamp: float | None,
    z: Tensor,
    rows: Tensor,
    col: Tensor | None,
    ones: Tensor,
) -> None:
    """One slab in torch ops, where the one-pass kernel is not available: the entries into
    ``z``, their row sums into ``rows`` and column sums into ``col``."""
    torch.add(gs, part, alpha=-scale, out=z)
    z.add_(fs[:, None])
    if clamp is not None:
        z.clamp_(min=clamp)
    z.exp2_()
    torch.sum(z, dim=1, out=rows)
    if col is not None:  # a matrix-vector product sums columns 2-4x faster than sum(dim=0)
        torch.mv(z.T, ones[: z.shape[0]], out=col)


def _dense_bary(z: Tensor, points: Tensor, out: Tensor, picks: Tensor | None) -> None:
    """``out = z @ points`` for every row, or (``picks`` given) ``out[picks] = z[:k] @ points``
    for the ``k`` rows the kernel left dense, their entries packed in z's first rows."""
    if picks is None:
        torch.mm(z, points, out=out)
    elif len(picks):
        out[picks] = torch.mm(z[: len(picks)], points)


def _log(means: Tensor) -> Tensor:
    """``means.log()``, on this thread alone on the CPU: torch's ``log`` opens a parallel region
    even on a few thousand entries, whose spinning helper then slows the next update's blocks."""
    if means.is_cuda:
        return means.log()
    return torch.from_numpy(np.log(means.numpy()))


def _column_total(partials: Tensor) -> Tensor:
    """The slabs' column partials summed, in slab order, on this thread alone on the CPU (see
    :func:`absorbed_update` on parallel ops here)."""
    if partials.is_cuda:
        return partials.sum(dim=0)
    return torch.from_numpy(partials.numpy().sum(axis=0))


def _exact(means: Tensor, floor: float) -> bool:
    """Whether every mean is finite and far above what entries clamped at ``2**floor`` (or
    flushed to zero below it) could add or take away."""
    least = 2.0**floor * math.exp(_CLAMP_MARGIN)
    return bool(((means >= least) & torch.isfinite(means)).all())
