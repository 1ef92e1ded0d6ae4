"""Rollouts, switch times, Jacobian spectra, residency, locating areas and noise sensitivity.

Known answers come from hand-built networks:
- a "threshold" network (one unit copies the input through the ReLU, one holds a constant c through
  a self-loop of weight 1): output 1 iff x > c, so from an output-0 state the switch time is
  geometric with p = P(x > c) and the mean censored at M steps is (1 - (1 - p)^M) / p;
- block-diagonal W_hh with chosen rotation-scaling blocks, whose spectrum is known exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import study_state, write_study_model

from hmmrnn.analyses import registry
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.analyses.dynamics import (
    count_critical,
    count_unstable,
    driven_run,
    dwells,
    jacobian_eigvals,
    mixed_noise,
    mobius,
    rollout,
    spectrum_counts,
    switch_steps,
    time_to_switch,
)
from hmmrnn.analyses.locate import locate_areas
from hmmrnn.analyses.noise import noise_sensitivity, spread
from hmmrnn.analyses.residency import (
    CLUSTER,
    KICK_ZONE,
    OTHER,
    TRANSITION,
    classify,
    residency,
    residency_of_states,
    subspace_residency,
)
from hmmrnn.cancel import Cancelled, CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.rnn import HMMRNN
from hmmrnn.tree import load_model

# --- hand-built networks --------------------------------------------------------------------------


def run_analysis(*args, **kwargs):
    """The registry's run, for the result alone."""
    return registry.run_analysis(*args, **kwargs).result


def threshold_model() -> HMMRNN:
    """h0 = relu(x), h1 = h1 (constant); logits = [h1, h0]: output 1 iff x > h1."""
    return HMMRNN.from_state_dict(
        {
            "rnn.weight_ih_l0": torch.tensor([[1.0], [0.0]]),
            "rnn.weight_hh_l0": torch.tensor([[0.0, 0.0], [0.0, 1.0]]),
            "fc.weight": torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
        }
    )


def constant_model() -> HMMRNN:
    """Logits [h0 + h1, -(h0 + h1)] with h >= 0: the argmax output is always 0."""
    return HMMRNN.from_state_dict(
        {
            "rnn.weight_ih_l0": torch.tensor([[1.0], [-1.0]]),
            "rnn.weight_hh_l0": torch.tensor([[0.5, 0.0], [0.0, 0.5]]),
            "fc.weight": torch.tensor([[1.0, 1.0], [-1.0, -1.0]]),
        }
    )


def tiny_model(seed: int = 0) -> HMMRNN:
    """The shared fixture's random model: switches output every few steps."""
    return HMMRNN.from_state_dict(study_state(input_size=4, hidden=12, outputs=3, seed=seed))


def censored_geometric_mean(p: float, m: int) -> float:
    return (1 - (1 - p) ** m) / p


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


# --- time to switch -------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "max_steps"), [(1.0, 60), (1.0, 3), (0.0, 60)])
def test_switch_time_is_geometric_with_known_mean(c, max_steps):
    model = threshold_model()
    h0 = torch.tensor([[0.0, c]]).repeat(100, 1)
    if c == 0.0:
        h0[:, 1] = 1e-6  # ties break to output 0; p = P(x > 0) = 1/2
    times = time_to_switch(
        model, h0, n_samples=100, max_steps=max_steps, generator=torch_generator(0)
    )
    p = 1 - phi(c)
    expected = censored_geometric_mean(p, max_steps)
    sd = times.steps.std() / math.sqrt(times.steps.size)
    assert abs(times.rt.mean() - expected) < 5 * sd + 1e-3
    assert abs(times.switched.mean() - (1 - (1 - p) ** max_steps)) < 0.02
    # the dominant logit is the constant unit: its increments are all zero
    assert (times.sign_changes == 0).all()
    assert times.steps.shape == (100, 100)
    assert times.steps.min() >= 1 and times.steps.max() <= max_steps


def test_switch_time_from_the_other_output_and_gains():
    model = threshold_model()
    h0 = torch.tensor([[3.0, 1.0]]).repeat(50, 1)  # output 1; stays iff x > 1
    times = time_to_switch(model, h0, n_samples=100, generator=torch_generator(1))
    assert abs(times.rt.mean() - 1 / phi(1.0)) < 0.05
    assert times.sign_changes.max() > 0  # relu(x) increments do change sign
    # silencing the input drive into unit 0 keeps output 0 forever: censored at max_steps
    h0 = torch.tensor([[0.0, 1.0]]).repeat(10, 1)
    frozen = time_to_switch(
        model,
        h0,
        n_samples=5,
        max_steps=7,
        input_gain=torch.tensor([0.0, 1.0]),
        generator=torch_generator(0),
    )
    assert (frozen.steps == 7).all() and not frozen.switched.any()


def test_residency_of_states_on_threshold_network():
    model = threshold_model()
    states = torch.tensor([[0.0, 1.0], [0.0, 2.0]]).repeat_interleave(200, dim=0)
    res = residency_of_states(
        model, states, n_samples=50, max_steps=60, chunk_states=64, generator=torch_generator(0)
    )
    for c, rows in ((1.0, slice(0, 200)), (2.0, slice(200, 400))):
        expected = censored_geometric_mean(1 - phi(c), 60)
        assert abs(res.rt[rows].mean() - expected) < 0.06 * expected
        assert np.allclose(res.max_prob[rows], 1 / (1 + math.exp(-c)), atol=1e-6)
    assert (res.outputs == 0).all()
    # Jacobian at h = (0, c): D = (W_hh h > 0) = (0, 1), J = diag(0, 1): no |lambda| > 1
    assert (res.unstable_counts == 0).all()


# --- sequences ------------------------------------------------------------------------------------


def test_switch_steps_and_dwells():
    symbols = np.array([0, 0, 1, 1, 1, 2, 0, 0])
    assert switch_steps(symbols).tolist() == [2, 5, 6]
    runs = dwells(symbols)
    assert runs.start.tolist() == [0, 2, 5, 6]
    assert runs.end.tolist() == [1, 4, 5, 7]
    assert runs.value.tolist() == [0, 1, 2, 0]


def test_rollout_matches_fused_rnn_and_mixed_noise():
    model = tiny_model()
    gen = torch_generator(3)
    noise = model.sample_noise(6, 9, 1.0, gen)
    h0 = torch.rand(6, model.hidden_size, generator=gen)
    fused, _ = model.rnn(noise, h0[None])
    assert torch.allclose(rollout(model, h0, noise), fused, atol=1e-5)
    frozen, fresh = noise[0], noise
    assert torch.equal(mixed_noise(frozen, fresh, 0.0), frozen.expand(6, -1, -1))
    assert torch.equal(mixed_noise(frozen, fresh, 1.0), fresh)


# --- spectra --------------------------------------------------------------------------------------


def rotation(r: float, theta: float) -> np.ndarray:
    return r * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def known_spectrum_matrix() -> np.ndarray:
    """Blocks: 1.5 R(0.3) (unstable pair, |Re w| ~ 0.2: not critical), 0.99 R(0.5) (stable,
    critical: |Re w| ~ 0.005, Im w ~ 0.26), then 0.5, 1.5 (unstable), -0.3."""
    w = np.zeros((7, 7))
    w[0:2, 0:2] = rotation(1.5, 0.3)
    w[2:4, 2:4] = rotation(0.99, 0.5)
    w[4, 4], w[5, 5], w[6, 6] = 0.5, 1.5, -0.3
    return w


def test_eigenvalue_counts_on_known_spectrum():
    w = known_spectrum_matrix()
    masks = np.ones((4, 7), dtype=bool)
    masks[1, 0:2] = False  # removes the unstable pair
    masks[2, 2] = False  # breaks the critical pair: its block becomes triangular, real
    masks[3] = False
    counts = spectrum_counts(torch.tensor(w, dtype=torch.float32), torch.tensor(masks))
    assert counts.unstable.tolist() == [3, 1, 3, 0]
    assert counts.critical.tolist() == [1, 1, 0, 0]
    eigs = jacobian_eigvals(w, masks)
    assert count_unstable(eigs).tolist() == [3, 1, 3, 0]
    assert count_critical(eigs).tolist() == [1, 1, 0, 0]
    # thresholds are parameters: a wide enough real-part band admits the 1.5 R(0.3) pair
    assert spectrum_counts(w, masks[:1], re_tol=0.3).critical.tolist() == [2]


def _same_multiset(a: np.ndarray, b: np.ndarray, tol: float = 1e-8) -> bool:
    d = np.abs(a[:, None] - b[None, :])
    return bool((d.min(axis=1) < tol).all() and (d.min(axis=0) < tol).all())


def test_subblock_eigenvalues_match_dense_jacobians():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 20)) / math.sqrt(20) * 1.3
    masks = rng.random((40, 20)) > 0.4
    masks[5] = masks[9]  # shared masks are solved once
    masks[7] = False
    masks[8] = True
    gain = rng.uniform(0.0, 2.0, 20)
    eigs = jacobian_eigvals(w, masks, rec_gain=gain, chunk_elems=300)
    for i in range(len(masks)):
        dense = np.linalg.eigvals(masks[i][:, None] * (gain[:, None] * w))
        assert _same_multiset(eigs[i], dense), i


def test_mobius_maps_unit_circle_to_imaginary_axis():
    rng = np.random.default_rng(1)
    lam = rng.normal(size=500) + 1j * rng.normal(size=500)
    w = mobius(lam)
    assert np.array_equal(w.real > 0, np.abs(lam) > 1)
    assert np.allclose(mobius(np.exp(1j * np.array([0.3, 1.0]))).real, 0, atol=1e-12)
    assert np.isinf(mobius(np.array([-1.0 + 0j]))).all()


# --- residency ------------------------------------------------------------------------------------


def test_classify_respects_thresholds():
    rt = np.array([1.0, 1.99, 2.0, 8.0, 8.5, 8.5, 30.0])
    prob = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.81])
    assert classify(rt, prob).tolist() == [
        TRANSITION,
        TRANSITION,
        KICK_ZONE,
        KICK_ZONE,
        CLUSTER,
        OTHER,
        CLUSTER,
    ]
    tight = classify(rt, prob, transition_max=1.5, cluster_min=20.0, cluster_prob=0.85)
    assert tight.tolist() == [TRANSITION] + [KICK_ZONE] * 5 + [OTHER]


def test_residency_on_tiny_model_is_deterministic_and_consistent():
    model = tiny_model()
    kw = dict(n_states=120, n_samples=6, max_steps=15, pca_steps=200, chunk_states=50)
    a = residency(model, seed=4, **kw)
    b = residency(model, seed=4, **kw)
    c = residency(model, seed=5, **kw)
    for name in ("rt", "sign_changes", "unstable_counts", "groups", "projections"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.rt, c.rt)
    assert a.projections.shape == (120, 3) and a.components.shape == (3, 12)
    assert ((a.rt >= 1) & (a.rt <= 15)).all()
    assert sum(a.group_sizes) == 120
    assert (a.groups == classify(a.rt, a.max_prob)).all()
    assert (a.rt[a.groups == TRANSITION] < 2).all()
    assert (a.rt[a.groups == CLUSTER] > 8).all() and (a.max_prob[a.groups == CLUSTER] > 0.8).all()
    # the random model does switch: some rollouts end before the window
    assert a.switched_fraction.mean() > 0.5
    with pytest.raises(ValueError, match="n_samples=0"):
        residency(model, n_states=10, n_samples=0)


def test_residency_cancelled_from_progress():
    token = CancelToken()
    seen = []

    def progress(fraction, message):
        seen.append(fraction)
        token.cancel()

    with pytest.raises(Cancelled):
        residency(
            tiny_model(),
            n_states=200,
            n_samples=4,
            max_steps=10,
            chunk_states=50,
            pca_steps=100,
            progress=progress,
            cancel=token,
        )
    assert len(seen) <= 2  # stopped at the first check after the request, not at the end


def test_subspace_residency_pairs():
    model = tiny_model()
    res = subspace_residency(
        model, run_steps=1500, min_run=8, max_states=60, n_samples=4, max_steps=10
    )
    assert res.pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert res.n_runs.sum() > 0
    for p, (a, b) in enumerate(res.pairs):
        rows = res.pair_index == p
        assert rows.sum() <= 60
        assert np.isin(res.outputs[rows], [a, b]).all()  # states come from inside the pair's runs
    one = subspace_residency(
        model,
        outputs_pair=[0, 2],
        run_steps=500,
        min_run=5,
        max_states=20,
        n_samples=2,
        max_steps=5,
    )
    assert one.pairs.tolist() == [[0, 2]]
    with pytest.raises(ValueError, match="outputs_pair"):
        subspace_residency(model, outputs_pair=[1, 1])


# --- locating areas -------------------------------------------------------------------------------


def test_locate_never_switching_model_raises_clear_error():
    with pytest.raises(ValueError, match=r"never switched output in 300 steps x 2 tries"):
        locate_areas(constant_model(), steps=300, max_retries=2)


def test_locate_areas_on_tiny_model():
    model = tiny_model()
    kw = dict(steps=600, skip_switches=4, skip_steps=50, n_probes=20, probe_steps=3)
    r = locate_areas(model, **kw)
    assert r.dwell_start <= r.t_kick <= r.dwell_end
    assert r.t_cluster == (r.dwell_start + r.dwell_end) // 2
    assert r.output_before != r.dwell_output != r.output_after
    # the stored states are the run's states at those steps (replay the run with the seed used)
    hidden = driven_run(model, 1, 600, generator=torch_generator(r.seed_used))[0]
    assert np.allclose(r.h_cluster, hidden[r.t_cluster].numpy(), atol=1e-6)
    assert np.allclose(r.h_kick, hidden[r.t_kick].numpy(), atol=1e-6)
    symbols = model.readout(hidden).argmax(-1).numpy()
    runs = dwells(symbols)
    eligible = (
        (np.arange(len(runs)) > 4) & (runs.start >= 50) & (np.arange(len(runs)) < len(runs) - 1)
    )
    assert r.dwell_end - r.dwell_start == (runs.end - runs.start)[eligible].max()
    window = r.window_outputs
    inside = window[r.dwell_start - r.window_start : r.dwell_end - r.window_start + 1]
    assert (inside == r.dwell_output).all()
    assert window[r.dwell_end + 1 - r.window_start] == r.output_after
    # the kick point is the earliest dwell step whose probes all switch, on average before step 3
    frac, mean_time = r.probe_switch_fraction, r.probe_mean_time
    ok = (frac == 1.0) & (mean_time < 3.0)
    assert ok[r.t_kick - r.dwell_start] and not ok[: r.t_kick - r.dwell_start].any()
    assert ((mean_time >= 1) & (mean_time <= 4)).all()  # never switching counts probe_steps + 1
    # the run's own inputs after both points are kept
    noise = tiny_model().sample_noise(1, 600, 1.0, torch_generator(r.seed_used))[0].numpy()
    np.testing.assert_array_equal(r.run_noise[1], noise[r.t_kick + 1 : r.t_kick + 51])
    np.testing.assert_array_equal(r.run_noise[0], noise[r.t_cluster + 1 : r.t_cluster + 51])
    again = locate_areas(model, **kw)
    assert again.t_kick == r.t_kick and np.array_equal(again.h_kick, r.h_kick)


# --- noise sensitivity ----------------------------------------------------------------------------


def test_spread_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 4, 5))
    trace, dist = spread(torch.tensor(x))
    for t in range(4):
        assert np.isclose(trace[t], np.trace(np.cov(x[:, t].T)))
        assert np.isclose(dist[t], np.linalg.norm(x[:, t] - x[:, t].mean(0), axis=1).mean())


def test_frozen_noise_is_the_located_runs_own():
    """At gamma 0 with the run's own input every rollout retraces the located run."""
    model = tiny_model()
    points = locate_areas(model, steps=600, skip_steps=50, n_probes=20, probe_steps=3)
    r = noise_sensitivity(model, gammas=(0.0, 1.0), n_rollouts=6, steps=4, repeats=2,
                          points=points, pca_steps=200)  # fmt: skip
    hidden = driven_run(model, 1, 600, generator=torch_generator(points.seed_used))[0]
    basis = (r.components, r.mean)
    for p, t in enumerate((points.t_cluster, points.t_kick)):
        run = (hidden[t : t + 5].numpy() - basis[1]) @ basis[0].T
        np.testing.assert_allclose(r.projections[p, 0, 3], run, atol=1e-4)
    other = noise_sensitivity(model, gammas=(0.0, 1.0), n_rollouts=6, steps=4, repeats=2,
                              points=points, pca_steps=200, frozen_from="random")  # fmt: skip
    assert not np.allclose(other.projections[:, 0], r.projections[:, 0])
    with pytest.raises(ValueError, match="kept 50 steps"):
        noise_sensitivity(model, steps=60, points=points, pca_steps=200, n_rollouts=4)


def test_noise_sensitivity_frozen_noise_gives_no_spread():
    model = tiny_model()
    points = locate_areas(model, steps=600, skip_steps=50, n_probes=20)
    r = noise_sensitivity(
        model, gammas=(0.0, 0.5, 1.0), n_rollouts=30, steps=4, points=points, pca_steps=200
    )
    assert r.trace.shape == (2, 3, 4) and r.projections.shape == (2, 3, 30, 5, 2)
    assert np.allclose(r.trace[:, 0], 0, atol=1e-8)  # gamma 0: every rollout gets the same input
    assert (r.trace[:, 2] > r.trace[:, 1]).all()  # independent noise spreads more than half of it
    assert np.allclose(r.points[0], points.h_cluster) and r.t_kick == points.t_kick
    # every rollout starts at its point
    assert np.allclose(r.projections[:, :, :, 0], r.projections[:, :, :1, 0])
    # repeated draws: a standard error per point, gamma and step (none for a single draw)
    assert r.repeats == 10 and r.trace_se.shape == (2, 3, 4)
    assert np.allclose(r.trace_se[:, 0], 0, atol=1e-8) and (r.trace_se[:, 2] > 0).all()
    assert (r.trace_se[:, 2] < r.trace[:, 2]).all()  # ten draws of 30 rollouts: a tight mean
    one = noise_sensitivity(model, n_rollouts=30, steps=4, points=points, pca_steps=200, repeats=1)
    assert np.isnan(one.trace_se).all() and np.isnan(one.distance_mean_se).all()


# --- through the registry -------------------------------------------------------------------------


def test_registered_analyses_run_and_cache(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    set_cache(cache)
    try:
        loaded = load_model(write_study_model(tmp_path / "m", study_state(4, 12, 3, 0)))
        res = run_analysis(
            "residency", loaded, dict(n_states=80, n_samples=4, max_steps=10, pca_steps=100)
        )
        assert len(res.rt) == 80
        sub = run_analysis(
            "subspace-residency",
            loaded,
            dict(run_steps=400, min_run=5, max_states=20, n_samples=2, max_steps=5),
        )
        assert len(sub.pairs) == 3
        locate_params = dict(steps=500, skip_steps=50, n_probes=20)
        noise = run_analysis(
            "noise-sensitivity",
            loaded,
            dict(n_rollouts=10, steps=3, pca_steps=100, locate_params=locate_params),
        )
        hits = cache.hits
        point = run_analysis("locate", loaded, locate_params)  # cached by the noise adapter
        assert cache.hits == hits + 1
        assert np.allclose(noise.points[1], point.h_kick)
        again = run_analysis(
            "residency", loaded, dict(n_states=80, n_samples=4, max_steps=10, pca_steps=100)
        )
        assert np.array_equal(again.rt, res.rt)
        with pytest.raises(ValueError, match="unknown parameter"):
            run_analysis("locate", loaded, dict(bogus=1))
    finally:
        set_cache(None)
