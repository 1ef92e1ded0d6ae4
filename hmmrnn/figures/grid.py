"""Tree figures: distance and transition error across a model tree, as the study's grid plots.

A tree root (e.g. `TrainedModels/`) holds one folder per HMM family, each with hidden_H/input_D/
seed_S models. These figures only read each model's saved `evaluation.json` (from `hmmrnn evaluate`),
never re-evaluate (hmmrnn.tree_evaluations reads them). Models without one are listed as skipped.
"""

from __future__ import annotations

import numpy as np

from hmmrnn.figures.style import (
    HMM_COLOR,
    hide_unused,
    new_figure,
    renderer,
    sequential,
)
from hmmrnn.tree_evaluations import TreeEvaluations, TreePCA

__all__ = [
    "TreeEvaluations",
    "render_grid_distances",
    "render_grid_pca",
    "render_grid_transition_error",
]


def _grid_shape(n: int, width: str) -> tuple[int, int]:
    """(rows, columns) for n panels: 4 across a double-width page, 2 across a single column."""
    ncols = min(n, 4 if width == "double" else 2)
    return -(-n // ncols), ncols


def _grid_axes(fig, n: int, width: str):
    nrows, ncols = _grid_shape(n, width)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    hide_unused(axes, n)
    return axes[:n]


def _series(tree: TreeEvaluations, values: np.ndarray, group: str, inp: int):
    """(hidden sizes, mean over seeds, std over seeds) of one input dimension within a group."""
    sel = (np.asarray(tree.group) == group) & (tree.input == inp) & np.isfinite(values)
    hs = np.unique(tree.hidden[sel])
    means = np.array([values[sel & (tree.hidden == h)].mean() for h in hs])
    stds = np.array([values[sel & (tree.hidden == h)].std() for h in hs])
    return hs, means, stds


def _legend_key(label: str) -> tuple[int, float]:
    """The baseline first, then the input sizes in increasing order."""
    return (1, float(label.split()[-1])) if label.startswith("input size ") else (0, 0.0)


def _offset(series: dict, inp, hidden) -> float:
    """Where input size `inp` sits among the input sizes that have a point at `hidden`."""
    sharing = [i for i, (hs, _, _) in series.items() if hidden in hs]
    return sharing.index(inp) - (len(sharing) - 1) / 2


def _panel_title(group: str, states: int) -> str:
    """The group and its state count, on two lines when the name would run into the next panel."""
    label = group.replace("_", " ")
    return f"{label} ({states} states)" if len(label) <= 12 else f"{label}\n({states} states)"


def _spans_decade(values: np.ndarray) -> bool:
    """Whether the finite positive values span more than a factor 10: only then is log worth it."""
    finite = values[np.isfinite(values) & (values > 0)]
    return bool(finite.size and finite.max() / finite.min() > 10)


def _render_grid(
    tree: TreeEvaluations, values, ylabel: str, width: str, *, baseline=None, log=False
):
    groups = tree.groups
    n_rows, _ = _grid_shape(len(groups), width)
    fig = new_figure(width, height=0.4 + 2.0 * n_rows)
    axes = _grid_axes(fig, len(groups), width)
    inputs = np.unique(tree.input)
    colors = dict(zip(inputs, sequential(len(inputs), "cividis", 0.0, 0.8), strict=True))
    all_hidden = np.unique(tree.hidden)
    pos = {h: i for i, h in enumerate(all_hidden)}
    dodge = 0.4 / max(len(inputs), 1)
    log_y = log and _spans_decade(values)
    for ax, group in zip(axes, groups, strict=False):
        series = {inp: _series(tree, values, group, inp) for inp in inputs}
        series = {inp: s for inp, s in series.items() if len(s[0])}
        for inp, (hs, mean, std) in series.items():
            # side by side only where several input sizes share a hidden size, else on the tick
            x = np.array([pos[h] + _offset(series, inp, h) * dodge for h in hs], dtype=float)
            ax.errorbar(
                x,
                mean,
                yerr=std,
                color=colors[inp],
                marker="o",
                ms=3,
                lw=0.8,
                capsize=1.5,
                elinewidth=0.7,
                label=f"input size {inp}",
            )
        if baseline is not None:
            sel = np.asarray(tree.group) == group
            ref = baseline[sel]
            ref = ref[np.isfinite(ref)]
            if ref.size:
                ax.axhline(float(ref.mean()), color=HMM_COLOR, ls="--", lw=0.8, label="HMM–HMM")
        m = int(tree.states[np.asarray(tree.group) == group][0])
        ax.set_title(_panel_title(group, m), fontsize="medium")
        ax.set_xticks(range(len(all_hidden)), [str(h) for h in all_hidden])
        ax.set_xlim(-0.6, len(all_hidden) - 0.4)
        ax.set_xlabel("hidden units")
        if log_y:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: _legend_key(labels[i]))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6))
    return fig


@renderer
def render_grid_distances(tree: TreeEvaluations, *, width: str = "double"):
    """HMM–RNN matched distance (mean ± std over seeds) per group, hidden size and input dimension;
    dashed: the HMM–HMM baseline of the group."""
    fig = _render_grid(tree, tree.rnn_mean, "matched distance", width, baseline=tree.baseline_mean)
    fig.suptitle(f"evaluations: {tree.protocol}", fontsize="small")  # what the distances mean
    return fig


@renderer
def render_grid_transition_error(tree: TreeEvaluations, *, width: str = "double"):
    """Largest squared difference of the transition matrices (the study's measure), log scale."""
    values = np.maximum(tree.transition_sq_error, 1e-12)
    return _render_grid(tree, values, "max squared transition difference", width, log=True)


@renderer
def render_grid_pca(tree: TreePCA, *, width: str = "double", max_points: int = 600):
    """Each model's driven states on its own PC1-PC2 plane, coloured by output: one row per family
    and hidden size, one column per input size (the research code's state-space grid)."""
    from hmmrnn.figures.statespace import output_handles, scatter_by_output

    rows = sorted({(int(m), g, int(h)) for m, g, h in zip(tree.states, tree.group, tree.hidden,
                                                          strict=True)})  # fmt: skip
    cols = sorted({int(d) for d in tree.input})
    per_row = 1.05 if width == "double" else 0.9
    fig = new_figure(width, height=0.5 + per_row * len(rows))
    axes = np.asarray(fig.subplots(len(rows), len(cols), squeeze=False))
    drawn = np.zeros(axes.shape, dtype=bool)
    for i, (_, group, hidden) in enumerate(rows):
        for j, inp in enumerate(cols):
            ax = axes[i, j]
            hit = [n for n in range(len(tree)) if tree.group[n] == group
                   and tree.hidden[n] == hidden and tree.input[n] == inp]  # fmt: skip
            if not hit:
                ax.set_axis_off()
                continue
            n = hit[0]
            pts, outs = tree.points[n], tree.outputs[n]
            keep = np.linspace(0, len(pts) - 1, min(len(pts), max_points)).astype(int)
            scatter_by_output(ax, pts[keep], outs[keep], s=1.5, alpha=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            evr = tree.evr[n]
            ax.text(0.98, 0.04, f"{evr[0]:.0%}/{evr[1]:.0%}", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize="x-small", color="0.35")  # fmt: skip
            drawn[i, j] = True
            if i == 0 or not drawn[:i, j].any():
                ax.set_title(f"input {inp}", fontsize="small")
        first = next((j for j in range(len(cols)) if drawn[i, j]), 0)
        axes[i, first].set_ylabel(f"{group.replace('_', ' ')}\nh{hidden}", fontsize="small")
    fig.legend(handles=output_handles(tree.outputs), loc="outside lower center",
               ncols=min(6, len(np.unique(tree.outputs))))  # fmt: skip
    fig.suptitle("driven states on each model's PC1–PC2 (corner: variance explained)",
                 fontsize="small")  # fmt: skip
    return fig
