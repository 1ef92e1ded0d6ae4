"""Kick neurons, integrating populations, ablation sweeps and training evolution.

The kick-neuron tests use a hand-built network whose switches are caused by two planted units: a
winner-take-all pair (m0, m1) holds the output, fed by a tonic unit; unit 3 (4) receives its own
noise input and pushes m1 up and m0 down (the reverse), so large noise on it flips 0 -> 1 (1 -> 0).
Filler units see unrelated noise. Everything else is detected, not told.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmmrnn.analyses import registry
from hmmrnn.analyses.ablation import ablation_sweep, default_sets, modulated_rollout
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.analyses.dynamics import rollout
from hmmrnn.analyses.evolution import (
    bifurcation_epoch,
    second_order_noise,
    training_evolution,
)
from hmmrnn.analyses.neurons import (
    KickResult,
    PopulationResult,
    group_activity,
    integrating_populations,
    kick_neurons,
    lesion_percentiles,
    matched_sets,
    preactivations,
    silenced_rates,
    weight_blocks,
)
from hmmrnn.rnn import HMMRNN
from hmmrnn.tree import load_model
from tests.conftest import study_state, write_study_model

TONIC, M0, M1, K01, K10 = 0, 1, 2, 3, 4


def run_analysis(*args, **kwargs):
    """The registry's run, for the result alone."""
    return registry.run_analysis(*args, **kwargs).result


def planted_state(hidden: int = 30, inputs: int = 4, kick_weight: float = 0.12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w_ih, w_hh, w_out = (
        torch.zeros(hidden, inputs),
        torch.zeros(hidden, hidden),
        torch.zeros(2, hidden),
    )
    w_ih[TONIC, 0] = w_ih[K01, 1] = w_ih[K10, 2] = 1.0
    w_hh[M0, M0] = w_hh[M1, M1] = 0.9  # slow memory
    w_hh[M0, M1] = w_hh[M1, M0] = -0.5  # mutual inhibition: winner takes all
    w_hh[M0, TONIC] = w_hh[M1, TONIC] = 0.1
    w_hh[M1, K01], w_hh[M0, K01] = kick_weight, -kick_weight
    w_hh[M0, K10], w_hh[M1, K10] = kick_weight, -kick_weight
    filler = torch.arange(5, hidden)
    w_ih[filler, inputs - 1] = torch.randn(len(filler), generator=g).abs() + 0.5
    w_hh[filler[:, None], filler] = torch.randn(len(filler), len(filler), generator=g) * 0.2
    w_out[0, M0] = w_out[1, M1] = 1.0
    w_out[0, M1] = w_out[1, M0] = -1.0
    return {"rnn.weight_ih_l0": w_ih, "rnn.weight_hh_l0": w_hh, "fc.weight": w_out}


@pytest.fixture(scope="module")
def planted():
    return HMMRNN.from_state_dict(planted_state())


@pytest.fixture(scope="module")
def kick(planted):
    return kick_neurons(planted, steps=4000, n_runs=8, seed=0)


@pytest.fixture
def tmp_cache(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    set_cache(cache)
    yield cache
    set_cache(None)


# --- kick neurons -----------------------------------------------------------------------------------


def test_planted_kick_units_are_detected(kick):
    assert kick.directions.tolist() == [[0, 1], [1, 0]]
    assert kick.n_events.min() > 50
    assert kick.group(0, 1).tolist() == [K01]
    assert kick.group(1, 0).tolist() == [K10]
    # m1 also rises before 0 -> 1 but keeps rising after: a new level, not a kick
    assert kick.z_after[0, M1] > kick.z[0, M1]
    assert kick.eta.shape == (2, kick.window, 30)
    flat, offsets = kick.flat
    assert flat.tolist() == [K01, K10] and offsets.tolist() == [0, 1, 2]


def test_silencing_planted_units_stops_their_switches(kick):
    assert kick.confirmed.all()
    # no matched random lesion of as busy non-kick units stops their switches as well
    assert (kick.percentile == 100).all() and kick.rate_random.shape == (2, 40)
    assert all(r.startswith("confirmed") for r in kick.reasons)
    assert (kick.rate_nominal > 0.01).all()
    assert (kick.rate_silenced < 0.2 * kick.rate_nominal).all()
    # silencing the 0 -> 1 kick unit does not stop 1 -> 0 switches (there are few 1-dwells to leave)
    assert kick.rate_matrix[0, 1] < kick.rate_nominal[1]


def test_silencing_a_filler_unit_changes_nothing(planted):
    noise = planted.sample_noise(8, 520, 1.0, torch.Generator().manual_seed(3))
    nominal, rates = silenced_rates(planted, noise, [np.array([7])], warmup=20)
    np.testing.assert_allclose(rates[0], nominal)
    nominal, rates = silenced_rates(planted, noise, [np.array([K01])], warmup=20)
    assert rates[0, 0] < 0.2 * nominal[0]


def test_kick_neurons_deterministic_and_seeded(planted, kick):
    again = kick_neurons(planted, steps=4000, n_runs=8, seed=0)
    np.testing.assert_array_equal(again.eta, kick.eta)
    np.testing.assert_array_equal(again.rate_matrix, kick.rate_matrix)
    other = kick_neurons(planted, steps=4000, n_runs=8, seed=1, confirm=False)
    assert not np.array_equal(other.eta, kick.eta)
    assert other.group(0, 1).tolist() == [K01]
    assert not other.confirmed.any()


def relay_state(copies: int = 12):
    """The planted net with the 0 -> 1 kick spread over `copies` identical relay units: any three
    of them lower the 0 -> 1 rate, and none is special (disruptive, not specific)."""
    state = planted_state()
    w_ih, w_hh = state["rnn.weight_ih_l0"], state["rnn.weight_hh_l0"]
    pool = torch.tensor([K01, *range(5, 4 + copies)])
    w_ih[pool], w_hh[pool], w_hh[:, pool] = 0.0, 0.0, 0.0
    w_ih[pool, 1] = 1.0
    w_hh[M1, pool], w_hh[M0, pool] = 0.12 / copies, -0.12 / copies
    return state


def test_random_lesions_reject_a_disruptive_but_unspecific_group():
    model = HMMRNN.from_state_dict(relay_state())
    r = kick_neurons(model, steps=4000, n_runs=8, seed=0)
    relay = r.group(0, 1)
    assert len(relay) == 3 and set(relay) <= {K01, *range(5, 16)}
    # silencing the three lowers the rate clearly, but so does silencing any three other relays
    assert r.rate_z[0] <= -3 and r.percentile[0] < 50 and not r.confirmed[0]
    assert "random activity-matched lesions of 3 units" in r.reasons[0]
    assert r.confirmed[1] and r.percentile[1] == 100  # the single 1 -> 0 kick unit stands
    # without the control the relay group would have been confirmed
    bare = kick_neurons(model, steps=4000, n_runs=8, seed=0, n_controls=0)
    assert bare.confirmed[0] and np.isnan(bare.percentile).all()


def test_matched_sets_follow_activity_and_never_repeat():
    activity = np.array([0.0, 1.0, 1.1, 5.0, 5.1, 5.2, 9.0, 0.9, 5.05])
    rng = np.random.default_rng(0)
    sets = matched_sets(activity, np.array([1, 3]), np.array([0, 2, 4, 5, 6, 7, 8]), 30, rng, 3)
    assert sets.shape == (30, 2)
    assert set(sets[:, 0]) <= {0, 2, 7} and set(sets[:, 1]) <= {4, 5, 8}
    assert (sets[:, 0] != sets[:, 1]).all()
    assert lesion_percentiles(np.array([0.0, 0.5]), np.array([[1, 0, 2], [np.nan] * 3])).tolist()[
        0
    ] == pytest.approx(200 / 3)
    assert np.isnan(lesion_percentiles(np.array([0.5]), np.full((1, 3), np.nan))[0])
    with pytest.raises(ValueError, match="eligible"):
        matched_sets(activity, np.array([1, 3]), np.array([0]), 2, rng)


def test_a_missing_direction_says_why(planted):
    strict = kick_neurons(planted, steps=4000, n_runs=8, z_threshold=10.0)
    assert all("no unit peaks 10 std" in r for r in strict.reasons)
    few = kick_neurons(planted, steps=400, n_runs=8, min_events=10_000, confirm=False)
    assert all(r.startswith("only") and "min_events 10000" in r for r in few.reasons)
    back = KickResult.from_dict(strict.to_dict())
    assert back.reasons == strict.reasons
    assert KickResult.from_bytes(strict.to_bytes()).reasons == strict.reasons


def test_kick_threshold_and_cap(planted):
    strict = kick_neurons(planted, steps=4000, n_runs=8, z_threshold=10.0, confirm=False)
    assert not strict.mask.any()
    loose = kick_neurons(planted, steps=4000, n_runs=8, z_threshold=-5.0, max_per_group=2)
    assert loose.mask.sum(axis=1).max() <= 2
    assert (loose.mask.sum(axis=0) <= 1).all()  # a unit kicks one direction at most


# --- populations and views ----------------------------------------------------------------------------


def _weights_model(w_hh: torch.Tensor) -> HMMRNN:
    h = w_hh.shape[0]
    return HMMRNN.from_state_dict(
        {
            "rnn.weight_ih_l0": torch.ones(h, 2),
            "rnn.weight_hh_l0": w_hh,
            "fc.weight": torch.ones(2, h),
        }
    )


def test_population_sign_rule_on_known_weights():
    w = torch.zeros(8, 8)
    w[0, 2], w[1, 2] = 1.0, -1.0  # unit 2 excites kick group A, inhibits B
    w[0, 3], w[1, 3] = -0.5, 2.0  # unit 3: the reverse
    w[0, 4], w[1, 4] = 1.0, 1.0  # same sign: not a population unit
    w[0, 5], w[1, 5] = 0.01, -0.01  # opposite but negligible
    w[0, 6], w[1, 6] = -1.0, 0.3
    model = _weights_model(w)
    pops = integrating_populations(model, [[0], [1]], threshold=0.1)
    assert pops.pop_a.tolist() == [2]
    assert pops.pop_b.tolist() == [3, 6]  # most negative score first: -1.0, -0.3
    assert np.isnan(pops.score[[0, 1]]).all()
    np.testing.assert_allclose(pops.score[2:], [-1.0, -1.0, 1.0, -1e-4, -0.3, 0.0])
    loose = integrating_populations(model, [[0], [1]], threshold=0.0)
    assert 5 in loose.pop_a and 4 not in np.concatenate([loose.pop_a, loose.pop_b])
    with pytest.raises(ValueError, match="two kick groups"):
        integrating_populations(model, [[0], [1], [2]])


def test_populations_from_kick_result_and_views(planted, kick):
    pops = integrating_populations(planted, kick)
    assert pops.pair.tolist() == [0, 1]
    assert pops.kick_a.tolist() == [K01] and pops.kick_b.tolist() == [K10]
    # W_hh has no weights onto the kick units, so no unit is wired to them
    assert pops.pop_a.size == 0 and pops.pop_b.size == 0
    blocks = weight_blocks(planted, [[K01], [K10]], [[M0], [M1, TONIC]])
    w = planted.w_hh.detach().double().numpy()
    np.testing.assert_array_equal(blocks.kick_pop, w[np.ix_([K01, K10], [M0, M1, TONIC])])
    np.testing.assert_array_equal(blocks.pop_pop, w[np.ix_([M0, M1, TONIC], [M0, M1, TONIC])])
    assert blocks.kick_kick.shape == (2, 2) and blocks.pop_sizes.tolist() == [1, 2]
    blocks2 = weight_blocks(
        planted, pops, PopulationResult(**{**pops.__dict__, "pop_a": np.array([M0])})
    )
    assert blocks2.pop_units.tolist() == [M0]


def test_group_activity_and_preactivations_agree(planted):
    act = group_activity(planted, {"m0": [M0], "kicks": [K01, K10]}, steps=200, seed=4)
    pre = preactivations(planted, [M0, K01, K10], steps=200, seed=4)
    np.testing.assert_allclose(act.activity[0], np.maximum(pre.pre[:, 0], 0), atol=1e-6)
    np.testing.assert_allclose(act.activity[1], np.maximum(pre.pre[:, 1:], 0).mean(1), atol=1e-6)
    assert act.dwell_start[0] == 0 and act.dwell_end[-1] == 199
    assert (act.dwell_start[1:] == act.dwell_end[:-1] + 1).all()
    for s, e, o in zip(act.dwell_start, act.dwell_end, act.dwell_output, strict=True):
        assert (act.outputs[s : e + 1] == o).all()
    np.testing.assert_array_equal(act.outputs, pre.outputs)
    with pytest.raises(ValueError, match="unit indices"):
        preactivations(planted, [99], steps=10)


# --- ablation -------------------------------------------------------------------------------------------


def test_default_sets_rank_partners_by_signed_weight():
    """ANALYSES.md section 6 on a planted matrix: the noise set takes each kick unit's most
    EXCITATORY partners (a strong inhibitor is not one), the control every unit outside the top
    partners of the kick units of both directions."""
    w = torch.zeros(12, 12)
    w[0, 1:5] = torch.tensor([3.0, -9.0, 1.0, 0.5])  # kick unit 0 (direction A): 1 > 3 > 4 > 2
    w[5, 6:9] = torch.tensor([2.0, 1.5, -4.0])  # kick unit 5 (direction B): 6 > 7 > 8
    sets = default_sets(w, [0], top_k=2, control_k=2, all_kick=[0, 5])
    assert sets["kick"].tolist() == [0]
    assert sets["noise"].tolist() == [1, 3]  # signed: -9 (unit 2) is the weakest, not the strongest
    # outside {0, 5}, the top-2 signed partners of 0 (1, 3) and of 5 (6, 7): all the rest
    assert sets["control"].tolist() == [2, 4, 8, 9, 10, 11]
    alone = default_sets(w, [0], top_k=2, control_k=2)  # no other direction given
    assert 6 in alone["control"] and 5 in alone["control"]
    with pytest.raises(ValueError, match="no kick neurons"):
        default_sets(w, [])
    with pytest.raises(ValueError, match="control set is empty"):
        default_sets(w, [0], top_k=2, control_k=12)


def test_modulated_rollout_gains(planted):
    h0 = torch.rand(planted.hidden_size)
    x = planted.sample_noise(5, 12, 1.0, torch.Generator().manual_seed(0))
    units = np.array([M0, K01])
    h, _ = modulated_rollout(planted, h0, x, units, [1.0, 0.0], by_input=False)
    nominal = rollout(planted, h0.expand(5, -1), x)
    torch.testing.assert_close(h[0], nominal)
    # recurrent drive off: those units only see their input
    torch.testing.assert_close(h[1][..., units], torch.relu(x @ planted.w_ih.T)[..., units])
    hi, _ = modulated_rollout(planted, h0, x, units, [0.0], by_input=True)
    prev = torch.cat([h0.expand(5, 1, -1), hi[0, :, :-1]], dim=1)
    torch.testing.assert_close(hi[0][..., units], torch.relu(prev @ planted.w_hh.T)[..., units])


def test_ablation_vectorised_equals_one_mu_at_a_time(planted):
    sets = {"kick": [K01, K10], "noise": [K01, K10], "control": [6, 7]}
    kw = dict(
        sets=sets,
        h0=np.array([0, 0.4] + [0.0] * 28),
        n_traj=30,
        steps=60,
        switch_window=5,
        eig_traj=10,
        seed=2,
    )
    full = ablation_sweep(planted, mus=[0.0, 1.0, 2.0], **kw)
    for m, mu in enumerate([0.0, 1.0, 2.0]):
        one = ablation_sweep(planted, mus=[mu], **kw)
        np.testing.assert_allclose(one.rate[:, 0], full.rate[:, m])
        np.testing.assert_allclose(one.critical_per_switch[:, 0], full.critical_per_switch[:, m])
        np.testing.assert_allclose(one.projections[:, 0], full.projections[:, m], atol=1e-5)
    # mu = 1 is the nominal network whatever the set and drive
    assert np.ptp(full.rate[:, 1]) == 0 and np.ptp(full.unstable_per_switch[:, 1]) == 0
    # the kicks act through their noise input: without it there are no switches, doubled more
    assert full.rate[1, 0] == 0 and full.rate[1, 2] > full.rate[1, 1] > 0
    assert full.units("control").tolist() == [6, 7] and full.drives == [
        "recurrent",
        "input",
        "input",  # the study scales the control's noise drive, as the noise projection's
    ]
    np.testing.assert_array_equal(
        full.rate, ablation_sweep(planted, mus=[0.0, 1.0, 2.0], **kw).rate
    )


# --- training evolution ---------------------------------------------------------------------------------


def _evolution_folder(tmp_path, epochs=(0, 5, 10, 15)):
    folder = tmp_path / "run"
    write_study_model(folder, study_state(input_size=3, hidden=8, seed=9))
    evo = folder / "models" / "evolution"
    evo.mkdir(parents=True)
    for i, epoch in enumerate(epochs):
        state = study_state(input_size=3, hidden=8, seed=i)
        state["rnn.weight_hh_l0"] *= 1 + 0.5 * i  # later epochs: stronger recurrence
        torch.save(state, evo / f"model_epoch_{epoch}.pth")
    return folder


def test_training_evolution_on_checkpoints(tmp_path):
    folder = _evolution_folder(tmp_path)
    res = training_evolution(folder, steps=80, eig_steps=30, persist=2, seed=1)
    assert res.epochs.tolist() == [0, 5, 10, 15]
    assert res.projections.shape == (4, 80, 3) and res.components.shape == (3, 8)
    assert ((res.critical_fraction >= 0) & (res.critical_fraction <= 1)).all()
    assert (res.second_order > 0).all()
    assert res.second_order_units.shape == (4, 8) and (res.second_order_units >= 0).all()
    np.testing.assert_allclose(res.second_order_units.sum(axis=1), res.second_order, rtol=1e-5)
    assert res.unstable_fraction[0] < res.unstable_fraction[-1]  # recurrence grew
    again = training_evolution(folder, steps=80, eig_steps=30, persist=2, seed=1)
    np.testing.assert_array_equal(again.projections, res.projections)
    thin = training_evolution(folder, steps=80, eig_steps=30, every=3, seed=1)
    assert thin.epochs.tolist() == [0, 15]
    np.testing.assert_allclose(thin.projections[-1], res.projections[-1])
    with pytest.raises(ValueError, match="no per-epoch checkpoints"):
        training_evolution(tmp_path / "empty")


def test_a_diverged_checkpoint_is_flagged_never_a_rate_of_zero(tmp_path):
    folder = _evolution_folder(tmp_path)
    blown = folder / "models" / "evolution" / "model_epoch_5.pth"
    state = torch.load(blown, weights_only=True)
    state["rnn.weight_hh_l0"] = torch.eye(8) * 50.0  # every driven run explodes
    torch.save(state, blown)
    res = training_evolution(folder, steps=80, eig_steps=30, persist=2, seed=1)
    assert res.diverged.tolist() == [False, True, False, False]
    assert (
        np.isnan(res.second_order_units[1]).all() and np.isfinite(res.second_order_units[0]).all()
    )
    for name in ("transition_rate", "sampled_rate", "dwell_rate", "critical_fraction"):
        values = getattr(res, name)
        assert np.isnan(values[1]) and np.isfinite(values[[0, 2, 3]]).all(), name
    # the study's rate: mean 1/dwell over complete dwells, at least the switches per step
    assert (res.dwell_rate[[0, 2, 3]] >= res.transition_rate[[0, 2, 3]] - 1e-12).all()
    import plotext

    from hmmrnn.figures.mechanisms import render_evolution
    from hmmrnn.figures.terminal import evolution_rates

    fig = render_evolution(res)  # drawn with the diverged epoch marked, not as zeros
    fig.canvas.draw()
    labels = [
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    ]
    assert "diverged checkpoint" in labels and "mean 1/dwell (study)" in labels
    plotext.clear_figure()
    evolution_rates(plotext, res)
    assert plotext.build()


def test_bifurcation_epoch_needs_persistence():
    epochs = np.array([0, 10, 20, 30, 40, 50])
    crit = np.array([0.0, 0.2, 0.0, 0.3, 0.3, 0.4])
    assert bifurcation_epoch(epochs, crit, 0.1, persist=2) == 30
    assert bifurcation_epoch(epochs, crit, 0.1, persist=1) == 10
    assert bifurcation_epoch(epochs, crit, 0.5, persist=1) == -1


def test_second_order_noise_matches_monte_carlo():
    model = HMMRNN.from_state_dict(study_state(input_size=5, hidden=12, seed=3))
    gen = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(3, 12, generator=gen))
    x = 0.7 * torch.randn(40000, 1, 5, generator=gen)
    with torch.no_grad():
        a = h @ model.w_hh.T
        drive = x @ model.w_ih.T
        mc = (torch.relu(a + drive) - torch.relu(a) - (a > 0) * drive).square().sum(-1).mean(0)
        exact = second_order_noise(model, h, 0.7)
    torch.testing.assert_close(exact, mc, rtol=0.05, atol=1e-3)


# --- registry -----------------------------------------------------------------------------------------


def test_registry_runs_and_caches(tmp_path, tmp_cache):
    write_study_model(tmp_path / "planted", planted_state())
    loaded = load_model(tmp_path / "planted")
    kick = run_analysis("kick-neurons", loaded, {"steps": 2000, "n_runs": 4})
    assert isinstance(kick, KickResult) and kick.group(0, 1).tolist() == [K01]
    pops = run_analysis("populations", loaded, {"steps": 2000})
    assert pops.kick_a.tolist() == [K01]
    hits = tmp_cache.hits
    again = run_analysis("kick-neurons", loaded, {"steps": 2000, "n_runs": 4})
    assert tmp_cache.hits == hits + 1
    np.testing.assert_array_equal(again.z, kick.z)
    given = run_analysis("populations", loaded, {"kick_units": [[0], [1]], "threshold": 0.0})
    assert given.pair.tolist() == [-1, -1]
    abl = run_analysis(
        "ablation",
        loaded,
        {
            "kick_units": [K01, K10],
            "top_k": 3,
            "control_k": 3,
            "mus": [0.0, 1.0],
            "n_traj": 10,
            "steps": 40,
            "eig_traj": 4,
        },
    )
    assert abl.set_names == ["kick", "noise", "control"] and abl.rate.shape == (3, 2)
    folder = _evolution_folder(tmp_path / "evo")
    evo = run_analysis("evolution", load_model(folder), {"steps": 40, "eig_steps": 10})
    assert evo.epochs.tolist() == [0, 5, 10, 15]


def test_ablation_takes_one_direction_and_names_a_missing_one():
    from types import SimpleNamespace

    from hmmrnn.analyses.ablation import _direction_units

    groups = {0: np.array([], dtype=np.int64), 1: np.array([4, 2]), 2: np.array([7])}
    found = SimpleNamespace(
        directions=np.array([[0, 1], [0, 2], [2, 0]]),
        units=lambda d: groups[d],
        all_units=np.array([2, 4, 7]),
    )
    units, every = _direction_units(found, None)  # the first direction that has kick units
    assert units.tolist() == [4, 2] and every.tolist() == [2, 4, 7]
    assert _direction_units(found, 2)[0].tolist() == [7]
    with pytest.raises(ValueError, match=r"switch 0 -> 1 \(direction 0\)"):
        _direction_units(found, 0)
    with pytest.raises(ValueError, match="3 switch directions"):
        _direction_units(found, 5)
