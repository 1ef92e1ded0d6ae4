"""Residency time: how long the noisy dynamics stay on the current output from a given state (§6).

For each state visited by a driven run, many noisy rollouts go forward until the argmax output
changes. Their mean length (the residency time, RT) separates the state space into transition
states (the output is about to change), a kick zone, and output clusters (long stays, confident
readout). The sign changes of the dominant logit's increments tell drift from jitter, and the
unstable eigenvalues of the noise-free Jacobian D(W_hh h > 0) W_hh show where the autonomous flow
pushes away. All rollouts of a chunk of states advance together; no loop over states or samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from hmmrnn.analyses.base import ProgressFn, Result, check_cancel, no_progress
from hmmrnn.analyses.dynamics import (
    driven_run,
    gating_masks,
    pair_runs,
    pc_basis,
    project,
    spectrum_counts,
    time_to_switch,
)
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.cancel import CancelToken
from hmmrnn.device import torch_generator
from hmmrnn.params import Components, NoiseStd, P, PcaSteps, Seed, Warmup

GROUP_NAMES = ["transition", "kick-zone", "cluster", "other"]
Samples = Annotated[int, P("noisy rollouts per state", ge=1)]
MaxSteps = Annotated[int, P("longest rollout (an RT is at most this)", ge=1)]
TransitionMax = Annotated[float, P("RT below which a state is a transition state", ge=0)]
ClusterMin = Annotated[float, P("RT above which a confident state is a cluster state", ge=0)]
ClusterProb = Annotated[float, P("max softmax a cluster state needs", ge=0, le=1)]
Chunk = Annotated[int, P("states simulated together (memory vs speed)", ge=1)]
TRANSITION, KICK_ZONE, CLUSTER, OTHER = range(4)


def classify(
    rt: np.ndarray,
    max_prob: np.ndarray,
    *,
    transition_max: float = 2.0,
    cluster_min: float = 8.0,
    cluster_prob: float = 0.8,
) -> np.ndarray:
    """Group per state: transition (RT < transition_max), kick-zone (between, inclusive),
    cluster (RT > cluster_min and max softmax > cluster_prob), other (long RT, unsure readout)."""
    groups = np.full(rt.shape, OTHER, dtype=np.int64)
    groups[rt < transition_max] = TRANSITION
    groups[(rt >= transition_max) & (rt <= cluster_min)] = KICK_ZONE
    groups[(rt > cluster_min) & (max_prob > cluster_prob)] = CLUSTER
    return groups


def _check_sizes(**sizes: int) -> None:
    bad = [f"{k}={v}" for k, v in sizes.items() if int(v) < 1]
    if bad:
        raise ValueError(f"these must be at least 1: {', '.join(bad)}")


@dataclass
class StateResidency:
    """Per-state residency measures (all (N,))."""

    rt: np.ndarray
    switched_fraction: np.ndarray
    sign_changes: np.ndarray
    unstable_counts: np.ndarray
    max_prob: np.ndarray
    outputs: np.ndarray


@torch.no_grad()
def residency_of_states(
    model,
    states: torch.Tensor,
    *,
    n_samples: int = 20,
    max_steps: int = 60,
    noise_std: float = 1.0,
    chunk_states: int = 1000,
    generator: torch.Generator | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> StateResidency:
    """RT, sign changes, unstable-eigenvalue counts and readout of each state in (N, H)."""
    progress = progress or no_progress
    lo_frac, hi_frac = progress_span
    n = states.shape[0]
    parts: list[tuple[np.ndarray, ...]] = []
    w_hh = model.w_hh.detach()
    for lo in range(0, n, chunk_states):
        check_cancel(cancel)
        chunk = states[lo : lo + chunk_states]
        times = time_to_switch(
            model,
            chunk,
            n_samples=n_samples,
            max_steps=max_steps,
            noise_std=noise_std,
            generator=generator,
        )
        counts = spectrum_counts(w_hh, gating_masks(model, chunk))
        probs = torch.softmax(model.readout(chunk), dim=-1)
        max_prob, outputs = probs.max(dim=-1)
        parts.append(
            (
                times.rt,
                times.switched.mean(axis=1),
                times.mean_sign_changes,
                counts.unstable,
                max_prob.cpu().numpy().astype(np.float64),
                outputs.cpu().numpy().astype(np.int64),
            )
        )
        done = min(n, lo + chunk_states)
        progress(lo_frac + (hi_frac - lo_frac) * done / n, f"residency: {done}/{n} states")
        check_cancel(cancel)
    if not parts:
        empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return StateResidency(empty_f, empty_f, empty_f, empty_i, empty_f, empty_i)
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    return StateResidency(*cols)


@dataclass
class ResidencyResult(Result):
    projections: np.ndarray  # (N, C) on the driven PCs
    rt: np.ndarray  # (N,)
    switched_fraction: np.ndarray  # (N,) rollouts that switched within max_steps
    sign_changes: np.ndarray  # (N,)
    unstable_counts: np.ndarray  # (N,)
    groups: np.ndarray  # (N,) index into group_names
    max_prob: np.ndarray  # (N,)
    outputs: np.ndarray  # (N,)
    components: np.ndarray  # (C, H)
    mean: np.ndarray  # (H,)
    group_names: list
    group_sizes: list


def residency(
    model,
    *,
    n_states: Annotated[int, P("states of the driven run whose RT is measured", ge=1)] = 5000,
    warmup: Warmup = 20,
    n_samples: Samples = 20,
    max_steps: MaxSteps = 60,
    noise_std: NoiseStd = 1.0,
    transition_max: TransitionMax = 2.0,
    cluster_min: ClusterMin = 8.0,
    cluster_prob: ClusterProb = 0.8,
    chunk_states: Chunk = 1000,
    pca_steps: PcaSteps = 2000,
    n_components: Components = 3,
    seed: Seed = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ResidencyResult:
    """Residency times of n_states states of one driven run (after `warmup` steps)."""
    progress = progress or no_progress
    _check_sizes(
        n_states=n_states,
        n_samples=n_samples,
        max_steps=max_steps,
        chunk=chunk_states,
        n_components=n_components,
    )
    gen = torch_generator(seed, model.device)
    states = driven_run(model, 1, warmup + n_states, noise_std=noise_std, generator=gen)[0, warmup:]
    progress(0.0, "residency: states sampled")
    check_cancel(cancel)
    measures = residency_of_states(
        model,
        states,
        n_samples=n_samples,
        max_steps=max_steps,
        noise_std=noise_std,
        chunk_states=chunk_states,
        generator=gen,
        progress=progress,
        cancel=cancel,
        progress_span=(0.0, 0.95),
    )
    components, mean = pc_basis(
        model,
        n_components=n_components,
        steps=pca_steps,
        warmup=warmup,
        noise_std=noise_std,
        seed=seed,
    )
    groups = classify(
        measures.rt,
        measures.max_prob,
        transition_max=transition_max,
        cluster_min=cluster_min,
        cluster_prob=cluster_prob,
    )
    progress(1.0, "residency: done")
    return ResidencyResult(
        projections=project(states, components, mean),
        rt=measures.rt,
        switched_fraction=measures.switched_fraction,
        sign_changes=measures.sign_changes,
        unstable_counts=measures.unstable_counts,
        groups=groups,
        max_prob=measures.max_prob,
        outputs=measures.outputs,
        components=components,
        mean=mean,
        group_names=list(GROUP_NAMES),
        group_sizes=np.bincount(groups, minlength=len(GROUP_NAMES)).tolist(),
    )


# --- residency inside the subspace of a pair of outputs -------------------------------------------


@dataclass
class SubspaceResidencyResult(Result):
    pairs: np.ndarray  # (P, 2) output pairs
    n_runs: np.ndarray  # (P,) long runs kept per pair
    components: np.ndarray  # (P, C, H) PCs of each pair's runs (zeros when it has none)
    means: np.ndarray  # (P, H)
    explained_variance_ratio: np.ndarray  # (P, C)
    pair_index: np.ndarray  # (N,) which pair each state belongs to
    projections: np.ndarray  # (N, C) on its own pair's PCs
    rt: np.ndarray
    switched_fraction: np.ndarray
    sign_changes: np.ndarray
    unstable_counts: np.ndarray
    groups: np.ndarray
    max_prob: np.ndarray
    outputs: np.ndarray
    group_names: list
    group_sizes: list  # (P, groups)


def _all_pairs(k: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(k) for b in range(a + 1, k)]


def subspace_residency(
    model,
    *,
    outputs_pair: Annotated[
        tuple[int, int] | None, P("one pair of outputs (none: every pair)", ge=0)
    ] = None,
    min_run: Annotated[int, P("shortest stretch inside a pair that is kept", ge=2)] = 50,
    run_steps: Annotated[int, P("steps of the long driven run searched", ge=2)] = 20000,
    max_states: Annotated[int, P("states per pair whose RT is measured", ge=1)] = 2000,
    warmup: Warmup = 20,
    n_samples: Samples = 20,
    max_steps: MaxSteps = 60,
    noise_std: NoiseStd = 1.0,
    transition_max: TransitionMax = 2.0,
    cluster_min: ClusterMin = 8.0,
    cluster_prob: ClusterProb = 0.8,
    n_components: Components = 3,
    chunk_states: Chunk = 1000,
    seed: Seed = 0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SubspaceResidencyResult:
    """Residency within the long stretches where the outputs alternate inside one pair.

    Each pair gets its own PCA (fitted on all its runs' states), so the pair's two clusters and
    the transitions between them are seen in the plane that separates them best. It is `fit_pca`
    (full SVD, fixed axis signs), so a rerun gives the same axes; pairs without runs keep zeros.
    At most max_states states per pair (evenly spaced) go through the residency rollouts.
    """
    from hmmrnn.analyses.pca import fit_pca  # deferred: keeps scikit-learn out of module import

    progress = progress or no_progress
    _check_sizes(
        run_steps=run_steps,
        max_states=max_states,
        n_samples=n_samples,
        max_steps=max_steps,
        chunk=chunk_states,
        n_components=n_components,
    )
    k, hidden = model.output_size, model.hidden_size
    pairs = _all_pairs(k) if outputs_pair is None else [tuple(int(o) for o in outputs_pair)]
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= o < k for o in pair):
            raise ValueError(
                f"outputs_pair must be two different outputs in 0..{k - 1}, got {pair}"
            )
    gen = torch_generator(seed, model.device)
    run = driven_run(model, 1, warmup + run_steps, noise_std=noise_std, generator=gen)[0, warmup:]
    symbols = model.readout(run).argmax(-1).cpu().numpy()
    comps = np.zeros((len(pairs), n_components, hidden))
    means = np.zeros((len(pairs), hidden))
    ratios = np.zeros((len(pairs), n_components))
    n_runs = np.zeros(len(pairs), dtype=np.int64)
    cols: list[list[np.ndarray]] = [[] for _ in range(9)]
    for p, pair in enumerate(pairs):
        check_cancel(cancel)
        runs = pair_runs(symbols, pair, min_run)
        n_runs[p] = len(runs)
        if not runs:
            continue
        rows = np.concatenate([np.arange(s, e) for s, e in runs])
        rows = torch.as_tensor(rows, device=run.device)
        pca = fit_pca(run[rows].cpu().numpy(), n_components)
        c = pca.n_components
        comps[p, :c], means[p], ratios[p, :c] = (
            pca.components,
            pca.mean,
            pca.explained_variance_ratio,
        )
        if len(rows) > max_states:
            pick = np.linspace(0, len(rows) - 1, max_states).round().astype(np.int64)
            rows = rows[torch.as_tensor(pick, device=run.device)]
        measures = residency_of_states(
            model,
            run[rows],
            n_samples=n_samples,
            max_steps=max_steps,
            noise_std=noise_std,
            chunk_states=chunk_states,
            generator=gen,
            progress=progress,
            cancel=cancel,
            progress_span=(p / len(pairs), (p + 1) / len(pairs)),
        )
        groups = classify(
            measures.rt,
            measures.max_prob,
            transition_max=transition_max,
            cluster_min=cluster_min,
            cluster_prob=cluster_prob,
        )
        for i, v in enumerate(
            (
                np.full(len(rows), p, dtype=np.int64),
                project(run[rows], comps[p], means[p]),
                measures.rt,
                measures.switched_fraction,
                measures.sign_changes,
                measures.unstable_counts,
                groups,
                measures.max_prob,
                measures.outputs,
            )
        ):
            cols[i].append(v)
    empties = (
        np.zeros(0, dtype=np.int64),
        np.zeros((0, n_components)),
        *(np.zeros(0) for _ in range(3)),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        np.zeros(0),
        np.zeros(0, dtype=np.int64),
    )
    arrays = [np.concatenate(c) if c else e for c, e in zip(cols, empties, strict=True)]
    pair_index, groups = arrays[0], arrays[6]
    sizes = [
        np.bincount(groups[pair_index == p], minlength=len(GROUP_NAMES)).tolist()
        for p in range(len(pairs))
    ]
    progress(1.0, "subspace residency: done")
    return SubspaceResidencyResult(
        pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2),
        n_runs=n_runs,
        components=comps,
        means=means,
        explained_variance_ratio=ratios,
        pair_index=pair_index,
        projections=arrays[1],
        rt=arrays[2],
        switched_fraction=arrays[3],
        sign_changes=arrays[4],
        unstable_counts=arrays[5],
        groups=groups,
        max_prob=arrays[7],
        outputs=arrays[8],
        group_names=list(GROUP_NAMES),
        group_sizes=sizes,
    )


# --- registration ---------------------------------------------------------------------------------


def _summary(r) -> list[tuple[str, str]]:
    rows = [("states", str(len(r.rt))), ("mean RT", f"{np.mean(r.rt):.2f}" if len(r.rt) else "-")]
    sizes = np.asarray(r.group_sizes).reshape(-1, len(r.group_names)).sum(axis=0)
    rows += [(name, str(int(n))) for name, n in zip(r.group_names, sizes, strict=True)]
    return rows


_VIEWS = (
    View("map", "hmmrnn.figures.terminal:residency_map"),
    View("histogram", "hmmrnn.figures.terminal:residency_hist"),
)

register(
    Analysis(
        name="residency",
        fn=residency,
        result=ResidencyResult,
        help="residency time (steps until the output changes) of states of a driven run",
        summary=_summary,
        figures=(
            Figure(
                "residency",
                "residency four-panel: RT, sign changes, unstable eigenvalues",
                "hmmrnn.figures.mechanisms:render_residency",
            ),
        ),
        views=_VIEWS,
    )
)

register(
    Analysis(
        name="subspace-residency",
        fn=subspace_residency,
        result=SubspaceResidencyResult,
        help="residency within long runs whose outputs stay inside a pair of outputs",
        summary=_summary,
        figures=(
            Figure("subspace-residency", "residency within runs confined to a pair of outputs",
                   "hmmrnn.figures.mechanisms:render_subspace_residency"),
        ),
        views=_VIEWS,
    )
)  # fmt: skip
