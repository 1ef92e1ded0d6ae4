"""The evaluation's native float64 passes (hmmrnn.match_passes) against numpy's, and the study
kernel's live pattern against the dense sweep it stands in for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmmrnn import evaluate as ev
from hmmrnn import match_passes, sinkhorn_kernel
from hmmrnn.config import ExperimentConfig

needs_kernel = pytest.mark.skipif(
    sinkhorn_kernel.kernel() is None, reason="no C compiler: numpy's passes are used"
)


@pytest.fixture
def numpy_only(monkeypatch):
    """Run a call with the kernel turned off: numpy's passes."""

    def run(fn, *args):
        monkeypatch.setenv("HMMRNN_NATIVE", "0")
        try:
            return fn(*args)
        finally:
            monkeypatch.delenv("HMMRNN_NATIVE")

    return run


def _problem(n: int, m: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    cost = np.sqrt(2.0 * rng.integers(0, 60, (n, m)))
    return cost, rng.normal(size=m) * spread, rng.normal(size=n) * spread, rng


@needs_kernel
@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (600, 37), (513, 260)])
@pytest.mark.parametrize("spread", [0.5, 40.0])  # 40: terms 800 apart in log, beyond exp's range
def test_log_sum_exps_equal_numpys(shape, spread, numpy_only):
    n, m = shape
    cost, h_cols, h_rows, rng = _problem(n, m, spread)
    w_cols, w_rows = np.log(rng.uniform(0.5, 3, m)), np.log(rng.uniform(0.5, 3, n))
    eps = 0.05
    rows = ev._soft_min_rows(cost, h_cols, w_cols, eps)
    cols = ev._soft_min_cols(cost, h_rows, w_rows, eps)
    np.testing.assert_allclose(rows, numpy_only(ev._soft_min_rows, cost, h_cols, w_cols, eps),
                               rtol=1e-13, atol=1e-11)  # fmt: skip
    np.testing.assert_allclose(cols, numpy_only(ev._soft_min_cols, cost, h_rows, w_rows, eps),
                               rtol=1e-13, atol=1e-11)  # fmt: skip


@needs_kernel
def test_column_passes_do_not_depend_on_the_thread_count():
    cost, _, h_rows, _ = _problem(1100, 90, 3.0, seed=1)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = match_passes.soft_min_cols(cost, h_rows, np.zeros(1100), 0.1)
        torch.set_num_threads(2)
        two = match_passes.soft_min_cols(cost, h_rows, np.zeros(1100), 0.1)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(one, two)


@needs_kernel
def test_exponentials_to_double_precision_and_over_the_range():
    """log(1 + e^d) for d over [-40, 0] (the second term's exponential, to about a double ulp);
    the absorbed kernel's e^t over float32's range and past it (0 below, inf above, NaN kept)."""
    d = np.linspace(-40.0, 0.0, 20_001)
    cost = np.stack([np.zeros_like(d), -d], axis=1)  # row i: terms 0 and d_i
    got = match_passes.soft_min_rows(cost, np.zeros(2), np.zeros(2), 1.0)
    np.testing.assert_allclose(got, np.logaddexp(0.0, d), rtol=0, atol=4e-16)
    t = np.linspace(-1100.0, 1100.0, 40_001)
    out = np.empty((1, t.size), dtype=np.float32)
    match_passes.gibbs_kernel(np.zeros((1, t.size)), np.zeros(1), t, 1.0, out)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out[0], np.exp(t).astype(np.float32))
    nan = np.empty((1, 1), dtype=np.float32)
    match_passes.gibbs_kernel(np.zeros((1, 1)), np.zeros(1), np.array([np.nan]), 1.0, nan)
    assert np.isnan(nan[0, 0])


@needs_kernel
def test_row_argmax_is_numpys_first_best():
    cost, g, _, _ = _problem(700, 50, 1.0, seed=2)
    cost[:, 7] = cost[:, 3]  # ties: the first column wins
    g[7] = g[3]
    best = match_passes.row_argmax(cost, g)
    np.testing.assert_array_equal(best, (g[None, :] - cost).argmax(axis=1))
    assert (best != 7).all()


def test_arrays_the_kernel_cannot_read_are_left_to_numpy():
    cost = np.zeros((4, 6))
    assert match_passes.soft_min_rows(cost[:, ::2], np.zeros(3), np.zeros(3), 1.0) is None
    assert (
        match_passes.soft_min_cols(cost.astype(np.float32), np.zeros(4), np.zeros(4), 1.0) is None
    )
    out = np.empty((4, 6))  # a float64 kernel (the float64 study kernel of a test below)
    assert match_passes.gibbs_kernel(cost, np.zeros(4), np.zeros(6), 1.0, out) is None
    assert match_passes.live_pattern(out, np.ones(6), np.ones(4), np.ones(6), np.ones(4)) is None


def test_the_environment_switch_leaves_every_pass_to_numpy(monkeypatch):
    monkeypatch.setenv("HMMRNN_NATIVE", "0")
    cost = np.zeros((3, 3))
    assert match_passes.soft_min_rows(cost, np.zeros(3), np.zeros(3), 1.0) is None
    assert match_passes.row_argmax(cost, np.zeros(3)) is None


# --- the live pattern ----------------------------------------------------------------------------


def _settled_kernel(n=300, m=260, eps=0.1, seed=3):
    """A float32 study kernel and the input and output of one dense sweep over it."""
    rng = np.random.default_rng(seed)
    cost = np.sqrt(2.0 * rng.integers(0, 40, (n, m)))
    f, g = rng.normal(size=n) * 0.2, rng.normal(size=m) * 0.2
    kernel = np.exp((f[:, None] + g[None, :] - cost) / eps).astype(np.float32)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    alpha, beta = ev._kernel_sweep(kernel, b, a)
    return kernel, b, alpha, beta, a


def _exact_sweep(kernel, v, a):
    k = kernel.astype(np.float64)
    alpha = 1.0 / (k @ v)
    return alpha, 1.0 / ((alpha * a) @ k)


@needs_kernel
def test_a_sweep_over_the_live_pattern_equals_the_dense_sweep():
    kernel, v, alpha, beta, a = _settled_kernel()
    pattern = match_passes.live_pattern(kernel, v, alpha, beta, a)
    assert pattern is not None and 0 < pattern.values.size < kernel.size / 4
    k = kernel.astype(np.float64)
    terms = k * v[None, :]
    kept = np.zeros(kernel.shape, dtype=bool)
    for i in range(kernel.shape[0]):
        kept[i, pattern.indices[pattern.indptr[i] : pattern.indptr[i + 1]]] = True
    # every term at least LIVE_CUT of its row's sum (or its column's) is kept; the rest summed
    row_share = terms / terms.sum(axis=1, keepdims=True)
    col_terms = k * (alpha * a)[:, None]
    col_share = col_terms / col_terms.sum(axis=0, keepdims=True)
    live = (row_share >= match_passes.LIVE_CUT * 1.001) | (
        col_share >= match_passes.LIVE_CUT * 1.001
    )
    assert kept[live].all()
    np.testing.assert_allclose(pattern.row_dropped, np.where(kept, 0, terms).sum(1), rtol=1e-9)
    np.testing.assert_allclose(pattern.col_dropped, np.where(kept, 0, col_terms).sum(0),
                               rtol=1e-9, atol=1e-300)  # fmt: skip
    v2 = v * np.exp(np.random.default_rng(4).normal(size=v.size) * 0.3)  # the scalings move
    got = match_passes.sparse_sweep(pattern, v2, a)
    assert got is not None
    for ours, exact in zip(got, _exact_sweep(kernel, v2, a), strict=True):
        np.testing.assert_allclose(ours, exact, rtol=2 * match_passes.LIVE_TOL)


@needs_kernel
def test_a_sweep_that_could_miss_too_much_is_refused():
    """Once the scalings have grown so far that the left-out terms could reach LIVE_TOL of a sum,
    the sweep over the pattern answers None (the caller sweeps dense)."""
    kernel, v, alpha, beta, a = _settled_kernel()
    pattern = match_passes.live_pattern(kernel, v, alpha, beta, a)
    worst = int(np.argmax(pattern.row_dropped * alpha))
    row = pattern.indices[pattern.indptr[worst] : pattern.indptr[worst + 1]]
    left_out = np.setdiff1d(np.arange(kernel.shape[1]), row)
    biggest = left_out[np.argmax(kernel[worst, left_out] * v[left_out])]
    grown = v.copy()  # one left-out column's scaling grows enough to matter
    grown[biggest] *= 2 * match_passes.LIVE_TOL / (pattern.row_dropped[worst] * alpha[worst])
    assert match_passes.sparse_sweep(pattern, v, a) is not None
    assert match_passes.sparse_sweep(pattern, grown, a) is None


@needs_kernel
def test_a_kernel_mostly_live_keeps_no_pattern():
    kernel, v, alpha, beta, a = _settled_kernel(eps=50.0)  # every entry close to every other
    assert match_passes.live_pattern(kernel, v, alpha, beta, a) is None


@needs_kernel
def test_the_study_matching_over_live_patterns_keeps_its_partners(monkeypatch, numpy_only):
    """On HMM samples at the study's epsilon the sweeps run over live patterns, recut when the
    scalings have grown, and the pairing is numpy's dense float32 one."""
    calls = {"sparse": 0, "refused": 0, "cuts": 0}
    sweep, cut = match_passes.sparse_sweep, match_passes.live_pattern

    def counted_sweep(*args):
        done = sweep(*args)
        calls["sparse"] += 1
        calls["refused"] += done is None
        return done

    def counted_cut(*args):
        calls["cuts"] += 1
        return cut(*args)

    monkeypatch.setattr(match_passes, "sparse_sweep", counted_sweep)
    monkeypatch.setattr(match_passes, "live_pattern", counted_cut)
    hmm = ExperimentConfig.from_preset("Two").build_hmm()
    rng = np.random.default_rng(8)
    ref, other = (hmm.sample(1500, 100, rng).outputs for _ in range(2))  # 10% live
    ours = ev.matched_distances(other, ref, 3, method="study")
    assert calls["sparse"] > 50 and calls["cuts"] >= 1
    dense = numpy_only(ev.matched_distances, other, ref, 3, "study")
    np.testing.assert_array_equal(ours.partners, dense.partners)


class _FakePattern:
    pass


def test_sweeps_cut_after_settling_recut_and_back_off(monkeypatch):
    """The policy alone: the first cut after _LIVE_AFTER dense sweeps; a refusal after a long
    run recuts at once, one soon after a cut doubles the wait."""
    events: list[tuple[str, int]] = []
    refuse_at = {12, 40}
    count = {"n": 0}

    def fake_cut(kernel, v, alpha, beta, a):
        events.append(("cut", count["n"]))
        return _FakePattern()

    def fake_sparse(pattern, v, a):
        events.append(("sparse", count["n"]))
        return None if count["n"] in refuse_at else (np.ones(2), np.ones(2))

    def fake_dense(kernel, v, a):
        events.append(("dense", count["n"]))
        return np.ones(2), np.ones(2)

    monkeypatch.setattr(match_passes, "live_pattern", fake_cut)
    monkeypatch.setattr(match_passes, "sparse_sweep", fake_sparse)
    monkeypatch.setattr(ev, "_kernel_sweep", fake_dense)
    sweeps = ev._Sweeps(np.ones((2, 2), dtype=np.float32))
    for n in range(1, 61):
        count["n"] = n
        sweeps.sweep(np.ones(2), np.ones(2))
    cuts = [n for kind, n in events if kind == "cut"]
    dense = [n for kind, n in events if kind == "dense"]
    after = ev._LIVE_AFTER
    # cut at 8; refused at 12 (4 after the cut): dense, wait doubled to 16 -> cut at 28;
    # refused at 40 (12 after the cut, > 8): dense and cut again at once
    assert cuts == [after, 12 + 2 * after, 40]
    assert dense == [*range(1, after + 1), *range(12, 12 + 2 * after + 1), 40]


# --- the exact assignment's passes ---------------------------------------------------------------


def _assignment_state(n=400, seed=9):
    from hmmrnn import assignment as asg

    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, (n, 30)), rng.integers(0, 3, (n, 30))
    cost = ev.distance_matrix(a, b, 3)
    scale = asg._integer_scale(n, float(cost.max()))
    guess = rng.normal(size=n) * 0.3
    blocks = ev._row_blocks(n, n, 8 * 40)  # small blocks: caps apply block by block
    return asg, cost, scale, guess, blocks


@needs_kernel
@pytest.mark.parametrize("per_row", [256, 3])  # 3: most blocks are cut to their smallest pairs
def test_assignment_passes_give_numpys_pairs(per_row, monkeypatch, numpy_only):
    asg, cost, scale, guess, blocks = _assignment_state()
    monkeypatch.setattr(asg, "_FIRST_PER_ROW", per_row)
    monkeypatch.setattr(asg, "_NEW_PER_ROW", per_row)
    keys, v = asg._candidates(cost, guess, 0.8, blocks, scale)
    keys_np, v_np = numpy_only(asg._candidates, cost, guess, 0.8, blocks, scale)
    np.testing.assert_array_equal(keys, keys_np)
    np.testing.assert_array_equal(v, v_np)
    # duals that many pairs violate (and a NaN, which must never pass the certificate)
    n = cost.shape[0]
    u = np.rint(np.random.default_rng(1).normal(size=n) * scale)
    v_bad = np.rint(v - scale * 0.5)
    v_bad[5] = np.nan
    bad = asg._violations(cost, u, v_bad, blocks, scale)
    bad_np = numpy_only(asg._violations, cost, u, v_bad, blocks, scale)
    np.testing.assert_array_equal(np.sort(bad), np.sort(bad_np))
    assert bad.size > 0 and np.any(bad % n == 5)


@needs_kernel
def test_the_canonical_choice_is_numpys(numpy_only):
    asg, cost, scale, guess, blocks = _assignment_state(n=300, seed=10)
    partners = exact = asg.exact_assignment(cost, guess, 0.8, blocks)
    n = cost.shape[0]
    rounded = np.rint(cost * scale)
    # optimal duals from the certified optimum: the column duals of the tight pairs' matching
    keys = np.arange(n) * n + partners
    v = asg._column_duals(cost, np.sort(np.concatenate([keys, np.arange(n * n)])), partners,
                          np.zeros(n), scale)  # fmt: skip
    u = rounded[np.arange(n), partners] - v[partners]
    assert (rounded - u[:, None] - v[None, :] >= 0).all()
    ours = asg._canonical(cost, u, v, blocks, scale, partners)
    np.testing.assert_array_equal(ours, numpy_only(asg._canonical, cost, u, v, blocks, scale,
                                                   partners))  # fmt: skip
    assert rounded[np.arange(n), ours].sum() == rounded[np.arange(n), exact].sum()


@needs_kernel
@pytest.mark.parametrize("shape", [(1, 5), (7, 33), (515, 260)])  # rows past a multiple of 4
def test_the_dense_sweep_equals_the_exact_products(shape, numpy_only):
    n, m = shape
    rng = np.random.default_rng(11)
    kernel = rng.exponential(size=(n, m)).astype(np.float32)
    v, a = rng.uniform(0.5, 2, m), np.full(n, 1 / n)
    ours = match_passes.dense_sweep(kernel, v, a)
    for got, exact in zip(ours, _exact_sweep(kernel, v, a), strict=True):
        np.testing.assert_allclose(got, exact, rtol=2e-6)
    for got, eager in zip(ours, numpy_only(ev._kernel_sweep, kernel, v, a), strict=True):
        np.testing.assert_allclose(got, eager, rtol=4e-6)


@needs_kernel
def test_zero_weights_add_nothing_to_a_log_sum_exp(numpy_only):
    """log weights of -inf (a zero weight) in a column slab's first rows: numpy's finite sums, not
    the NaN that -inf - -inf would leave."""
    rng = np.random.default_rng(12)
    cost = rng.random((300, 5))
    log_w = np.zeros(300)
    log_w[:16] = log_w[256:280] = -np.inf  # the first group of both slabs
    ours = match_passes.soft_min_cols(cost, np.zeros(300), log_w, 0.1)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, numpy_only(ev._soft_min_cols, cost, np.zeros(300), log_w, 0.1),
                               rtol=1e-13)  # fmt: skip
