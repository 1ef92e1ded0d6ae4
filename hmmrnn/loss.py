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
* On the CPU, each symmetric update takes one exponential per cost entry for
  both potentials, and a cloud against itself only the upper triangle
  (:mod:`hmmrnn.sinkhorn_blocks`): about half the exponentials of the
  log-domain transforms, which remain the fallback and the GPU's form. A small
  C kernel (:mod:`hmmrnn.sinkhorn_kernel`) does each block in one pass, and
  reads the cost of binary clouds packed in bfloat16 (exact): half the bytes.

* Training on a GPU needs no host sync per call (``SinkhornLoss(unit_box=True,
  check_finite=False)``): the annealing starts at the unit cube's diagonal when
  the targets span it, and cached targets are recognised by identity.

Memory: one (B, B) cost matrix at a time plus one work block, never a graph
through the iterations.
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from hmmrnn import sinkhorn_kernel
from hmmrnn.sinkhorn_blocks import (
    LN2,
    LOG2E,
    absorbed_update,
    default_block,
    exp2_clamp,
    exp_floor,
    run_blocks,
    work_buffer,
)
from hmmrnn.sinkhorn_cost import CostWorkspace, cost_matrix

__all__ = [
    "CostWorkspace",
    "SinkhornLoss",
    "TargetCache",
    "epsilon_schedule",
    "hmm_floor",
    "sinkhorn_divergence",
]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


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


@dataclass(frozen=True)
class _Plan:
    """How the updates run: rows (or columns) per block (None: cache-sized), the cost GEMM's
    precision (None: the clouds' own), whether a compiled kernel replaces the eager log-sum-exps,
    and whether the updates take one exponential per entry for both potentials (``absorbed``, see
    :mod:`hmmrnn.sinkhorn_blocks`) before the log-domain transforms."""

    block: int | None = None
    cost_dtype: torch.dtype | None = None
    compiled: bool = False
    absorbed: bool = False
    workspace: CostWorkspace | None = field(default=None, compare=False)


def _absorbed(choice: bool | None, device: torch.device, compiled: bool) -> bool:
    """The absorbed updates unless told otherwise on the CPU, where checking their range costs
    nothing.

    Measured on 2 cores (B 4096, L 30, loss and backward): see benchmarks/README.md. On a GPU the
    check would read back to the host once per temperature, and the compiled log-sum-exps are the
    form meant for it, so both keep the log-domain transforms.
    """
    if choice is not None:
        return choice
    return device.type == "cpu" and not compiled


def _cost(u: Tensor, v: Tensor, plan: _Plan) -> Tensor:
    """The half squared cost as the plan asks for it (see :func:`hmmrnn.sinkhorn_cost.cost_matrix`).

    Kept in bfloat16 where that is exact and the absorbed updates' kernel reads it: half the
    memory, and half of what each update reads (:mod:`hmmrnn.sinkhorn_kernel`).
    """
    packed = plan.absorbed and u.device.type == "cpu" and sinkhorn_kernel.kernel() is not None
    return cost_matrix(u, v, plan.cost_dtype, plan.workspace, packed=packed)


def _zeros(cost: Tensor, n: int) -> Tensor:
    """Zero potentials for a cost matrix: float32 where the matrix is packed in bfloat16."""
    dtype = torch.float32 if cost.dtype == torch.bfloat16 else cost.dtype
    return torch.zeros(n, dtype=dtype, device=cost.device)


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


def _block_softmin(
    scale: float,
    clamp: float | None,
    part: Tensor,
    h_b: Tensor,
    axis: int,
    work: Tensor,
    out: Tensor,
    bary: tuple[Tensor, Tensor] | None,
) -> None:
    """One block of the soft C-transform in base 2 (``h_b`` and ``scale = 1 / (eps ln 2)`` so
    scaled), in place in ``work``; writes ``out`` (and the barycentre rows) with the natural
    ``log sum exp`` (the caller scales by -eps). ``exp2`` is 3x faster than ``exp`` on the CPU."""
    s = torch.add(h_b, part, alpha=-scale, out=work[: part.numel()].view(part.shape))
    row_max = s.amax(dim=axis, keepdim=True)
    s.sub_(row_max)
    if clamp is not None:
        s.clamp_(min=clamp)
    s.exp2_()
    total = s.sum(dim=axis)
    out.copy_(total.log().add_(row_max.view(-1), alpha=LN2))
    if bary is not None:
        points, rows = bary
        weights = s if axis == 1 else s.T
        rows.copy_((weights @ points).div_(total.unsqueeze(1)))


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
        scale = torch.full((), -1.0 / eps, dtype=h.dtype, device=h.device)
        return _compiled_lse()(h_b, cost, scale, exp_floor(h.dtype), axis).mul_(-eps), None
    n_out, n_in = cost.shape[1 - axis], cost.shape[axis]
    step = plan.block or default_block(cost, n_in)
    f = h.new_empty(n_out)  # the cost may be packed in bfloat16; the potentials never are
    bary = None if points is None else h.new_empty(n_out, points.shape[1])
    starts = range(0, n_out, step)
    h2, scale, clamp = h_b * LOG2E, LOG2E / eps, exp2_clamp(h)

    def blocks(todo: Iterator[int]) -> None:
        work = work_buffer(min(step, n_out) * n_in, h)
        for start in todo:
            stop = min(start + step, n_out)
            part = cost[start:stop] if axis == 1 else cost[:, start:stop]
            _block_softmin(scale, clamp, part, h2, axis, work, f[start:stop],
                           None if bary is None else (points, bary[start:stop]))  # fmt: skip

    run_blocks(cost, starts, blocks)
    return f.mul_(-eps), bary


# ----------------------------------------------------------------------------
# Annealed Sinkhorn loops (no gradient)
# ----------------------------------------------------------------------------


def _pair_update(
    eps: float,
    c_xy: Tensor,
    f: Tensor | None,
    g: Tensor | None,
    plan: _Plan,
    y_points: Tensor | None = None,
    x_points: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Both halves of a symmetric update of OT(x, y): the softmin over y of ``g`` (on x) and over
    x of ``f`` (on y), with the barycentres asked for; ``None`` potentials stand for zero.

    Absorbed when the plan says so and the update stays in range (a y barycentre only: the x one,
    for a gradient on y, is rare and takes the log-domain transforms).
    """
    n, m = c_xy.shape
    f0 = _zeros(c_xy, n) if f is None else f
    g0 = _zeros(c_xy, m) if g is None else g
    if plan.absorbed and x_points is None:
        out = absorbed_update(eps, c_xy, f0, g0, points=y_points, block=plan.block)
        if out is not None:
            return out.f, out.g, out.bary, None
    f_new, py = _softmin(eps, c_xy, g0 / eps - math.log(m), plan, y_points)
    g_new, px = _softmin(eps, c_xy, f0 / eps - math.log(n), plan, x_points, axis=0)
    return f_new, g_new, py, px


def _self_update(
    eps: float, c: Tensor, f: Tensor | None, plan: _Plan, points: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """The softmin of OT(z, z) over z of ``f`` (``None``: zero), with its barycentre if asked."""
    f0 = _zeros(c, c.shape[0]) if f is None else f
    if plan.absorbed:
        out = absorbed_update(eps, c, f0, None, points=points, block=plan.block)
        if out is not None:
            return out.f, out.bary
    return _softmin(eps, c, f0 / eps - math.log(c.shape[1]), plan, points)


def _anneal_cross(c_xy: Tensor, schedule: list[float], plan: _Plan) -> tuple[Tensor, Tensor]:
    """Symmetric annealed Sinkhorn for OT(x, y) with uniform weights; returns (f on x, g on y)."""
    f, g, _, _ = _pair_update(schedule[0], c_xy, None, None, plan)
    for eps in schedule:
        f_new, g_new, _, _ = _pair_update(eps, c_xy, f, g, plan)
        f, g = 0.5 * (f + f_new), 0.5 * (g + g_new)
    return f, g


def _anneal_self(c: Tensor, schedule: list[float], plan: _Plan) -> Tensor:
    """Symmetric annealed Sinkhorn for the autocorrelation OT(z, z), uniform weights."""
    f, _ = _self_update(schedule[0], c, None, plan)
    for eps in schedule:
        f = 0.5 * (f + _self_update(eps, c, f, plan)[0])
    return f


def _self_potential(
    z: Tensor, schedule: list[float], plan: _Plan, with_bary: bool
) -> tuple[Tensor, Tensor | None]:
    """Final potential of OT(z, z) and, if asked, its barycentric projection."""
    c = _cost(z, z, plan)
    f = _anneal_self(c, schedule, plan)
    return _self_update(schedule[-1], c, f, plan, z if with_bary else None)


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
    absorbed: bool | None = None,
    workspace: CostWorkspace | None = None,
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
        absorbed: one exponential per cost entry for both potentials of an update (see
            :mod:`hmmrnn.sinkhorn_blocks`), checked once per update by a host read, with the
            log-domain transforms as the fallback. None: on the CPU unless ``compiled``.
        workspace: memory for the cost matrices, reused between calls (``SinkhornLoss`` keeps
            one); None allocates them per call.

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
    need_gx = x.requires_grad and torch.is_grad_enabled()
    need_gy = y.requires_grad and torch.is_grad_enabled()
    held = contextlib.nullcontext() if workspace is None else workspace.held()
    with torch.no_grad(), held as memory:
        plan = _Plan(
            block_size, cost_dtype, compiled, _absorbed(absorbed, x.device, compiled), memory
        )
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
    c_xy = _cost(x, y, plan)
    f_xy, g_xy = _anneal_cross(c_xy, schedule, plan)
    y_points, x_points = (y if need_gx else None), (x if need_gy else None)
    f_ba, g_ab, py, px = _pair_update(schedule[-1], c_xy, f_xy, g_xy, plan, y_points, x_points)
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
    (training checks the epoch's summed loss instead) unless the updates are ``absorbed``, the
    CPU's default, whose range checks read back once per update (free on a CPU).
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
        absorbed: bool | None = None,
        workspace: CostWorkspace | None = None,
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
        self.absorbed = absorbed
        # losses called one after the other (training's main and coarse terms) may share one
        self.workspace = CostWorkspace() if workspace is None else workspace
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
            absorbed=self.absorbed,
            workspace=self.workspace,
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
        """Forget cached target potentials (e.g. after resampling the targets) and give back the
        cost matrices' memory."""
        self.cache.clear()
        self._spans.clear()
        self.workspace.clear()


def hmm_floor(y1: Tensor, y2: Tensor, blur: float = 0.2, scaling: float = 0.5) -> float:
    """Divergence between two independent HMM samples: the loss's noise floor.

    A perfect emulator still scores about this much, because two finite
    samples of the same process differ; training curves are read against it.
    """
    with torch.no_grad():
        return float(sinkhorn_divergence(y1.detach(), y2.detach(), blur, scaling))
