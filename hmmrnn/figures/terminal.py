"""Terminal plots of analysis results: the recipes the TUI draws with plotext.

Each function takes a plotext figure (`PlotextPlot.plt`, or `plotext` itself) and a result, clears
the figure and draws; nothing here imports plotext or textual, it only calls the figure's methods,
so an analysis module can register its views (`View("map", "hmmrnn.figures.terminal:...")`) without
a UI dependency. Colours are RGB triples from the Okabe-Ito colour-blind-safe set, which read on
dark and light backgrounds alike; output k always has the same colour, as in the publication
figures.
"""

from __future__ import annotations

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
MARKERS = ("hd", "dot", "x", "o", "+", "*")
MAX_POINTS = 4000  # scatter points drawn per plot
MAX_LINE_POINTS = 400  # points per line plot


def color(k: int) -> tuple[int, int, int]:
    return OUTPUT_COLORS[int(k) % len(OUTPUT_COLORS)]


def xy(points: np.ndarray, pair: tuple[int, int]) -> tuple[list, list]:
    """Finite (x, y) lists of the columns `pair` of (N, C) points."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] <= max(pair):
        return [], []
    keep = np.isfinite(pts[:, list(pair)]).all(axis=1)
    pts = pts[keep]
    return pts[:, pair[0]].tolist(), pts[:, pair[1]].tolist()


def thin(n: int) -> slice:
    return slice(None, None, max(1, n // MAX_POINTS))


def begin(plt, title: str = "") -> None:
    plt.clear_figure()
    if title:
        plt.title(title)


def message(plt, text: str) -> None:
    begin(plt, text)


# --- mechanisms ----------------------------------------------------------------------------------


def _scatter_groups(plt, proj, groups, names, pair=(0, 1)) -> None:
    sl = thin(len(proj))
    proj, groups = proj[sl], groups[sl]
    for g, name in enumerate(names):
        x, y = xy(proj[groups == g], pair)
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
    for p, name in enumerate(r.point_names):
        for g, gamma in enumerate(r.gammas):
            series = np.asarray(values[p, g], dtype=float)
            plt.plot(
                list(range(1, len(series) + 1)),
                series.tolist(),
                color=color(p * len(r.gammas) + g),
                marker=MARKERS[g % len(MARKERS)],
                label=f"{name} γ={float(gamma):g}",
            )
    plt.xlabel("step")


def _switching(r) -> np.ndarray:
    """The directions that switched at all (a 3-output model without 0<->1 switches shows two)."""
    seen = np.flatnonzero(np.asarray(r.n_events) > 0)
    return seen if seen.size else np.arange(len(r.directions))


def kick_rates(plt, r) -> None:
    begin(plt, "switch rate per direction: nominal, kick group and random lesions silenced")
    keep = _switching(r)
    labels = [f"{int(a)}→{int(b)}" for a, b in np.asarray(r.directions)[keep]]
    series = [np.asarray(r.rate_nominal)[keep].tolist(), np.asarray(r.rate_silenced)[keep].tolist()]
    names = ["nominal", "group silenced"]
    random = np.asarray(getattr(r, "rate_random", np.zeros((0, 0))), dtype=float)
    if random.ndim == 2 and random.size and np.isfinite(random[keep]).any():
        finite = [row[np.isfinite(row)] for row in random[keep]]
        series.append([float(np.median(f)) if f.size else 0.0 for f in finite])
        names.append("random lesions (median)")
    plt.multiple_bar(labels, series, labels=names, color=list(OUTPUT_COLORS[: len(series)]))


def kick_groups(plt, r) -> None:
    begin(plt, "kick-group size per switch direction")
    keep = _switching(r)
    labels = [f"{int(a)}→{int(b)}" for a, b in np.asarray(r.directions)[keep]]
    plt.bar(labels, np.asarray(r.mask)[keep].sum(axis=1).tolist(), color=OUTPUT_COLORS[2])


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
    ep = np.asarray(r.epochs)
    for i, (field, label) in enumerate(series):
        values = np.asarray(getattr(r, field), dtype=float)
        ok = np.isfinite(values)  # diverged checkpoints are nan: left out, never drawn as 0
        plt.plot(ep[ok].tolist(), values[ok].tolist(), color=OUTPUT_COLORS[i], marker="hd",
                 label=label)  # fmt: skip
    if int(r.bifurcation_epoch) >= 0:
        plt.vertical_line(int(r.bifurcation_epoch), color=OUTPUT_COLORS[2])
    plt.xlabel("epoch")


def evolution_rates(plt, r) -> None:
    _per_epoch(
        plt, r, "transition rate per epoch",
        (("transition_rate", "argmax"), ("sampled_rate", "sampled"), ("dwell_rate", "1/dwell")),
    )  # fmt: skip


def evolution_spectrum(plt, r) -> None:
    _per_epoch(
        plt, r, "fraction of steps with unstable / critical eigenvalues",
        (("unstable_fraction", "unstable"), ("critical_fraction", "critical")),
    )  # fmt: skip
