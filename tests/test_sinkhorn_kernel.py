"""The absorbed update's one-pass C kernel against the eager torch passes it replaces."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from hmmrnn import sinkhorn_blocks, sinkhorn_cost, sinkhorn_kernel
from hmmrnn.loss import sinkhorn_divergence

NATIVE = sinkhorn_kernel.kernel()
needs_kernel = pytest.mark.skipif(NATIVE is None, reason="no C compiler: the eager path is used")


def _reference(part: torch.Tensor, fs: torch.Tensor, gs: torch.Tensor, scale: float):
    """The eager form in float64 after a float32 exponent (whose rounding, up to |t| 2**-24, both
    forms share: the kernel may round it differently, hence the tests' 2e-5 for |t| <= 120)."""
    t = torch.add(gs, part.float(), alpha=-scale) + fs[:, None]
    z = torch.exp2(t.double())
    return z, z.sum(1), z.sum(0)


def _run(part, fs, gs, scale, want_cols=True, want_z=True):
    n, m = part.shape
    rows = torch.full((n,), -1.0)
    cols = torch.full((m,), -1.0) if want_cols else None  # overwritten, not added to
    z = torch.full((n, m), -1.0) if want_z else None
    sinkhorn_kernel.slab(NATIVE, part, fs, gs, scale, rows, cols, z)
    return z, rows, cols


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_slab_matches_exp2_sums(dtype):
    gen = torch.Generator().manual_seed(0)
    full = torch.randint(0, 31, (37, 70), generator=gen).to(dtype)
    part = full[:, 3:]  # a row stride wider than the slab, as a triangle's slab has
    fs = torch.randn(37, generator=gen) * 20
    gs = torch.randn(67, generator=gen) * 20
    z, rows, cols = _run(part, fs, gs, 1.7)
    ref_z, ref_rows, ref_cols = _reference(part, fs, gs, 1.7)
    kept = ref_z > 2.0**-120  # the kernel flushes what is below 2**-125
    assert torch.allclose(z.double()[kept], ref_z[kept], rtol=2e-5, atol=0)
    assert (z.double()[~kept] <= 2.0**-119).all()
    assert torch.allclose(rows.double(), ref_rows, rtol=2e-5, atol=1e-30)
    assert torch.allclose(cols.double(), ref_cols, rtol=2e-5, atol=1e-30)
    small = torch.rand(37, 67, generator=gen)  # exponents near 0: the exp2 itself, to 3e-7
    z, _, _ = _run(small, torch.zeros(37), torch.zeros(67), 1.0)
    assert torch.allclose(z.double(), _reference(small, torch.zeros(37), torch.zeros(67), 1.0)[0],
                          rtol=3e-7, atol=0)  # fmt: skip


@needs_kernel
def test_slab_outputs_are_optional():
    part = torch.rand(5, 33) * 10
    fs, gs = torch.randn(5), torch.randn(33)
    _, rows, _ = _run(part, fs, gs, 2.0, want_cols=False, want_z=False)
    assert torch.allclose(rows.double(), _reference(part, fs, gs, 2.0)[1], rtol=1e-6)


@needs_kernel
def test_slab_range_edges_are_what_eager_exp2_gives():
    """Under 2**-125: zero; over 2**128: inf; NaN stays NaN (the range check relies on it)."""
    part = torch.zeros(1, 6)
    gs = torch.tensor([-200.0, -126.0, 0.0, 127.0, 300.0, float("nan")])
    z, rows, _ = _run(part, torch.zeros(1), gs, 1.0)
    assert z[0, 0] == 0 and z[0, 1] == 0
    assert z[0, 2] == 1.0
    assert z[0, 3] == pytest.approx(2.0**127, rel=1e-6)
    assert z[0, 4] == float("inf")
    assert torch.isnan(z[0, 5]) and torch.isnan(rows[0])


def _bary_run(native, dtype, dim, gen):
    """One barycentre slab whose rows run from no live entry to all live: the kernel's bary rows
    (sparse and dense together, divided by the row sums), how many it left dense, and the
    float64 reference."""
    n, m = 48, 150
    part = torch.randint(0, 41, (n, m), generator=gen).to(dtype)
    # row i lives where 6 c < fs_i + 125: from none (fs -130) to all (fs 120, no overflow)
    fs = torch.linspace(-130.0, 120.0, n)[torch.randperm(n, generator=gen)]
    gs = torch.rand(m, generator=gen) - 0.5
    points = torch.randn(m, dim, generator=gen)
    rows, cols = torch.empty(n), torch.empty(m)
    z, bary = torch.full((n, m), -1.0), torch.full((n, dim), -1.0)
    picks = torch.full((n,), -1, dtype=torch.int64)
    padded = sinkhorn_kernel.padded_points(points)
    k = sinkhorn_kernel.slab(native, part, fs, gs, 6.0, rows, cols, z, (padded, bary, picks))
    bary[picks[:k]] = z[:k] @ points
    ref_z, ref_rows, ref_cols = _reference(part, fs, gs, 6.0)
    live = ref_rows > 2.0**-90  # where the flushed entries cannot matter (the range check's)
    ref_bary = (ref_z @ points.double())[live] / ref_rows[live, None]
    assert torch.allclose(cols.double(), ref_cols, rtol=2e-5, atol=1e-30)
    return (bary.double()[live] / rows.double()[live, None]), k, ref_bary


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dim", [1, 16, 90, 128, 130, 300])
def test_bary_slab_over_live_entries_equals_the_dense_product(dtype, dim):
    """Rows with few live entries are summed over those alone, the others left to the GEMM; both
    give z @ points. Points wider than 128 floats are summed 128 at a time."""
    bary, k, ref = _bary_run(NATIVE, dtype, dim, torch.Generator().manual_seed(5))
    assert torch.allclose(bary, ref, rtol=2e-5, atol=2e-5)
    assert 0 < k < 48


@needs_kernel
def test_portable_build_sums_live_entries_alike(monkeypatch, tmp_path):
    """The kernel built without -march (no AVX-512 index compaction) gives the same sums."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sinkhorn_kernel, "_TARGETS", ([],))
    sinkhorn_kernel._load.cache_clear()
    try:
        portable = sinkhorn_kernel.kernel()
    finally:
        sinkhorn_kernel._load.cache_clear()
    assert portable is not None
    for dim in (5, 90, 200):
        bary, k, ref = _bary_run(portable, torch.bfloat16, dim, torch.Generator().manual_seed(6))
        assert torch.allclose(bary, ref, rtol=2e-5, atol=2e-5) and 0 < k < 48


def _eager(monkeypatch):
    monkeypatch.setattr(sinkhorn_kernel, "kernel", lambda: None)


def _nearby_sequences(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot sequences (3 symbols, 30 steps) x of 300 and y of 260, each x within a few
    symbols of some y: costs are small integers, as in training."""
    base = torch.randint(0, 3, (260, 30), generator=gen)

    def near(seqs: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(seqs.shape, generator=gen) < 0.02
        seqs = torch.where(flip, torch.randint(0, 3, seqs.shape, generator=gen), seqs)
        return torch.nn.functional.one_hot(seqs, 3).float().reshape(len(seqs), -1)

    return near(torch.cat([base, base[:40]])), near(base)


@needs_kernel
@pytest.mark.parametrize(
    "case, sparse",
    [("cross", False), ("triangle", False), ("self-bary", False), ("cross", True),
     ("self-bary", True)],
)  # fmt: skip
def test_absorbed_update_equals_its_eager_form(monkeypatch, case, sparse):
    """Dense: every entry lives (the barycentres are dense GEMMs). Sparse: one-hot sequences at
    a temperature where most entries flush to zero, as at a loss's last ones; the kernel then
    sums most rows' live entries alone."""
    gen = torch.Generator().manual_seed(1)
    eps = 0.1 if sparse else 0.3
    if sparse:  # one-hot sequences, y near x: every row keeps a few live entries
        x, y = _nearby_sequences(gen)
    else:
        x = torch.rand(300, 8, generator=gen)
        y = torch.rand(260, 8, generator=gen)
    y = x if case != "cross" else y
    cost = sinkhorn_cost.half_sq_cost(x, y)
    f = torch.randn(x.shape[0], generator=gen) * 0.05
    g = None if case != "cross" else torch.randn(y.shape[0], generator=gen) * 0.05
    points = y if case != "triangle" else None
    dense = []
    slab = sinkhorn_kernel.slab

    def counted(*args):  # the rows each barycentre slab left to the dense GEMM
        k = slab(*args)
        if k is not None:
            dense.append(k)
        return k

    monkeypatch.setattr(sinkhorn_kernel, "slab", counted)
    fast = sinkhorn_blocks.absorbed_update(eps, cost, f, g, points=points, block=64)
    if points is not None:  # which rows the kernel summed sparsely
        assert sum(dense) < 150 if sparse else sum(dense) == 300
    _eager(monkeypatch)
    slow = sinkhorn_blocks.absorbed_update(eps, cost, f, g, points=points, block=64)
    assert fast is not None and slow is not None
    assert torch.allclose(fast.f, slow.f, rtol=0, atol=1e-6)
    if g is not None:
        assert torch.allclose(fast.g, slow.g, rtol=0, atol=1e-6)
    if points is not None:
        assert torch.allclose(fast.bary, slow.bary, rtol=0, atol=1e-6)


@needs_kernel
def test_absorbed_update_reads_a_packed_cost(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    u = (torch.rand(200, 40, generator=gen) < 0.3).float()
    v = (torch.rand(150, 40, generator=gen) < 0.3).float()
    cost = sinkhorn_cost.half_sq_cost(u, v)
    f, g = torch.zeros(200), torch.zeros(150)
    full = sinkhorn_blocks.absorbed_update(4.0, cost, f, g, points=v)
    packed = sinkhorn_blocks.absorbed_update(4.0, cost.bfloat16(), f, g, points=v)
    assert torch.equal(cost.bfloat16().float(), cost)  # exact on binary clouds
    assert torch.allclose(full.f, packed.f, atol=1e-6) and torch.allclose(
        full.g, packed.g, atol=1e-6
    )
    assert torch.allclose(full.bary, packed.bary, atol=1e-6)
    _eager(monkeypatch)  # the eager passes read a packed cost too (the log-domain fallback does)
    eager = sinkhorn_blocks.absorbed_update(4.0, cost.bfloat16(), f, g, points=v)
    assert torch.allclose(full.f, eager.f, atol=1e-6)


def test_packed_cost_matrix_is_exact_or_not_packed(monkeypatch):
    monkeypatch.setattr(sinkhorn_cost, "_fast_bfloat16", lambda: True)
    gen = torch.Generator().manual_seed(3)
    u = torch.nn.functional.one_hot(torch.randint(0, 3, (64, 20), generator=gen), 3)
    u = u.float().reshape(64, -1)
    packed = sinkhorn_cost.cost_matrix(u, u, None, sinkhorn_cost.CostWorkspace(), packed=True)
    assert packed.dtype == torch.bfloat16
    assert torch.equal(packed.float(), sinkhorn_cost.half_sq_cost(u, u))
    monkeypatch.setattr(
        sinkhorn_cost, "_fast_bfloat16", lambda: False
    )  # the timing went the other way
    again = sinkhorn_cost.cost_matrix(u, u, None, None, packed=True)
    assert again.dtype == torch.bfloat16 and torch.equal(again, packed)
    soft = u * 0.9  # not binary: never packed
    assert sinkhorn_cost.cost_matrix(soft, u, None, None, packed=True).dtype == torch.float32
    asked = sinkhorn_cost.cost_matrix(u, u, torch.bfloat16, None, packed=True)
    assert asked.dtype == torch.float32  # a requested precision is the GEMM's, not the storage's


@needs_kernel
def test_loss_is_the_same_with_and_without_the_kernel(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    sym = torch.randint(0, 3, (2, 256, 12), generator=gen)
    x, y = (torch.nn.functional.one_hot(s, 3).float().reshape(256, -1) for s in sym)
    monkeypatch.setattr(sinkhorn_cost, "_fast_bfloat16", lambda: True)  # packed where exact
    fast = sinkhorn_divergence(x, y, blur=0.2)
    _eager(monkeypatch)
    slow = sinkhorn_divergence(x, y, blur=0.2)
    assert float(fast) == pytest.approx(float(slow), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("value, on", [("0", False), ("off", False), ("NO", False), ("1", True)])
def test_environment_turns_the_kernel_off(monkeypatch, value, on):
    monkeypatch.setenv("HMMRNN_NATIVE", value)
    assert sinkhorn_kernel.enabled() is on
    if not on:
        assert sinkhorn_kernel.kernel() is None


def test_no_compiler_means_the_eager_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sinkhorn_kernel, "_compiler", lambda: None)
    sinkhorn_kernel._load.cache_clear()
    try:
        assert sinkhorn_kernel.kernel() is None
    finally:
        sinkhorn_kernel._load.cache_clear()


def test_failed_build_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sinkhorn_kernel, "_compiler", lambda: "/bin/false")
    sinkhorn_kernel._load.cache_clear()
    try:
        assert sinkhorn_kernel.kernel() is None
    finally:
        sinkhorn_kernel._load.cache_clear()
    assert list((tmp_path / "hmmrnn" / "kernels").iterdir()) == []


@needs_kernel
def test_build_is_cached_with_normal_permissions(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sinkhorn_kernel._load.cache_clear()
    try:
        assert sinkhorn_kernel.kernel() is not None
        built = list((tmp_path / "hmmrnn" / "kernels").iterdir())
        assert len(built) == 1 and built[0].suffix == ".so"
        assert stat.S_IMODE(os.stat(built[0]).st_mode) == 0o644
        inode = built[0].stat().st_ino  # a rebuild would replace the file (os.replace)
        sinkhorn_kernel._load.cache_clear()
        assert sinkhorn_kernel.kernel() is not None  # loaded again, not rebuilt
        assert built[0].stat().st_ino == inode
    finally:
        sinkhorn_kernel._load.cache_clear()


@needs_kernel
def test_unused_builds_are_pruned_and_loads_keep_theirs(monkeypatch, tmp_path):
    """A new build removes cached libraries no process has loaded for STALE_DAYS; loading a
    cached build marks it as used."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernels = tmp_path / "hmmrnn" / "kernels"
    kernels.mkdir(parents=True)
    stale, recent = kernels / "absorbed-0000000000000000.so", kernels / "absorbed-1111.so"
    stale.write_bytes(b"old"), recent.write_bytes(b"in use elsewhere")
    month = (sinkhorn_kernel.STALE_DAYS + 1) * 86400
    os.utime(stale, (stale.stat().st_atime - month,) * 2)
    sinkhorn_kernel._load.cache_clear()
    try:
        assert sinkhorn_kernel.kernel() is not None
        built = [f for f in kernels.iterdir() if f not in (stale, recent)]
        assert not stale.exists() and recent.exists() and len(built) == 1
        old = built[0].stat().st_mtime - month
        os.utime(built[0], (old, old))
        sinkhorn_kernel._load.cache_clear()
        assert sinkhorn_kernel.kernel() is not None  # loaded from the cache: touched
        assert built[0].stat().st_mtime > old + month / 2
    finally:
        sinkhorn_kernel._load.cache_clear()
