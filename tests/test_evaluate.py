"""Evaluation statistics: matched distances, volatility, frequencies, transitions, results."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from hmmrnn.analyses.base import AnalysisRun, ResultFileError
from hmmrnn.analyses.evaluation import load_evaluation
from hmmrnn.config import ExperimentConfig
from hmmrnn.evaluate import (
    EvaluationResult,
    compare_outputs,
    evaluate_model,
    matched_distances,
    mismatch_matrix,
    output_frequencies,
    symbol_share,
    transition_counts,
    transition_matrix,
    volatility,
)
from hmmrnn.hmm import HMM, emission_linear, transition_target_prob
from hmmrnn.rnn import HMMRNN


def brute_distances(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distances between flattened one-hot sequences, pair by pair."""
    eye = np.eye(k)
    fa = eye[a].reshape(len(a), -1)
    fb = eye[b].reshape(len(b), -1)
    return np.array([[np.linalg.norm(x - y) for y in fb] for x in fa])


def brute_best_total(a: np.ndarray, b: np.ndarray, k: int) -> float:
    d = brute_distances(a, b, k)
    n = len(a)
    return min(d[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n)))


def is_permutation(p: np.ndarray, n: int) -> bool:
    return np.array_equal(np.sort(p), np.arange(n))


# --- distances -----------------------------------------------------------------------------------


def test_distance_is_sqrt_two_mismatches():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (7, 6))
    b = rng.integers(0, 4, (5, 6))
    mm = mismatch_matrix(a, b, 4)
    assert mm.shape == (7, 5)
    assert np.array_equal(mm, (a[:, None, :] != b[None, :, :]).sum(-1))
    np.testing.assert_allclose(np.sqrt(2 * mm), brute_distances(a, b, 4), atol=1e-12)


@pytest.mark.parametrize("dedup", [None, True, False])
def test_assignment_is_optimal_permutation(dedup):
    rng = np.random.default_rng(2)
    for _ in range(5):
        a = rng.integers(0, 3, (6, 4))
        b = rng.integers(0, 3, (6, 4))
        r = matched_distances(a, b, 3, dedup=dedup)
        assert r.method == "assignment" and r.unique_fraction == 1.0
        assert is_permutation(r.partners, 6)
        np.testing.assert_allclose(r.distances, brute_distances(a, b, 3)[np.arange(6), r.partners])
        assert r.distances.sum() == pytest.approx(brute_best_total(a, b, 3), abs=1e-9)


@pytest.mark.parametrize("dedup", [True, False])
def test_assignment_with_many_repeats(dedup):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, (7, 2))  # at most 4 distinct sequences: repeats everywhere
    b = rng.integers(0, 2, (7, 2))
    r = matched_distances(a, b, 2, dedup=dedup)
    assert is_permutation(r.partners, 7)
    assert r.distances.sum() == pytest.approx(brute_best_total(a, b, 2), abs=1e-9)
    assert r.mean == pytest.approx(r.distances.mean()) and r.std == pytest.approx(r.distances.std())


@pytest.mark.parametrize("copies_in", ["a", "b"])
def test_copies_on_either_side_reach_the_optimum(copies_in):
    """Exact copies make ties on one side (rows or columns of the solver): the partners stay a
    permutation of b and the total is the brute-force optimum, whichever side holds them."""
    from hmmrnn.evaluate import _assign

    rng = np.random.default_rng(5)
    varied = rng.integers(0, 3, (7, 5))
    copied = rng.integers(0, 3, (7, 5))
    copied[:4] = copied[0]  # 4 distinct against 7: the copied side is never the rows
    a, b = (copied, varied) if copies_in == "a" else (varied, copied)
    partners = _assign(a, b, 3, dedup=False)
    assert is_permutation(partners, 7)
    total = brute_distances(a, b, 3)[np.arange(7), partners].sum()
    assert total == pytest.approx(brute_best_total(a, b, 3), abs=1e-9)


@pytest.mark.parametrize("method", ["assignment", "study"])
def test_identical_sets_give_zero(method):
    rng = np.random.default_rng(4)
    a = rng.integers(0, 3, (40, 8))
    a[:10] = a[0]  # repeats too
    r = matched_distances(a, a[rng.permutation(40)], 3, method=method)
    assert r.mean == 0.0 and np.all(r.distances == 0.0)


def plain_study_partners(a, b, eps=0.1, tol=0.1):
    """The study's matching written out on the full problem: log-domain Sinkhorn on the plain
    Euclidean cost, stopped once the potentials move by less than `tol` in sum, argmax pairing."""
    from scipy.special import logsumexp

    cost = np.sqrt(2.0 * mismatch_matrix(a, b, 3))
    la, lb = np.full(len(a), -np.log(len(a))), np.full(len(b), -np.log(len(b)))
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(100_000):
        f_new = -eps * logsumexp((g[None, :] - cost) / eps + lb[None, :], axis=1)
        g_new = -eps * logsumexp((f_new[:, None] - cost) / eps + la[:, None], axis=0)
        moved = np.abs(f_new - f).sum() + np.abs(g_new - g).sum()
        f, g = f_new, g_new
        if moved < tol:
            break
    plan = np.exp((f[:, None] + g[None, :] - cost) / eps + la[:, None] + lb[None, :])
    return plan.argmax(axis=1), cost


@pytest.mark.parametrize("sweep_bytes", [None, 300])
@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_study_matching_equals_the_plain_log_domain_iteration(eps, sweep_bytes, monkeypatch):
    """Also with blocks of a row or two (sweep_bytes 300): the blocked sweeps and log-sum-exps
    give the single block's iterates."""
    from hmmrnn import evaluate as ev

    if sweep_bytes:
        monkeypatch.setattr(ev, "_SWEEP_BYTES", sweep_bytes)
    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, (60, 12))
    b = rng.integers(0, 3, (50, 12))
    b[5:9] = b[0]  # repeated sequences: merged into one weighted point internally
    a[10:14] = a[3]
    r = matched_distances(a, b, 3, method="study", reg=eps)
    partners, cost = plain_study_partners(a, b, eps)
    np.testing.assert_array_equal(r.partners, partners)
    np.testing.assert_allclose(r.distances, cost[np.arange(60), partners])
    assert r.method == "study" and 0 < r.unique_fraction < 1
    assert r.unique_fraction == np.unique(r.partners).size / 60


def test_the_float32_study_kernel_keeps_the_float64_partners(monkeypatch):
    """The kernel's storage precision: on HMM samples the same pairing, at most a near-tie apart."""
    from hmmrnn import evaluate as ev

    hmm = ExperimentConfig.from_preset("Two").build_hmm()
    rng = np.random.default_rng(6)
    ref, other = (hmm.sample(1200, 40, rng).outputs for _ in range(2))
    single = matched_distances(other, ref, 3, method="study")
    monkeypatch.setattr(ev, "_KERNEL_DTYPE", np.float64)
    double = matched_distances(other, ref, 3, method="study")
    assert (single.partners != double.partners).sum() <= 2
    assert single.mean == pytest.approx(double.mean, rel=1e-5)


def test_the_study_matching_says_how_far_it_has_converged():
    """log(first move / move) against log(first move / threshold): rising, short of 1."""
    hmm = ExperimentConfig.from_preset("Two").build_hmm()
    rng = np.random.default_rng(7)
    a, b = (hmm.sample(400, 40, rng).outputs for _ in range(2))
    seen = []
    matched_distances(a, b, 3, method="study", on_progress=seen.append)
    assert len(seen) > 10 and seen == sorted(seen)
    assert seen[0] == 0 and 0.9 < seen[-1] < 1
    assert matched_distances(a, b, 3, on_progress=seen.append).method == "assignment"


def test_small_epsilons_keep_the_float64_pairing():
    """At reg 0.03 the plan's argmax margins are about 1e-15: the returned potential is taken in
    float64, so the float32 kernel's noise does not decide them (it paired 919 of these 3,000
    sequences, each with an identical partner available, with another)."""
    from hmmrnn import evaluate as ev

    hmm = ExperimentConfig.from_preset("Three").build_hmm()
    rng = np.random.default_rng(101)
    hmm.sample(2000, 10, rng), hmm.sample(2000, 10, rng)
    a, b = hmm.sample(3000, 3, rng).outputs, hmm.sample(3000, 3, rng).outputs
    single = matched_distances(a, b, 3, method="study", reg=0.03)
    try:
        ev._KERNEL_DTYPE = np.float64
        double = matched_distances(a, b, 3, method="study", reg=0.03)
    finally:
        ev._KERNEL_DTYPE = np.float32
    assert single.mean == double.mean == 0.0
    np.testing.assert_array_equal(single.partners, double.partners)


def _fake_study(monkeypatch, behaviour):
    """matched_distances replaced by `behaviour(call_index, on_progress)`; returns the calls."""
    from hmmrnn import evaluate as ev

    calls = []

    def fake(x, *args, on_progress=None, **kwargs):
        calls.append(x)
        return behaviour(len(calls) - 1, on_progress)

    monkeypatch.setattr(ev, "matched_distances", fake)
    return calls


def test_a_failed_matching_is_raised_at_once_and_stops_the_rest(monkeypatch):
    import time

    from hmmrnn import evaluate as ev

    def behaviour(i, on_progress):
        if i == 0:
            raise ValueError("did not settle")
        time.sleep(2)

    calls = _fake_study(monkeypatch, behaviour)
    x = np.zeros((4, 3), dtype=int)
    start = time.monotonic()
    with pytest.raises(ValueError, match="did not settle"):
        ev._both_matchings(x, x, x, 3, "study", 0.1, lambda *a: None)
    assert time.monotonic() - start < 1.0 and len(calls) == 1  # the RNN's was never started

    stopped = []

    def iterating(i, on_progress):  # a study matching still running when the evaluation fails
        try:
            for _ in range(300):
                on_progress(0.1)
                time.sleep(0.01)
        except ev._Abandoned:
            stopped.append(True)

    def failing_generation():
        raise RuntimeError("generation failed")

    _fake_study(monkeypatch, iterating)
    with pytest.raises(RuntimeError, match="generation failed"):
        ev._both_matchings(x, failing_generation, x, 3, "study", 0.1, lambda *a: None)
    time.sleep(0.2)
    assert stopped == [True]


def test_the_bar_never_goes_back_when_convergence_reports_start(monkeypatch):
    """Time-based at first, then the study's own measure (which starts low): the larger holds."""
    import time

    from hmmrnn import evaluate as ev

    def behaviour(i, on_progress):
        time.sleep(0.35)
        for share in (0.01, 0.2, 0.9):
            on_progress(share)
            time.sleep(0.25)

    _fake_study(monkeypatch, behaviour)
    monkeypatch.setattr(ev, "_PROGRESS_TICK", 0.05)
    monkeypatch.setattr(ev, "_expected_matching_seconds", lambda n, method: 0.5)
    x = np.zeros((4, 3), dtype=int)
    fractions = []
    ev._both_matchings(x, x, x, 3, "study", 0.1, lambda f, m: fractions.append(f))
    assert fractions == sorted(fractions) and len(set(fractions)) > 5


@pytest.mark.parametrize("cores, native", [(1, True), (2, True), (2, False)])
def test_matchings_run_side_by_side_where_there_are_two_cores(monkeypatch, cores, native):
    """Except the study's on numpy's passes, whose sweeps share one memory bus."""
    import time

    from hmmrnn import evaluate as ev
    from hmmrnn import match_passes

    spans = []

    def solve(*args, **kwargs):
        start = time.monotonic()
        time.sleep(0.3)
        spans.append((start, time.monotonic()))

    monkeypatch.setattr(ev, "matched_distances", solve)
    monkeypatch.setattr(ev.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(match_passes, "available", lambda: native)
    x = np.zeros((4, 3), dtype=int)
    for method in ("study", "assignment"):
        spans.clear()
        ev._both_matchings(x, x, x, 3, method, 0.1, lambda *a: None)
        (s0, e0), (s1, e1) = sorted(spans)
        assert (s1 >= e0) == (cores == 1 or (method == "study" and not native))


@pytest.mark.slow
@pytest.mark.parametrize("preset, published", [("Two", 4.55), ("Three", 7.29)])
def test_the_study_matching_reproduces_the_published_baselines(preset, published):
    """ANALYSES.md section 4: N 5,000, L 100, HMM against an independent HMM sample."""
    hmm = ExperimentConfig.from_preset(preset).build_hmm()
    rng = np.random.default_rng(0)
    ref, other = (hmm.sample(5000, 100, rng).outputs for _ in range(2))
    r = matched_distances(other, ref, 3, method="study")
    assert abs(r.mean - published) < 0.1, r.mean
    assert 0.75 < r.unique_fraction < 0.9  # not one-to-one, as the study's column argmax


def test_matched_distances_validation():
    a = np.zeros((4, 5), dtype=int)
    with pytest.raises(ValueError, match="2-D"):
        matched_distances(a[0], a, 3)
    with pytest.raises(ValueError, match="lengths differ"):
        matched_distances(a, a[:, :4], 3)
    with pytest.raises(ValueError, match="equal set sizes"):
        matched_distances(a, a[:3], 3)
    with pytest.raises(ValueError, match="lie in"):
        matched_distances(a + 3, a, 3)
    with pytest.raises(ValueError, match="empty"):
        matched_distances(a[:0], a[:0], 3)
    with pytest.raises(ValueError, match="integer"):
        matched_distances(a.astype(float), a, 3)
    with pytest.raises(ValueError, match="method"):
        matched_distances(a, a, 3, method="nearest")
    assert matched_distances(a, a[:3], 3, method="study").mean == 0.0  # sizes may differ
    assert matched_distances(torch.zeros(4, 5, dtype=torch.long), a, 3).mean == 0.0


# --- statistics ----------------------------------------------------------------------------------


def test_volatility_frequencies_transitions_by_hand():
    x = np.array([[0, 0, 1, 1, 2], [2, 1, 0, 1, 2], [1, 1, 1, 1, 1]])
    assert volatility(x).tolist() == [2, 4, 0]
    freq = output_frequencies(x, 3)
    np.testing.assert_allclose(freq, [[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0, 1, 0]])
    np.testing.assert_allclose(symbol_share(x, 3), [3 / 15, 9 / 15, 3 / 15])
    counts = transition_counts(x, 3)
    # pairs: (0,0)(0,1)(1,1)(1,2) | (2,1)(1,0)(0,1)(1,2) | (1,1) x4
    assert counts.tolist() == [[1, 2, 0], [1, 5, 2], [0, 1, 0]]
    np.testing.assert_allclose(
        transition_matrix(x, 3), [[1 / 3, 2 / 3, 0], [1 / 8, 5 / 8, 2 / 8], [0, 1, 0]]
    )
    # a symbol that never precedes another output gives a zero row, not NaN
    t = transition_matrix(np.array([[0, 0, 1]]), 3)
    assert t.tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="lie in"):
        transition_matrix(x, 2)


def test_long_sample_transitions_approach_theory():
    t = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.3, 0.1, 0.6]])
    e = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    w, v = np.linalg.eig(t.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi /= pi.sum()
    hmm = HMM(t, e, start=pi)
    joint = e.T @ np.diag(pi) @ t @ e  # P(o_t = i, o_t+1 = j) = sum pi_s E_si T_ss' E_s'j
    theory = joint / joint.sum(axis=1, keepdims=True)
    out = hmm.sample(200, 400, np.random.default_rng(6)).outputs
    np.testing.assert_allclose(transition_matrix(out, 3), theory, atol=0.02)
    np.testing.assert_allclose(symbol_share(out, 3), pi @ e, atol=0.02)


# --- results -------------------------------------------------------------------------------------


def three_hmm() -> HMM:
    return HMM(transition_target_prob(3), emission_linear(3))


def some_result(**changes) -> EvaluationResult:
    rng = np.random.default_rng(7)
    hmm = three_hmm()
    ref, other, rnn = (hmm.sample(60, 12, rng).outputs for _ in range(3))
    res = compare_outputs(ref, other, rnn, 3, seed=7)
    for key, value in changes.items():
        setattr(res, key, value)
    return res


def test_compare_outputs_same_distribution_is_close():
    res = some_result()
    assert res.num_sequences == 60 and res.seq_len == 12 and res.num_outputs == 3
    assert res.hmm_transition.shape == res.transition_sq_diff.shape == (3, 3)
    assert res.hmm_freq_mean.shape == res.rnn_freq_std.shape == (3,)
    assert res.distance_ratio == pytest.approx(res.rnn_mean / res.baseline_mean)
    assert 0.7 < res.distance_ratio < 1.3
    assert res.baseline_unique_fraction == res.rnn_unique_fraction == 1.0


def save(res: EvaluationResult, path, **params) -> None:
    AnalysisRun("evaluation", 1, {"seed": res.seed, **params}, res).save(path)


def test_save_load_round_trip(tmp_path):
    res = some_result(volatility_rel_error=math.inf)
    path = tmp_path / "sub" / "evaluation.json"
    save(res, path, num_sequences=60)
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    run = load_evaluation(path)
    assert run.params == {"seed": 7, "num_sequences": 60} and run.source == "file"
    back = run.result
    assert back.to_dict() == res.to_dict()
    assert back.volatility_rel_error == math.inf
    np.testing.assert_array_equal(back.rnn_transition, res.rnn_transition)
    assert EvaluationResult.load(path).to_dict() == res.to_dict()


def test_legacy_flat_files_still_load(tmp_path):
    """evaluation.json as written before results had a run header (the flat result)."""
    res = some_result()
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"format": "hmmrnn.evaluation/1", **res.to_dict()}))
    run = load_evaluation(path)
    assert run.result.to_dict() == res.to_dict()
    assert run.params["num_sequences"] == 60 and run.params["seq_len"] == 12
    assert run.params["reg"] == 0.1 and run.model_sha256 is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "format"),
        ('{"seed": 1}', "format"),
        ('{"format": "hmmrnn.evaluation/1", "seed": 1}', "lacks"),
    ],
)
def test_load_malformed(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultFileError, match=message):
        load_evaluation(path)


def test_load_bad_fields(tmp_path):
    path = tmp_path / "bad.json"
    save(some_result(), path)
    good = json.loads(path.read_text())
    for key, value, message in [
        ("hmm_transition", [[1, 2], [3, 4]], "shape"),
        ("rnn_mean", "lots", "number"),
        ("seed", 1.5, "integer"),
    ]:
        path.write_text(json.dumps({**good, "result": {**good["result"], key: value}}))
        with pytest.raises(ResultFileError, match=message):
            load_evaluation(path)
    path.write_text(json.dumps({**good, "format": "other/9"}))
    with pytest.raises(ResultFileError, match="format"):
        load_evaluation(path)
    path.write_text(json.dumps({**good, "analysis": "pca"}))
    with pytest.raises(ResultFileError, match="not an evaluation"):
        load_evaluation(path)
    with pytest.raises(ResultFileError, match="cannot read"):
        load_evaluation(tmp_path / "missing.json")


def test_passes_bar():
    good = some_result(
        distance_ratio=1.0,
        transition_error=0.05,
        transition_sq_error=0.002,
        volatility_rel_error=0.1,
    )
    assert good.passes_bar() == (True, [])
    bad = some_result(
        distance_ratio=1.2, transition_error=0.3, transition_sq_error=0.09, volatility_rel_error=0.5
    )
    ok, reasons = bad.passes_bar()
    assert not ok and len(reasons) == 4
    assert "distance ratio" in reasons[0]
    assert bad.passes_bar(max_ratio=2, max_abs=1, max_sq=1, max_vol_rel=1) == (True, [])
    nan = some_result(distance_ratio=float("nan"), transition_error=0.0, transition_sq_error=0.0)
    nan.volatility_rel_error = 0.0
    assert nan.passes_bar() == (False, ["distance ratio (rnn / baseline) nan > 1.05"])


# --- evaluate_model ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["assignment", "study"])
def test_evaluate_model_tiny(method):
    torch.manual_seed(0)
    model = HMMRNN(3, 8, 3)
    res = evaluate_model(model, three_hmm(), num_sequences=150, seq_len=10, seed=3, method=method)
    assert res.method == method and res.num_sequences == 150 and res.seq_len == 10
    assert res.rnn_transition.shape == (3, 3) and res.rnn_freq_mean.shape == (3,)
    np.testing.assert_allclose(res.rnn_freq_mean.sum(), 1.0)
    assert res.baseline_mean > 0 and res.rnn_mean > 0 and math.isfinite(res.distance_ratio)
    again = evaluate_model(model, three_hmm(), num_sequences=150, seq_len=10, seed=3, method=method)
    assert again.to_dict() == res.to_dict()  # seeded: reproducible
    assert model.training  # mode restored


def test_evaluate_model_validation():
    model = HMMRNN(3, 8, 4)
    with pytest.raises(ValueError, match="outputs"):
        evaluate_model(model, three_hmm(), num_sequences=10, seq_len=5)
    with pytest.raises(ValueError, match="num_sequences"):
        evaluate_model(HMMRNN(3, 8, 3), three_hmm(), num_sequences=0)


# --- how the outputs switch ---------------------------------------------------------------------


def test_dwell_statistics_of_a_hand_made_sequence():
    from hmmrnn.evaluate import (
        dwell_distribution,
        early_switch_rate,
        interior_runs,
        one_step_share,
        switch_back_share,
    )

    x = np.array([[0, 0, 2, 0, 0, 0, 2, 2, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    lengths, symbols = interior_runs(x, 3)
    # runs of row 0: 00 | 2 | 000 | 22 | 11 -> interior: 2 (1), 000 (3), 22 (2)
    assert lengths.tolist() == [1, 3, 2] and symbols.tolist() == [2, 0, 2]
    d = dwell_distribution(x, 3)
    assert d[0, 2] == 1.0 and d[2, 0] == d[2, 1] == 0.5 and d[1].sum() == 0
    assert one_step_share(x) == pytest.approx(1 / 3)
    # switches at steps 2, 3, 6, 8 (row 0); only 2->0 at step 3 undoes the one before it
    assert switch_back_share(x) == pytest.approx(1 / 4)
    assert early_switch_rate(x) == pytest.approx(4 / 18)


def test_dynamics_bar_catches_a_chattering_sequence_the_old_bar_passes():
    from hmmrnn.evaluate import compare_outputs

    hmm = HMM(transition_target_prob(2), emission_linear(2))
    rng = np.random.default_rng(0)
    ref, other = (hmm.sample(400, 30, rng).outputs for _ in range(2))
    chatter = other.copy()
    # every switch is followed by an immediate switch back, keeping the volatility similar
    flips = rng.random(chatter.shape) < 0.04
    for i, t in zip(*np.nonzero(flips[:, 1:-1]), strict=True):
        chatter[i, t + 1] = 2 - chatter[i, t]
    base = compare_outputs(ref, other, other, 3)
    bad = compare_outputs(ref, other, chatter, 3)
    assert base.passes_dynamics_bar(max_long=None)[0]
    assert bad.rnn_switch_back > base.rnn_switch_back + 0.12
    ok, reasons = bad.passes_dynamics_bar(max_long=None)
    assert not ok and any("switch-back" in r for r in reasons)


def test_rare_symbols_are_flagged():
    res = some_result()
    res.share_ratio = np.array([1.0, 0.1, 1.2])
    assert res.rare_symbols() == [1]


def test_a_cancel_is_answered_while_a_matching_is_still_solving(monkeypatch):
    """Solver calls cannot be interrupted: the cancel must not wait for them."""
    import threading

    from hmmrnn import evaluate as ev
    from hmmrnn.cancel import Cancelled, CancelToken

    release, finished = threading.Event(), []

    def stuck(*args, **kwargs):
        release.wait(30)  # stands for a long solver call
        finished.append(True)

    monkeypatch.setattr(ev, "matched_distances", stuck)
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    x = np.zeros((4, 3), dtype=int)
    with pytest.raises(Cancelled):
        ev._both_matchings(x, x, x, 3, "assignment", 0.1, lambda *a: None, token)
    assert not finished  # answered while both solvers were still busy
    release.set()


def test_the_bar_moves_while_the_solvers_run(monkeypatch):
    """A solver reports nothing inside: the bar advances by elapsed time against the expected
    time, never to the end before the matchings are done, and the message counts seconds."""
    import time

    from hmmrnn import evaluate as ev

    def slow(x, *args, **kwargs):
        time.sleep(0.6 if x is first else 0.9)
        return "matched"

    monkeypatch.setattr(ev, "matched_distances", slow)
    monkeypatch.setattr(ev, "_PROGRESS_TICK", 0.1)
    monkeypatch.setattr(ev, "_expected_matching_seconds", lambda n, method: 1.0)
    first, second = np.zeros((4, 3), dtype=int), np.ones((4, 3), dtype=int)
    reports = []
    ev._both_matchings(first, second, first, 3, "assignment", 0.1,
                       lambda f, m: reports.append((f, m)), None, "matching 2 x 4")  # fmt: skip
    fractions = [f for f, _ in reports]
    assert len(reports) >= 5 and fractions == sorted(fractions)
    assert len(set(fractions)) >= 5 and 0 < fractions[-1] < 1
    assert all(m.startswith("matching 2 x 4: ") and " s" in m for _, m in reports)
    assert any(m.endswith(" s, baseline done") for _, m in reports[-2:])


def test_an_evaluation_imports_neither_pot_nor_scipy_cluster_unless_it_needs_them():
    """POT and scipy.cluster take seconds to import; a plain exact matching needs neither."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from hmmrnn.analyses import registry; registry.all_specs(); "
        "from hmmrnn.evaluate import matched_distances; "
        "a = np.random.default_rng(0).integers(0, 3, (40, 12)); "
        "b = np.random.default_rng(1).integers(0, 3, (40, 12)); "
        "matched_distances(a, b, 3); print('ot' in sys.modules, 'scipy.cluster' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("method", ["assignment", "study"])
def test_matchings_that_cannot_fit_are_refused_before_they_start(method, monkeypatch):
    """A matching holds n^2 float64 distances, a float32 kernel and its live pattern (13 bytes a
    pair), and two run side by side on two cores: 234 MB at 3,000. With 150 MB available, the
    refusal names the matching instead of exhausting memory; on one core, one at a time fits."""
    from hmmrnn import evaluate as ev
    from hmmrnn import resources
    from hmmrnn.errors import UserError

    monkeypatch.setattr(resources, "available_memory", lambda: 150 * 2**20)
    monkeypatch.setattr(ev.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ev.match_passes, "available", lambda: True)
    with pytest.raises(UserError, match=rf"matching 3000 x 3000 sequences \({method}\) needs"):
        evaluate_model(HMMRNN(3, 8, 3), three_hmm(), num_sequences=3000, seq_len=5, method=method)
    monkeypatch.setattr(ev.os, "cpu_count", lambda: 1)
    assert ev._matching_bytes(3000, method) < 0.8 * 150 * 2**20
