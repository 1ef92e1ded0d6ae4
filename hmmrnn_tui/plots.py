"""The TUI's own terminal plots: views that combine several results (the state space with its fixed
points) or follow a live log (the loss). Single-analysis views are registered with their analysis
(hmmrnn.figures.terminal), and this module shares their colours and helpers.
"""

from __future__ import annotations

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

__all__ = ["message", "pc_pairs", "states", "autonomous", "driven", "loss"]

# Fixed points must stand out from the output colours they are drawn over.
KIND_COLORS = {
    "stable": (220, 30, 30),
    "marginal": (255, 140, 0),
    "saddle": (150, 60, 200),
    "unstable": (150, 60, 200),
}


def pc_pairs(n_components: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n_components) for j in range(i + 1, n_components)] or [(0, 0)]


def _axes(plt, pair: tuple[int, int], evr) -> None:
    def label(i: int) -> str:
        share = f" ({float(evr[i]):.0%})" if evr is not None and i < len(evr) else ""
        return f"PC{i + 1}{share}"

    plt.xlabel(label(pair[0]))
    plt.ylabel(label(pair[1]))


def fixed_points(plt, fixed, pair: tuple[int, int]) -> None:
    """Fixed/slow points as X (fixed) and + (slow), coloured by stability."""
    if fixed is None or fixed.projections.size == 0:
        return
    kinds = list(fixed.kinds)
    for kind in dict.fromkeys(kinds):
        sel = np.array([k == kind for k in kinds])
        for is_fixed, marker in ((True, "X"), (False, "+")):
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


def loss(plt, records: list[dict], floor: float | None) -> None:
    """Train and validation loss per logged epoch, with the HMM-vs-HMM floor."""
    begin(plt, "loss · floor: HMM vs HMM")
    if records:
        # A terminal plot has a few hundred columns at most: draw every k-th epoch (and the last)
        # so that a fast run with thousands of epochs costs the UI thread no more than a slow one.
        step = max(1, len(records) // MAX_LINE_POINTS)
        idx = list(range(0, len(records), step))
        if idx[-1] != len(records) - 1:
            idx.append(len(records) - 1)
        x = [i + 1 for i in idx]
        for key, col in (("train_loss", OUTPUT_COLORS[0]), ("val_loss", OUTPUT_COLORS[1])):
            y = [records[i].get(key) for i in idx]
            if all(isinstance(v, (int, float)) for v in y):
                plt.plot(x, y, color=col, marker="hd", label=key.replace("_loss", ""))
    if floor is not None:
        plt.horizontal_line(float(floor), color=OUTPUT_COLORS[2])
        if records:
            plt.scatter([1], [float(floor)], color=OUTPUT_COLORS[2], marker="-", label="floor")
    plt.xlabel("epoch")
