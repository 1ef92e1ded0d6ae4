"""Neuron-level mechanism (ANALYSES.md §6): kick neurons, noise-integrating populations, their weights.

A trained emulator switches output when noise pushes its state out of a cluster. In the study a few
"kick" units fire just before each switch, one group per switch direction, and larger populations
integrate the noise and drive them: each population excites one kick group and inhibits the other.
The study picked the kick units by hand and took a fixed top-70 for the populations; here both are
detected by rules with thresholds as parameters, and every detected set can be overridden.

- `kick_neurons`: event-triggered pre-activations around switches of each direction a -> b, scored
  against the unit's own distribution *while the output is a* (so units that merely code output a
  do not look special), kept when they peak before the switch rather than after it, then confirmed
  causally by silencing the group and measuring that direction's switch rate again.
- `integrating_populations`: the sign rule on the recurrent weights onto the two kick groups.
- `preactivations`, `weight_blocks`, `group_activity`: the views the study drew from these sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import argmax_outputs, dwells, rollout
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import NoiseStd, P, Seed, Warmup

KickSteps = Annotated[int, P("driven steps simulated in all (over n_runs runs)", ge=2)]
KickWindow = Annotated[int, P("lags before a switch searched for a peak", ge=1)]
KickZ = Annotated[float, P("peak height, in std of the unit's activity, to join a group", ge=0)]
# At z >= 1 a quarter of a 2-state model's units joined a group; the study's groups were triplets.
KICK_Z = 1.2
KICK_GROUP = 3

# --- shared driven runs ---------------------------------------------------------------------------


@torch.no_grad()
def driven_preactivations(
    model, *, n_runs: int, steps: int, warmup: int, noise_std: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden, pre, outputs, noise) of `n_runs` driven runs, the first `warmup` steps dropped.

    hidden and pre are (n_runs, steps, H), outputs (n_runs, steps) argmax outputs and noise the
    inputs of the whole run (n_runs, warmup + steps, d), so that a perturbed rerun can reuse them.
    Pre-activations are recomputed from the fused run in one batched product: pre_t = W_hh h_{t-1}
    + W_ih x_t, i.e. what each unit receives before the ReLU.
    """
    if n_runs < 1 or steps < 2 or warmup < 0:
        raise ValueError(
            f"need n_runs >= 1, steps >= 2, warmup >= 0 (got {n_runs}, {steps}, {warmup})"
        )
    gen = torch_generator(seed, model.device)
    noise = model.sample_noise(n_runs, warmup + steps, noise_std, gen)
    hidden, _ = model.rnn(noise)
    previous = torch.cat([torch.zeros_like(hidden[:, :1]), hidden[:, :-1]], dim=1)
    pre = model.preactivation(previous, noise)
    hidden, pre = hidden[:, warmup:], pre[:, warmup:]
    return hidden, pre, argmax_outputs(model, hidden), noise


def _directions(k: int) -> np.ndarray:
    """All ordered output pairs (a, b), a != b, in row-major order: (D, 2) with D = K (K - 1)."""
    return np.array([(a, b) for a in range(k) for b in range(k) if a != b], dtype=np.int64)


def _direction_table(k: int) -> torch.Tensor:
    """(K, K) index of direction (a, b) in `_directions(k)`; -1 on the diagonal."""
    table = -torch.ones(k, k, dtype=torch.long)
    for d, (a, b) in enumerate(_directions(k)):
        table[a, b] = d
    return table


def switch_counts(outputs: torch.Tensor, k: int) -> torch.Tensor:
    """Switches of each direction per run: outputs (B, T) -> counts (B, D)."""
    table = _direction_table(k).to(outputs.device)
    d = table[outputs[:, :-1], outputs[:, 1:]]  # -1 where no switch
    onehot = torch.nn.functional.one_hot(d + 1, num_classes=k * (k - 1) + 1)
    return onehot[..., 1:].sum(dim=1)


def as_index(units) -> np.ndarray:
    """Validated sorted-unique int64 unit indices from any sequence or array."""
    arr = np.unique(np.asarray(list(units) if not isinstance(units, np.ndarray) else units))
    return arr.astype(np.int64)


def _check_units(units: np.ndarray, hidden: int) -> np.ndarray:
    if units.size and (units.min() < 0 or units.max() >= hidden):
        raise ValueError(f"unit indices must lie in 0..{hidden - 1}, got {units.tolist()}")
    return units


# --- kick neurons ---------------------------------------------------------------------------------


@dataclass
class KickResult(Result):
    """Kick groups per switch direction and the evidence for them.

    directions (D, 2): the ordered output pairs (a, b) of the switches a -> b, D = K (K - 1).
    mask (D, H): kick group of each direction (a unit belongs to at most one direction).
    z, z_after (D, H): the unit's largest event-triggered mean pre-activation over the `window`
    steps before (after, from the switch step on) switches a -> b, in standard deviations of its
    pre-activation while the output is a. eta, eta_after (D, window, H): those event-triggered
    means (raw pre-activations; lags -window..-1 and 0..window-1). n_events (D,): switches used.
    baseline_mean, baseline_std (K, H): per-output statistics of the pre-activations.
    rate_nominal (D,): switches a -> b per step; rate_matrix (D, D): row g, column d, switches d per
    step with group g silenced (rows of empty groups repeat the nominal rates); rate_silenced (D,)
    its diagonal; rate_z (D,) the Poisson z of the change. rate_random (D, n_controls): that
    direction's rate with each of n_controls random activity-matched sets of the group's size
    silenced (nan where no group); percentile (D,): percent of those lesions that left the rate
    higher than the group's did. confirmed (D,): rate_z <= -confirm_z (silencing lowers the rate)
    and percentile >= confirm_percentile.
    reasons (D,): one line per direction saying why it has no group, or why it is (not) confirmed.
    """

    directions: np.ndarray
    mask: np.ndarray
    z: np.ndarray
    z_after: np.ndarray
    eta: np.ndarray
    eta_after: np.ndarray
    n_events: np.ndarray
    baseline_mean: np.ndarray
    baseline_std: np.ndarray
    rate_nominal: np.ndarray
    rate_silenced: np.ndarray
    rate_matrix: np.ndarray
    rate_z: np.ndarray
    confirmed: np.ndarray
    rate_random: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    percentile: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reasons: list[str] = field(default_factory=list)
    window: int = 5
    z_threshold: float = KICK_Z
    confirm_percentile: float = 95.0
    steps_simulated: int = 0

    def direction_index(self, a: int, b: int) -> int:
        hits = np.flatnonzero((self.directions[:, 0] == a) & (self.directions[:, 1] == b))
        if hits.size == 0:
            raise KeyError(f"no switch direction {a} -> {b}")
        return int(hits[0])

    def units(self, d: int) -> np.ndarray:
        """Kick units of direction index d, strongest first."""
        idx = np.flatnonzero(self.mask[d])
        return idx[np.argsort(-self.z[d, idx], kind="stable")]

    def group(self, a: int, b: int) -> np.ndarray:
        """Kick units of the switch a -> b, strongest first."""
        return self.units(self.direction_index(a, b))

    @property
    def all_units(self) -> np.ndarray:
        return np.flatnonzero(self.mask.any(axis=0))

    @property
    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Ragged view: (indices, offsets) with group d = indices[offsets[d]:offsets[d+1]]."""
        groups = [self.units(d) for d in range(len(self.directions))]
        offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
        flat = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
        return flat.astype(np.int64), offsets


def _baselines(pre: torch.Tensor, outputs: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Per-output mean and std (K, H) of the pre-activations, from one-hot weighted moments."""
    flat = pre.reshape(-1, pre.shape[-1]).double()
    onehot = torch.nn.functional.one_hot(outputs.reshape(-1), k).double()
    count = onehot.sum(0).clamp_min(1.0)[:, None]
    mean = onehot.T @ flat / count
    var = (onehot.T @ flat.square() / count - mean.square()).clamp_min(0.0)
    return mean, var.sqrt()


def _event_triggered(
    pre: torch.Tensor, outputs: torch.Tensor, k: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums (D, 2 window, H) of pre-activations at lags -window..window-1 around each switch.

    A switch a -> b at step t (outputs[t-1] = a, outputs[t] = b) is used when the whole window
    t - window .. t + window - 1 lies inside the run. Returns (sums, event counts (D,)).
    """
    n_runs, steps, hidden = pre.shape
    table = _direction_table(k).to(pre.device)
    d = table[outputs[:, :-1], outputs[:, 1:]]
    run, t = torch.nonzero(d >= 0, as_tuple=True)
    t = t + 1  # index of the first step with the new output
    keep = (t >= window) & (t + window <= steps)
    run, t = run[keep], t[keep]
    direction = table[outputs[run, t - 1], outputs[run, t]]
    n_dir = k * (k - 1)
    sums = torch.zeros(n_dir, 2 * window, hidden, dtype=torch.float64, device=pre.device)
    for i, lag in enumerate(range(-window, window)):
        sums[:, i].index_add_(0, direction, pre[run, t + lag].double())
    counts = torch.bincount(direction, minlength=n_dir)
    return sums, counts


def _select(
    z: np.ndarray,
    z_after: np.ndarray,
    n_events: np.ndarray,
    z_threshold: float,
    max_per_group: int | None,
    min_events: int,
) -> np.ndarray:
    """Kick mask (D, H): above threshold, peaking before the switch, each unit in its best direction."""
    ok = (z >= z_threshold) & (z > z_after) & (n_events[:, None] >= min_events)
    scored = np.where(ok, z, -np.inf)
    best = scored.argmax(axis=0)
    mask = np.zeros_like(ok)
    cols = np.flatnonzero(np.isfinite(scored.max(axis=0)))
    mask[best[cols], cols] = True
    if max_per_group is not None:
        for d in range(mask.shape[0]):
            idx = np.flatnonzero(mask[d])
            if idx.size > max_per_group:
                drop = idx[np.argsort(-z[d, idx], kind="stable")[max_per_group:]]
                mask[d, drop] = False
    return mask


@torch.no_grad()
def silenced_rates(
    model,
    noise: torch.Tensor,
    groups: Sequence[np.ndarray],
    *,
    warmup: int,
    max_batch_elems: int = 1 << 25,
) -> tuple[np.ndarray, np.ndarray]:
    """Switch rates per direction with each group silenced, on the same noise (paired comparison).

    Silencing sets both the recurrent and the input gain of the group's units to 0, so they stay
    at 0 throughout. Returns (nominal (D,), rates (G, D)) in switches per step. The groups run in
    chunks of at most `max_batch_elems` hidden values, so hundreds of control lesions fit in memory.
    """
    hidden_size, k = model.hidden_size, model.output_size
    n_runs, length, _ = noise.shape
    gains = torch.ones(len(groups) + 1, hidden_size, device=model.device)
    for g, units in enumerate(groups):
        gains[g + 1, torch.as_tensor(units, dtype=torch.long, device=model.device)] = 0.0
    per_chunk = max(1, max_batch_elems // (n_runs * length * hidden_size))
    counts = []
    for start in range(0, len(gains), per_chunk):
        chunk = gains[start : start + per_chunk]
        rows = chunk.repeat_interleave(n_runs, dim=0)
        x = noise.repeat(len(chunk), 1, 1)
        h0 = torch.zeros(x.shape[0], hidden_size, device=model.device)
        hidden = rollout(model, h0, x, rec_gain=rows, input_gain=rows)[:, warmup:]
        outs = argmax_outputs(model, hidden)
        counts.append(switch_counts(outs, k).reshape(len(chunk), n_runs, -1).sum(1))
    rates = torch.cat(counts).double().cpu().numpy() / (n_runs * (length - warmup))
    return rates[0], rates[1:]


def matched_sets(
    activity: np.ndarray,
    group: np.ndarray,
    eligible: np.ndarray,
    n_sets: int,
    rng: np.random.Generator,
    pool: int = 5,
) -> np.ndarray:
    """(n_sets, len(group)) random unit sets, each unit drawn among the `pool` eligible units
    whose mean activity is nearest to that of one group unit (without repeats inside a set).

    Matching on activity matters: silencing a busy unit disturbs any network more than silencing a
    quiet one, so a kick group must beat lesions of equally busy units, not of random ones.
    """
    n = len(group)
    if eligible.size < n:
        raise ValueError(f"{eligible.size} eligible units cannot make sets of {n}")
    nearest = [
        eligible[np.argsort(np.abs(activity[eligible] - activity[u]), kind="stable")] for u in group
    ]
    out = np.empty((n_sets, n), dtype=np.int64)
    for s in range(n_sets):
        taken: set[int] = set()
        for i in rng.permutation(n):
            free = [int(u) for u in nearest[i] if int(u) not in taken]
            pick = free[int(rng.integers(min(pool, len(free))))]
            taken.add(pick)
            out[s, i] = pick
    return out


def lesion_percentiles(silenced: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Percent of random lesions that leave a direction's rate higher than the group's lesion did.

    silenced (G,) the rate of each group's own direction with the group silenced; control (G, S)
    that rate under each of S matched random lesions (nan: none; a row of nan gives nan). One-
    sided on purpose: a kick group drives its switches, so silencing it must LOWER their rate; a
    lesion that merely disrupts the network (more switches, or the same drop as any other set of
    equally active units) does not confirm it. Ties count against the group.
    """
    control = np.asarray(control, dtype=np.float64)
    valid = ~np.isnan(control)
    n = valid.sum(axis=1)
    beaten = ((control > np.asarray(silenced)[:, None]) & valid).sum(axis=1)
    return np.where(n > 0, 100.0 * beaten / np.maximum(n, 1), np.nan)


def kick_neurons(
    model,
    *,
    steps: KickSteps = 20000,
    n_runs: Annotated[int, P("parallel runs the steps are split into", ge=1)] = 20,
    warmup: Warmup = 20,
    window: KickWindow = 5,
    z_threshold: KickZ = KICK_Z,
    max_per_group: Annotated[
        int | None, P("largest group kept, strongest units first (none: no cap)", ge=1)
    ] = KICK_GROUP,
    min_events: Annotated[int, P("fewest switches a direction needs for a group", ge=1)] = 10,
    noise_std: NoiseStd = 1.0,
    seed: Seed = 0,
    confirm: Annotated[bool, P("confirm each group by silencing it")] = True,
    confirm_z: Annotated[
        float, P("rate change (in binomial std errors) that confirms a group", ge=0)
    ] = 3.0,
    n_controls: Annotated[
        int, P("random activity-matched lesions each group must beat (0: no control)", ge=0)
    ] = 40,
    confirm_percentile: Annotated[
        float, P("percent of those lesions the group's rate change must exceed", ge=0, le=100)
    ] = 95.0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> KickResult:
    """Detect the kick group of every switch direction and (optionally) confirm it by silencing.

    `steps` driven steps in total are simulated as `n_runs` parallel runs. A unit joins the group
    of a -> b when its mean pre-activation at some lag within `window` steps before those switches
    is at least `z_threshold` standard deviations above its mean while the output is a, higher than
    at any lag after the switch (a peak, not a new level), and that direction is its strongest.
    Directions with fewer than `min_events` switches get no group. `max_per_group` caps a group at
    its strongest units (None: no cap). A group is confirmed when silencing it lowers its
    direction's rate by at least `confirm_z` standard errors AND below the rate left by
    `confirm_percentile` percent of `n_controls` random lesions of as many equally active non-kick
    units (ANALYSES.md section 6: any lesion that merely disrupts the network would pass the first).
    """
    progress = progress or no_progress
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    length = -(-int(steps) // int(n_runs))
    progress(0.0, "kick neurons: driven runs")
    check_cancel(cancel)
    k = model.output_size
    hidden, pre, outputs, noise = driven_preactivations(
        model, n_runs=n_runs, steps=length, warmup=warmup, noise_std=noise_std, seed=seed
    )
    mean, std = _baselines(pre, outputs, k)
    sums, counts = _event_triggered(pre, outputs, k, window)
    directions = _directions(k)
    eta_all = (sums / counts.clamp_min(1)[:, None, None]).cpu().numpy()
    source = torch.as_tensor(directions[:, 0], device=pre.device)
    mu, sd = mean[source].cpu().numpy(), std[source].cpu().numpy()
    safe = np.where(sd > 1e-9, sd, np.inf)  # a unit that never varies cannot be a kick unit
    zz = (eta_all - mu[:, None, :]) / safe[:, None, :]
    n_events = counts.cpu().numpy().astype(np.int64)
    zz[n_events == 0] = 0.0
    z, z_after = zz[:, :window].max(axis=1), zz[:, window:].max(axis=1)
    mask = _select(z, z_after, n_events, z_threshold, max_per_group, min_events)
    progress(0.3, "kick neurons: silencing groups")
    check_cancel(cancel)
    n_dir = len(directions)
    present = [d for d in range(n_dir) if mask[d].any()] if confirm else []
    activity = hidden.double().mean(dim=(0, 1)).cpu().numpy()
    controls = _control_sets(mask, present, activity, n_controls, seed)
    matrix = np.zeros((n_dir, n_dir))
    rate_random = np.full((n_dir, n_controls), np.nan)
    if present:
        groups = [np.flatnonzero(mask[d]) for d in present]
        groups += [row for d in present for row in controls.get(d, ())]
        nominal, rates = silenced_rates(model, noise, groups, warmup=warmup)
        matrix[:] = nominal
        matrix[present] = rates[: len(present)]
        at = len(present)
        for d in present:
            if d in controls:
                rate_random[d] = rates[at : at + n_controls, d]
                at += n_controls
    else:
        nominal = switch_counts(outputs, k).sum(0).double().cpu().numpy() / outputs.numel()
        matrix[:] = nominal
    check_cancel(cancel)
    silenced = np.diag(matrix).copy()
    total = n_runs * length
    c0, c1 = nominal * total, silenced * total
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_z = np.where(c0 + c1 > 0, (c1 - c0) / np.sqrt(c0 + c1), 0.0)
    percentile = lesion_percentiles(silenced, rate_random)
    passed_control = percentile >= confirm_percentile if n_controls else np.ones(n_dir, bool)
    confirmed = confirm & mask.any(axis=1) & (rate_z <= -confirm_z) & passed_control
    progress(1.0, "kick neurons: done")
    result = KickResult(
        directions=directions,
        mask=mask,
        z=z,
        z_after=z_after,
        eta=eta_all[:, :window],
        eta_after=eta_all[:, window:],
        n_events=n_events,
        baseline_mean=mean.cpu().numpy(),
        baseline_std=std.cpu().numpy(),
        rate_nominal=nominal,
        rate_silenced=silenced,
        rate_matrix=matrix,
        rate_z=rate_z,
        confirmed=np.asarray(confirmed, dtype=bool),
        rate_random=rate_random,
        percentile=percentile,
        window=int(window),
        z_threshold=float(z_threshold),
        confirm_percentile=float(confirm_percentile),
        steps_simulated=int(total),
    )
    result.reasons = _reasons(result, confirm, confirm_z, n_controls, min_events, set(controls))
    return result


def _control_sets(
    mask: np.ndarray, present: list[int], activity: np.ndarray, n_controls: int, seed: int
) -> dict[int, np.ndarray]:
    """Matched random lesions per present direction, drawn from units outside every kick group
    (outside the direction's own group only when the others leave too few)."""
    if not n_controls:
        return {}
    rng = np.random.default_rng([int(seed), 0x6B1C])
    kick_any = mask.any(axis=0)
    out = {}
    for d in present:
        group = np.flatnonzero(mask[d])
        eligible = np.flatnonzero(~kick_any)
        if eligible.size < group.size:
            eligible = np.flatnonzero(~mask[d])
        if eligible.size >= group.size:
            out[d] = matched_sets(activity, group, eligible, n_controls, rng)
    return out


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _reasons(
    r: KickResult,
    confirm: bool,
    confirm_z: float,
    n_controls: int,
    min_events: int,
    controlled: set[int],
) -> list[str]:
    """One line per direction: why it has no group, or why its group is (not) confirmed."""
    out = []
    for d, (a, b) in enumerate(r.directions):
        n, size = int(r.n_events[d]), int(r.mask[d].sum())
        peaks = np.flatnonzero(r.z[d] > r.z_after[d])
        if n == 0:
            out.append(f"no {a} -> {b} switches in {r.steps_simulated} steps")
        elif n < min_events:
            out.append(f"only {n} switches {a} -> {b} (min_events {min_events})")
        elif not size and not peaks.size:
            out.append("no unit's pre-activation peaks before the switch")
        elif not size:
            best = peaks[np.argmax(r.z[d, peaks])]
            out.append(
                f"no unit peaks {r.z_threshold:g} std above its level before the switch "
                f"(best: unit {best}, {r.z[d, best]:.2f})"
            )
        elif not confirm:
            out.append(f"{_units(size)}, not tested (confirm off)")
        elif r.rate_z[d] > -confirm_z:
            out.append(
                f"silencing its {_units(size)} changes the rate by {r.rate_z[d]:+.1f} s.e. "
                f"(needs a fall of {confirm_z:g})"
            )
        elif n_controls and d not in controlled:
            out.append(f"too few other units for random lesions of {_units(size)}")
        elif n_controls and not r.percentile[d] >= r.confirm_percentile:
            out.append(
                f"random activity-matched lesions of {_units(size)} lower the rate as much "
                f"(beats {r.percentile[d]:.0f}%, needs {r.confirm_percentile:g}%)"
            )
        else:
            control = f", beats {r.percentile[d]:.0f}% of random lesions" if n_controls else ""
            out.append(f"confirmed: rate change {r.rate_z[d]:+.1f} s.e.{control}")
    return out


# --- noise-integrating populations ----------------------------------------------------------------


@dataclass
class PopulationResult(Result):
    """Two kick groups and the populations wired to push one and hold back the other.

    pair (2,): outputs (a, b), -1 when the kick groups were given by hand; kick_a kicks a -> b,
    kick_b kicks b -> a. w_onto_a, w_onto_b (H,): each unit's mean outgoing recurrent weight onto
    the group (W_hh[group, j].mean()); score (H,) their product (NaN for kick units). pop_a: units
    exciting kick_a and inhibiting kick_b (so promoting a -> b), pop_b the reverse, most negative
    score first. cutoff: the score below which units were kept.
    """

    pair: np.ndarray
    kick_a: np.ndarray
    kick_b: np.ndarray
    w_onto_a: np.ndarray
    w_onto_b: np.ndarray
    score: np.ndarray
    pop_a: np.ndarray
    pop_b: np.ndarray
    threshold: float = 0.1
    cutoff: float = 0.0


def _pick_pair(kick: KickResult, pair: Sequence[int] | None) -> tuple[int, int]:
    if pair is not None:
        a, b = (int(p) for p in pair)
        for x, y in ((a, b), (b, a)):
            if not kick.group(x, y).size:
                raise ValueError(f"no kick units for the switch {x} -> {y}; pass kick lists")
        return a, b
    best, best_events = None, -1
    k = int(kick.directions.max()) + 1 if kick.directions.size else 0
    for a in range(k):
        for b in range(a + 1, k):
            da, db = kick.direction_index(a, b), kick.direction_index(b, a)
            if kick.mask[da].any() and kick.mask[db].any():
                events = int(kick.n_events[da] + kick.n_events[db])
                if events > best_events:
                    best, best_events = (a, b), events
    if best is None:
        raise ValueError(
            "no output pair has kick units in both directions; lower z_threshold or give the two "
            "kick groups explicitly"
        )
    return best


def integrating_populations(
    model,
    kick: KickResult | Sequence[Sequence[int]],
    *,
    pair: Sequence[int] | None = None,
    threshold: float = 0.1,
) -> PopulationResult:
    """Units whose recurrent weights onto the two kick groups have opposite signs.

    score_j = mean_i∈A W_hh[i, j] * mean_i∈B W_hh[i, j] is negative exactly when unit j excites one
    group and inhibits the other. Units (other than the kick units) with score < -threshold * mean
    |score| are kept: threshold 0 keeps every opposite-sign unit, larger values only the strongly
    wired ones (the study's fixed top-70 is replaced by this scale-free cut). `kick` is a KickResult
    (the pair of outputs `pair`, default: the pair with kick units both ways and most switches) or
    two explicit index lists [A, B].
    """
    hidden = model.hidden_size
    if isinstance(kick, KickResult):
        a, b = _pick_pair(kick, pair)
        group_a, group_b = kick.group(a, b), kick.group(b, a)
        pair_arr = np.array([a, b], dtype=np.int64)
    else:
        if len(kick) != 2:
            raise ValueError(f"give exactly two kick groups, got {len(kick)}")
        group_a, group_b = (_check_units(as_index(g), hidden) for g in kick)
        if not group_a.size or not group_b.size:
            raise ValueError("both kick groups need at least one unit")
        pair_arr = np.array([-1, -1], dtype=np.int64)
    w = model.w_hh.detach().double().cpu().numpy()
    onto_a, onto_b = w[group_a].mean(axis=0), w[group_b].mean(axis=0)
    score = onto_a * onto_b
    candidate = np.ones(hidden, dtype=bool)
    candidate[np.concatenate([group_a, group_b])] = False
    score = np.where(candidate, score, np.nan)
    scale = float(np.nanmean(np.abs(score))) if candidate.any() else 0.0
    cutoff = -float(threshold) * scale
    keep = candidate & (np.nan_to_num(score, nan=np.inf) < min(cutoff, 0.0))
    keep &= np.nan_to_num(score, nan=np.inf) < 0  # opposite signs, even for a negative threshold
    order = np.argsort(np.nan_to_num(score, nan=np.inf), kind="stable")
    pop_a = np.array([j for j in order if keep[j] and onto_a[j] > 0], dtype=np.int64)
    pop_b = np.array([j for j in order if keep[j] and onto_b[j] > 0], dtype=np.int64)
    return PopulationResult(
        pair=pair_arr,
        kick_a=np.asarray(group_a, dtype=np.int64),
        kick_b=np.asarray(group_b, dtype=np.int64),
        w_onto_a=onto_a,
        w_onto_b=onto_b,
        score=score,
        pop_a=pop_a,
        pop_b=pop_b,
        threshold=float(threshold),
        cutoff=min(cutoff, 0.0),
    )


# --- views: pre-activations, weight blocks, group activity ---------------------------------------


@dataclass
class PreactivationResult(Result):
    """Pre-activations (steps, n) of chosen units along one driven run, with its argmax outputs
    and their dwells (start, end inclusive, output)."""

    units: np.ndarray
    pre: np.ndarray
    outputs: np.ndarray
    dwell_start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dwell_end: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dwell_output: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def preactivations(
    model,
    units: Sequence[int],
    *,
    steps: int = 500,
    warmup: int = 20,
    noise_std: float = 1.0,
    seed: int = 0,
) -> PreactivationResult:
    """What the chosen units receive before the ReLU, step by step: kick units spike before switches."""
    idx = _check_units(as_index(units), model.hidden_size)
    _, pre, outputs, _ = driven_preactivations(
        model, n_runs=1, steps=steps, warmup=warmup, noise_std=noise_std, seed=seed
    )
    columns = torch.as_tensor(idx, dtype=torch.long, device=pre.device)
    symbols = outputs[0].cpu().numpy().astype(np.int64)
    runs = dwells(symbols)
    return PreactivationResult(
        units=idx,
        pre=pre[0][:, columns].double().cpu().numpy(),
        outputs=symbols,
        dwell_start=runs.start,
        dwell_end=runs.end,
        dwell_output=np.asarray(runs.value, dtype=np.int64),
    )


@dataclass
class WeightBlocks(Result):
    """Recurrent weight blocks between kick groups and populations (rows receive, columns send).

    kick_units / pop_units: the groups concatenated in order, kick_sizes / pop_sizes their lengths
    (to draw separators). kick_kick (nk, nk) = W_hh[kick, kick]; kick_pop (nk, np) = W_hh[kick, pop]
    (populations onto kick units); pop_pop (np, np) = W_hh[pop, pop].
    """

    kick_units: np.ndarray
    kick_sizes: np.ndarray
    pop_units: np.ndarray
    pop_sizes: np.ndarray
    kick_kick: np.ndarray
    kick_pop: np.ndarray
    pop_pop: np.ndarray


def _groups_of(obj, role: str) -> list[np.ndarray]:
    """Index groups from a PopulationResult (its kick or population groups), a KickResult or lists."""
    if isinstance(obj, PopulationResult):
        return [obj.kick_a, obj.kick_b] if role == "kick" else [obj.pop_a, obj.pop_b]
    if isinstance(obj, KickResult):
        return [obj.units(d) for d in range(len(obj.directions)) if obj.mask[d].any()]
    return [np.asarray(list(g), dtype=np.int64) for g in obj]


def weight_blocks(model, kick, populations) -> WeightBlocks:
    """The three weight-matrix views of the study: kick x kick, kick x population, population x
    population. `kick` and `populations` are a PopulationResult or lists of index groups."""
    hidden = model.hidden_size
    kicks = [_check_units(np.asarray(g, dtype=np.int64), hidden) for g in _groups_of(kick, "kick")]
    pops = [
        _check_units(np.asarray(g, dtype=np.int64), hidden) for g in _groups_of(populations, "pop")
    ]
    ku = np.concatenate(kicks) if kicks else np.zeros(0, dtype=np.int64)
    pu = np.concatenate(pops) if pops else np.zeros(0, dtype=np.int64)
    w = model.w_hh.detach().double().cpu().numpy()
    return WeightBlocks(
        kick_units=ku,
        kick_sizes=np.array([len(g) for g in kicks], dtype=np.int64),
        pop_units=pu,
        pop_sizes=np.array([len(g) for g in pops], dtype=np.int64),
        kick_kick=w[np.ix_(ku, ku)],
        kick_pop=w[np.ix_(ku, pu)],
        pop_pop=w[np.ix_(pu, pu)],
    )


@dataclass
class GroupActivity(Result):
    """Mean activity (G, steps) of named unit groups along one driven run, with the output dwells
    (dwell_start, dwell_end inclusive, dwell_output) to draw as bands behind them."""

    names: list[str]
    activity: np.ndarray
    outputs: np.ndarray
    dwell_start: np.ndarray
    dwell_end: np.ndarray
    dwell_output: np.ndarray
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def group_activity(
    model,
    groups: Mapping[str, Sequence[int]] | PopulationResult,
    *,
    steps: int = 500,
    warmup: int = 20,
    noise_std: float = 1.0,
    seed: int = 0,
) -> GroupActivity:
    """How the groups take turns: population activity builds up during a dwell, kicks end it."""
    if isinstance(groups, PopulationResult):
        groups = {
            "kick_a": groups.kick_a,
            "kick_b": groups.kick_b,
            "pop_a": groups.pop_a,
            "pop_b": groups.pop_b,
        }
    names = list(groups)
    hidden, _, outputs, _ = driven_preactivations(
        model, n_runs=1, steps=steps, warmup=warmup, noise_std=noise_std, seed=seed
    )
    h = hidden[0].double().cpu().numpy()
    activity = np.zeros((len(names), h.shape[0]))
    sizes = np.zeros(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        idx = _check_units(as_index(groups[name]), model.hidden_size)
        sizes[i] = idx.size
        if idx.size:
            activity[i] = h[:, idx].mean(axis=1)
    symbols = outputs[0].cpu().numpy().astype(np.int64)
    runs = dwells(symbols)
    return GroupActivity(
        names=names,
        activity=activity,
        outputs=symbols,
        dwell_start=runs.start,
        dwell_end=runs.end,
        dwell_output=np.asarray(runs.value, dtype=np.int64),
        sizes=sizes,
    )


# --- registration ---------------------------------------------------------------------------------


def populations(
    model,
    *,
    kick_units: Annotated[
        Sequence[Sequence[int]] | None,
        P("the two kick groups, e.g. 30,130;92,56 (none: detected by kick-neurons)", ge=0),
    ] = None,
    pair: Annotated[
        tuple[int, int] | None, P("output pair whose kick groups are used (none: best)", ge=0)
    ] = None,
    threshold: Annotated[float, P("keep units scoring below -threshold x mean |score|")] = 0.1,
    steps: Annotated[
        int | None, P("kick detection: driven steps (none: its default)", ge=2)
    ] = None,
    window: Annotated[int | None, P("kick detection: lags (none: its default)", ge=1)] = None,
    z_threshold: Annotated[float | None, P("kick detection: z (none: its default)", ge=0)] = None,
    seed: Seed = 0,
    context=None,
    cancel: CancelToken | None = None,
) -> PopulationResult:
    """Noise-integrating populations of the given kick groups, or of the detected ones (through
    the registry's cache when a `context` is given, so a kick-neurons run already on screen is
    reused)."""
    if kick_units is None:
        given = {"steps": steps, "window": window, "z_threshold": z_threshold, "seed": seed}
        kick_params = {k: v for k, v in given.items() if v is not None}
        if context is not None:
            kick = context.run("kick-neurons", kick_params, span=(0.0, 0.95))
        else:
            kick = kick_neurons(model, **kick_params, cancel=cancel)
    else:
        kick = kick_units
    check_cancel(cancel)
    return integrating_populations(model, kick, pair=pair, threshold=threshold)


def _kick_summary(r: KickResult) -> list[tuple[str, str]]:
    rows = []
    reasons = r.reasons or [""] * len(r.directions)
    for d, (a, b) in enumerate(r.directions):
        units = r.units(d)
        if not units.size and r.n_events[d] == 0:
            continue
        rate = f"rate {r.rate_nominal[d]:.4f}"
        if units.size:
            rate += f" -> {r.rate_silenced[d]:.4f} silenced"
        rows.append((f"{a} -> {b}", f"units {units.tolist()} · {r.n_events[d]} switches · {rate}"))
        if reasons[d]:
            rows.append(("", reasons[d]))
    return rows or [("kick units", "none: no switches in the driven runs")]


def _population_summary(r: PopulationResult) -> list[tuple[str, str]]:
    label = "given" if r.pair[0] < 0 else f"{r.pair[0]} <-> {r.pair[1]}"
    return [
        ("kick groups", f"{label}: A {r.kick_a.tolist()} · B {r.kick_b.tolist()}"),
        ("population A", f"{len(r.pop_a)} units (excite A, inhibit B)"),
        ("population B", f"{len(r.pop_b)} units (excite B, inhibit A)"),
        ("score cutoff", f"{r.cutoff:.4g}"),
    ]


def _preactivations(loaded, pop: PopulationResult) -> PreactivationResult:
    return preactivations(loaded.model, [int(u) for g in (pop.kick_a, pop.kick_b) for u in g])


def _weight_blocks(loaded, pop: PopulationResult) -> WeightBlocks:
    return weight_blocks(loaded.model, pop, pop)


def _group_activity(loaded, pop: PopulationResult) -> GroupActivity:
    return group_activity(loaded.model, pop)


_MECH = "hmmrnn.figures.mechanisms"

register(
    Analysis(
        name="kick-neurons",
        fn=kick_neurons,
        result=KickResult,
        version=2,  # 2: triplets at z >= 1.2, confirmed against random activity-matched lesions
        help="units whose pre-activation peaks before each switch direction, confirmed by "
        "silencing against random activity-matched lesions",
        summary=_kick_summary,
        figures=(
            Figure(
                "kick-neurons",
                "units peaking before each switch direction, and rates with them silenced",
                f"{_MECH}:render_kick_neurons",
            ),
        ),
        views=(
            View("rates", "hmmrnn.figures.terminal:kick_rates"),
            View("groups", "hmmrnn.figures.terminal:kick_groups"),
        ),
    )
)

register(
    Analysis(
        name="populations",
        fn=populations,
        result=PopulationResult,
        help="noise-integrating populations: units exciting one kick group and inhibiting the other",
        summary=_population_summary,
        figures=(
            Figure("preactivations", "kick units' pre-activations along a driven run",
                   f"{_MECH}:render_preactivations", derive=_preactivations, colors_outputs=True),
            Figure("weight-blocks", "recurrent weights kick/population blocks",
                   f"{_MECH}:render_weight_blocks", derive=_weight_blocks),
            Figure("group-activity", "mean activity of kick groups and populations with dwells",
                   f"{_MECH}:render_group_activity", derive=_group_activity, colors_outputs=True),
        ),
        views=(View("weights", "hmmrnn.figures.terminal:population_weights"),),
    )
)  # fmt: skip
