"""The TUI's own terminal plots: views that combine several results (the state space with its fixed
points) or follow a live log (the loss). Single-analysis views are registered with their analysis
(hmmrnn.figures.terminal), and this module shares their colours and helpers.
"""

from __future__ import annotations

import math

import numpy as np

from hmmrnn.figures.terminal import (
    GREY,
    MAX_LINE_POINTS,
    OUTPUT_COLORS,
    begin,
    color,
    message,
    thin,
    xy,
)

__all__ = ["LOSS_VIEWS", "message", "pc_pairs", "states", "autonomous", "driven", "loss"]

# Fixed points must stand out from the output colours they are drawn over.
KIND_COLORS = {
    "stable": (220, 30, 30),
    "marginal": (255, 140, 0),
    "saddle": (150, 60, 200),
    "unstable": (0, 0, 0),
}


def pc_pairs(n_components: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n_components) for j in range(i + 1, n_components)] or [(0, 0)]


def _axes(plt, pair: tuple[int, int], evr) -> None:
    def label(i: int) -> str:
        share = f" ({float(evr[i]):.0%})" if evr is not None and i < len(evr) else ""
        return f"PC{i + 1}{share}"

    plt.xlabel(label(pair[0]))
    plt.ylabel(label(pair[1]))


# (fixed, slow) marker of each stability kind: shape tells the kind, fill tells fixed from slow
KIND_MARKERS = {
    "stable": ("●", "○"),
    "marginal": ("◆", "◇"),
    "saddle": ("✖", "x"),
    "unstable": ("▲", "△"),
}


def fixed_points(plt, fixed, pair: tuple[int, int]) -> None:
    """Fixed and slow points, one marker shape and colour per stability kind."""
    if fixed is None or fixed.projections.size == 0:
        return
    kinds = list(fixed.kinds)
    for kind in dict.fromkeys(kinds):
        sel = np.array([k == kind for k in kinds])
        for is_fixed, marker in zip((True, False), KIND_MARKERS.get(kind, ("X", "+")), strict=True):
            rows = sel & (fixed.is_fixed == is_fixed)
            if rows.any():
                x, y = xy(fixed.projections[rows], pair)
                label = f"{kind} {'fixed' if is_fixed else 'slow'} pt"
                plt.scatter(x, y, marker=marker, color=KIND_COLORS.get(kind, GREY), label=label)


def states(plt, pca, fixed, pair: tuple[int, int]) -> None:
    """Hidden states of the driven run on a PC pair, coloured by the emitted output."""
    begin(plt, "hidden states by output")
    proj = pca.projections[thin(len(pca.projections))]
    outs = pca.outputs[thin(len(pca.outputs))]
    for k in np.unique(outs):
        x, y = xy(proj[outs == k], pair)
        plt.scatter(x, y, marker="hd", color=color(k), label=f"output {int(k)}")
    fixed_points(plt, fixed, pair)
    _axes(plt, pair, pca.explained_variance_ratio)


def autonomous(plt, traj, fixed, pair: tuple[int, int], max_lines: int = 20) -> None:
    """Noise-free runs from driven states, and where they end."""
    begin(plt, "autonomous trajectories (no input)")
    for t in traj.autonomous[:max_lines]:
        x, y = xy(t, pair)
        plt.plot(x, y, color=GREY, marker="dot")
    x, y = xy(traj.autonomous[:max_lines, 0], pair)
    plt.scatter(x, y, marker="o", color=OUTPUT_COLORS[0], label="start")
    x, y = xy(traj.end_projections, pair)
    plt.scatter(x, y, marker="O", color=OUTPUT_COLORS[1], label="end point")
    fixed_points(plt, fixed, pair)
    _axes(plt, pair, traj.explained_variance_ratio)


def driven(plt, traj, fixed, pair: tuple[int, int], max_lines: int = 3) -> None:
    """Noise-driven orbits: the path in grey, each step coloured by the emitted symbol."""
    begin(plt, "driven trajectories")
    for t in traj.driven[:max_lines]:
        x, y = xy(t, pair)
        plt.plot(x, y, color=GREY, marker="dot")
    proj = traj.driven[:max_lines].reshape(-1, traj.driven.shape[-1])
    outs = traj.driven_outputs[:max_lines].reshape(-1)
    for k in np.unique(outs):
        x, y = xy(proj[outs == k], pair)
        plt.scatter(x, y, marker="dot", color=color(k), label=f"output {int(k)}")
    fixed_points(plt, fixed, pair)
    _axes(plt, pair, traj.explained_variance_ratio)


LOSS_VIEWS = ("loss", "log loss", "loss - floor")
SERIES_STYLE = [(OUTPUT_COLORS[i], m) for i, m in enumerate(("hd", "dot", "x", "o", "+", "*"))]


def integer_ticks(lo: float, hi: float, most: int = 6) -> list[int]:
    """Whole-number ticks at a round step (1, 2 or 5 x 10^k) inside lo..hi: epochs have no
    fractions, and a run of 1,000 epochs reads 200, 400, ... rather than 1, 201, ..."""
    lo, hi = math.floor(lo), math.ceil(hi)
    for mag in (10**k for k in range(0, 12)):
        for m in (1, 2, 5):
            ticks = list(range(math.ceil(lo / (m * mag)) * m * mag, hi + 1, m * mag))
            if len(ticks) <= most:
                return ticks or [lo]
    return [lo, hi]


def _thin_records(records: list[dict]) -> list[int]:
    """Every k-th epoch and the last: a terminal has a few hundred columns, so a run with
    thousands of epochs costs the UI thread no more than a short one."""
    step = max(1, len(records) // MAX_LINE_POINTS)
    idx = list(range(0, len(records), step))
    if idx and idx[-1] != len(records) - 1:
        idx.append(len(records) - 1)
    return idx


def loss(plt, runs: list[tuple[str, list[dict]]], floor: float | None, view: str = "loss") -> list:
    """Loss per epoch of one or more runs (the first with train and validation, the others
    validation only), with the HMM-vs-HMM floor inside a y-range fitted to the data.

    view: "loss", "log loss" or "loss - floor". Returns the legend as (label, colour, marker)
    for the caller to show beside the plot: a legend inside a terminal plot covers the curves.
    """
    begin(plt, "")
    shift = floor if (view == "loss - floor" and floor is not None) else 0.0
    series = []  # (x, y, colour, marker) for curves; (None, y, ...) for horizontal lines
    legend = []
    style = iter(SERIES_STYLE * 4)
    for r, (name, records) in enumerate(runs):
        idx = _thin_records(records)
        keys = ("train_loss", "val_loss") if r == 0 else ("val_loss",)
        for key in keys:
            y = [records[i].get(key) for i in idx]
            if not y or not all(isinstance(v, (int, float)) and v == v for v in y):
                continue
            color, marker = next(style)
            x = [records[i].get("epoch", i + 1) for i in idx]
            series.append((x, [v - shift for v in y], color, marker))
            legend.append((f"{name} {key.replace('_loss', '')}", color, marker))
    if view == "loss - floor":
        series.append((None, [0.0], GREY, None))
        legend.append(("floor (0)", GREY, "─"))
    elif floor is not None:
        series.append((None, [float(floor)], GREY, None))
        legend.append(("HMM-vs-HMM floor", GREY, "─"))
    values = [v for _, ys, _, _ in series for v in ys]
    # Log y is drawn as log10 values with real-valued tick labels: plotext's own log mode
    # mislabels the axis once the range is set.
    log = view == "log loss" and bool(values) and min(values) > 0
    scale = math.log10 if log else (lambda v: v)
    for x, ys, color, marker in series:
        if x is None:
            plt.horizontal_line(scale(ys[0]), color=color)
        else:
            plt.plot(x, [scale(v) for v in ys], color=color, marker=marker)
    if values:
        lo, hi = scale(min(values)), scale(max(values))
        pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
        plt.ylim(lo - pad, hi + pad)
        if log:
            ticks = [lo + (hi - lo) * k / 4 for k in range(5)] if hi > lo else [lo]
            plt.yticks(ticks, [f"{10**t:.4g}" for t in ticks])
    epochs = [e for x, _, _, _ in series if x is not None for e in x]
    if epochs:
        plt.xticks(integer_ticks(min(epochs), max(epochs)))
    plt.xlabel("epoch")
    plt.title(view + (" (log y)" if log else ""))
    return legend
