"""Likelihood under the HMM, latent-state decoding and long runs, on planted networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import study_state, write_study_model

from hmmrnn import api
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.analyses.likelihood import hmm_likelihood
from hmmrnn.analyses.longrun import long_run
from hmmrnn.hmm import HMM, emission_linear, transition_target_prob
from hmmrnn.rnn import HMMRNN


@pytest.fixture(autouse=True)
def _cache(tmp_path):
    set_cache(ResultCache(tmp_path / "cache"))
    yield
    set_cache(None)


def two_state_hmm() -> HMM:
    return HMM(transition_target_prob(2), emission_linear(2))


def sticky_rnn(hidden: int = 6, gain: float = 8.0) -> HMMRNN:
    """Two units that excite themselves and inhibit each other: outputs 0 or 2, long dwells."""
    torch.manual_seed(0)
    model = HMMRNN(2, hidden, 3)
    with torch.no_grad():
        model.w_hh.zero_()
        model.w_hh[0, 0] = model.w_hh[1, 1] = 0.9
        model.w_hh[0, 1] = model.w_hh[1, 0] = -0.9
        model.w_ih.zero_()
        model.w_ih[0, 0] = model.w_ih[1, 1] = 1.0
        model.w_out.zero_()
        model.w_out[0, 0] = model.w_out[2, 1] = gain
        model.w_out[1] -= gain  # the rare middle symbol is seldom chosen
    return model.eval()


def chattering_rnn() -> HMMRNN:
    """Readout driven by the fresh input only: a new independent symbol every step."""
    model = sticky_rnn()
    with torch.no_grad():
        model.w_hh.zero_()
    return model


def test_a_chattering_network_is_far_less_likely_than_the_hmm():
    hmm = two_state_hmm()
    chatter = hmm_likelihood(chattering_rnn(), num_sequences=300, seq_len=40, hmm=hmm)
    assert chatter.gap > 0.3 and chatter.gap > 5 * chatter.gap_se
    sticky = hmm_likelihood(sticky_rnn(), num_sequences=300, seq_len=40, hmm=hmm)
    assert sticky.gap < chatter.gap
    assert chatter.hmm_per_step.shape == (300,) and chatter.rnn_conditional.shape == (40,)
    # the HMM's own samples score its entropy rate: per step about -H of a 0.95/0.05 chain
    assert -0.6 < chatter.hmm_mean < -0.1
    assert chatter.hmm_impossible == chatter.rnn_impossible == 0.0


def test_long_run_cross_entropy_is_the_chains_entropy_rate():
    """Outputs that name the state make the HMM a Markov chain: its entropy rate is exact."""
    trans = np.array([[0.9, 0.1], [0.2, 0.8]])
    hmm = HMM(trans, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    pi = np.array([2 / 3, 1 / 3])
    rate = -float((pi[:, None] * trans * np.log(trans)).sum())
    r = hmm_likelihood(chattering_rnn(), num_sequences=50, seq_len=10, hmm=hmm, long_steps=2000)
    assert r.long_hmm_ce == pytest.approx(rate, abs=0.02)
    assert r.long_rnn_ce > r.long_hmm_ce + 0.3  # an i.i.d. chatter is improbable for the chain
    assert r.long_ce_excess == pytest.approx(r.long_rnn_ce - r.long_hmm_ce)
    off = hmm_likelihood(chattering_rnn(), num_sequences=50, seq_len=10, hmm=hmm, long_steps=0)
    assert np.isnan(off.long_hmm_ce) and np.isnan(off.long_ce_excess)


def test_outputs_the_hmm_cannot_emit_are_counted_apart():
    hmm = HMM(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[0.5, 0.0, 0.5], [0.5, 0.0, 0.5]]))
    model = chattering_rnn()
    with torch.no_grad():
        model.w_out[1] = 0.0  # now the middle symbol, impossible under this HMM, does occur
    r = hmm_likelihood(model, num_sequences=200, seq_len=20, hmm=hmm)
    assert r.rnn_impossible > 0.5 and r.hmm_impossible == 0.0
    assert np.isneginf(r.rnn_per_step).sum() == round(r.rnn_impossible * 200)


def test_decoding_finds_the_latent_state_in_a_sticky_network(tmp_path):
    state = {
        "rnn.weight_ih_l0": sticky_rnn().w_ih.detach().clone(),
        "rnn.weight_hh_l0": sticky_rnn().w_hh.detach().clone(),
        "fc.weight": sticky_rnn().w_out.detach().clone(),
    }
    cfg = {"states": 2, "input_size": 2, "hidden_size": 6, "seq_len": 30}
    write_study_model(tmp_path / "m", state, api.config_for("Two", overrides=cfg).to_dict())
    sticky = api.analyze(tmp_path / "m", "latent-decoding", {"num_sequences": 200}).result
    assert sticky.accuracy > 0.85 and sticky.r2_total > 0.5
    assert 0.45 < sticky.chance < 0.7 and sticky.r2.shape == (2,)
    assert sticky.n_test + sticky.n_train == 200 * 25  # 5 first steps left out


def test_decoding_of_an_unrelated_network_is_near_chance(tmp_path):
    write_study_model(tmp_path / "m", study_state(4, 12, 3, 0))
    r = api.analyze(tmp_path / "m", "latent-decoding", {"num_sequences": 120}).result
    assert r.r2_total <= 1.0 and 0.0 <= r.accuracy <= 1.0 and r.chance >= 1 / 3


def test_long_run_reports_growth_and_shares():
    hmm = two_state_hmm()
    bounded = long_run(sticky_rnn(), steps=400, runs=8, reference_step=30, hmm=hmm)
    assert not bounded.diverged and 0.2 < bounded.growth < 3.0
    assert bounded.rnn_shares.sum() == pytest.approx(1.0) and bounded.rnn_shares[1] < 0.2
    np.testing.assert_allclose(bounded.hmm_shares, hmm.output_shares())
    exploding = sticky_rnn()
    with torch.no_grad():
        exploding.w_hh[0, 0] = exploding.w_hh[1, 1] = 1.3
        exploding.w_hh[0, 1] = exploding.w_hh[1, 0] = 0.0
    grows = long_run(exploding, steps=400, runs=8, reference_step=30, hmm=hmm)
    assert grows.diverged or grows.growth > 100


def test_new_analyses_have_figures_and_views_registered_with_them():
    for name in ("likelihood", "latent-decoding", "long-run"):
        spec = api.analysis(name)
        assert spec.figures and spec.views, name
        assert spec.schema["seed"].default == 0
