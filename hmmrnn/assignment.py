"""Exact minimum-cost one-to-one assignment on a dense cost matrix: solved on a sparse set of
candidate pairs, then certified against every pair.

Why not a dense solver: scipy's `linear_sum_assignment` took 4-10 s on the evaluation's 5,000 x
5,000 distance matrices, whose entries take only L + 1 distinct values (the ties make its
augmenting paths long). The pairs of an optimal assignment have zero reduced cost
C_ij - u_i - v_j under optimal duals (u, v), so under good guesses of the duals they sit among the
few pairs of small reduced cost. Given such a guess:

1. Candidates. From a guess g of the column duals, u_i = min_j (C_ij - g_j) and then
   v_j = min_i (C_ij - u_i): every reduced cost is >= 0, with a zero in each row and column. The
   candidates are the pairs with reduced cost <= `slack`, plus the pairs (i, i), so that a full
   matching always exists among them.
2. Solve the assignment on the candidates: by shortest augmenting paths (Dijkstra over the
   reduced costs, natively and outside the GIL: :func:`hmmrnn.match_passes.assign_repair`) from
   the guess's column duals, every row free and its dual its least reduced cost; this returns
   the optimum's duals too. Where there is no native kernel, scipy's sparse solver (LAPJVsp)...
3. ...and the duals of its optimum: with m(i) the partner of row i and u_i = C_i,m(i) - v_m(i),
   the column duals must satisfy v_j <= v_m(i) + C_ij - C_i,m(i) on every candidate pair:
   difference constraints, solved by Bellman-Ford relaxations (vectorised over the pairs) from
   the previous duals. They settle because the matching is optimal on the candidates (no
   negative cycle).
4. Certify. If C_ij - u_i - v_j >= 0 for every pair of the dense matrix, (u, v) is feasible for
   the whole problem's dual with the matching tight on it, and by LP duality the matching is
   optimal. Otherwise the violating pairs join the candidates, and their rows are unmatched,
   their duals lowered until all their pairs are >= 0, and rematched along shortest augmenting
   paths from the optimum just found (10-40 ms at n 5,000, where solving again took 0.3-0.6 s);
   without the native kernel step 2 runs again.
5. Choose. Many assignments are often optimal (ties), and which one steps 2-4 reach follows the
   candidates, which follow a guess computed in float32 by BLAS: it could differ between
   machines. The optimal assignments are exactly the full matchings of the tight pairs (reduced
   cost 0) under any optimal duals, so one more sparse solve among them, by a fixed
   pseudo-random weight of each pair, returns the same assignment everywhere (and so the same
   per-sequence distances, not only their total).

Costs are rounded to integers at a scale of 2^-k first, k as large as keeps every sum the solver
forms exact in float64 (about 2^49 / (n * largest cost)): the sparse solver could cycle on float
ties (on the sqrt distances it never finished), and integer arithmetic makes the certificate
exact. The result is optimal for the rounded costs, so its true total is within n * 2^-k of the
true optimum: a precision relative to the largest cost (5,000 pairs of distances up to 14: k 31,
within 2.3e-6 of a total near 20,000). The guess is sanitised (non-finite entries to 0, spread
clipped), and each round's dual start is shifted and clipped, so that no guess can break that
exactness. Should the rounds not settle (never seen), scipy's dense solver answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from hmmrnn import match_passes

_MAX_ROUNDS = 12  # certification rounds before the dense solver takes over
_FIRST_PER_ROW = 64  # first candidates per row (on average over a block), at most
_NEW_PER_ROW = 64  # violating pairs added per row and round, at most
_TIGHT_PER_ROW = 256  # tight pairs per row above which the found optimum is kept as it is
_START_FLOOR = -(2.0**51)  # dual starts lie in [-2^51, 0]: sums with costs < 2^49 stay exact


def exact_assignment(
    cost: np.ndarray,
    col_guess: np.ndarray,
    slack: float,
    blocks: Sequence[slice],
    on_round: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Partners (a column for each row) of a minimum-cost one-to-one assignment of the square
    `cost`; `col_guess` guesses the column duals and `slack` sets how far candidates may sit above
    them (both affect only the speed). `blocks` are the row slices taken per pass over `cost`;
    `on_round(k)` is told when certification round k begins (and may raise to stop). Float64
    costs are used as they are; others are converted (float32 sums would not be exact)."""
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    if cost.ndim != 2 or cost.shape != (n, n):
        raise ValueError(f"the cost matrix must be square, got {cost.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    largest = float(np.maximum(cost.max(), -cost.min()))  # no |cost| copy: NaN stays NaN
    if not math.isfinite(largest):
        raise ValueError("the cost matrix holds a non-finite entry")
    scale = _integer_scale(n, largest)
    guess = _sanitised(np.asarray(col_guess, dtype=np.float64).reshape(n), largest)
    keys, v = _candidates(cost, guess, slack, blocks, scale)
    partners, v = _first_optimum(cost, keys, scale, v)
    for round_ in range(_MAX_ROUNDS):
        if on_round is not None:
            on_round(round_)
        if partners is None:  # no native kernel, or the last one's duals could not be used
            partners = _sparse_solve(cost, keys, scale)
            if partners is None:
                break
            v = _column_duals(cost, keys, partners, _start(v), scale)
            if v is None:
                break
        u = np.rint(cost[np.arange(n), partners] * scale) - v[partners]
        bad = _violations(cost, u, v, blocks, scale)
        if bad.size == 0:
            return _canonical(cost, u, v, blocks, scale, partners)
        keys = _distinct(np.concatenate([keys, bad]))
        partners, v = _repaired(cost, keys, scale, partners, v, bad)
    return _dense_solve(cost)


def _integer_scale(n: int, largest: float) -> float:
    """2^k such that n + 1 rounded costs, shifted as the sparse solver's are, sum below 2^49
    (taken in logarithms: no product can overflow, whatever the costs' size)."""
    room = 49.0 - math.log2(n + 1) - 1.0 - math.log2(largest + 0.5)
    return 2.0 ** math.floor(room)


def _sanitised(guess: np.ndarray, largest: float) -> np.ndarray:
    """The guess with non-finite entries at 0 and its spread clipped to 4 (largest cost + 1):
    it only steers the candidates, and optimal duals rarely spread wider."""
    guess = np.where(np.isfinite(guess), guess, 0.0)
    guess -= guess.max()
    return np.maximum(guess, -4.0 * (largest + 1.0))


def _start(v: np.ndarray) -> np.ndarray:
    """A round's dual start: integers in [_START_FLOOR, 0] (any finite start is valid, and
    bounded ones keep every sum exact however many rounds run)."""
    return np.rint(np.maximum(v - v.max(), _START_FLOOR))


def _candidates(cost, col_guess, slack, blocks, scale) -> tuple[np.ndarray, np.ndarray]:
    """Keys i * n + j of the candidate pairs (at most _FIRST_PER_ROW per row on average over a
    block, the smallest reduced costs), and the reduced column duals (scaled)."""
    n = cost.shape[0]
    u = match_passes.row_min(cost, col_guess)
    if u is None:
        u = np.empty(n)
        for rows in blocks:
            u[rows] = (cost[rows] - col_guess).min(axis=1)
    v = match_passes.col_min(cost, u)
    if v is None:
        v = np.full(n, np.inf)
        for rows in blocks:
            np.minimum(v, (cost[rows] - u[rows, None]).min(axis=0), out=v)
    diagonal = np.arange(n, dtype=np.int64) * (n + 1)  # the pairs (i, i)
    found = _pairs(cost, u, v, blocks, None, slack, _FIRST_PER_ROW)
    return _distinct(np.concatenate([diagonal, found])), v * scale


def _pairs(cost, u, v, blocks, scale, limit: float, per_row: int) -> np.ndarray:
    """Keys of the pairs whose reduced cost (:func:`_reduced_blocks`) is not above `limit` or is
    NaN: of each block at most `per_row` times its rows, the smallest. In one native pass where
    there is the kernel (the same pairs), else block by block."""
    n = cost.shape[0]
    native = match_passes.pairs(cost, u, v, limit, scale, per_row * n)
    if native is not None and native[1] is not None:
        return np.concatenate([np.zeros(0, dtype=np.int64), *_capped(
            cost, u, v, blocks, scale, native[1], per_row)])  # fmt: skip
    found = [np.zeros(0, dtype=np.int64)]
    for rows, reduced in _reduced_blocks(cost, u, v, blocks, scale):
        i, j = np.nonzero(~(reduced > limit))
        i, j = _smallest(reduced, i, j, per_row * reduced.shape[0])
        found.append((i + rows.start).astype(np.int64) * n + j)
    return np.concatenate(found)


def _capped(cost, u, v, blocks, scale, keys: np.ndarray, per_row: int) -> Iterator[np.ndarray]:
    """The (row-major) keys of each block, cut as :func:`_smallest` cuts a block's pairs."""
    n = cost.shape[0]
    for rows in blocks:
        start, stop, _ = rows.indices(n)
        lo, hi = np.searchsorted(keys, [start * n, stop * n])
        part = keys[lo:hi]
        limit = per_row * (stop - start)
        if part.size > limit:
            i, j = np.divmod(part, n)
            values = cost[i, j] * scale if scale is not None else cost[i, j]
            if scale is not None:
                np.rint(values, out=values)
            values = values - u[i] - v[j]
            part = part[np.argpartition(values, limit - 1)[:limit]]
        yield part


def _smallest(values: np.ndarray, i: np.ndarray, j: np.ndarray, limit: int):
    """The `limit` pairs (i, j) of smallest values[i, j], or all of them if no more."""
    if i.size <= limit:
        return i, j
    keep = np.argpartition(values[i, j], limit - 1)[:limit]
    return i[keep], j[keep]


def _distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct keys (a sort: np.unique's hashing took 0.3 s on 300,000 keys)."""
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]]


def _sparse_solve(cost: np.ndarray, keys: np.ndarray, scale: float) -> np.ndarray | None:
    """The optimal matching among the candidate pairs (rounded costs), or None if the solver
    finds none."""
    n = cost.shape[0]
    rows, cols = np.divmod(keys, n)
    # every weight shifted to at least 1 (integers already): the solver drops stored zeros, and a
    # full matching's total only shifts by n times the shift
    weights = np.rint(cost[rows, cols] * scale)
    weights += 1.0 - weights.min()
    return _match(keys, weights, n)


def _match(keys: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray | None:
    """scipy's sparse solver on the pairs `keys` (sorted) with positive integer `weights`."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    rows, cols = np.divmod(keys, n)  # sorted by row, then column: already CSR order
    indptr = np.searchsorted(rows, np.arange(n + 1))
    try:
        r, c = min_weight_full_bipartite_matching(csr_matrix((weights, cols, indptr), (n, n)))
    except ValueError:  # no full matching: cannot happen with the pairs (i, i) present
        return None
    partners = np.empty(n, dtype=np.int64)
    partners[r] = c
    return partners


def _first_optimum(cost, keys, scale, v) -> tuple[np.ndarray | None, np.ndarray]:
    """The optimum on the candidates and its column duals, by shortest augmenting paths from
    the guess's duals (every row free, its dual its least reduced cost): at n 5,000 0.10-0.24 s
    outside the GIL, where scipy's solver took 0.35-0.55 s holding it and Bellman-Ford's duals
    another 0.09-0.23 s. (None, v) where that cannot be used (see :func:`_rematch`)."""
    n = cost.shape[0]
    v = _start(v)
    return _rematch(cost, keys, scale, np.zeros(n, dtype=np.int64), v, np.arange(n), None)


def _repaired(cost, keys, scale, partners, v, bad) -> tuple[np.ndarray | None, np.ndarray]:
    """The optimum on the candidates `keys` after the violating pairs `bad` joined them, and its
    column duals, from the last optimum (partners, v): each row of a violating pair is unmatched
    and its dual lowered until its pairs are all >= 0, then rematched along a shortest augmenting
    path. A round used to re-solve from scratch (scipy's solver, ~0.3-0.6 s at n 5,000) for as
    few as one new pair; this takes 10-40 ms. (None, v) where it cannot be used."""
    n = cost.shape[0]
    return _rematch(cost, keys, scale, partners, v, np.unique(bad // n), partners)


def _rematch(cost, keys, scale, partners, v, free, matched) -> tuple[np.ndarray | None, np.ndarray]:
    """Rematch the rows `free` (:func:`hmmrnn.match_passes.assign_repair`, native), the others
    keeping their partners in `matched` (None: every row is free) with duals tight on them, the
    free rows' duals their least reduced costs. (None, v) where there is no native kernel or the
    duals leave the range in which every sum is exact; the next round then solves from scratch,
    and the certificate checks the result either way."""
    n = cost.shape[0]
    rows, cols = np.divmod(keys, n)
    weights = np.rint(cost[rows, cols] * scale)
    indptr = np.searchsorted(rows, np.arange(n + 1))
    u = (
        np.zeros(n)
        if matched is None
        else np.rint(cost[np.arange(n), matched] * scale) - v[matched]
    )
    lowest = np.minimum.reduceat(weights - v[cols], indptr[:-1])  # every row has its (i, i)
    u[free] = lowest[free]
    done = match_passes.assign_repair(indptr, cols, weights, u, v, partners, free)
    if done is None or not np.all(np.abs(done[2]) <= -_START_FLOOR):
        return None, v
    return done[0], done[2]


def _column_duals(cost, keys, partners, start, scale) -> np.ndarray | None:
    """Column duals under which every candidate pair has reduced cost >= 0 and the matched pairs
    zero: Bellman-Ford relaxations of v_j <= v_m(i) + C_ij - C_i,m(i) from `start`. None if they
    do not settle within n rounds (a negative cycle: the matching was not optimal)."""
    n = cost.shape[0]
    rows, cols = np.divmod(keys, n)
    order = np.argsort(cols, kind="stable")
    rows, cols = rows[order], cols[order]
    source = partners[rows]
    weight = np.rint(cost[rows, cols] * scale) - np.rint(cost[rows, source] * scale)
    first = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    target = cols[first]
    v = start.copy()
    for _ in range(n + 1):
        best = np.minimum.reduceat(v[source] + weight, first)
        lower = best < v[target]
        if not lower.any():
            return v
        v[target[lower]] = best[lower]
    return None


def _reduced_blocks(cost, u, v, blocks, scale) -> Iterator[tuple[slice, np.ndarray]]:
    """Each row block with its reduced costs C_ij - u_i - v_j: rounded at `scale` (exact
    integers) unless that is None."""
    for rows in blocks:
        if scale is None:
            reduced = cost[rows] - u[rows, None]
        else:
            reduced = cost[rows] * scale
            np.rint(reduced, out=reduced)
            reduced -= u[rows, None]
        reduced -= v
        yield rows, reduced


def _violations(cost, u, v, blocks, scale) -> np.ndarray:
    """Keys of the pairs whose rounded reduced cost is negative (or NaN, which fails the
    certificate, never passes it): at most _NEW_PER_ROW times the rows of a block from each
    block, the most negative, so that a poor guess cannot flood the candidates (any one violating
    pair is enough to make progress). The reduced costs are integers: negative is below -0.5."""
    return _pairs(cost, u, v, blocks, scale, -0.5, _NEW_PER_ROW)


def _canonical(cost, u, v, blocks, scale, partners: np.ndarray) -> np.ndarray:
    """The same optimum, chosen independently of the guess: among the optimal assignments, the
    one of least tie-break weight.

    Under optimal duals the optimal assignments are exactly the full matchings of the tight pairs
    (reduced cost 0), whichever optimal duals were found; so a matching of those pairs by a fixed
    pseudo-random weight of each pair picks the same assignment on every machine, where the
    candidates (which follow the float32 guess) may differ. If the tight pairs are very many (a
    matrix of ties), the found optimum is kept. Certified, no reduced cost is negative: the tight
    ones are those under 0.5.
    """
    n = cost.shape[0]
    native = match_passes.pairs(cost, u, v, 0.5, scale, _TIGHT_PER_ROW * n)
    if native is not None:
        keys = native[1]
        if keys is None:
            return partners
    else:
        found = []
        for rows, reduced in _reduced_blocks(cost, u, v, blocks, scale):
            i, j = np.nonzero(reduced == 0)
            found.append((i + rows.start).astype(np.int64) * n + j)
            if sum(part.size for part in found) > _TIGHT_PER_ROW * n:
                return partners
        keys = np.concatenate(found)  # row-major already
    chosen = _match(keys, _tie_weights(keys), n)
    return partners if chosen is None else chosen


def _tie_weights(keys: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random weight in 1..2^20 for each pair: splitmix64's finaliser of its key.
    Non-linear on purpose: a multiplicative hash is nearly linear in the key, and the keys of
    any two assignments over the same rows and columns have the same sum, so it tied them."""
    z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)  # uint64 arithmetic wraps
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(44)).astype(np.float64) + 1.0


def _dense_solve(cost: np.ndarray) -> np.ndarray:
    """scipy's dense solver: the safety net, and the reference the tests compare against."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    partners = np.empty(cost.shape[0], dtype=np.int64)
    partners[rows] = cols
    return partners
