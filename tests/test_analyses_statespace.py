"""State-space analyses on hand-built networks with known answers, plus registry behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import study_state, write_study_model

from hmmrnn.analyses import fixedpoints as fp
from hmmrnn.analyses import pca as pca_mod
from hmmrnn.analyses import registry
from hmmrnn.analyses import statespace as ss
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.cancel import Cancelled, CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.rnn import HMMRNN
from hmmrnn.tree import load_model

MINE = ("pca", "fixed-points", "trajectories", "variance-contours", "readout-alignment")
SMALL = {
    "pca": {"steps": 300},
    "fixed-points": {"n_starts": 32, "iters": 100, "pca_steps": 200},
    "trajectories": {"n_starts": 10, "autonomous_steps": 30, "driven_steps": 40, "pca_steps": 200},
    "variance-contours": {"noise_stds": [0.5, 1.0, 2.0], "steps": 400, "grid": 40},
    "readout-alignment": {"steps": 300},
}
RAY = torch.tensor([1.0, 2.0, 1.0])


def run_analysis(*args, **kwargs):
    """The registry's run, for the result alone."""
    return registry.run_analysis(*args, **kwargs).result


def planted(eigs: tuple[float, float, float], hidden: int = 6) -> HMMRNN:
    """Units 0-2 form a block with eigenvalues `eigs` and the positive eigenvector RAY for eigs[0];
    the other units are inhibited by the block. With eigs[0] = 1 every c * RAY is a fixed point and
    the Jacobian there has spectrum eigs + zeros."""
    g = torch.Generator().manual_seed(1)
    basis = torch.stack([RAY, torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, -1.0])], 1)
    block = basis @ torch.diag(torch.tensor(eigs)) @ torch.linalg.inv(basis)
    w = torch.zeros(hidden, hidden)
    w[:3, :3] = block
    w[:3, 3:] = 0.2 * torch.randn(3, hidden - 3, generator=g)
    w[3:, :3] = -torch.rand(hidden - 3, 3, generator=g) - 0.1
    w[3:, 3:] = 0.3 * torch.randn(hidden - 3, hidden - 3, generator=g)
    state = {
        "rnn.weight_ih_l0": 0.3 * torch.randn(hidden, 2, generator=g),
        "rnn.weight_hh_l0": w,
        "fc.weight": torch.randn(3, hidden, generator=g),
    }
    return HMMRNN.from_state_dict(state)


def tiny(seed: int = 0, hidden: int = 16) -> HMMRNN:
    return HMMRNN.from_state_dict(study_state(4, hidden, 3, seed))


def cosine(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def loaded(tmp_path):
    write_study_model(tmp_path / "m", study_state(4, 16, 3, 0))
    return load_model(tmp_path / "m")


@pytest.fixture
def cache(tmp_path):
    c = ResultCache(tmp_path / "cache")
    set_cache(c)
    yield c
    set_cache(None)


# --- fixed points ----------------------------------------------------------------------------------


def test_planted_saddle_ray_found_and_classified():
    r = fp.find_fixed_points(planted((1.0, 1.5, 0.3)), n_starts=64, iters=300, pca_steps=0)
    assert np.allclose(r.points[0], 0) and r.q[0] == 0  # the origin is always reported first
    nonzero = [p for p in range(1, len(r.points)) if r.is_fixed[p]]
    assert len(nonzero) == 1
    p = nonzero[0]
    assert cosine(r.points[p], np.r_[RAY, 0, 0, 0]) > 0.9999
    assert r.q[p] < 1e-6 and r.members[p] > 0
    assert np.allclose(np.abs(r.eigenvalues[p]), [1.5, 1.0, 0.3, 0, 0, 0], atol=1e-4)
    assert (r.n_unstable[p], r.n_marginal[p], r.kinds[p]) == (1, 1, "saddle")


def test_planted_line_attractor_is_marginal_and_autonomous_runs_stop_on_it():
    model = planted((1.0, 0.5, 0.2))
    r = fp.find_fixed_points(model, n_starts=64, iters=300, pca_steps=0)
    assert r.kinds[1:] == ["marginal"] and r.is_fixed[1]
    assert cosine(r.points[1][:3], RAY) > 0.9999
    assert abs(r.origin_growth - 1.0) < 1e-3 and r.kinds[0] == "marginal"
    auto = ss.autonomous_trajectories(model, n_starts=12, steps=200, pca_steps=0)
    assert auto.end_speed.max() < 1e-4
    assert len(auto.end_points) > 1  # a line of fixed points: different starts end at different c
    for end in auto.end_points:
        assert cosine(end[:3], RAY) > 0.999


def test_contracting_network_has_only_the_stable_origin():
    model = tiny(hidden=12)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(3)))
        model.rnn.weight_hh_l0.copy_(0.6 * q)  # every |lambda| = 0.6: all flows shrink
    r = fp.find_fixed_points(model, n_starts=32, iters=200, pca_steps=100)
    assert len(r.points) == 1 and r.kinds == ["stable"] and r.origin_growth < 0.6 + 1e-6
    assert r.projections.shape == (1, 3)
    auto = ss.autonomous_trajectories(model, n_starts=10, steps=80, pca_steps=100)
    assert len(auto.end_points) == 1 and np.linalg.norm(auto.end_points[0]) < 1e-10


def test_classify_counts_unstable_and_marginal():
    eigs = np.array([[0.5, 0.2j, 0], [1.0, 0.3, 0.1], [1.2, 0.9, 0], [1.1, -2.0, 1.5j]])
    n_unst, n_marg, kinds = fp.classify(eigs, eig_tol=1e-2)
    assert n_unst.tolist() == [0, 0, 1, 3]
    assert n_marg.tolist() == [0, 1, 0, 0]
    assert kinds == ["stable", "marginal", "saddle", "unstable"]


def test_written_out_gradient_equals_autograd():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(9, 9, generator=gen, dtype=torch.float64) * 0.5
    p = torch.randn(40, 9, generator=gen, dtype=torch.float64) * 3
    leaf = p.clone().requires_grad_(True)
    fp._speed(w, leaf / leaf.norm(dim=1, keepdim=True)).sum().backward()
    assert torch.allclose(fp._speed_grad(w, p), leaf.grad, atol=1e-12)


def test_early_stopped_starts_give_the_full_runs_points():
    model = planted((1.0, 1.5, 0.3))
    full = fp.find_fixed_points(model, n_starts=64, iters=600, pca_steps=0, stall_tol=0)
    early = fp.find_fixed_points(model, n_starts=64, iters=600, pca_steps=0, stall_tol=1e-12)
    assert early.kinds == full.kinds and len(early.points) == len(full.points)
    scale = np.linalg.norm(full.points, axis=1, keepdims=True).clip(1e-300)
    assert np.allclose(early.points / scale, full.points / scale, atol=1e-6)
    assert np.allclose(early.q, full.q, atol=1e-9)
    assert (early.start_q < full.tol).sum() == (full.start_q < full.tol).sum()


def test_analyses_run_on_limited_threads_and_restore_the_count(monkeypatch, loaded):
    from hmmrnn.device import limited_threads
    from hmmrnn.errors import UserError

    original = torch.get_num_threads()
    torch.set_num_threads(2)  # so a count left at 1 shows
    before = 2
    seen = []
    with limited_threads("cpu"):
        with limited_threads("cpu"):  # nested users (TUI workers) share one restore
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())
    assert seen == [1, 1] and torch.get_num_threads() == before
    fit = pca_mod.fit_pca

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(pca_mod, "fit_pca", spy)
    registry.run_analysis("pca", loaded, {"steps": 20}, use_cache=False)
    assert seen[-1] == 1 and torch.get_num_threads() == before
    monkeypatch.setenv("HMMRNN_ANALYSIS_THREADS", "0")
    with pytest.raises(UserError, match="HMMRNN_ANALYSIS_THREADS"):
        with limited_threads("cpu"):
            pass
    torch.set_num_threads(original)


# --- PCA, trajectories, contours, readout ----------------------------------------------------------


def test_driven_pca_matches_generation_and_project():
    model = tiny()
    r = pca_mod.driven_pca(model, steps=300, warmup=10, seed=5)
    run = model.generate(1, 310, generator=torch_generator(5))
    assert np.array_equal(r.outputs, run.symbols[0, 10:].numpy())
    assert np.allclose(pca_mod.project(r, run.hidden[0, 10:]), r.projections)
    assert np.allclose(r.components @ r.components.T, np.eye(3), atol=1e-10)
    assert np.all(np.diff(r.explained_variance_ratio) <= 0)
    assert pca_mod.driven_pca(tiny(hidden=2), steps=50).components.shape == (2, 2)  # capped


def test_pca_axes_equal_sklearns():
    sklearn_pca = pytest.importorskip("sklearn.decomposition").PCA
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 7)) @ rng.normal(size=(7, 7)) + 3.0
    ours = pca_mod.fit_pca(x, n_components=4)
    ref = sklearn_pca(n_components=4, svd_solver="full").fit(x)
    signs = np.sign((ours.components * ref.components_).sum(axis=1))
    assert np.allclose(ours.components, signs[:, None] * ref.components_, atol=1e-8)
    assert np.allclose(ours.explained_variance, ref.explained_variance_, rtol=1e-10)
    assert np.allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    assert np.allclose(ours.mean, ref.mean_)


def test_readout_in_plane_has_angle_zero_and_orthogonal_ninety():
    model = tiny()
    basis = pca_mod.driven_pca(model, steps=500, n_components=3, seed=0).components
    with torch.no_grad():  # the hidden dynamics do not depend on the readout: the basis stays put
        rows = np.stack([3 * basis[0] + basis[1], -basis[1], 2 * basis[2]])
        model.fc.weight.copy_(torch.tensor(rows, dtype=torch.float32))
    r = ss.readout_alignment(model, steps=500, seed=0)
    assert np.allclose(r.angle_deg[:2], 0, atol=0.1) and abs(r.angle_deg[2] - 90) < 0.1
    assert np.allclose(r.in_plane_norm, [1, 1, 0], atol=1e-5)
    assert np.allclose(r.plane_coords[1], [0, -1], atol=1e-5)
    assert r.pairs.tolist() == [[0, 1], [0, 2], [1, 2]] and r.pair_angle_deg[0] < 0.1


def test_variance_contours_scale_with_noise_and_hold_the_mass():
    from matplotlib.path import Path as MplPath

    r = ss.variance_contours(tiny(), noise_stds=(0.5, 1.0, 2.0), steps=1500, grid=60)
    # homogeneity: with common noise the states at std s are s times those at std 1
    origin = -r.mean @ r.components.T
    for i, s in enumerate(r.noise_stds):
        assert np.allclose(r.samples[i] - origin, s * (r.samples[1] - origin), atol=1e-4)
    assert np.allclose(r.spread / r.spread[1], r.noise_stds**2, rtol=1e-3)
    assert np.allclose(r.areas / r.areas[1], r.noise_stds**2, rtol=0.15)
    polys = r.level_polygons(1)
    assert polys and all(np.allclose(p[0], p[-1]) for p in polys)  # closed curves
    inside = np.zeros(len(r.samples[1]), bool)
    for p in polys:
        inside |= MplPath(p).contains_points(r.samples[1])
    assert 0.9 < inside.mean() < 0.99


def test_trajectories_shapes_and_collapse():
    r = ss.trajectories(tiny(), n_starts=8, autonomous_steps=60, n_traj=3, driven_steps=25)
    assert r.autonomous.shape == (8, 61, 3) and r.driven.shape == (3, 25, 3)
    assert r.driven_outputs.shape == (3, 25) and set(np.unique(r.driven_outputs)) <= {0, 1, 2}
    assert r.end_counts.sum() == 8 and len(r.end_points) == 1  # contracting net: one end point
    assert np.isfinite(r.autonomous).all()


# --- determinism, cancellation, cache, registry --------------------------------------------------


def test_one_point_per_linear_region():
    w = torch.eye(2, dtype=torch.float64)
    u = torch.tensor([[1.0, 0.2], [1.0, 0.8], [-1.0, 1.0], [1.0, -1.0], [-1e-5, 1.0]])
    u = (u / u.norm(dim=1, keepdim=True)).double()
    labels = fp.region_labels(w, u, dedup_tol=1e-3).tolist()
    # rows 0-1 share the region (+, +) however far apart: one point
    assert labels[0] == labels[1] and len(set(labels)) == 3
    # row 4 lies in (-, +) with row 2, but astride the boundary of (+, +): all one point
    edge = torch.cat([u, torch.tensor([[1e-5, 1.0]], dtype=torch.float64)])
    merged = fp.region_labels(w, edge / edge.norm(dim=1, keepdim=True), 1e-3).tolist()
    assert merged[0] == merged[2] == merged[4] == merged[5] != merged[3]
    assert fp.region_labels(w, u[:0], 1e-3).shape == (0,)


def test_pair_stretches_keep_only_long_runs_inside_the_pair():
    outputs = np.array([0, 1, 0, 1, 2, 0, 0, 1, 1, 0, 0, 2, 1, 1])
    mask = ss.pair_stretches(outputs, (0, 1), 3)
    assert np.flatnonzero(mask).tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert not ss.pair_stretches(outputs, (0, 1), 7).any()
    assert ss.pair_stretches(outputs, (1, 2), 1)[[1, 3, 4, 7, 8, 11, 12, 13]].all()


def test_pair_contours_use_the_pairs_own_plane(loaded):
    model = loaded.model
    kw = dict(noise_stds=[1.0, 2.0], steps=600, grid=30, seed=1)
    pair = ss.variance_contours(model, pair=(0, 2), pair_min_steps=2, **kw)
    whole = ss.variance_contours(model, **kw)
    assert pair.pair == [0, 2] and whole.pair == []
    assert (pair.n_states < whole.n_states).all() and (pair.n_states > 0).all()
    assert not np.allclose(pair.components, whole.components)
    pad = pair.samples[0, pair.n_states[0] :]
    assert np.isnan(pad).all() and np.isfinite(pair.samples[0, : pair.n_states[0]]).all()
    assert "outputs 0 and 2 only" in dict(ss._contour_summary(pair))["subspace"]
    with pytest.raises(ValueError, match="two different outputs"):
        ss.variance_contours(model, pair=(1, 1), **kw)
    with pytest.raises(ValueError, match="never stay within"):
        ss.variance_contours(model, pair=(0, 2), pair_min_steps=10_000, **kw)


@torch.no_grad()
def test_dynamics_modes_cut_one_drive_after_the_warm_up():
    model = tiny(3)
    kw = dict(runs=3, steps=25, warmup=10, noise_std=1.0, seed=5)
    full = ss.mode_run(model, dynamics="full", **kw)
    np.testing.assert_array_equal(full[0], pca_mod.driven_run(model, **kw)[0])
    noise = model.sample_noise(3, 35, 1.0, torch_generator(5, model.device))
    start = model.rnn(noise[:, :10])[0][:, -1]
    hidden, symbols, logits = ss.mode_run(model, dynamics="input_only", **kw)
    expect = torch.relu(noise[:, 10:] @ model.w_ih.T).double().numpy()
    np.testing.assert_allclose(hidden, expect, atol=1e-6)
    assert symbols.shape == (3, 25) and logits.shape == (3, 25, 3)
    rec, _, _ = ss.mode_run(model, dynamics="recurrence_only", **kw)
    h = start
    for t in range(25):
        h = torch.relu(h @ model.w_hh.T)
        np.testing.assert_allclose(rec[:, t], h.double().numpy(), atol=1e-6)
    assert not np.allclose(rec, full[0]) and not np.allclose(hidden, full[0])
    with pytest.raises(ValueError, match="dynamics must be one of"):
        ss.mode_run(model, dynamics="bogus", **kw)
    r = ss.trajectories(model, n_starts=4, autonomous_steps=5, driven_steps=25, pca_steps=100,
                        dynamics="input_only")  # fmt: skip
    assert r.dynamics == "input_only" and r.driven.shape == (5, 25, 3)
    assert "input only" in dict(ss._traj_summary(r))["driven runs"]


@pytest.mark.parametrize("name", MINE)
def test_each_analysis_runs_deterministically_with_a_summary(name, loaded):
    a = run_analysis(name, loaded, SMALL[name], use_cache=False)
    b = run_analysis(name, loaded, SMALL[name], use_cache=False)
    c = run_analysis(name, loaded, {**SMALL[name], "seed": 1}, use_cache=False)
    arrays = [k for k, v in vars(a).items() if isinstance(v, np.ndarray)]
    assert arrays and all(
        np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True) for k in arrays
    )
    assert any(
        getattr(a, k).shape != getattr(c, k).shape or not np.allclose(getattr(a, k), getattr(c, k))
        for k in arrays
    )
    rows = registry.get_spec(name).summary(a)
    assert rows and all(isinstance(k, str) and isinstance(v, str) for k, v in rows)
    assert type(a).from_bytes(a.to_bytes()).to_dict() == a.to_dict()


@pytest.mark.parametrize("name", MINE)
def test_cancel_from_progress_stops_the_run(name, loaded):
    token = CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(fraction)
        token.cancel()

    with pytest.raises(Cancelled):
        run_analysis(name, loaded, SMALL[name], progress=progress, cancel=token, use_cache=False)
    assert seen and max(seen) < 1.0


def test_cache_hit_on_second_run(loaded, cache):
    first = run_analysis("fixed-points", loaded, SMALL["fixed-points"])
    assert cache.hits == 0
    second = run_analysis("fixed-points", loaded, SMALL["fixed-points"])
    assert cache.hits == 1 and second.kinds == first.kinds
    assert np.array_equal(second.eigenvalues, first.eigenvalues)
    run_analysis("fixed-points", loaded, {**SMALL["fixed-points"], "seed": 2})
    assert cache.hits == 1


def test_bad_parameters_raise_value_error(loaded):
    with pytest.raises(ValueError, match="unknown parameter"):
        run_analysis("pca", loaded, {"stepz": 3}, use_cache=False)
    with pytest.raises(ValueError):
        run_analysis("variance-contours", loaded, {"mass": 1.5}, use_cache=False)
