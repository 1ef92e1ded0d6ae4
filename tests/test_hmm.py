import numpy as np
import pytest

from hmmrnn import hmm as H


@pytest.mark.parametrize("states,edge", [(2, 0.95), (3, 0.78), (4, 0.63), (5, 0.53)])
def test_target_prob_edge_stay(states, edge):
    t = H.transition_target_prob(states, 0.05)
    assert t[0, 0] == pytest.approx(edge, abs=0.005)
    assert t[-1, -1] == pytest.approx(edge, abs=0.005)
    q = 0.05 ** (1 / (states - 1))
    assert t[0, 1] == pytest.approx(q)
    if states > 2:
        assert t[1, 1] == pytest.approx(1 - 2 * q)
        assert t[1, 0] == pytest.approx(q) and t[1, 2] == pytest.approx(q)
    np.testing.assert_allclose(t.sum(1), 1)
    # a linear chain: nothing beyond the neighbours
    assert np.all(np.triu(t, 2) == 0) and np.all(np.tril(t, -2) == 0)


def test_stay_prob_and_fully():
    t = H.transition_stay_prob(4, 0.9)
    np.testing.assert_allclose(np.diag(t), 0.9)
    assert t[0, 1] == pytest.approx(0.1) and t[1, 0] == pytest.approx(0.05)
    f = H.transition_fully(3, 0.95)
    np.testing.assert_allclose(
        f, [[0.95, 0.025, 0.025], [0.025, 0.95, 0.025], [0.025, 0.025, 0.95]]
    )
    assert H.transition_fully(1).tolist() == [[1.0]]


def test_emissions():
    e = H.emission_linear(3)
    np.testing.assert_allclose(e, [[0.99, 0.01, 0], [0.495, 0.01, 0.495], [0, 0.01, 0.99]])
    g = H.emission_gaussian(2, 3)
    np.testing.assert_allclose(g.sum(1), 1)
    assert g[0].argmax() == 0 and g[1].argmax() == 2
    tri = H.emission_triangular(3, 3)
    np.testing.assert_allclose(np.diag(tri), 0.98)
    with pytest.raises(H.HMMSpecError, match="triangular"):
        H.emission_triangular(4, 3)
    with pytest.raises(H.HMMSpecError, match="3 outputs"):
        H.emission_linear(3, 4)


@pytest.mark.parametrize(
    "t,e,match",
    [
        ([[0.5, 0.4], [0.5, 0.5]], [[1, 0], [0, 1]], "sum to 1"),
        ([[1.5, -0.5], [0.5, 0.5]], [[1, 0], [0, 1]], "negative"),
        ([[1.0, 0.0]], [[1, 0]], "square"),
        ([[1, 0], [0, 1]], [[1, 0, 0]], "rows"),
        ([[1]], [[1]], ">= 2 outputs"),
        ([[np.nan, 1], [0, 1]], [[1, 0], [0, 1]], "non-finite"),
    ],
)
def test_validation_errors(t, e, match):
    with pytest.raises(H.HMMSpecError, match=match):
        H.HMM(np.array(t, dtype=float), np.array(e, dtype=float))


def test_presets_and_custom():
    assert set(H.PRESETS) == {"Two", "Three", "Four", "Five", "Fully", "Cyclic"}
    assert H.get_preset("two").seq_len == 100
    assert H.PRESETS["Fully"].epochs == 1000 and H.PRESETS["Fully"].grad_clip == 0.3
    with pytest.raises(H.HMMSpecError, match="unknown preset"):
        H.get_preset("Six")
    c = H.build_transition("custom", 4, custom=H.CYCLIC_TRANSITION)
    assert c[0, 3] == 0.025
    with pytest.raises(H.HMMSpecError, match="needs custom_transition_matrix"):
        H.build_transition("custom", 4)


def test_sampler_statistics():
    """Empirical transition and emission frequencies over 20k sequences match the spec."""
    model = H.HMM(H.transition_target_prob(3), H.emission_linear(3))
    s = model.sample(20000, 20, np.random.default_rng(1))
    assert s.outputs.shape == (20000, 20) and s.states.shape == (20000, 20)
    prev, nxt = s.states[:, :-1].ravel(), s.states[:, 1:].ravel()
    counts = np.zeros((3, 3))
    np.add.at(counts, (prev, nxt), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), model.transition, atol=0.005)
    em = np.zeros((3, 3))
    np.add.at(em, (s.states.ravel(), s.outputs.ravel()), 1)
    np.testing.assert_allclose(em / em.sum(1, keepdims=True), model.emission, atol=0.005)
    # uniform start
    np.testing.assert_allclose(np.bincount(s.states[:, 0], minlength=3) / 20000, 1 / 3, atol=0.015)


def test_sampler_seeded_and_one_hot():
    model = H.HMM(H.transition_fully(3), H.emission_triangular(3, 3))
    a = model.sample(50, 7, np.random.default_rng(3))
    b = model.sample(50, 7, np.random.default_rng(3))
    np.testing.assert_array_equal(a.outputs, b.outputs)
    oh = a.one_hot(3)
    assert oh.shape == (50, 7, 3) and np.all(oh.sum(-1) == 1)
    assert np.all(oh.argmax(-1) == a.outputs)


# --- likelihood, posteriors and stationary shares ---------------------------------------------------


def _brute_force(hmm, outputs):
    """P(o) and P(state_t = i, o) by summing over every latent path (tiny HMMs only)."""
    import itertools

    length, m = len(outputs), hmm.num_states
    total, joint = 0.0, np.zeros((length, m))
    for path in itertools.product(range(m), repeat=length):
        p = hmm.start[path[0]] * hmm.emission[path[0], outputs[0]]
        for t in range(1, length):
            p *= hmm.transition[path[t - 1], path[t]] * hmm.emission[path[t], outputs[t]]
        total += p
        joint[np.arange(length), path] += p
    return total, joint


def test_forward_likelihood_and_posteriors_equal_the_sum_over_all_paths():
    from hmmrnn.hmm import HMM, emission_linear, transition_target_prob

    hmm = HMM(transition_target_prob(3), emission_linear(3))
    outputs = hmm.sample(6, 5, np.random.default_rng(2)).outputs
    outputs[0] = [0, 2, 0, 2, 1]  # an unlikely sequence too
    ll = hmm.log_likelihood(outputs)
    post = hmm.posteriors(outputs)
    for i, seq in enumerate(outputs):
        total, joint = _brute_force(hmm, seq)
        assert ll[i] == pytest.approx(np.log(total), rel=1e-10)
        np.testing.assert_allclose(post[i], joint / total, atol=1e-12)


def test_impossible_sequences_have_minus_infinite_likelihood():
    from hmmrnn.hmm import HMM

    hmm = HMM(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
    ll = hmm.log_likelihood(np.array([[0, 0, 0], [0, 1, 0]]))
    assert np.isfinite(ll[0]) and ll[0] == pytest.approx(0.0) and ll[1] == -np.inf


def test_stationary_shares_of_a_planted_chain():
    from hmmrnn.hmm import HMM

    t = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.3, 0.0, 0.7]])
    e = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    hmm = HMM(t, e)
    pi = hmm.stationary()
    np.testing.assert_allclose(pi @ t, pi, atol=1e-12)
    np.testing.assert_allclose(pi, np.array([6, 3, 2]) / 11, atol=1e-12)  # solved by hand
    np.testing.assert_allclose(hmm.output_shares(), [7.5 / 11, 3.5 / 11], atol=1e-12)
    long = hmm.sample(200, 400, np.random.default_rng(0)).outputs[:, 100:]
    assert abs(long.mean() - 3.5 / 11) < 0.01
