"""Ablation and gain modulation of unit sets (ANALYSES.md §6): how kicks and noise make switches.

For each set of units and each gain mu (0 silences, 1 is nominal, > 1 excites), the drive *into* the
set is multiplied by mu: the recurrent drive for the kick neurons and for the control set, the noise
(input) drive for the "noise projection" (the presynaptic partners of the kick neurons). Rollouts
start at a cluster point with gamma-mixed noise, and two read-outs are taken per mu:

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

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
INPUT_SETS = ("noise",)


@dataclass
class AblationResult(Result):
    """Per set (S) and gain (M): behaviour and spectrum of the modulated network.

    set_names (S,), drives (S,) "recurrent" or "input"; set_units / set_offsets: the units of set s
    are set_units[set_offsets[s]:set_offsets[s+1]]. mus (M,). rate (S, M): argmax-output switches
    per step over all trajectories. critical_per_switch, critical_std, unstable_per_switch (S, M):
    mean (std) over switches of the critical pairs (mean unstable eigenvalues) of the step Jacobians
    within `switch_window` steps of the switch, on the first `eig_traj` trajectories;
    n_switches_eig (S, M) how many switches that mean is over. projections (S, M, n_keep, steps+1,
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

    def units(self, name: str) -> np.ndarray:
        s = self.set_names.index(name)
        return self.set_units[self.set_offsets[s] : self.set_offsets[s + 1]]


def default_sets(
    w_hh, kick: Sequence[int], *, top_k: int = 60, control_k: int = 35, seed: int = 0
) -> dict[str, np.ndarray]:
    """The study's three sets around the kick neurons.

    noise: the union of the top_k presynaptic partners (largest |W_hh[i, j]|) of every kick neuron i;
    control: units outside the top control_k partners of any kick neuron, drawn (seeded) to the size
    of the noise set, or all of them when fewer remain. Kick units belong to neither.
    """
    w = w_hh.detach().abs().cpu().numpy() if isinstance(w_hh, torch.Tensor) else np.abs(w_hh)
    hidden = w.shape[0]
    kick = as_index(kick)
    if not kick.size:
        raise ValueError("no kick neurons: pass sets=... or kick_units=... explicitly")

    def partners(k: int) -> np.ndarray:
        k = max(0, min(int(k), hidden))
        order = np.argsort(-w[kick], axis=1, kind="stable")[:, :k]
        return np.unique(order)

    noise = np.setdiff1d(partners(top_k), kick)
    pool = np.setdiff1d(np.arange(hidden), np.union1d(partners(control_k), kick))
    rng = np.random.default_rng(seed)
    control = np.sort(rng.choice(pool, size=min(len(noise), len(pool)), replace=False))
    return {"kick": kick, "noise": noise, "control": control.astype(np.int64)}


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
    n, steps, _ = noise.shape
    hidden_size = h0.shape[-1]
    gains = torch.ones(len(mus), hidden_size, device=h0.device)
    if len(units):
        idx = torch.as_tensor(np.asarray(units), dtype=torch.long, device=h0.device)
        gains[:, idx] = torch.as_tensor(list(mus), dtype=torch.float32, device=h0.device)[:, None]
    rows = gains.repeat_interleave(n, dim=0)
    h = rollout(
        model,
        h0.expand(rows.shape[0], -1),
        noise.repeat(len(mus), 1, 1),
        rec_gain=None if by_input else rows,
        input_gain=rows if by_input else None,
    )
    return h.reshape(len(mus), n, steps, hidden_size), gains


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
        Sequence[int] | None, P("kick units, e.g. 30,130,92 (none: detected by kick-neurons)", ge=0)
    ] = None,
    top_k: Annotated[int, P("presynaptic partners per kick unit in the noise set", ge=1)] = 60,
    control_k: Annotated[int, P("partners excluded from the control set", ge=0)] = 35,
    mus: Annotated[Sequence[float], P("gains swept (0 silences, 1 nominal)", ge=0)] = DEFAULT_MUS,
    n_traj: Annotated[int, P("trajectories per gain", ge=1)] = 100,
    steps: Annotated[int, P("steps per trajectory", ge=1)] = 100,
    gamma: Annotated[float, P("noise mix: 0 frozen, 1 fresh", ge=0, le=1)] = 0.5,
    noise_std: NoiseStd = 1.0,
    switch_window: Annotated[int, P("steps either side of a switch searched", ge=0)] = 15,
    re_tol: Annotated[float, P("critical pair: |Re w| below this (Mobius w)", gt=0)] = 0.1,
    im_min: Annotated[float, P("critical pair: Im w above this", ge=0)] = 0.06,
    eig_traj: Annotated[int, P("trajectories whose Jacobian spectra are taken", ge=1)] = 12,
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
        if kick_units is None and context is not None:
            kick_units = context.run("kick-neurons", {"seed": seed}).all_units
        elif kick_units is None:
            kick_units = kick_neurons(model, seed=seed, cancel=cancel).all_units
        sets = default_sets(model.w_hh, kick_units, top_k=top_k, control_k=control_k, seed=seed)
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
            model, seed=seed, noise_std=noise_std, n_probes=1, kick_fraction=0.0, cancel=cancel
        ).h_cluster
    start = torch.as_tensor(np.asarray(h0), dtype=torch.float32, device=device).reshape(hidden_size)
    gen = torch_generator(seed, device)
    frozen = model.sample_noise(1, steps, noise_std, gen)[0]
    fresh = model.sample_noise(n_traj, steps, noise_std, gen)
    x = mixed_noise(frozen, fresh, gamma)
    comps, mean = pc_basis(model, n_components=2, seed=seed)
    w_hh = model.w_hh.detach().double().cpu().numpy()

    n_sets, n_mu = len(sets), len(mus_arr)
    shape = (n_sets, n_mu)
    rate, crit, crit_sd, unst = (np.full(shape, np.nan) for _ in range(4))
    n_sw = np.zeros(shape, dtype=np.int64)
    keep = min(n_keep, n_traj)
    proj = np.zeros((n_sets, n_mu, keep, steps + 1, comps.shape[0]))
    per_chunk = max(1, int(max_batch_elems // (n_traj * steps * hidden_size)))
    n_eig = min(max(int(eig_traj), 0), n_traj)
    total = n_sets * n_mu
    for s, (name, units) in enumerate(sets.items()):
        by_input = name in input_sets
        for lo in range(0, n_mu, per_chunk):
            chunk = mus_arr[lo : lo + per_chunk]
            h, gains = modulated_rollout(model, start, x, units, chunk, by_input=by_input)
            out = argmax_outputs(model, torch.cat([start.expand(*h.shape[:2], 1, -1), h], dim=2))
            switched = (out[..., 1:] != out[..., :-1]).cpu().numpy()  # (m, n, T) at hidden index
            for i, mu in enumerate(chunk):
                m = lo + i
                check_cancel(cancel)
                rate[s, m] = switched[i].mean()
                gain = None if by_input else gains[i].double().cpu().numpy()
                crit[s, m], crit_sd[s, m], unst[s, m], n_sw[s, m] = _switch_stats(
                    h[i, :n_eig], switched[i, :n_eig], w_hh, gain, switch_window, re_tol, im_min
                )
                traj = torch.cat([start.expand(keep, 1, -1), h[i, :keep]], dim=1)
                proj[s, m] = project(traj, comps, mean)
                progress((s * n_mu + m + 1) / total, f"ablation: {name} mu={mu:g}")
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
