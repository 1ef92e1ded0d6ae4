"""The Sinkhorn loss must reproduce geomloss exactly, only faster."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from hmmrnn.loss import (
    SinkhornLoss,
    TargetCache,
    epsilon_schedule,
    hmm_floor,
    sinkhorn_divergence,
)

F64 = torch.float64


def geomloss_value_and_grad(x, y, blur=0.2, scaling=0.5):
    """Reference: geomloss tensorized value and gradient w.r.t. x."""
    geomloss = pytest.importorskip("geomloss")
    loss = geomloss.SamplesLoss(
        "sinkhorn", p=2, blur=blur, scaling=scaling, debias=True, backend="tensorized"
    )
    xr = x.detach().clone().requires_grad_()
    value = loss(xr, y.detach())
    (grad,) = torch.autograd.grad(value, xr)
    return value.detach(), grad


def ours_value_and_grad(x, y, **kwargs):
    xr = x.detach().clone().requires_grad_()
    value = sinkhorn_divergence(xr, y, **kwargs)
    (grad,) = torch.autograd.grad(value, xr)
    return value.detach(), grad


def one_hot_cloud(n, length, k=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, k, (n, length), generator=g)
    return torch.nn.functional.one_hot(idx, k).to(dtype).reshape(n, length * k)


def gaussian(n, d, seed, shift=0.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype) + shift


def assert_close_rel(ours, ref, rtol):
    err = (ours - ref).norm() / ref.norm().clamp_min(1e-300)
    assert err.item() < rtol, f"relative error {err.item():.3e}"


@pytest.mark.parametrize(
    "nx,ny,d", [(96, 96, 3), (80, 64, 5), (1, 1, 2), (2, 2, 1), (2, 5, 3), (64, 64, 1)]
)
def test_matches_geomloss_gaussian_float64(nx, ny, d):
    x, y = gaussian(nx, d, 1), gaussian(ny, d, 2, shift=0.4)
    ref_v, ref_g = geomloss_value_and_grad(x, y)
    v, g = ours_value_and_grad(x, y)
    assert_close_rel(v, ref_v, 1e-5)
    assert_close_rel(g, ref_g, 1e-5)


def test_matches_geomloss_one_hot_straight_through_float64():
    """x is a hard Gumbel one-hot with straight-through gradient, as in training."""
    n, length, k = 128, 10, 3
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(n, length, k, generator=g, dtype=F64)
    y = one_hot_cloud(n, length, k, seed=4)
    geomloss = pytest.importorskip("geomloss")
    ref_loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.2, scaling=0.5, backend="tensorized")
    grads, values = [], []
    for fn in (lambda x: ref_loss(x, y), lambda x: sinkhorn_divergence(x, y)):
        leaf = logits.clone().requires_grad_()
        value = fn(_straight_through(leaf).reshape(n, length * k))
        value.backward()
        values.append(value.detach())
        grads.append(leaf.grad)
    assert_close_rel(values[1], values[0], 1e-5)
    assert_close_rel(grads[1], grads[0], 1e-5)


def _straight_through(logits):
    """Deterministic hard one-hot with the softmax's gradient."""
    soft = logits.softmax(-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def test_matches_geomloss_float32_one_hot():
    x = one_hot_cloud(256, 12, dtype=torch.float32, seed=5)
    y = one_hot_cloud(256, 12, dtype=torch.float32, seed=6)
    ref_v, ref_g = geomloss_value_and_grad(x, y)
    v, g = ours_value_and_grad(x, y)
    assert v.dtype == torch.float32 and g.dtype == torch.float32
    assert_close_rel(v, ref_v, 1e-4)
    assert_close_rel(g, ref_g, 1e-4)


@pytest.mark.parametrize("cost_dtype", [torch.float16, torch.bfloat16])
def test_low_precision_cost_keeps_the_loss_within_1e4(cost_dtype):
    """One-hot clouds of 30 steps, straight-through outputs as in training."""
    logits = torch.randn(300, 30, 3, generator=torch.Generator().manual_seed(2))
    x = _straight_through(logits).reshape(300, 90)
    y = one_hot_cloud(300, 30, dtype=torch.float32, seed=3)
    v32, g32 = ours_value_and_grad(x, y)
    v, g = ours_value_and_grad(x, y, cost_dtype=cost_dtype)
    assert v.dtype == torch.float32 and g.dtype == torch.float32
    assert_close_rel(v, v32, 1e-4)
    assert_close_rel(g, g32, 1e-4)
    loss = SinkhornLoss(cost_dtype=cost_dtype)
    loss(x.detach(), y, target_key=0)
    assert loss(x.detach(), y, target_key=0) == pytest.approx(float(v32), rel=1e-4)
    assert loss.cache.hits == 1  # the cached target potential is keyed by the precision too


def test_gradient_for_y_when_it_requires_grad():
    geomloss = pytest.importorskip("geomloss")
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.2, scaling=0.5, backend="tensorized")
    x0, y0 = gaussian(40, 3, 7), gaussian(30, 3, 8, shift=0.5)
    refs = [t.clone().requires_grad_() for t in (x0, y0)]
    mine = [t.clone().requires_grad_() for t in (x0, y0)]
    loss(*refs).backward()
    sinkhorn_divergence(*mine).backward()
    for r, m in zip(refs, mine, strict=True):
        assert_close_rel(m.grad, r.grad, 1e-5)


def test_block_size_does_not_change_the_result():
    x, y = gaussian(50, 4, 9), gaussian(37, 4, 10)
    base, g0 = ours_value_and_grad(x, y)
    for block in (1, 7, 1000):
        v, g = ours_value_and_grad(x, y, block_size=block)
        assert torch.allclose(v, base, rtol=1e-13, atol=0)
        assert torch.allclose(g, g0, rtol=1e-12, atol=1e-15)


def test_epsilon_schedule_matches_geomloss():
    sd = pytest.importorskip("geomloss._legacy.sinkhorn_divergence")
    for diameter in (9.4868, 1.0, 0.1, 0.2):
        expected = sd.epsilon_schedule(2, diameter, 0.2, 0.5)
        assert epsilon_schedule(diameter, 0.2, 0.5) == pytest.approx(expected, rel=1e-14)


def test_target_cache_hit_reuses_potential_and_keeps_value():
    x, y = one_hot_cloud(64, 8, seed=11), one_hot_cloud(64, 8, seed=12)
    cache = TargetCache(maxsize=4)
    v0, g0 = ours_value_and_grad(x, y)
    v1, g1 = ours_value_and_grad(x, y, target_cache=cache, target_key=("batch", 0))
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    v2, g2 = ours_value_and_grad(x, y, target_cache=cache, target_key=("batch", 0))
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    assert torch.equal(v1, v0) and torch.equal(v2, v0)
    assert torch.equal(g2, g0)


def test_target_cache_misses_on_new_content_or_schedule():
    x, y = gaussian(32, 3, 13), gaussian(32, 3, 14)
    cache = TargetCache()
    sinkhorn_divergence(x, y, target_cache=cache, target_key=0)
    # Same key and schedule, different targets: the fingerprint rejects the entry.
    y_new = y.flip(0)
    v = sinkhorn_divergence(x, y_new, target_cache=cache, target_key=0)
    assert torch.equal(v, sinkhorn_divergence(x, y_new))
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 1)
    # A wider x changes the diameter, hence the schedule: a separate entry.
    sinkhorn_divergence(3 * x, y_new, target_cache=cache, target_key=0)
    assert (cache.hits, cache.misses, len(cache)) == (0, 3, 2)


def test_lru_eviction_and_loss_object_cache():
    cache = TargetCache(maxsize=2)
    for i in range(3):
        cache[i] = i
    assert list(cache) == [1, 2]
    loss = SinkhornLoss(diameter=math.sqrt(24))
    x, y = one_hot_cloud(32, 8, seed=16), one_hot_cloud(32, 8, seed=17)
    first = loss(x, y, target_key=5)
    second = loss(gaussian(32, 24, 18), y, target_key=5)  # fixed diameter: still a hit
    assert loss.cache.hits == 1 and torch.isfinite(second)
    assert torch.equal(loss(x, y, target_key=5), first)
    loss.clear_cache()
    assert len(loss.cache) == 0


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_pot_method_agrees_with_converged_geomloss():
    pytest.importorskip("ot")
    x, y = gaussian(48, 2, 19), gaussian(48, 2, 20, shift=0.7)
    ref_v, ref_g = geomloss_value_and_grad(x, y, scaling=0.99)
    xr = x.clone().requires_grad_()
    value = SinkhornLoss(method="pot")(xr, y)
    value.backward()
    assert value.item() == pytest.approx(ref_v.item(), rel=5e-3)
    cos = torch.nn.functional.cosine_similarity(xr.grad.flatten(), ref_g.flatten(), dim=0)
    assert cos.item() >= 0.98


def test_identical_clouds_give_zero():
    x = gaussian(40, 6, 21)
    assert abs(sinkhorn_divergence(x, x.clone()).item()) < 1e-12
    same = torch.ones(5, 3, dtype=F64)  # zero diameter: geomloss itself would divide by 0
    assert sinkhorn_divergence(same, same).item() == pytest.approx(0.0, abs=1e-12)


def test_hmm_floor_is_a_plain_nonnegative_float():
    y1, y2 = one_hot_cloud(64, 8, seed=22), one_hot_cloud(64, 8, seed=23)
    floor = hmm_floor(y1.requires_grad_(), y2)
    assert isinstance(floor, float) and floor > 0


def test_no_graph_without_grad():
    x, y = gaussian(10, 2, 24), gaussian(10, 2, 25)
    assert sinkhorn_divergence(x, y).grad_fn is None
    with torch.no_grad():
        assert sinkhorn_divergence(x.requires_grad_(), y).grad_fn is None


@pytest.mark.parametrize(
    "x,y,match",
    [
        (torch.zeros(4), torch.zeros(4, 2), "2-D"),
        (torch.zeros(2, 4, 2), torch.zeros(4, 2), "2-D"),
        (torch.zeros(4, 3), torch.zeros(4, 2), "same dimension D"),
        (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), "NaN"),
        (torch.zeros(3, 2), torch.tensor([[float("inf"), 0.0]]), "NaN or infinite"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2), "float32 or float64"),
        (torch.zeros(0, 2), torch.zeros(3, 2), "at least one point"),
        (torch.zeros(3, 2), torch.zeros(3, 2, dtype=F64), "dtype"),
        ([[0.0]], torch.zeros(1, 1), "torch.Tensor"),
    ],
)
def test_validation_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        sinkhorn_divergence(x, y)


def test_parameter_validation():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="blur"):
        sinkhorn_divergence(x, x, blur=0.0)
    with pytest.raises(ValueError, match="scaling"):
        sinkhorn_divergence(x, x, scaling=1.0)
    with pytest.raises(ValueError, match="block_size"):
        sinkhorn_divergence(x, x, block_size=0)
    with pytest.raises(ValueError, match="method"):
        SinkhornLoss(method="keops")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = gaussian(64, 5, 26), gaussian(48, 5, 27)
    v_cpu, g_cpu = ours_value_and_grad(x, y)
    v_gpu, g_gpu = ours_value_and_grad(x.cuda(), y.cuda())
    assert g_gpu.device.type == "cuda"
    assert_close_rel(v_gpu.cpu(), v_cpu, 1e-10)
    assert_close_rel(g_gpu.cpu(), g_cpu, 1e-10)


def test_unit_box_loss_makes_no_host_read_once_its_targets_are_known(host_reads):
    """Training's loss (unit box, no finiteness check) syncs only on a key's first call, with
    the log-domain updates and float32 GEMM a GPU takes (on the CPU, the absorbed updates check
    their range and the exact bfloat16 GEMM its clouds on the host, which costs nothing there)."""
    y = one_hot_cloud(48, 6, dtype=torch.float32, seed=21)
    logits = gaussian(48, 18, 22, dtype=torch.float32).reshape(48, 6, 3)
    x = torch.softmax(logits, -1).reshape(48, 18).requires_grad_()
    loss = SinkhornLoss(unit_box=True, check_finite=False, absorbed=False, cost_dtype=torch.float32)
    loss(x, y, target_key=("train", 0))
    first = len(host_reads.calls)
    value = loss(x, y, target_key=("train", 0))
    value.backward()
    assert first > 0 and host_reads.calls[first:] == []
    assert loss.cache.hits == 1
    # The unit box is the measured bounding box here, so the value is geomloss's.
    reference = sinkhorn_divergence(x.detach(), y)
    assert float(value.detach()) == pytest.approx(float(reference), rel=1e-5)


def test_unit_box_measures_when_the_targets_miss_a_corner():
    """A coordinate the targets never set to 1: the box is measured, the value unchanged."""
    y = one_hot_cloud(40, 5, dtype=torch.float32, seed=23)
    y[:, 0] = 0.0
    x = torch.softmax(gaussian(40, 15, 24, dtype=torch.float32) * 0.1, -1)
    loss = SinkhornLoss(unit_box=True)
    unit = loss(x, y, target_key=0)
    assert torch.equal(unit, sinkhorn_divergence(x, y))
    # the schedule (part of the cache key) starts at the measured box, not at sqrt(15)
    (cache_key,) = list(loss.cache)
    measured = float(
        (torch.maximum(x.amax(0), y.amax(0)) - torch.minimum(x.amin(0), y.amin(0))).norm()
    )
    assert cache_key[1][0] == pytest.approx(measured**2) and measured**2 < 14.5


def test_target_record_sees_an_in_place_change():
    """The same tensor object edited in place is new content: the cached potential is dropped."""
    x, y = one_hot_cloud(32, 6, seed=25), one_hot_cloud(32, 6, seed=26)
    loss = SinkhornLoss(diameter=math.sqrt(18))
    loss(x, y, target_key=1)
    y[0] = y[1]
    again = loss(x, y, target_key=1)
    assert loss.cache.hits == 0 and torch.equal(
        again, sinkhorn_divergence(x, y, diameter=math.sqrt(18))
    )


def test_check_finite_off_gives_nan_instead_of_an_error():
    x, y = gaussian(16, 3, 27), gaussian(16, 3, 28)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sinkhorn_divergence(x, y)
    assert math.isnan(float(sinkhorn_divergence(x, y, diameter=3.0, check_finite=False)))


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="torch.compile on the CPU needs a C++ compiler",
)
def test_compiled_log_sum_exps_give_the_eager_loss():
    """compile=True swaps the eager blocks for a compiled kernel: the same value and gradient."""
    x = torch.softmax(gaussian(96, 24, 29, dtype=torch.float32).reshape(96, 8, 3), -1)
    x = x.reshape(96, 24)
    y = one_hot_cloud(80, 8, dtype=torch.float32, seed=30)
    eager_value, eager_grad = ours_value_and_grad(x, y)
    value, grad = ours_value_and_grad(x, y, compiled=True)
    assert float(value) == pytest.approx(float(eager_value), rel=1e-5)
    assert_close_rel(grad, eager_grad, 1e-4)


def test_blocks_on_worker_threads_give_the_single_thread_loss(monkeypatch):
    """Several intra-op threads: whole blocks go to single-threaded workers (robust on a shared
    machine); the value and gradient are those of one thread doing every block."""
    import threading

    import hmmrnn.sinkhorn_blocks as blocks_module

    chosen: list[int] = []
    original = blocks_module.block_threads
    monkeypatch.setattr(
        blocks_module, "block_threads", lambda *a: chosen.append(original(*a)) or chosen[-1]
    )
    x = torch.softmax(gaussian(120, 30, 31, dtype=torch.float32).reshape(120, 10, 3), -1)
    x = x.reshape(120, 30)
    y = one_hot_cloud(100, 10, dtype=torch.float32, seed=32)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ours_value_and_grad(x, y, block_size=7)
        torch.set_num_threads(2)
        two = ours_value_and_grad(x, y, block_size=7)
        workers = [t for t in threading.enumerate() if t.name.startswith("hmmrnn-loss")]
    finally:
        torch.set_num_threads(previous)
    assert len(workers) >= 2 and set(chosen) == {1, 2}
    assert float(two[0]) == pytest.approx(float(one[0]), rel=1e-6)
    assert_close_rel(two[1], one[1], 1e-6)
