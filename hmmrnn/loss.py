"""Debiased Sinkhorn divergence between RNN outputs and HMM target sequences.

The training loss compares two point clouds, ``x`` (B, D) produced by the RNN
and ``y`` (B, D) sampled from the HMM (one-hot symbols flattened to D = K * L),
with the debiased Sinkhorn divergence

    S(x, y) = OT_eps(x, y) - OT_eps(x, x) / 2 - OT_eps(y, y) / 2,

uniform weights, cost ``C(x, y) = |x - y|^2 / 2`` and ``eps = blur**2``.

The numbers are those of ``geomloss.SamplesLoss("sinkhorn", p=2, blur=blur,
scaling=scaling, debias=True, backend="tensorized")``: the same epsilon
schedule, one symmetric log-domain update per temperature, and a last update
whose gradient is given by the envelope theorem (the potentials are treated as
constants).  We re-implement it rather than call geomloss because training
calls the loss thousands of times on the same targets and the straightforward
dense implementation wastes most of its time:

* ``exp`` of very negative float32 numbers (the far, underflowing entries of
  the Gibbs kernel at small epsilon) takes a slow path on CPU.  Clamping the
  exponent at a value whose exponential is already negligible makes every
  log-sum-exp an order of magnitude faster without changing the result.
* The log-sum-exp runs on blocks of rows (or of columns, for the potential on
  y) so the temporaries stay in cache instead of materialising several (B, B)
  matrices per update; the transposed cost is never stored.
* The target-vs-target problem does not depend on the RNN, so its potential is
  cached across epochs (``target_cache`` keyed by ``target_key``).
* The gradient is assembled in closed form during the last update
  (a barycentric projection, one small GEMM) instead of backpropagating
  through (B, B) matrices.

* Training needs no host sync per call (``SinkhornLoss(unit_box=True,
  check_finite=False)``): the annealing starts at the unit cube's diagonal when
  the targets span it, and cached targets are recognised by identity.

Memory: one (B, B) cost matrix at a time plus one work block, never a graph
through the iterations.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SinkhornLoss",
    "TargetCache",
    "epsilon_schedule",
    "hmm_floor",
    "sinkhorn_divergence",
]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
# Entries per log-sum-exp block on CPU: the block and its exponential fit in L2.
_CPU_BLOCK_ELEMENTS = 1 << 19
# On accelerators, launches dominate: use large blocks, only bounding memory.
_GPU_BLOCK_ELEMENTS = 1 << 25


# ----------------------------------------------------------------------------
# Input checks and the annealing schedule
# ----------------------------------------------------------------------------


def _check_cloud(name: str, z: object, check_finite: bool = True) -> None:
    """Reject anything that is not a finite (N, D) float32/float64 tensor.

    The finiteness test reads a value back to the host (a sync on CUDA); a caller that checks its
    result instead (training reads the epoch's summed loss once) may skip it.
    """
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (N, D); got shape {tuple(z.shape)}")
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{name} must contain at least one point of dimension >= 1")
    if z.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {z.dtype}")
    if check_finite and not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_inputs(
    x: object, y: object, blur: float, scaling: float, check_finite: bool = True
) -> None:
    """Validate both clouds and the hyper-parameters with explicit messages."""
    _check_cloud("x", x, check_finite)
    _check_cloud("y", y, check_finite)
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension D; got x {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if x.dtype != y.dtype:
        raise ValueError(f"x and y must share a dtype; got {x.dtype} and {y.dtype}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device; got {x.device} and {y.device}")
    if not blur > 0:
        raise ValueError(f"blur must be positive, got {blur}")
    if not 0 < scaling < 1:
        raise ValueError(f"scaling must lie in (0, 1), got {scaling}")


def _bounding_box_diameter(x: Tensor, y: Tensor) -> float:
    """Diagonal of the joint bounding box: geomloss's starting blur scale."""
    lo = torch.minimum(x.amin(dim=0), y.amin(dim=0))
    hi = torch.maximum(x.amax(dim=0), y.amax(dim=0))
    return float((hi - lo).norm())


def epsilon_schedule(diameter: float, blur: float, scaling: float) -> list[float]:
    """Temperatures of the annealing, as geomloss builds them for p = 2.

    Starts at ``diameter**2`` (which appears twice: once as the start, once as
    the first point of the geometric progression), divides by ``scaling**2``
    at each step and ends at ``blur**2``.  A zero diameter (all points equal)
    would give a zero temperature, so it is replaced by ``blur``: the
    divergence is then zero whatever the schedule.
    """
    if diameter <= 0:
        diameter = blur
    steps = np.arange(2 * np.log(diameter), 2 * np.log(blur), 2 * np.log(scaling))
    return [diameter**2, *(float(np.exp(e)) for e in steps), blur**2]


# ----------------------------------------------------------------------------
# Dense building blocks
# ----------------------------------------------------------------------------


def _half_sq_cost(u: Tensor, v: Tensor) -> Tensor:
    """``|u_i - v_j|^2 / 2`` as a single GEMM on augmented coordinates.

    ``[u, |u|^2/2, 1] @ [-v, 1, |v|^2/2]^T`` folds the squared norms into the
    product, so no (N, M) broadcast temporaries are needed.  On one-hot data
    every term is an integer, hence the matrix is the exact Hamming mismatch
    count.
    """
    ones_u = u.new_ones(u.shape[0], 1)
    ones_v = v.new_ones(v.shape[0], 1)
    left = torch.cat([u, 0.5 * (u * u).sum(1, keepdim=True), ones_u], dim=1)
    right = torch.cat([-v, ones_v, 0.5 * (v * v).sum(1, keepdim=True)], dim=1)
    return left @ right.T


def _cost(u: Tensor, v: Tensor, cost_dtype: torch.dtype | None) -> Tensor:
    """The half squared cost, its GEMM optionally in a lower precision (tensor cores on a GPU).

    On one-hot clouds every product and partial sum is an integer, so float16 is exact up to
    2048 mismatches and bfloat16 up to 256; the result comes back in the clouds' dtype.
    """
    if cost_dtype is None or cost_dtype == u.dtype:
        return _half_sq_cost(u, v)
    return _half_sq_cost(u.to(cost_dtype), v.to(cost_dtype)).to(u.dtype)


def _exp_floor(dtype: torch.dtype) -> float:
    """Exponent below which ``exp`` is negligible yet still a normal number.

    Clamping there avoids the slow underflow path of the CPU ``exp`` kernel;
    the dropped mass is below ``exp(-79)`` relative to the row maximum.
    """
    return math.log(torch.finfo(dtype).tiny) + 8.0


@dataclass(frozen=True)
class _Plan:
    """How the log-sum-exps run: rows (or columns) per block (None: cache-sized), the cost GEMM's
    precision (None: the clouds' own), and whether a compiled kernel replaces the eager passes."""

    block: int | None = None
    cost_dtype: torch.dtype | None = None
    compiled: bool = False


@functools.lru_cache(maxsize=1)
def _compiled_lse():
    """The soft C-transform without its barycentre, through torch.compile (Inductor).

    Eager, each block takes six passes (add, max, subtract, clamp, exp, sum); compiled, the whole
    matrix is two fused reductions that write nothing but the result, one kernel launch each on a
    GPU. Compiling costs 10-60 s on the first call, and Inductor needs a C++ compiler on the CPU.
    Measured on this project's 2-core CPU (B 4096, L 30, cache warm): 0.43 s against 0.51 s per
    loss and backward on 2 threads, the same speed on 1; on a GPU it is still unmeasured.
    """

    def lse(h_b: Tensor, cost: Tensor, scale: Tensor, floor: float, axis: int) -> Tensor:
        s = h_b + cost * scale
        top = s.amax(dim=axis, keepdim=True)
        return (s - top).clamp(min=floor).exp().sum(dim=axis).log() + top.view(-1)

    return torch.compile(lse, dynamic=True)


def _default_block(cost: Tensor, reduced: int) -> int:
    """Rows (or columns) per block so that one block of the cost matrix stays cache-sized."""
    budget = _GPU_BLOCK_ELEMENTS if cost.is_cuda else _CPU_BLOCK_ELEMENTS
    return max(1, budget // max(1, reduced))


def _block_softmin(
    eps: float,
    part: Tensor,
    h_b: Tensor,
    axis: int,
    work: Tensor,
    out: Tensor,
    bary: tuple[Tensor, Tensor] | None,
) -> None:
    """One block of the soft C-transform, in place in ``work``; writes ``out`` (and the
    barycentre rows) with ``-log sum exp`` (the caller scales by eps)."""
    s = torch.add(h_b, part, alpha=-1.0 / eps, out=work[: part.numel()].view(part.shape))
    row_max = s.amax(dim=axis, keepdim=True)
    s.sub_(row_max).clamp_(min=_exp_floor(part.dtype)).exp_()
    total = s.sum(dim=axis)
    out.copy_(total.log().add_(row_max.view(-1)))
    if bary is not None:
        points, rows = bary
        weights = s if axis == 1 else s.T
        rows.copy_((weights @ points).div_(total.unsqueeze(1)))


_THREAD_STATE = threading.local()


def _work_buffer(size: int, like: Tensor) -> Tensor:
    """This thread's block buffer, grown when needed and reused across calls."""
    buf = getattr(_THREAD_STATE, "buffer", None)
    if buf is None or buf.numel() < size or buf.dtype != like.dtype or buf.device != like.device:
        buf = _THREAD_STATE.buffer = like.new_empty(size)
    return buf


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    """Block workers, each on one intra-op thread (torch's thread count is per OS thread)."""
    return ThreadPoolExecutor(
        threads, "hmmrnn-loss", initializer=torch.set_num_threads, initargs=(1,)
    )


def _block_threads(cost: Tensor, n_blocks: int) -> int:
    """Worker threads for the blocks: torch's intra-op thread count, on the CPU.

    Each op on a block used to open its own parallel region (six per block, about 6,000 per loss
    at B 4096), and on a shared machine every region waited for the busiest core. Whole blocks
    on single-threaded workers wait only at the end of a transform. Measured on 2 cores with a
    third process busy: 0.9-1.3 s per loss and backward against 2.2-3.2 s; idle, the same.
    """
    threads = torch.get_num_threads()
    if cost.is_cuda or threads < 2 or n_blocks < 2:
        return 1
    return threads


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the threads


def _softmin(
    eps: float,
    cost: Tensor,
    h: Tensor,
    plan: _Plan,
    points: Tensor | None = None,
    axis: int = 1,
) -> tuple[Tensor, Tensor | None]:
    """Soft C-transform along one axis of ``cost``, block by block.

    ``axis=1``: ``f_i = -eps * log sum_j exp(h_j - C_ij / eps)`` (h indexed by columns);
    ``axis=0``: ``g_j = -eps * log sum_i exp(h_i - C_ij / eps)`` (h indexed by rows), which reads
    the same matrix by column blocks, so the transposed cost is never stored (measured on one
    core at B 4096: as fast as the row blocks, and one B x B matrix less).
    If ``points`` is given (one row per entry of h), also returns the barycentric projection
    ``sum P points`` with P the softmax weights: the derivative of each potential w.r.t. its own
    point is ``point - projection``, which is all the envelope gradient needs.
    """
    h_b = h if axis == 1 else h.unsqueeze(1)
    if plan.compiled and points is None:
        scale = torch.full((), -1.0 / eps, dtype=cost.dtype, device=cost.device)
        return _compiled_lse()(h_b, cost, scale, _exp_floor(cost.dtype), axis).mul_(-eps), None
    n_out, n_in = cost.shape[1 - axis], cost.shape[axis]
    step = plan.block or _default_block(cost, n_in)
    f = cost.new_empty(n_out)
    bary = None if points is None else cost.new_empty(n_out, points.shape[1])
    starts = range(0, n_out, step)

    def blocks(todo: Iterator[int]) -> None:
        # One reused work buffer per thread: a fresh large allocation per block would be
        # page-faulted in every time, which costs more than the arithmetic.
        work = _work_buffer(min(step, n_out) * n_in, cost)
        for start in todo:
            stop = min(start + step, n_out)
            part = cost[start:stop] if axis == 1 else cost[:, start:stop]
            _block_softmin(eps, part, h_b, axis, work, f[start:stop],
                           None if bary is None else (points, bary[start:stop]))  # fmt: skip

    threads = _block_threads(cost, len(starts))
    if threads == 1:
        blocks(iter(starts))
    else:
        shared = iter(starts)  # each worker takes the next block: a stalled core delays nobody
        for done in [_pool(threads).submit(blocks, shared) for _ in range(threads)]:
            done.result()
    return f.mul_(-eps), bary


# ----------------------------------------------------------------------------
# Annealed Sinkhorn loops (no gradient)
# ----------------------------------------------------------------------------


def _anneal_cross(
    c_xy: Tensor, a_log: float, b_log: float, schedule: list[float], plan: _Plan
) -> tuple[Tensor, Tensor]:
    """Symmetric annealed Sinkhorn for OT(x, y); returns (f on x, g on y)."""
    eps = schedule[0]
    f, _ = _softmin(eps, c_xy, c_xy.new_full((c_xy.shape[1],), b_log), plan)
    g, _ = _softmin(eps, c_xy, c_xy.new_full((c_xy.shape[0],), a_log), plan, axis=0)
    for eps in schedule:
        f_new, _ = _softmin(eps, c_xy, g / eps + b_log, plan)
        g_new, _ = _softmin(eps, c_xy, f / eps + a_log, plan, axis=0)
        f, g = 0.5 * (f + f_new), 0.5 * (g + g_new)
    return f, g


def _anneal_self(c: Tensor, log_w: float, schedule: list[float], plan: _Plan) -> Tensor:
    """Symmetric annealed Sinkhorn for the autocorrelation OT(z, z)."""
    eps = schedule[0]
    f, _ = _softmin(eps, c, c.new_full((c.shape[1],), log_w), plan)
    for eps in schedule:
        f_new, _ = _softmin(eps, c, f / eps + log_w, plan)
        f = 0.5 * (f + f_new)
    return f


def _self_potential(
    z: Tensor, schedule: list[float], plan: _Plan, with_bary: bool
) -> tuple[Tensor, Tensor | None]:
    """Final potential of OT(z, z) and, if asked, its barycentric projection."""
    c = _cost(z, z, plan.cost_dtype)
    log_w = -math.log(z.shape[0])
    f = _anneal_self(c, log_w, schedule, plan)
    return _softmin(schedule[-1], c, f / schedule[-1] + log_w, plan, z if with_bary else None)


# ----------------------------------------------------------------------------
# Target cache
# ----------------------------------------------------------------------------


class TargetCache(MutableMapping):
    """Small LRU mapping for target-side (y, y) potentials.

    The HMM targets of a given batch index are the same every epoch, so the
    whole (y, y) annealing loop can be skipped after the first epoch.  Any
    ``MutableMapping`` works as ``target_cache``; this one bounds the memory
    and counts hits and misses, which makes cache use observable.
    """

    def __init__(self, maxsize: int = 128) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, object] = OrderedDict()

    def __getitem__(self, key: Hashable) -> object:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: Hashable, value: object) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __delitem__(self, key: Hashable) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def record(self, hit: bool) -> None:
        """Count one lookup (a hit needs a valid entry, not just the key)."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1


def _fingerprint(y: Tensor) -> Tensor:
    """Cheap content signature of y, so a reused key with new targets misses."""
    return y.to(torch.float64) @ _fingerprint_weights(y.shape[1], y.device)


@functools.lru_cache(maxsize=8)
def _fingerprint_weights(dim: int, device: torch.device) -> Tensor:
    """Fixed random weights, made once per size and device (not a host-to-device copy per call)."""
    gen = torch.Generator().manual_seed(0x5EED)
    return torch.rand(dim, generator=gen, dtype=torch.float64).to(device)


class _TargetRecord:
    """Which targets a cache entry was made from, checked without a host sync when it can be.

    The same tensor object at the same version (views share their base's version counter, which
    every in-place write bumps) holds the same values: a plain Python comparison. Any other
    tensor is compared by content fingerprint, which reads back to the host (a sync on CUDA);
    training hands the same batch tensors every epoch, so it takes the first path.
    """

    def __init__(self, y: Tensor) -> None:
        self.signature = _fingerprint(y)
        self._remember(y)

    def _remember(self, y: Tensor) -> None:
        self._ref, self._version = weakref.ref(y), y._version

    def matches(self, y: Tensor) -> bool:
        if self._ref() is y and y._version == self._version:
            return True
        if not torch.equal(self.signature, _fingerprint(y)):
            return False
        self._remember(y)
        return True


def _cached_target_potential(
    y: Tensor,
    schedule: list[float],
    plan: _Plan,
    cache: MutableMapping | None,
    key: Hashable | None,
) -> Tensor:
    """Final (y, y) potential, reusing ``cache[key]`` when it is valid.

    The potential depends on the whole schedule (hence on x through the
    bounding-box diameter), so the schedule is part of the stored key; the
    target record guards against a key reused for different targets.
    """
    if cache is None or key is None:
        return _self_potential(y, schedule, plan, False)[0]
    full_key = (key, tuple(schedule), tuple(y.shape), y.dtype, str(y.device), str(plan.cost_dtype))
    entry = cache.get(full_key)
    hit = entry is not None and entry[0].matches(y)
    if isinstance(cache, TargetCache):
        cache.record(hit)
    if hit:
        return entry[1]
    potential = _self_potential(y, schedule, plan, False)[0]
    cache[full_key] = (_TargetRecord(y), potential)
    return potential


# ----------------------------------------------------------------------------
# Gradient plumbing
# ----------------------------------------------------------------------------


class _EnvelopeValue(torch.autograd.Function):
    """Scalar value whose gradient w.r.t. (x, y) was computed in the forward.

    Backpropagating through the last Sinkhorn update would build (B, B)
    autograd buffers; its closed form is a (B, D) tensor per input.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        value: Tensor,
        x: Tensor,
        y: Tensor,
        grad_x: Tensor | None,
        grad_y: Tensor | None,
    ) -> Tensor:
        ctx.save_for_backward(grad_x, grad_y)
        return value.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple:
        grad_x, grad_y = ctx.saved_tensors
        gx = grad_out * grad_x if grad_x is not None and ctx.needs_input_grad[1] else None
        gy = grad_out * grad_y if grad_y is not None and ctx.needs_input_grad[2] else None
        return None, gx, gy, None, None


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def sinkhorn_divergence(
    x: Tensor,
    y: Tensor,
    blur: float = 0.2,
    scaling: float = 0.5,
    *,
    block_size: int | None = None,
    target_cache: MutableMapping | None = None,
    target_key: Hashable | None = None,
    diameter: float | None = None,
    cost_dtype: torch.dtype | None = None,
    check_finite: bool = True,
    compiled: bool = False,
) -> Tensor:
    """Debiased Sinkhorn divergence S(x, y), as geomloss's tensorized backend.

    Args:
        x: (N, D) source cloud (e.g. RNN outputs); may require grad.
        y: (M, D) target cloud (HMM samples); usually constant.  A gradient is
            returned for it too if it requires grad (then without caching).
        blur: final temperature is ``blur**2``.
        scaling: blur ratio between two annealing levels.
        block_size: rows per log-sum-exp block; None picks a cache-sized one.
        target_cache: mapping that stores the (y, y) potential between calls.
        target_key: hashable identity of ``y`` (e.g. its batch index); caching
            happens only when both ``target_cache`` and ``target_key`` are set.
        diameter: fixed starting scale.  None uses the bounding box of x and
            y, like geomloss; fixing it (e.g. ``sqrt(D)`` for one-hot data)
            makes the schedule, hence the cache entry, independent of x.
        cost_dtype: precision of the cost GEMM (None: the clouds' own); float16
            or bfloat16 is exact on one-hot clouds (see ``_cost``).
        check_finite: reject NaN or infinite points (a host sync on CUDA); off,
            such points give a NaN value instead.
        compiled: run the log-sum-exps through torch.compile (see ``_compiled_lse``).

    Returns:
        0-dim tensor; differentiable with the envelope-theorem gradient.
    """
    _check_inputs(x, y, blur, scaling, check_finite)
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be a positive number of rows, got {block_size}")
    # y itself when it needs no detaching: the target cache recognises it by identity
    x_, y_ = x.detach(), (y.detach() if y.requires_grad else y)
    if diameter is None:
        diameter = _bounding_box_diameter(x_, y_)
    schedule = epsilon_schedule(diameter, blur, scaling)
    plan = _Plan(block_size, cost_dtype, compiled)
    need_gx = x.requires_grad and torch.is_grad_enabled()
    need_gy = y.requires_grad and torch.is_grad_enabled()
    with torch.no_grad():
        value, grad_x, grad_y = _divergence_and_grads(
            x_, y_, schedule, plan, need_gx, need_gy, target_cache, target_key
        )
    if not (need_gx or need_gy):
        return value
    return _EnvelopeValue.apply(value, x, y, grad_x, grad_y)


def _divergence_and_grads(
    x: Tensor,
    y: Tensor,
    schedule: list[float],
    plan: _Plan,
    need_gx: bool,
    need_gy: bool,
    cache: MutableMapping | None,
    key: Hashable | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Value ``<a, f_ba - f_aa> + <b, g_ab - g_bb>`` and its envelope gradients."""
    eps = schedule[-1]
    a_log, b_log = -math.log(x.shape[0]), -math.log(y.shape[0])
    c_xy = _cost(x, y, plan.cost_dtype)
    f_xy, g_xy = _anneal_cross(c_xy, a_log, b_log, schedule, plan)
    f_ba, py = _softmin(eps, c_xy, g_xy / eps + b_log, plan, y if need_gx else None)
    g_ab, px = _softmin(eps, c_xy, f_xy / eps + a_log, plan, x if need_gy else None, axis=0)
    del c_xy
    f_aa, qx = _self_potential(x, schedule, plan, need_gx)
    if need_gy:
        g_bb, qy = _self_potential(y, schedule, plan, True)
    else:
        g_bb, qy = _cached_target_potential(y, schedule, plan, cache, key), None
    a = x.new_full((x.shape[0],), 1.0 / x.shape[0])
    b = y.new_full((y.shape[0],), 1.0 / y.shape[0])
    value = torch.dot(a, f_ba - f_aa) + torch.dot(b, g_ab - g_bb)
    grad_x = a.unsqueeze(1) * (qx - py) if need_gx else None
    grad_y = b.unsqueeze(1) * (qy - px) if need_gy else None
    return value, grad_x, grad_y


def _pot_divergence(x: Tensor, y: Tensor, blur: float) -> Tensor:
    """Converged debiased divergence through POT (no annealing).

    POT's cost is ``|x - y|^2`` (no 1/2) and its KL-regularised value is
    ``min <P, M> + reg KL(P | a b^T)``; halving both the cost and the
    regulariser gives geomloss's convention, hence ``reg = 2 blur^2`` and
    ``value / 2``.
    """
    import ot  # deferred: POT is only needed for this reference path

    res = ot.solve_sample(x, y, reg=2 * blur**2, debias=True, grad="envelope")
    return res.value / 2


class SinkhornLoss:
    """Callable training loss with a per-instance LRU target cache.

    ``method="annealed"`` is the fast geomloss-equivalent path;
    ``method="pot"`` is an independent, converged reference through POT
    (slower, no annealing, no cache) used to cross-check the first.

    ``unit_box=True`` declares that both clouds lie in [0, 1]^D (probabilities, one-hot targets,
    straight-through samples). When the keyed targets reach both 0 and 1 in every coordinate, the
    joint bounding box is then the unit cube whatever x is, so the annealing starts at sqrt(D)
    without reading x back to the host; the targets are checked once per key. With
    ``check_finite=False`` as well, a call whose targets are cached makes no host sync at all
    (training checks the epoch's summed loss instead).
    """

    def __init__(
        self,
        blur: float = 0.2,
        scaling: float = 0.5,
        method: Literal["annealed", "pot"] = "annealed",
        *,
        diameter: float | None = None,
        block_size: int | None = None,
        cache_size: int = 128,
        cost_dtype: torch.dtype | None = None,
        unit_box: bool = False,
        check_finite: bool = True,
        compiled: bool = False,
    ) -> None:
        if method not in ("annealed", "pot"):
            raise ValueError(f"method must be 'annealed' or 'pot', got {method!r}")
        if not blur > 0:
            raise ValueError(f"blur must be positive, got {blur}")
        if not 0 < scaling < 1:
            raise ValueError(f"scaling must lie in (0, 1), got {scaling}")
        self.blur, self.scaling, self.method = blur, scaling, method
        self.diameter, self.block_size = diameter, block_size
        self.cost_dtype = cost_dtype
        self.unit_box, self.check_finite, self.compiled = unit_box, check_finite, compiled
        self.cache = TargetCache(cache_size)
        self._spans = TargetCache(cache_size)

    def __call__(self, x: Tensor, y: Tensor, target_key: Hashable | None = None) -> Tensor:
        """Loss between ``x`` and ``y``; ``target_key`` identifies ``y`` for caching."""
        if self.method == "pot":
            _check_inputs(x, y, self.blur, self.scaling)
            return _pot_divergence(x, y, self.blur)
        diameter = self.diameter
        if diameter is None and self.unit_box and target_key is not None:
            diameter = self._unit_diameter(y, target_key)
        return sinkhorn_divergence(
            x,
            y,
            self.blur,
            self.scaling,
            block_size=self.block_size,
            target_cache=self.cache,
            target_key=target_key,
            diameter=diameter,
            cost_dtype=self.cost_dtype,
            check_finite=self.check_finite,
            compiled=self.compiled,
        )

    def _unit_diameter(self, y: Tensor, key: Hashable) -> float | None:
        """sqrt(D) when the keyed targets span [0, 1] in every coordinate, else None (measure)."""
        if not isinstance(y, Tensor) or y.dim() != 2 or 0 in y.shape:
            return None  # sinkhorn_divergence names the problem
        entry = self._spans.get((key, tuple(y.shape)))
        if entry is None or not entry[0].matches(y):
            spans = bool(((y.amin(dim=0) == 0) & (y.amax(dim=0) == 1)).all())
            entry = (_TargetRecord(y), spans)
            self._spans[(key, tuple(y.shape))] = entry
        return math.sqrt(y.shape[1]) if entry[1] else None

    def clear_cache(self) -> None:
        """Forget cached target potentials (e.g. after resampling the targets)."""
        self.cache.clear()
        self._spans.clear()


def hmm_floor(y1: Tensor, y2: Tensor, blur: float = 0.2, scaling: float = 0.5) -> float:
    """Divergence between two independent HMM samples: the loss's noise floor.

    A perfect emulator still scores about this much, because two finite
    samples of the same process differ; training curves are read against it.
    """
    with torch.no_grad():
        return float(sinkhorn_divergence(y1.detach(), y2.detach(), blur, scaling))
