"""The Sinkhorn loss's cost matrix ``|u_i - v_j|^2 / 2``: one GEMM, exact, into reused memory.

Two of a training step's costs are not the updates: the cost GEMMs (about a fifth of the loss on
one core at B 4096) and, on the CPU, page-faulting a fresh (N, M) matrix in at every call. Both
are taken here. On binary clouds (one-hot symbols, straight-through samples) every product and
partial sum of the GEMM is an integer or a half, so a bfloat16 GEMM with float32 accumulation is
exact while the costs stay at or below 256; on a CPU with bfloat16 units it runs 2-2.7x faster
than float32 (measured on this project's AMD EPYC, avx512_bf16). Whether the CPU has them is
measured once, on a small product, since a CPU without them runs bfloat16 15x slower.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator

import torch
from torch import Tensor

# bfloat16 holds every integer (and half) up to 256 exactly: the largest cost it may carry.
_BF16_EXACT = 256.0
# Rows per slab of a low-precision GEMM, so that its result needs no full-size temporary.
_SLAB_ELEMENTS = 1 << 20


class CostWorkspace:
    """Memory for the loss's cost matrices, kept from one call to the next.

    A fresh (N, M) matrix is page-faulted in at every call on the CPU: at B 4096 that was about
    30 ms per matrix (two per training step), 10% of the loss. One workspace holds one matrix at
    a time (the loss never needs two), grown to the largest asked for; a caller that holds it
    while another thread asks gets a fresh matrix, so concurrent calls never share memory.
    """

    def __init__(self) -> None:
        self._storage: Tensor | None = None
        self._lock = threading.Lock()
        self._owner: int | None = None

    def matrix(
        self, n: int, m: int, like: Tensor, dtype: torch.dtype | None = None
    ) -> Tensor | None:
        """An uninitialised (n, m) matrix on ``like``'s device, of ``dtype`` (default ``like``'s),
        or None when in use."""
        if self._owner != threading.get_ident():
            return None
        dtype = dtype or like.dtype
        buf = self._storage
        stale = buf is None or buf.numel() < n * m or buf.dtype != dtype
        if stale or buf.device != like.device:
            self._storage = None  # free the old one before the new one is made
            buf = self._storage = like.new_empty(n * m, dtype=dtype)
        return buf[: n * m].view(n, m)

    @contextlib.contextmanager
    def held(self) -> Iterator[CostWorkspace | None]:
        """The workspace for one call, or None when another thread holds it."""
        if not self._lock.acquire(blocking=False):
            yield None
            return
        self._owner = threading.get_ident()
        try:
            yield self
        finally:
            self._owner = None
            self._lock.release()

    def clear(self) -> None:
        """Give the memory back."""
        with self._lock:
            self._storage = None


def _augmented(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``[u, |u|^2/2, 1]`` and ``[-v, 1, |v|^2/2]``: their product is the half squared cost."""
    left = torch.cat([u, 0.5 * (u * u).sum(1, keepdim=True), u.new_ones(u.shape[0], 1)], dim=1)
    right = torch.cat([-v, v.new_ones(v.shape[0], 1), 0.5 * (v * v).sum(1, keepdim=True)], dim=1)
    return left, right


def half_sq_cost(u: Tensor, v: Tensor, out: Tensor | None = None) -> Tensor:
    """``|u_i - v_j|^2 / 2`` as a single GEMM on augmented coordinates.

    Folding the squared norms into the product needs no (N, M) broadcast temporaries. On one-hot
    data every term is an integer, hence the matrix is the exact Hamming mismatch count.
    """
    left, right = _augmented(u, v)
    return torch.mm(left, right.T, out=out) if out is not None else left @ right.T


def cost_matrix(
    u: Tensor,
    v: Tensor,
    cost_dtype: torch.dtype | None,
    workspace: CostWorkspace | None,
    packed: bool = False,
) -> Tensor:
    """The half squared cost in the clouds' dtype, written into ``workspace`` when given.

    ``cost_dtype`` runs the GEMM in that precision (tensor cores on a GPU; float16 is exact on
    one-hot clouds up to 2048 mismatches, bfloat16 up to 256). None: the clouds' own, except on
    a CPU with fast bfloat16 where the clouds are binary and the costs small enough for it to be
    exact (the same numbers, bit for bit).

    ``packed`` returns the matrix in bfloat16 wherever that is exact (float32 CPU clouds, binary,
    costs <= 256), for a reader that takes it: half the memory. The storage does not depend on
    the bfloat16 speed probe (a timing): the same clouds always give the same matrix, so runs
    repeat bit for bit on one machine whichever way the probe went.
    """
    shape = u.shape[0], v.shape[0]
    if packed and cost_dtype is None and u.dtype == torch.float32 and _bfloat16_holds(u, v):
        gemm = torch.bfloat16 if _fast_bfloat16() else torch.float32
        out = None if workspace is None else workspace.matrix(*shape, u, torch.bfloat16)
        return _slab_gemm(u, v, gemm, torch.bfloat16, out)
    low = cost_dtype if cost_dtype is not None else _exact_bfloat16(u, v)
    out = None if workspace is None else workspace.matrix(*shape, u)
    if low is None or low == u.dtype:
        return half_sq_cost(u, v, out)
    if u.is_cuda:
        left, right = _augmented(u.to(low), v.to(low))
        result = left @ right.T
        return result.to(u.dtype) if out is None else out.copy_(result)
    return _slab_gemm(u, v, low, u.dtype, out)


def _slab_gemm(
    u: Tensor, v: Tensor, gemm: torch.dtype, dtype: torch.dtype, out: Tensor | None
) -> Tensor:
    """The cost as a ``gemm``-precision product stored in ``dtype``, one slab of rows at a time
    (no full-size temporary); straight into ``out`` where the two precisions are the same."""
    left, right = _augmented(u.to(gemm), v.to(gemm))
    if out is None:
        out = u.new_empty(u.shape[0], v.shape[0], dtype=dtype)
    if gemm == dtype:
        return torch.mm(left, right.T, out=out)
    step = max(1, _SLAB_ELEMENTS // max(1, v.shape[0]))
    slab = left.new_empty(min(step, u.shape[0]), v.shape[0])
    for start in range(0, u.shape[0], step):
        stop = min(start + step, u.shape[0])
        out[start:stop].copy_(torch.mm(left[start:stop], right.T, out=slab[: stop - start]))
    return out


def _bfloat16_holds(u: Tensor, v: Tensor) -> bool:
    """Whether bfloat16 holds the clouds and every cost exactly: CPU float clouds of 0s and 1s
    whose costs stay at or below 256."""
    if u.is_cuda or u.dtype not in (torch.float32, torch.float64):
        return False
    if not (_binary(u) and (v is u or _binary(v))):
        return False
    most = 0.5 * (float(u.sum(1).max()) + float(v.sum(1).max()))  # |u|^2 = |u|_1 on 0/1
    return most <= _BF16_EXACT


def _exact_bfloat16(u: Tensor, v: Tensor) -> torch.dtype | None:
    """bfloat16 where its GEMM is exact and fast (:func:`_bfloat16_holds`, on a CPU whose
    bfloat16 products beat float32's)."""
    return torch.bfloat16 if _bfloat16_holds(u, v) and _fast_bfloat16() else None


def _binary(z: Tensor) -> bool:
    return bool(((z == 0) | (z == 1)).all())


@functools.lru_cache(maxsize=1)
def _fast_bfloat16() -> bool:
    """Whether a bfloat16 GEMM of the cost's shape runs at least 1.3x faster than float32 here
    (best of 3 on a 512 x 96 by 96 x 2048 product, about 10 ms in all)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 2, (512, 96), generator=gen).float()
    b = torch.randint(0, 2, (96, 2048), generator=gen).float()

    def best(x: Tensor, y: Tensor) -> float:
        out = torch.empty(x.shape[0], y.shape[1], dtype=x.dtype)
        times = []
        for _ in range(4):
            start = time.perf_counter()
            torch.mm(x, y, out=out)
            times.append(time.perf_counter() - start)
        return min(times[1:])

    return best(a.bfloat16(), b.bfloat16()) * 1.3 < best(a, b)
