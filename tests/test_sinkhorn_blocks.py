"""The loss's fast updates against its log-domain transforms, and the block machinery."""

from __future__ import annotations

import math
import threading

import pytest
import torch

import hmmrnn.loss as loss_module
import hmmrnn.sinkhorn_blocks as blocks
from hmmrnn.loss import SinkhornLoss, _cost, _pair_update, _Plan, sinkhorn_divergence

F64 = torch.float64


def one_hot(n, length, seed, dtype=F64, k=3):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (n, length), generator=g)
    return torch.nn.functional.one_hot(idx, k).to(dtype).reshape(n, length * k)


def gaussian(n, d, seed, dtype=F64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g, dtype=dtype)


def value_and_grads(x, y, grad_y=False, **kwargs):
    xr = x.detach().clone().requires_grad_()
    yr = y.detach().clone().requires_grad_(grad_y)
    value = sinkhorn_divergence(xr, yr, **kwargs)
    inputs = (xr, yr) if grad_y else (xr,)
    return value.detach(), torch.autograd.grad(value, inputs)


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.fixture
def log_domain_calls(monkeypatch):
    """Counts the log-domain transforms the loss takes."""
    calls = []
    original = loss_module._softmin

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(loss_module, "_softmin", counted)
    return calls


@pytest.mark.parametrize(
    "x,y,tol",
    [
        (gaussian(96, 3, 1), gaussian(96, 3, 2), 1e-10),
        (gaussian(80, 5, 3), gaussian(64, 5, 4, scale=2.0), 1e-10),
        (gaussian(1, 2, 5), gaussian(1, 2, 6), 1e-10),
        (one_hot(120, 10, 7), one_hot(100, 10, 8), 1e-10),
        (one_hot(200, 30, 9, torch.float32), one_hot(200, 30, 10, torch.float32), 2e-5),
    ],
)
def test_absorbed_updates_give_the_log_domain_loss(x, y, tol, log_domain_calls):
    """One exponential per entry for both potentials (and half the entries for a cloud against
    itself): the value and gradient of the log-domain transforms, which it never falls back to
    on these clouds."""
    ref_value, (ref_grad,) = value_and_grads(x, y, absorbed=False, block_size=7)
    log_domain_calls.clear()
    value, (grad,) = value_and_grads(x, y, absorbed=True, block_size=7)
    assert log_domain_calls == []
    assert abs(float(value - ref_value)) <= tol * abs(float(ref_value)) + 1e-15
    assert rel(grad, ref_grad) < tol


def test_a_gradient_on_the_targets_takes_the_log_domain_for_their_side(log_domain_calls):
    """The barycentre on x (for y's gradient) is not absorbed: the last cross update takes the
    log-domain transforms, and both gradients equal the log-domain loss's."""
    x, y = gaussian(50, 4, 11), gaussian(40, 4, 12)
    ref_value, ref_grads = value_and_grads(x, y, grad_y=True, absorbed=False)
    log_domain_calls.clear()
    value, grads = value_and_grads(x, y, grad_y=True, absorbed=True)
    assert len(log_domain_calls) == 2
    assert float(value) == pytest.approx(float(ref_value), rel=1e-10)
    for ours, ref in zip(grads, ref_grads, strict=True):
        assert rel(ours, ref) < 1e-10


def potentials(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=F64), torch.randn(m, generator=g, dtype=F64)


@pytest.mark.parametrize("shift", [800.0, -900.0])
def test_an_update_out_of_range_falls_back_to_the_log_domain(shift, log_domain_calls):
    """Potentials far from feasible make exp overflow (or every entry of a row vanish): the
    absorbed update says so, and the pair update then gives the log-domain result."""
    x, y = gaussian(30, 3, 13), gaussian(20, 3, 14)
    plan = _Plan(absorbed=True, block=4)
    c = _cost(x, y, plan)
    f, g = potentials(30, 20, 15)
    f[3] += shift
    assert blocks.absorbed_update(0.05, c, f, g, block=4) is None
    log_domain_calls.clear()
    f_new, g_new, _, _ = _pair_update(0.05, c, f, g, plan)
    assert len(log_domain_calls) == 2
    ref_f, ref_g, _, _ = _pair_update(0.05, c, f, g, _Plan(block=4))
    assert torch.equal(f_new, ref_f) and torch.equal(g_new, ref_g)


def test_the_triangle_pass_equals_the_full_symmetric_pass():
    """A cloud against itself reads only the blocks on and above the diagonal; the same
    potential as the full pass with g = f, and as the log-domain transform."""
    z = gaussian(45, 3, 16)
    c = _cost(z, z, _Plan())
    f, _ = potentials(45, 1, 17)
    tri = blocks.absorbed_update(0.3, c, f, None, block=4)
    full = blocks.absorbed_update(0.3, c, f, f.clone(), block=4)
    ref, _ = loss_module._softmin(0.3, c, f / 0.3 - math.log(45), _Plan())
    assert tri is not None and full is not None and tri.g is None
    assert rel(tri.f, full.f) < 1e-13 and rel(full.g, full.f) < 1e-13
    assert rel(tri.f, ref) < 1e-13


def test_the_updates_do_not_depend_on_the_thread_count():
    """Each slab writes its own rows and column partials, summed in slab order: one thread and
    two give the same value, whichever worker took which slab."""
    x, y = one_hot(300, 12, 18, torch.float32), one_hot(280, 12, 19, torch.float32)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1, 2):
            torch.set_num_threads(threads)
            results.append(value_and_grads(x, y, block_size=9))
    finally:
        torch.set_num_threads(previous)
    for value, (grad,) in results[1:]:
        # the value to the bit; the gradient's barycentre GEMMs (MKL, in the workers) differed in
        # the last bits once in a full-suite run, so to rounding
        assert torch.equal(value, results[0][0]) and rel(grad, results[0][1][0]) < 1e-6


def test_clamping_instead_of_flushing_subnormals_gives_the_same_loss(monkeypatch):
    """Where the CPU cannot flush subnormals the blocks clamp the exponents instead: the same
    numbers to rounding."""
    x, y = gaussian(70, 4, 20), gaussian(60, 4, 21)
    flushed = value_and_grads(x, y, block_size=5)
    assert blocks.exp2_clamp(x) is None  # x86 and ARM flush
    monkeypatch.setattr(blocks, "exp2_clamp", lambda cost: blocks.exp2_floor(cost.dtype))
    for absorbed in (True, False):
        value, (grad,) = value_and_grads(x, y, block_size=5, absorbed=absorbed)
        assert float(value) == pytest.approx(float(flushed[0]), rel=1e-11)
        assert rel(grad, flushed[1][0]) < 1e-10


def test_threads_started_after_a_loss_keep_the_callers_thread_count():
    """The block workers run on one intra-op thread each; a thread started later (a training
    or analysis worker) still gets the process's count, not theirs."""
    previous = torch.get_num_threads()
    seen: list[int] = []
    try:
        torch.set_num_threads(2)
        blocks._pool.cache_clear()
        sinkhorn_divergence(gaussian(64, 3, 22), gaussian(64, 3, 23), block_size=4)
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen == [2]


def test_the_workspace_keeps_one_matrix_and_is_never_shared_between_threads():
    """SinkhornLoss reuses its cost matrix's memory from call to call (same numbers as fresh
    memory); a call made while another thread holds the workspace gets fresh memory."""
    x, y = one_hot(90, 8, 24), one_hot(90, 8, 25)
    loss = SinkhornLoss()
    first = loss(x, y)
    storage = loss.workspace._storage
    assert storage is not None and storage.numel() >= 90 * 90
    assert torch.equal(loss(x, y), first) and loss.workspace._storage is storage
    assert torch.equal(first, sinkhorn_divergence(x, y))
    with loss.workspace.held() as mine:
        assert mine is loss.workspace
        held = mine.matrix(90, 90, x).fill_(7.0)
        other: list[torch.Tensor] = []
        worker = threading.Thread(target=lambda: other.append(loss(x, y)))
        worker.start()
        worker.join()
        assert torch.equal(other[0], first) and bool((held == 7.0).all())
    loss.clear_cache()
    assert loss.workspace._storage is None


@pytest.mark.parametrize(
    "length,dtype,low",
    [(30, torch.float32, True), (256, torch.float32, True), (257, torch.float32, False),
     (40, F64, True)],
)  # fmt: skip
def test_the_cost_takes_bfloat16_only_where_it_is_exact(length, dtype, low, monkeypatch):
    """On binary clouds whose costs stay at or below 256 the GEMM runs in bfloat16 (where the
    CPU has fast bfloat16): the same matrix, bit for bit, as the clouds' own precision."""
    from hmmrnn import sinkhorn_cost

    monkeypatch.setattr(sinkhorn_cost, "_fast_bfloat16", lambda: True)
    monkeypatch.setattr(sinkhorn_cost, "_SLAB_ELEMENTS", 7 * 60)  # several slabs
    taken = []
    original = sinkhorn_cost._exact_bfloat16
    monkeypatch.setattr(
        sinkhorn_cost, "_exact_bfloat16", lambda u, v: taken.append(original(u, v)) or taken[-1]
    )
    g = torch.Generator().manual_seed(26)
    iu, iv = (
        torch.randint(0, 3, (50, length), generator=g),
        torch.randint(0, 3, (60, length), generator=g),
    )
    iv[0], iv[1] = (iu[0] + 1) % 3, iu[1]  # the largest cost, `length`, and the smallest, 0
    u, v = (torch.nn.functional.one_hot(i, 3).to(dtype).reshape(len(i), -1) for i in (iu, iv))
    work = loss_module.CostWorkspace()
    with work.held() as memory:
        auto = sinkhorn_cost.cost_matrix(u, v, None, memory)
    own = sinkhorn_cost.cost_matrix(u, v, dtype, None)
    assert taken == [torch.bfloat16 if low else None]
    assert auto.dtype == dtype and torch.equal(auto, own)
    assert float(own.max()) == length and float(own.min()) == 0.0


def test_soft_clouds_keep_their_own_precision(monkeypatch):
    from hmmrnn import sinkhorn_cost

    monkeypatch.setattr(sinkhorn_cost, "_fast_bfloat16", lambda: True)
    u = torch.softmax(gaussian(20, 9, 29, torch.float32), -1)
    assert sinkhorn_cost._exact_bfloat16(u, u) is None
    assert torch.equal(
        sinkhorn_cost.cost_matrix(u, u, None, None), sinkhorn_cost.half_sq_cost(u, u)
    )


def test_losses_called_in_turn_can_share_one_workspace():
    """Training's main and coarse terms keep one cost matrix between them, not one each."""
    from hmmrnn.config import ExperimentConfig
    from hmmrnn.train import make_loss

    x, y = one_hot(70, 8, 30, torch.float32), one_hot(70, 8, 31, torch.float32)
    shared = loss_module.CostWorkspace()
    fine, coarse = SinkhornLoss(workspace=shared), SinkhornLoss(blur=2.0, workspace=shared)
    assert fine.workspace is coarse.workspace is shared
    assert torch.equal(
        fine(x, y) + coarse(x, y), SinkhornLoss()(x, y) + SinkhornLoss(blur=2.0)(x, y)
    )
    combined = make_loss(ExperimentConfig.from_preset("Three", aux_weight=1.0))
    terms = [
        cell.cell_contents
        for cell in combined.__closure__
        if isinstance(cell.cell_contents, SinkhornLoss)
    ]
    assert len(terms) == 2 and terms[0].workspace is terms[1].workspace
