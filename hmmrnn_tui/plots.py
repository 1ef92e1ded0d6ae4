"""Terminal plots (plotext) of library results. Drawing only: the arrays come from hmmrnn results.

Each function takes a plotext figure (`PlotextPlot.plt`) and a result, clears the figure and draws.
Colours are RGB triples from the Okabe-Ito colour-blind-safe set, which read on dark and light
backgrounds alike; output k always has the same colour, as in the publication figures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

OUTPUT_COLORS = [
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (0, 158, 115),  # bluish green
    (204, 121, 167),  # reddish purple
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (240, 228, 66),  # yellow
    (128, 128, 128),  # grey
]
GREY = (140, 140, 140)
# Fixed points must stand out from the output colours they are drawn over.
KIND_COLORS = {
    "stable": (220, 30, 30),
    "marginal": (255, 140, 0),
    "saddle": (150, 60, 200),
    "unstable": (150, 60, 200),
}
MAX_POINTS = 4000  # scatter points drawn per plot
MAX_LINE_POINTS = 400  # points per line plot


def color(k: int) -> tuple[int, int, int]:
    return OUTPUT_COLORS[int(k) % len(OUTPUT_COLORS)]


def pc_pairs(n_components: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n_components) for j in range(i + 1, n_components)] or [(0, 0)]


def _xy(points: np.ndarray, pair: tuple[int, int]) -> tuple[list, list]:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] <= max(pair):
        return [], []
    keep = np.isfinite(pts[:, list(pair)]).all(axis=1)
    pts = pts[keep]
    return pts[:, pair[0]].tolist(), pts[:, pair[1]].tolist()


def _thin(n: int) -> slice:
    return slice(None, None, max(1, n // MAX_POINTS))


def _axes(plt, pair: tuple[int, int], evr) -> None:
    def label(i: int) -> str:
        share = f" ({float(evr[i]):.0%})" if evr is not None and i < len(evr) else ""
        return f"PC{i + 1}{share}"

    plt.xlabel(label(pair[0]))
    plt.ylabel(label(pair[1]))


def begin(plt, title: str = "") -> None:
    plt.clear_figure()
    if title:
        plt.title(title)


def message(plt, text: str) -> None:
    begin(plt, text)


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
                x, y = _xy(fixed.projections[rows], pair)
                label = f"{kind} {'fixed' if is_fixed else 'slow'} pt"
                plt.scatter(x, y, marker=marker, color=KIND_COLORS.get(kind, GREY), label=label)


def states(plt, pca, fixed, pair: tuple[int, int]) -> None:
    """Hidden states of the driven run on a PC pair, coloured by the emitted output."""
    begin(plt, "hidden states by output")
    proj = pca.projections[_thin(len(pca.projections))]
    outs = pca.outputs[_thin(len(pca.outputs))]
    for k in np.unique(outs):
        x, y = _xy(proj[outs == k], pair)
        plt.scatter(x, y, marker="hd", color=color(k), label=f"output {int(k)}")
    fixed_points(plt, fixed, pair)
    _axes(plt, pair, pca.explained_variance_ratio)


def autonomous(plt, traj, fixed, pair: tuple[int, int], max_lines: int = 20) -> None:
    """Noise-free runs from driven states, and where they end."""
    begin(plt, "autonomous trajectories (no input)")
    for t in traj.autonomous[:max_lines]:
        x, y = _xy(t, pair)
        plt.plot(x, y, color=GREY, marker="dot")
    x, y = _xy(traj.autonomous[:max_lines, 0], pair)
    plt.scatter(x, y, marker="o", color=OUTPUT_COLORS[0], label="start")
    x, y = _xy(traj.end_projections, pair)
    plt.scatter(x, y, marker="O", color=OUTPUT_COLORS[1], label="end point")
    fixed_points(plt, fixed, pair)
    _axes(plt, pair, traj.explained_variance_ratio)


def driven(plt, traj, fixed, pair: tuple[int, int], max_lines: int = 3) -> None:
    """Noise-driven orbits: the path in grey, each step coloured by the emitted symbol."""
    begin(plt, "driven trajectories")
    for t in traj.driven[:max_lines]:
        x, y = _xy(t, pair)
        plt.plot(x, y, color=GREY, marker="dot")
    proj = traj.driven[:max_lines].reshape(-1, traj.driven.shape[-1])
    outs = traj.driven_outputs[:max_lines].reshape(-1)
    for k in np.unique(outs):
        x, y = _xy(proj[outs == k], pair)
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


# --- mechanisms -----------------------------------------------------------------------------------


def _scatter_groups(plt, proj, groups, names, pair=(0, 1)) -> None:
    sl = _thin(len(proj))
    proj, groups = proj[sl], groups[sl]
    for g, name in enumerate(names):
        x, y = _xy(proj[groups == g], pair)
        if x:
            plt.scatter(x, y, marker="dot", color=color(g), label=str(name))
    plt.xlabel("PC1")
    plt.ylabel("PC2")


def residency_map(plt, r) -> None:
    begin(plt, "residency groups on PC1-PC2")
    _scatter_groups(plt, r.projections, r.groups, r.group_names)


def residency_hist(plt, r) -> None:
    begin(plt, "residency time (steps until the output changes)")
    rt = np.asarray(r.rt, dtype=float)
    rt = rt[np.isfinite(rt)]
    if rt.size:
        plt.hist(rt.tolist(), bins=30, color=OUTPUT_COLORS[0])
    plt.xlabel("RT")


def locate_run(plt, r) -> None:
    begin(plt, "outputs around the dwell: cluster (c) and kick (k) points")
    outs = np.asarray(r.window_outputs)
    t = (np.arange(len(outs)) + int(r.window_start)).tolist()
    plt.plot(t, outs.tolist(), color=GREY, marker="dot")
    plt.vertical_line(int(r.t_cluster), color=OUTPUT_COLORS[2])
    plt.vertical_line(int(r.t_kick), color=OUTPUT_COLORS[1])
    plt.xlabel("step")
    plt.ylabel("output")


def noise_trace(plt, r) -> None:
    begin(plt, "trace of covariance over the rollout")
    _point_gamma_lines(plt, r, r.trace)


def noise_distance(plt, r) -> None:
    begin(plt, "mean distance to the mean trajectory")
    _point_gamma_lines(plt, r, r.distance)


def _point_gamma_lines(plt, r, values) -> None:
    markers = ("hd", "dot", "x", "o")
    for p, name in enumerate(r.point_names):
        for g, gamma in enumerate(r.gammas):
            series = np.asarray(values[p, g], dtype=float)
            plt.plot(
                list(range(1, len(series) + 1)),
                series.tolist(),
                color=color(p),
                marker=markers[g % len(markers)],
                label=f"{name} γ={float(gamma):g}",
            )
    plt.xlabel("step")


def kick_rates(plt, r) -> None:
    begin(plt, "switch rate per direction: nominal vs kick group silenced")
    labels = [f"{int(a)}→{int(b)}" for a, b in r.directions]
    plt.multiple_bar(
        labels,
        [np.asarray(r.rate_nominal).tolist(), np.asarray(r.rate_silenced).tolist()],
        labels=["nominal", "silenced"],
        color=[OUTPUT_COLORS[0], OUTPUT_COLORS[1]],
    )


def kick_z(plt, r) -> None:
    begin(plt, "kick-group size per switch direction")
    labels = [f"{int(a)}→{int(b)}" for a, b in r.directions]
    plt.bar(labels, np.asarray(r.mask).sum(axis=1).tolist(), color=OUTPUT_COLORS[2])


def population_weights(plt, r) -> None:
    begin(plt, "weights onto kick groups a vs b (populations coloured)")
    wa, wb = np.asarray(r.w_onto_a, dtype=float), np.asarray(r.w_onto_b, dtype=float)
    member = np.zeros(len(wa), dtype=int)
    member[np.asarray(r.pop_a, dtype=int)] = 1
    member[np.asarray(r.pop_b, dtype=int)] = 2
    for m, name in enumerate(("other", "population a", "population b")):
        sel = member == m
        if sel.any():
            plt.scatter(
                wa[sel].tolist(),
                wb[sel].tolist(),
                marker="dot",
                color=[GREY, *OUTPUT_COLORS][m],
                label=name,
            )
    plt.xlabel("mean weight onto a")
    plt.ylabel("onto b")


def ablation_critical(plt, r) -> None:
    begin(plt, "critical eigen-pairs per switch vs gain μ")
    _per_set_lines(plt, r, r.critical_per_switch)


def ablation_rate(plt, r) -> None:
    begin(plt, "switch rate vs gain μ")
    _per_set_lines(plt, r, r.rate)


def _per_set_lines(plt, r, values) -> None:
    mus = np.asarray(r.mus, dtype=float).tolist()
    for s, name in enumerate(r.set_names):
        y = np.asarray(values[s], dtype=float)
        ok = np.isfinite(y)
        plt.plot(
            [m for m, o in zip(mus, ok, strict=True) if o],
            y[ok].tolist(),
            color=color(s),
            marker="hd",
            label=f"{name} ({r.drives[s]})",
        )
    plt.xlabel("μ")


def _per_epoch(plt, r, title: str, series: tuple[tuple[str, str], ...]) -> None:
    """Per-epoch curves of an evolution result with the bifurcation epoch marked."""
    begin(plt, title)
    ep = np.asarray(r.epochs).tolist()
    for i, (field, label) in enumerate(series):
        values = np.asarray(getattr(r, field), dtype=float).tolist()
        plt.plot(ep, values, color=OUTPUT_COLORS[i], marker="hd", label=label)
    if int(r.bifurcation_epoch) >= 0:
        plt.vertical_line(int(r.bifurcation_epoch), color=OUTPUT_COLORS[2])
    plt.xlabel("epoch")


def evolution_rates(plt, r) -> None:
    _per_epoch(
        plt, r, "transition rate per epoch",
        (("transition_rate", "argmax"), ("sampled_rate", "sampled")),
    )  # fmt: skip


def evolution_spectrum(plt, r) -> None:
    _per_epoch(
        plt, r, "fraction of steps with unstable / critical eigenvalues",
        (("unstable_fraction", "unstable"), ("critical_fraction", "critical")),
    )  # fmt: skip


MECHANISM_VIEWS: dict[str, list[tuple[str, Callable]]] = {
    "residency": [("map", residency_map), ("histogram", residency_hist)],
    "subspace-residency": [("map", residency_map), ("histogram", residency_hist)],
    "locate": [("run", locate_run)],
    "noise-sensitivity": [("trace", noise_trace), ("distance", noise_distance)],
    "kick-neurons": [("rates", kick_rates), ("groups", kick_z)],
    "populations": [("weights", population_weights)],
    "ablation": [("critical pairs", ablation_critical), ("switch rate", ablation_rate)],
    "evolution": [("rates", evolution_rates), ("spectrum", evolution_spectrum)],
}
