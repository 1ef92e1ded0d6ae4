"""Ablation and gain modulation of unit sets (ANALYSES.md §6): how kicks and noise make switches.

For one switch direction at a time and each gain mu (0 silences, 1 is nominal, > 1 excites), the
drive *into* a set is multiplied by mu: the recurrent drive for that direction's kick neurons; the
noise (input) drive for the "noise projection" (their top signed presynaptic partners) and for the
control (every unit outside the top signed partners of all kick neurons). Rollouts start at a
cluster point with gamma-mixed noise, and two read-outs are taken per mu:

- critical pairs per switch: complex eigen-pairs of the step Jacobians D G W_hh (D the gating mask,
  G the gains) near the unit circle (Mobius w = (lambda-1)/(lambda+1): |Re w| < re_tol and
  Im w > im_min), summed over the steps within `switch_window` steps of a switch (either side) and
  averaged over switches: the rotational instability that carries the state out of a cluster;
- the transition rate (argmax-output switches per step), the behaviour users want beside it.

All mus of one set run as one batch (mu is a batch dimension), with the same noise for every mu and
every set, so differences between mus are not sampling noise. Eigenvalues are the expensive part
(one eigen-decomposition per distinct gating mask), so they are taken on the first `eig_traj`
trajectories of each mu; the rates use all `n_traj`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import (
    argmax_outputs,
    mixed_noise,
    pc_basis,
    project,
    rollout,
    spectrum_counts,
)
from hmmrnn.analyses.neurons import as_index, kick_neurons
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import NoiseStd, P, Seed

DEFAULT_MUS = tuple(float(m) for m in np.round(np.arange(0.0, 2.01, 0.1), 2))
INPUT_SETS = (
    "noise",
    "control",
)  # the study scales their noise drive, the kick set's recurrent one


@dataclass
class AblationResult(Result):
    """Per set (S) and gain (M): behaviour and spectrum of the modulated network.

    set_names (S,), drives (S,) "recurrent" or "input"; set_units / set_offsets: the units of set s
    are set_units[set_offsets[s]:set_offsets[s+1]]. mus (M,). rate (S, M): argmax-output switches
    per step. critical_per_switch, critical_std, unstable_per_switch (S, M): mean (std) over
    switches of the critical pairs (mean unstable eigenvalues) of the step Jacobians within
    `switch_window` steps of the switch; n_switches_eig (S, M) how many switches that mean is over.
    protocol "long" (the research code's): both from `long_runs` runs of `long_steps` steps with
    fresh noise, the pairs around their first `eig_switches` switches; "rollouts": from the
    gamma-mixed rollouts (rate over all, pairs on the first `eig_traj`), whose shared frozen input
    and 100 steps hid a real -64% rate effect. projections (S, M, n_keep, steps+1,
    2): PC1-PC2 of the first trajectories, from h0; h0 (H,) the start (a cluster point).
    """

    set_names: list[str]
    drives: list[str]
    set_units: np.ndarray
    set_offsets: np.ndarray
    mus: np.ndarray
    rate: np.ndarray
    critical_per_switch: np.ndarray
    critical_std: np.ndarray
    unstable_per_switch: np.ndarray
    n_switches_eig: np.ndarray
    projections: np.ndarray
    h0: np.ndarray
    steps: int = 100
    n_traj: int = 100
    eig_traj: int = 12
    gamma: float = 0.5
    switch_window: int = 15
    protocol: str = "rollouts"
    long_runs: int = 0
    long_steps: int = 0

    def units(self, name: str) -> np.ndarray:
        s = self.set_names.index(name)
        return self.set_units[self.set_offsets[s] : self.set_offsets[s + 1]]


def default_sets(
    w_hh,
    kick: Sequence[int],
    *,
    top_k: int = 60,
    control_k: int = 35,
    all_kick: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """The study's three sets around one switch direction's kick units (ANALYSES.md section 6).

    noise: the union of the top_k presynaptic partners j of every kick unit i, ranked by the
    SIGNED weight W_hh[i, j] (most excitatory first), kick units excluded; control: every unit
    outside the top control_k signed partners of all kick units of both directions (`all_kick`,
    default `kick`), kick units excluded. An empty set is an error, never a silent no-op.
    """  # fmt: skip
    w = w_hh.detach().cpu().numpy() if isinstance(w_hh, torch.Tensor) else np.asarray(w_hh)
    hidden = w.shape[0]
    kick = as_index(kick)
    if not kick.size:
        raise ValueError("no kick neurons: pass sets=... or kick_units=... explicitly")
    every = np.union1d(kick, as_index(all_kick)) if all_kick is not None else kick

    def partners(units: np.ndarray, k: int) -> np.ndarray:
        k = max(0, min(int(k), hidden))
        return np.unique(np.argsort(-w[units], axis=1, kind="stable")[:, :k])

    noise = np.setdiff1d(partners(kick, top_k), kick)
    control = np.setdiff1d(np.arange(hidden), np.union1d(partners(every, control_k), every))
    for name, units in (("noise", noise), ("control", control)):
        if not units.size:
            raise ValueError(
                f"the {name} set is empty on this model (hidden {hidden}, top_k {top_k}, "
                f"control_k {control_k}, {len(every)} kick units); lower top_k/control_k"
            )
    return {"kick": kick, "noise": noise, "control": control.astype(np.int64)}


STUDY_HIDDEN, STUDY_TOP_K, STUDY_CONTROL_K = 150, 60, 35


def _direction_units(found, direction: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Kick units of detected direction `direction` (None: the first that has any), and those of
    every direction."""
    n = len(found.directions)
    if direction is None:
        direction = next((d for d in range(n) if found.units(d).size), 0)
    if direction >= n:
        raise ValueError(f"direction {direction}: the model has {n} switch directions (0..{n - 1})")
    units = found.units(direction)
    if not units.size:
        a, b = (int(v) for v in found.directions[direction])
        raise ValueError(
            f"no kick units found for the switch {a} -> {b} (direction {direction}); "
            "pass kick_units=... or choose another direction"
        )
    return units, found.all_units


@torch.no_grad()
def modulated_rollout(
    model,
    h0: torch.Tensor,
    noise: torch.Tensor,
    units: np.ndarray,
    mus: Sequence[float],
    *,
    by_input: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rollouts with the drive into `units` scaled by each mu, all mus in one batch.

    h0 (H,), noise (n, T, d) shared by every mu. Returns hidden (M, n, T, H) and the gain rows
    (M, H): the input gain when `by_input`, else the recurrent gain.
    """
    grid = _GainGrid(model, h0, [units], [by_input], np.asarray(list(mus), dtype=np.float64))
    h, rec, inp = grid.run(noise, [(0, m) for m in range(len(mus))])
    return h, (inp if by_input else rec)


def _window_sums(per_step: np.ndarray, window: int) -> np.ndarray:
    """For each step t, the sum of per_step over steps t-window..t+window (clipped), per row."""
    cum = np.concatenate([np.zeros((per_step.shape[0], 1)), np.cumsum(per_step, axis=1)], axis=1)
    t = np.arange(per_step.shape[1])
    lo = np.clip(t - window, 0, per_step.shape[1])
    hi = np.clip(t + window + 1, 0, per_step.shape[1])
    return cum[:, hi] - cum[:, lo]


def _near(switched: np.ndarray, window: int) -> np.ndarray:
    """Steps within `window` of some switch (rows independent)."""
    return _window_sums(switched.astype(np.float64), window) > 0


class _GainGrid:
    """Rollouts of many (set, gain) pairs in one batch: each row scales the drive into its set's
    units, the recurrent drive or the input drive, by its gain; all rows share the noise."""

    def __init__(self, model, start, units: list, by_input: list[bool], mus: np.ndarray):
        self.model, self.start, self.units, self.by_input, self.mus = (
            model, start, units, by_input, mus,
        )  # fmt: skip

    def run(self, noise: torch.Tensor, pairs: list[tuple[int, int]]):
        """hidden (R, n, T, H) and the recurrent and input gain rows (R, H) of the pairs."""
        n, steps, _ = noise.shape
        hidden_size, device = self.start.shape[-1], self.start.device
        rec = torch.ones(len(pairs), hidden_size, device=device)
        inp = torch.ones(len(pairs), hidden_size, device=device)
        for r, (si, m) in enumerate(pairs):
            if len(self.units[si]):
                idx = torch.as_tensor(np.asarray(self.units[si]), dtype=torch.long, device=device)
                (inp if self.by_input[si] else rec)[r, idx] = float(self.mus[m])
        h = rollout(
            self.model,
            self.start.expand(len(pairs) * n, -1),
            noise.repeat(len(pairs), 1, 1),
            rec_gain=rec.repeat_interleave(n, dim=0),
            input_gain=inp.repeat_interleave(n, dim=0),
        )
        return h.reshape(len(pairs), n, steps, hidden_size), rec, inp


def _switched(model, start: torch.Tensor, h: torch.Tensor) -> np.ndarray:
    """(..., T) whether the argmax output changed at each step (the first against the start)."""
    out = argmax_outputs(model, torch.cat([start.expand(*h.shape[:2], 1, -1), h], dim=2))
    return (out[..., 1:] != out[..., :-1]).cpu().numpy()


def first_switches(switched: np.ndarray, k: int | None) -> np.ndarray:
    """The mask of the first k switches (row-major: run by run), all of them for k None."""
    if k is None:
        return switched
    out = np.zeros_like(switched)
    flat = np.flatnonzero(switched)[: max(int(k), 0)]
    out.reshape(-1)[flat] = True
    return out


def _switch_stats(hidden, switched, w_hh, gain, window, re_tol, im_min):
    """Critical pairs and unstable eigenvalues summed around each switch: mean, std, count.

    hidden (n, T, H), switched (n, T) bool; only the steps near a switch are decomposed.
    """
    near = _near(switched, window)
    masks = (hidden > 0).cpu().numpy()[near]
    critical = np.zeros(switched.shape)
    unstable = np.zeros(switched.shape)
    if masks.shape[0]:
        counts = spectrum_counts(w_hh, masks, rec_gain=gain, re_tol=re_tol, im_min=im_min)
        critical[near], unstable[near] = counts.critical, counts.unstable
    crit_sum = _window_sums(critical, window)[switched]
    unst_sum = _window_sums(unstable, window)[switched]
    if crit_sum.size == 0:
        return np.nan, np.nan, np.nan, 0
    return crit_sum.mean(), crit_sum.std(), unst_sum.mean(), int(crit_sum.size)


@torch.no_grad()
def ablation_sweep(
    model,
    *,
    sets: Mapping[str, Sequence[int]] | None = None,
    input_sets: Sequence[str] = INPUT_SETS,
    kick_units: Annotated[
        Sequence[int] | None,
        P(
            "one switch direction's kick units, e.g. 30,130,92 (none: detected by kick-neurons)",
            ge=0,
        ),
    ] = None,
    other_kick_units: Annotated[
        Sequence[int] | None,
        P(
            "the other directions' kick units, kept out of the control (none: detected, or none)",
            ge=0,
        ),
    ] = None,
    direction: Annotated[
        int | None,
        P(
            "which detected direction's kick units, an index into kick-neurons' directions (none: "
            "the first that has any)",
            ge=0,
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        P(
            "signed partners per kick unit in the noise set (none: 60 at hidden 150, in proportion)",
            ge=1,
        ),
    ] = None,
    control_k: Annotated[
        int | None,
        P(
            "signed partners per kick unit kept out of the control (none: 35 at hidden 150, in "
            "proportion)",
            ge=0,
        ),
    ] = None,
    mus: Annotated[Sequence[float], P("gains swept (0 silences, 1 nominal)", ge=0)] = DEFAULT_MUS,
    n_traj: Annotated[int, P("trajectories per gain", ge=1)] = 100,
    steps: Annotated[int, P("steps per trajectory", ge=1)] = 100,
    gamma: Annotated[float, P("noise mix: 0 frozen, 1 fresh", ge=0, le=1)] = 0.5,
    noise_std: NoiseStd = 1.0,
    switch_window: Annotated[int, P("steps either side of a switch searched", ge=0)] = 15,
    re_tol: Annotated[float, P("critical pair: |Re w| below this (Mobius w)", gt=0)] = 0.1,
    im_min: Annotated[float, P("critical pair: Im w above this", ge=0)] = 0.06,
    eig_traj: Annotated[
        int, P("rollouts protocol: trajectories whose Jacobian spectra are taken", ge=1)
    ] = 12,
    protocol: Annotated[
        Literal["long", "rollouts"],
        P(
            "rate and critical pairs from long full-noise runs (the research code's), or from the "
            "gamma-mixed rollouts"
        ),
    ] = "long",
    long_runs: Annotated[int, P("long protocol: runs per gain", ge=1)] = 4,
    long_steps: Annotated[int, P("long protocol: steps per run", ge=2)] = 2000,
    eig_switches: Annotated[
        int, P("long protocol: switches per gain whose Jacobians are decomposed", ge=1)
    ] = 5,
    n_keep: Annotated[int, P("trajectories kept for the figure", ge=0)] = 4,
    h0=None,
    max_batch_elems: int = 1 << 24,
    seed: Seed = 0,
    context=None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> AblationResult:
    """Sweep the gain mu on each set; see the module docstring for what is measured.

    sets: name -> unit indices (default: kick neurons from `kick_neurons(model, seed=seed)` or
    `kick_units`, and `default_sets` around them). Sets named in `input_sets` have their input
    (noise) drive scaled, the others their recurrent drive. h0: start state (default: the cluster
    point of `locate_areas(model, seed=seed)`). Memory is bounded by running at most
    `max_batch_elems` hidden values (mus x n_traj x steps x H) at once.
    """
    progress = progress or no_progress
    device, hidden_size = model.device, model.hidden_size
    mus_arr = np.asarray(list(mus), dtype=np.float64)
    if mus_arr.ndim != 1 or not mus_arr.size:
        raise ValueError("mus must be a non-empty list of gains")
    if n_traj < 1 or steps < 1:
        raise ValueError(f"need n_traj >= 1 and steps >= 1 (got {n_traj}, {steps})")
    progress(0.0, "ablation: choosing sets")
    if sets is None:
        if kick_units is None:
            found = (
                context.run("kick-neurons", {"seed": seed})
                if context is not None
                else kick_neurons(model, seed=seed, confirm=False, cancel=cancel)
            )
            kick_units, other = _direction_units(found, direction)
            other_kick_units = other if other_kick_units is None else other_kick_units
        every = None if other_kick_units is None else np.union1d(kick_units, other_kick_units)
        # the study's counts were chosen for 150 units; other sizes keep the same proportions
        top_k = max(1, round(STUDY_TOP_K * hidden_size / STUDY_HIDDEN)) if top_k is None else top_k
        if control_k is None:
            control_k = round(STUDY_CONTROL_K * hidden_size / STUDY_HIDDEN)
        sets = default_sets(
            model.w_hh, kick_units, top_k=top_k, control_k=control_k, all_kick=every
        )
    sets = {str(k): as_index(v) for k, v in sets.items()}
    for name, units in sets.items():
        if units.size and (units.min() < 0 or units.max() >= hidden_size):
            raise ValueError(f"set {name!r}: unit indices must lie in 0..{hidden_size - 1}")
    check_cancel(cancel)
    if h0 is None:
        from hmmrnn.analyses.locate import locate_areas

        progress(0.02, "ablation: locating a cluster point")
        # only the cluster point is needed: no kick-point probing (kick_fraction 0 accepts any step)
        h0 = locate_areas(
            model,
            seed=seed,
            noise_std=noise_std,
            n_probes=1,
            probe_steps=1,
            kick_fraction=0.0,
            max_mean_time=math.inf,
            cancel=cancel,
        ).h_cluster
    start = torch.as_tensor(np.asarray(h0), dtype=torch.float32, device=device).reshape(hidden_size)
    gen = torch_generator(seed, device)
    frozen = model.sample_noise(1, steps, noise_std, gen)[0]
    fresh = model.sample_noise(n_traj, steps, noise_std, gen)
    x = mixed_noise(frozen, fresh, gamma)
    if protocol not in ("long", "rollouts"):
        raise ValueError(f"protocol must be 'long' or 'rollouts', got {protocol!r}")
    x_long = (
        model.sample_noise(long_runs, long_steps, noise_std, gen) if protocol == "long" else None
    )
    comps, mean = pc_basis(model, n_components=2, seed=seed)
    w_hh = model.w_hh.detach().double().cpu().numpy()

    n_sets, n_mu = len(sets), len(mus_arr)
    shape = (n_sets, n_mu)
    rate, crit, crit_sd, unst = (np.full(shape, np.nan) for _ in range(4))
    n_sw = np.zeros(shape, dtype=np.int64)
    keep = min(n_keep, n_traj)
    proj = np.zeros((n_sets, n_mu, keep, steps + 1, comps.shape[0]))
    n_eig = min(max(int(eig_traj), 0), n_traj)
    pairs = [(si, m) for si in range(n_sets) for m in range(n_mu)]
    grid = _GainGrid(model, start, list(sets.values()), [n in input_sets for n in sets], mus_arr)
    names = list(sets)

    def stats(si, h, sw, rec, limit):
        gain = None if names[si] in input_sets else rec.double().cpu().numpy()
        return _switch_stats(
            h, first_switches(sw, limit), w_hh, gain, switch_window, re_tol, im_min
        )

    # every set and gain in as few batches as memory allows: the time loop is the cost. With the
    # long runs counting, the rollouts are only drawn: the first `keep` of them suffice
    shown = x if x_long is None else x[: max(keep, 1)]
    per_chunk = max(1, int(max_batch_elems // (shown.shape[0] * steps * hidden_size)))
    share = 0.5 if x_long is not None else 1.0
    for lo in range(0, len(pairs), per_chunk):
        chunk = pairs[lo : lo + per_chunk]
        h, rec, _ = grid.run(shown, chunk)
        switched = _switched(model, start, h)  # (R, n, T) at hidden index
        for r, (si, m) in enumerate(chunk):
            check_cancel(cancel)
            if x_long is None:
                rate[si, m] = switched[r].mean()
                crit[si, m], crit_sd[si, m], unst[si, m], n_sw[si, m] = stats(
                    si, h[r, :n_eig], switched[r, :n_eig], rec[r], None
                )
            traj = torch.cat([start.expand(keep, 1, -1), h[r, :keep]], dim=1)
            proj[si, m] = project(traj, comps, mean)
            progress(share * (lo + r + 1) / len(pairs), f"ablation: {names[si]} mu={mus_arr[m]:g}")
    if x_long is not None:
        per_chunk = max(1, int(max_batch_elems // (long_runs * long_steps * hidden_size)))
        for lo in range(0, len(pairs), per_chunk):
            chunk = pairs[lo : lo + per_chunk]
            h, rec, _ = grid.run(x_long, chunk)
            switched = _switched(model, start, h)
            for r, (si, m) in enumerate(chunk):
                check_cancel(cancel)
                rate[si, m] = switched[r].mean()
                crit[si, m], crit_sd[si, m], unst[si, m], n_sw[si, m] = stats(
                    si, h[r], switched[r], rec[r], eig_switches
                )
                progress(0.5 + 0.5 * (lo + r + 1) / len(pairs),
                         f"ablation: long runs, {names[si]} mu={mus_arr[m]:g}")  # fmt: skip
    offsets = np.concatenate([[0], np.cumsum([len(u) for u in sets.values()])]).astype(np.int64)
    flat = [u for u in sets.values()]
    return AblationResult(
        set_names=list(sets),
        drives=["input" if n in input_sets else "recurrent" for n in sets],
        set_units=np.concatenate(flat).astype(np.int64) if flat else np.zeros(0, np.int64),
        set_offsets=offsets,
        mus=mus_arr,
        rate=rate,
        critical_per_switch=crit,
        critical_std=crit_sd,
        unstable_per_switch=unst,
        n_switches_eig=n_sw,
        projections=proj,
        h0=start.cpu().numpy().astype(np.float64),
        steps=int(steps),
        n_traj=int(n_traj),
        eig_traj=int(n_eig),
        gamma=float(gamma),
        switch_window=int(switch_window),
        protocol=str(protocol),
        long_runs=int(long_runs),
        long_steps=int(long_steps),
    )


# --- registration ---------------------------------------------------------------------------------


def _summary(r: AblationResult) -> list[tuple[str, str]]:
    rows = []
    for s, name in enumerate(r.set_names):
        lo, hi = 0, len(r.mus) - 1
        rows.append(
            (
                f"{name} ({r.drives[s]}, {len(r.units(name))} units)",
                f"mu {r.mus[lo]:g}: {r.critical_per_switch[s, lo]:.2f} critical/switch, rate "
                f"{r.rate[s, lo]:.3f} · mu {r.mus[hi]:g}: {r.critical_per_switch[s, hi]:.2f}, rate "
                f"{r.rate[s, hi]:.3f}",
            )
        )
    return rows


register(
    Analysis(
        name="ablation",
        version=3,  # 3: rate and critical pairs on long full-noise runs; 2: signed partners
        fn=ablation_sweep,
        result=AblationResult,
        help="gain sweep on kick, noise-projection and control sets: critical pairs, switch rate",
        summary=_summary,
        figures=(
            Figure("ablation", "gain sweep: trajectories, critical pairs and switch rate vs mu",
                   "hmmrnn.figures.mechanisms:render_ablation"),
        ),
        views=(
            View("critical pairs", "hmmrnn.figures.terminal:ablation_critical"),
            View("switch rate", "hmmrnn.figures.terminal:ablation_rate"),
        ),
    )
)  # fmt: skip
