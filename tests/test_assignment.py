"""The certified sparse assignment against scipy's dense solver (its slow reference)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from hmmrnn import assignment
from hmmrnn.assignment import exact_assignment
from hmmrnn.evaluate import _row_blocks, distance_matrix, matched_distances


def dense_optimum(cost: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def solve(cost, guess=None, slack=0.5, on_round=None):
    n = cost.shape[0]
    guess = np.zeros(n) if guess is None else guess
    return exact_assignment(cost, guess, slack, _row_blocks(n, n), on_round)


def check_optimal(cost: np.ndarray, partners: np.ndarray) -> None:
    n = cost.shape[0]
    assert np.array_equal(np.sort(partners), np.arange(n))  # one-to-one
    # optimal for costs rounded to 2^-k (k >= 30 at these sizes): within n 2^-30 of the optimum
    total = cost[np.arange(n), partners].sum()
    assert total == pytest.approx(dense_optimum(cost), abs=n * 2.0**-30 + 1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 60, 250])
@pytest.mark.parametrize("kind", ["uniform", "few values", "one-hot sequences"])
def test_equals_the_dense_optimum(n, kind):
    rng = np.random.default_rng(n)
    if kind == "uniform":
        cost = rng.random((n, n)) * 10
    elif kind == "few values":  # heavy ties, as the distances of one-hot sequences have
        cost = np.sqrt(2.0 * rng.integers(0, 4, (n, n)))
    else:
        a, b = rng.integers(0, 3, (n, 12)), rng.integers(0, 3, (n, 12))
        b[: n // 2] = b[0]  # exact copies too
        cost = distance_matrix(a, b, 3)
    check_optimal(cost, solve(cost))


def test_a_poor_guess_needs_rounds_and_still_finds_the_optimum():
    """A wrong guess of the duals and no slack leave the optimum outside the first candidates:
    the certificate fails, violating pairs join, and the rounds end at the dense optimum."""
    rng = np.random.default_rng(7)
    cost = rng.random((120, 120))
    rounds = []
    partners = solve(cost, guess=rng.random(120) * 5, slack=0.0, on_round=rounds.append)
    assert len(rounds) > 1 and rounds == list(range(len(rounds)))
    check_optimal(cost, partners)


def test_a_capped_number_of_new_pairs_per_round_still_ends_at_the_optimum(monkeypatch):
    rng = np.random.default_rng(10)
    cost = rng.random((90, 90))
    monkeypatch.setattr(assignment, "_NEW_PER_ROW", 1)
    monkeypatch.setattr(assignment, "_MAX_ROUNDS", 10_000)  # no fallback: the rounds must end
    rounds = []
    partners = solve(cost, guess=rng.random(90) * 5, slack=0.0, on_round=rounds.append)
    assert len(rounds) > 1
    check_optimal(cost, partners)


def no_dense_solver(monkeypatch):
    """Make the safety net fail loudly: the sparse rounds must settle on their own."""

    def refuse(cost):
        raise AssertionError("the dense solver was called")

    monkeypatch.setattr(assignment, "_dense_solve", refuse)


def test_rounds_left_unsettled_go_to_the_dense_solver(monkeypatch):
    rng = np.random.default_rng(8)
    cost = rng.random((80, 80))
    calls = []
    dense = assignment._dense_solve
    monkeypatch.setattr(assignment, "_dense_solve", lambda c: calls.append(1) or dense(c))
    monkeypatch.setattr(assignment, "_MAX_ROUNDS", 1)
    rounds = []
    partners = solve(cost, guess=rng.random(80) * 5, slack=0.0, on_round=rounds.append)
    assert rounds == [0] and calls == [1]
    check_optimal(cost, partners)
    # and a sparse solver that finds nothing is answered the same way (scipy's rounds: the
    # native shortest paths turned off)
    monkeypatch.setattr(assignment, "_MAX_ROUNDS", 12)
    monkeypatch.setattr(assignment.match_passes, "assign_repair", lambda *args: None)
    monkeypatch.setattr(assignment, "_sparse_solve", lambda *args: None)
    check_optimal(cost, solve(cost))
    assert calls == [1, 1]


@pytest.mark.filterwarnings("error")  # scipy warns when it drops a stored zero weight
def test_negative_and_zero_costs(monkeypatch):
    """Stored zeros must survive the sparse matrix, and a constant shift changes nothing."""
    no_dense_solver(monkeypatch)
    rng = np.random.default_rng(9)
    cost = rng.integers(-3, 3, (40, 40)).astype(float)
    check_optimal(cost, solve(cost))
    check_optimal(np.zeros((5, 5)), solve(np.zeros((5, 5))))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("size", [1e-10, 1e6, 1e17, 1e300])
def test_costs_of_any_size_are_solved_exactly(size, monkeypatch):
    """The rounding scale follows the largest cost: tiny costs keep their precision, huge ones
    neither overflow the scale nor round a weight to zero."""
    no_dense_solver(monkeypatch)
    rng = np.random.default_rng(11)
    for n in (2, 5, 50):
        cost = rng.random((n, n)) * size
        partners = solve(cost, slack=0.1 * size)
        total = cost[np.arange(n), partners].sum()
        assert total == pytest.approx(dense_optimum(cost), rel=1e-9)


@pytest.mark.parametrize("guess", ["nan", "inf", "huge"])
def test_any_guess_only_changes_the_speed(guess, monkeypatch):
    no_dense_solver(monkeypatch)
    rng = np.random.default_rng(12)
    cost = rng.random((60, 60))
    values = {
        "nan": np.where(rng.random(60) < 0.5, np.nan, 0.0),
        "inf": np.where(rng.random(60) < 0.5, np.inf, -np.inf),
        "huge": rng.normal(0, 1e16, 60),
    }[guess]
    check_optimal(cost, solve(cost, guess=values, slack=0.0))
    if guess == "huge":  # duals far past 2^53 units: every sum the solver forms must stay exact
        cost = np.array([[0.15, 0.46, 0.47], [0.62, 0.67, 0.39], [0.2, 0.94, 0.37]])
        check_optimal(cost, solve(cost, guess=np.array([-3.8e16, 4e15, -2.9e16]), slack=0.0))
        for n in rng.integers(2, 30, 100):
            cost = rng.random((n, n))
            check_optimal(cost, solve(cost, guess=rng.normal(0, 1e16, n), slack=0.0))


def test_float32_and_integer_costs_settle_without_the_dense_solver(monkeypatch):
    no_dense_solver(monkeypatch)
    rng = np.random.default_rng(13)
    for cost in (rng.random((70, 70)).astype(np.float32), rng.integers(0, 9, (70, 70))):
        check_optimal(np.asarray(cost, dtype=np.float64), solve(cost))


def test_many_row_blocks_and_capped_first_candidates(monkeypatch):
    """Blocks of 7 rows (offsets, per-block caps), and equal costs everywhere: every pair is a
    candidate until the cap keeps 2 per row."""
    no_dense_solver(monkeypatch)
    monkeypatch.setattr(assignment, "_FIRST_PER_ROW", 2)
    monkeypatch.setattr(assignment.match_passes, "assign_repair", lambda *args: None)  # scipy's
    seen = []
    sparse = assignment._sparse_solve
    monkeypatch.setattr(
        assignment, "_sparse_solve", lambda c, k, s: seen.append(k.size) or sparse(c, k, s)
    )
    blocks = [slice(i, i + 7) for i in range(0, 90, 7)]
    partners = exact_assignment(np.ones((90, 90)), np.zeros(90), 0.5, blocks)
    assert np.array_equal(np.sort(partners), np.arange(90)) and seen[0] <= 90 + 2 * 90
    rng = np.random.default_rng(14)
    a, b = rng.integers(0, 3, (90, 10)), rng.integers(0, 3, (90, 10))
    cost = distance_matrix(a, b, 3)
    check_optimal(cost, exact_assignment(cost, np.zeros(90), 0.5, blocks))


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        exact_assignment(np.zeros((2, 3)), np.zeros(3), 0.1, [slice(0, 2)])
    with pytest.raises(ValueError, match="square"):
        exact_assignment(np.zeros(4), np.zeros(4), 0.1, [slice(0, 4)])
    with pytest.raises(ValueError):  # a guess of the wrong length
        exact_assignment(np.zeros((3, 3)), np.zeros(4), 0.1, [slice(0, 3)])
    assert exact_assignment(np.zeros((0, 0)), np.zeros(0), 0.1, []).shape == (0,)
    with pytest.raises(ValueError, match="non-finite"):
        exact_assignment(np.array([[0.0, np.inf], [1.0, 0.0]]), np.zeros(2), 0.1, [slice(0, 2)])


def test_matching_of_sampled_hmm_sets_equals_the_dense_optimum():
    """The evaluation's path (its entropic guess, candidates, certificate) on HMM samples whose
    unique share keeps the full problem (no merging of repeats)."""
    from hmmrnn.config import ExperimentConfig

    hmm = ExperimentConfig.from_preset("Three").build_hmm()
    rng = np.random.default_rng(0)
    a, b = (hmm.sample(300, 40, rng).outputs for _ in range(2))
    progress = []
    result = matched_distances(a, b, 3, dedup=False, on_progress=progress.append)
    cost = distance_matrix(a, b, 3)
    assert result.distances.sum() == pytest.approx(dense_optimum(cost), abs=1e-6)
    assert progress and progress == sorted(progress) and 0 < progress[-1] < 1


def test_the_optimum_found_does_not_depend_on_the_guess():
    """Costs of few values have many optimal assignments; different guesses reach different
    candidates, yet the same assignment comes back (per-sequence distances equal on every
    machine, not only their total)."""
    rng = np.random.default_rng(15)
    for n in (40, 200):
        cost = np.sqrt(2.0 * rng.integers(0, 3, (n, n)))
        first = solve(cost)
        check_optimal(cost, first)
        for guess in (rng.random(n), rng.random(n) * 3, -np.arange(n) / n):
            assert np.array_equal(solve(cost, guess=guess, slack=0.2), first)


needs_kernel = pytest.mark.skipif(
    __import__("hmmrnn.sinkhorn_kernel", fromlist=["kernel"]).kernel() is None,
    reason="no C compiler: every round re-solves with scipy",
)


@needs_kernel
def test_rounds_after_the_first_repair_the_optimum_instead_of_solving_again(monkeypatch):
    """A poor guess needs several rounds; the first solves by shortest paths from the guess's
    duals, each after it rematches only the rows of the new pairs (no scipy solve), and the
    optimum is the dense one."""
    rng = np.random.default_rng(21)
    a, b = rng.integers(0, 3, (300, 20)), rng.integers(0, 3, (300, 20))
    cost = distance_matrix(a, b, 3)
    calls = {"solve": 0, "repair": 0}
    solve_, repair_ = assignment._sparse_solve, assignment._repaired

    def counted_solve(*args):
        calls["solve"] += 1
        return solve_(*args)

    def counted_repair(*args):
        calls["repair"] += 1
        return repair_(*args)

    monkeypatch.setattr(assignment, "_sparse_solve", counted_solve)
    monkeypatch.setattr(assignment, "_repaired", counted_repair)
    rounds = []
    partners = solve(cost, guess=rng.random(300) * 5, slack=0.05, on_round=rounds.append)
    check_optimal(cost, partners)
    assert len(rounds) >= 2 and calls["repair"] == len(rounds) - 1 and calls["solve"] == 0


@needs_kernel
def test_a_failed_repair_solves_the_round_from_scratch(monkeypatch):
    from hmmrnn import match_passes

    monkeypatch.setattr(match_passes, "assign_repair", lambda *args: None)
    rng = np.random.default_rng(22)
    cost = np.sqrt(2.0 * rng.integers(0, 9, (120, 120)))
    check_optimal(cost, solve(cost, guess=rng.random(120) * 5, slack=0.05))


@needs_kernel
def test_the_repair_keeps_duals_feasible_and_the_matching_tight():
    """Random sparse pairs: the optimum on a subset, then pairs that violate its duals join; the
    repaired matching is optimal on them all (scipy's total) under duals that certify it."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    from hmmrnn import match_passes

    rng = np.random.default_rng(23)
    n = 200
    dense = rng.integers(1, 50, (n, n)).astype(float)
    every = np.sort(np.r_[np.arange(n) * (n + 1), rng.choice(n * n, 6 * n, replace=False)])
    every = np.unique(every)
    first = np.unique(np.r_[np.arange(n) * (n + 1), every[rng.random(every.size) < 0.6]])

    def optimum(keys):
        rows, cols = np.divmod(keys, n)
        indptr = np.searchsorted(rows, np.arange(n + 1))
        r, c = min_weight_full_bipartite_matching(csr_matrix((dense[rows, cols], cols, indptr),
                                                             (n, n)))  # fmt: skip
        partners = np.empty(n, dtype=np.int64)
        partners[r] = c
        return partners, float(dense[np.arange(n), partners].sum())

    partners, _ = optimum(first)
    v = assignment._column_duals(dense, first, partners, np.zeros(n), 1.0)
    u = dense[np.arange(n), partners] - v[partners]
    rows, cols = np.divmod(every, n)
    reduced = dense[rows, cols] - u[rows] - v[cols]
    bad = every[reduced < 0]
    assert bad.size > 0
    new, v2 = assignment._repaired(dense, every, 1.0, partners, v, bad)
    assert new is not None
    assert float(dense[np.arange(n), new].sum()) == optimum(every)[1]
    u2 = dense[np.arange(n), new] - v2[new]
    assert (dense[rows, cols] - u2[rows] - v2[cols] >= 0).all()
    assert (
        np.array_equal(np.sort(new), np.arange(n)) and np.isin(np.arange(n) * n + new, every).all()
    )
    # a row with no augmenting path: both rows reach column 0 only
    none = match_passes.assign_repair(np.array([0, 1, 2]), np.array([0, 0]), np.array([1.0, 1.0]),
                                      np.zeros(2), np.zeros(2), np.array([0, 1]), np.array([1]))  # fmt: skip
    assert none is None
