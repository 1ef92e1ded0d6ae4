"""Mechanism figures: residency, noise sensitivity, neurons, weights, ablation, training evolution.

Each renderer draws one result of `hmmrnn.analyses.{residency,noise,neurons,ablation,evolution}`.
Residency groups and the cluster/kick points share colours across figures (GROUP_COLORS), output
symbols keep their fixed colours (dwell bands), ordered quantities use viridis or cividis.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, TwoSlopeNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from hmmrnn.figures.statespace import label_pcs, tidy_3d
from hmmrnn.figures.style import (
    DIFF_CMAP,
    GROUP_COLORS,
    POINT_STYLES,
    SEQ_CMAP,
    SEQ_CMAP_ALT,
    SET_COLORS,
    label_panels,
    new_figure,
    output_color,
    output_gid,
    panel_label,
    renderer,
    robust_limits,
    sequential,
    set_color,
)

SET_COLORS_KICK = SET_COLORS["kick"]
MAX_TRACES = 8  # stacked unit/group panels: more would shrink each below legibility
LINE_STYLES = [
    ("k", "-"),
    ("k", "--"),
    ("#882255", "-"),
    ("#882255", "--"),
    ("#44AA99", "-"),
    ("#44AA99", "--"),
    ("#999933", "-"),
    ("#999933", "--"),
]


# --- shared helpers ---------------------------------------------------------------------------------


def _scatter_values(ax, xy, values, cmap, label, fig, *, discrete=False, vmin=None, vmax=None):
    order = np.argsort(values, kind="stable")  # high values on top
    top = vmax if vmax is not None else (np.max(values) if len(values) else 0)
    if discrete:
        norm = BoundaryNorm(np.arange(-0.5, int(top) + 1.5), 256)
        kwargs = {"norm": norm}
    else:
        kwargs = {"vmin": vmin, "vmax": vmax}
    sc = ax.scatter(
        xy[order, 0],
        xy[order, 1],
        c=np.asarray(values)[order],
        cmap=cmap,
        s=2,
        linewidths=0,
        rasterized=True,
        **kwargs,
    )
    cb = fig.colorbar(sc, ax=ax, shrink=0.9, pad=0.02)
    cb.set_label(label)
    if discrete and len(values):
        step = max(1, int(np.ceil((int(top) + 1) / 6)))
        cb.set_ticks(np.arange(0, int(top) + 1, step))
    return sc


def _present_groups(result) -> list[tuple[int, str]]:
    return [(g, n) for g, n in enumerate(result.group_names) if (result.groups == g).any()]


def _group_hist(ax, values, groups, present, *, integer=True) -> None:
    """Share of each group's states per value: grouped bars (integers) or step histograms."""
    values = np.asarray(values, dtype=np.float64)
    if integer:
        top = int(np.nanmax(values)) if values.size else 0
        xs = np.arange(top + 1)
        w = 0.8 / max(len(present), 1)
        for j, (g, name) in enumerate(present):
            v = values[groups == g].astype(np.int64)
            share = np.bincount(v, minlength=top + 1) / max(len(v), 1)
            ax.bar(
                xs + (j - (len(present) - 1) / 2) * w,
                share,
                w,
                color=GROUP_COLORS.get(name, "0.5"),
                label=name,
            )
        step = max(1, int(np.ceil(len(xs) / 8)))
        ax.set_xticks(xs[::step])
    else:
        bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=20)
        for g, name in present:
            v = values[groups == g]
            ax.hist(
                v,
                bins=bins,
                histtype="step",
                density=True,
                lw=1.0,
                color=GROUP_COLORS.get(name, "0.5"),
                label=name,
            )
    ax.set_ylabel("share of states")


def dwell_bands(ax, starts, ends, outputs, alpha: float = 0.18) -> None:
    """Background bands for each output dwell (one collection per output, fixed colour)."""
    starts, ends, outputs = (np.asarray(a) for a in (starts, ends, outputs))
    for k in np.unique(outputs):
        sel = outputs == k
        spans = [
            (float(s) - 0.5, float(e - s) + 1.0)
            for s, e in zip(starts[sel], ends[sel], strict=True)
        ]
        ax.broken_barh(
            spans,
            (0, 1),
            transform=ax.get_xaxis_transform(),
            facecolors=output_color(k),
            alpha=alpha,
            linewidths=0,
            zorder=0,
            gid=output_gid(k),
        )


def _band_legend(outputs) -> list[Patch]:
    return [
        Patch(facecolor=output_color(k), alpha=0.35, label=f"output {k}")
        for k in sorted({int(v) for v in np.unique(outputs)})
    ]


def _add_band_legend(fig, outputs) -> None:
    """One row above the panels naming the dwell-band colours, one entry per output."""
    handles = _band_legend(outputs)
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles))


def _mark_epoch(ax, epoch: int) -> None:
    if epoch >= 0:
        ax.axvline(epoch, color="k", ls=":", lw=0.9)


# --- residency --------------------------------------------------------------------------------------


@renderer
def render_residency(result, *, width: str = "double"):
    """Four panels: PCA by residency time; sign changes and unstable eigenvalues per group; PCA by
    number of unstable eigenvalues."""
    fig = new_figure(width, aspect=0.72 if width == "double" else 2.2)
    axes = fig.subplots(2, 2) if width == "double" else fig.subplots(4, 1)
    ax_rt, ax_sc, ax_un, ax_pu = np.ravel(axes)
    xy = np.asarray(result.projections)[:, :2]
    _scatter_values(ax_rt, xy, result.rt, SEQ_CMAP, "residency time (steps)", fig)
    ax_rt.set_title("states by residency time")
    label_pcs(ax_rt, [])
    present = _present_groups(result)
    _group_hist(ax_sc, result.sign_changes, result.groups, present, integer=False)
    ax_sc.set_xlabel("sign changes of the dominant logit's increments")
    ax_sc.set_ylabel("density")
    ax_sc.set_title("drift vs jitter")
    ax_sc.legend(loc="best")
    _group_hist(ax_un, result.unstable_counts, result.groups, present)
    ax_un.set_xlabel("unstable eigenvalues (|λ| > 1)")
    ax_un.set_title("instability per group")
    _scatter_values(
        ax_pu, xy, result.unstable_counts, SEQ_CMAP_ALT, "unstable eigenvalues", fig, discrete=True
    )
    ax_pu.set_title("states by unstable eigenvalues")
    label_pcs(ax_pu, [])
    label_panels([ax_rt, ax_sc, ax_un, ax_pu])
    return fig


@renderer
def render_subspace_residency(result, *, width: str = "double"):
    """Per output pair: its own PCA coloured by residency time (top) and unstable count (bottom)."""
    pairs = np.asarray(result.pairs).reshape(-1, 2)
    n = len(pairs)
    cols = min(n, 3 if width == "double" else 1)
    blocks = -(-n // cols)
    fig = new_figure(width, height=min(2.3 * 2 * blocks + 0.3, 9.0))
    axes = fig.subplots(2 * blocks, cols, squeeze=False)
    rt_min, rt_max = (float(result.rt.min()), float(result.rt.max())) if len(result.rt) else (0, 1)
    unstable_max = int(np.max(result.unstable_counts)) if len(result.unstable_counts) else 0
    for p, (a, b) in enumerate(pairs):
        r, c = divmod(p, cols)
        ax_rt, ax_un = axes[2 * r, c], axes[2 * r + 1, c]
        sel = result.pair_index == p
        ratios = np.asarray(result.explained_variance_ratio)[p]
        if not sel.any():
            for ax in (ax_rt, ax_un):
                ax.text(
                    0.5,
                    0.5,
                    f"no long runs within outputs {a} and {b}",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.set_axis_off()
            continue
        xy = np.asarray(result.projections)[sel, :2]
        # one colour scale for all pairs, so they can be compared
        _scatter_values(
            ax_rt, xy, result.rt[sel], SEQ_CMAP, "residency time", fig, vmin=rt_min, vmax=rt_max
        )
        _scatter_values(
            ax_un,
            xy,
            result.unstable_counts[sel],
            SEQ_CMAP_ALT,
            "unstable eigenvalues",
            fig,
            discrete=True,
            vmax=unstable_max,
        )
        ax_rt.set_title(f"outputs {a}–{b} ({int(result.n_runs[p])} runs)")
        for ax in (ax_rt, ax_un):
            label_pcs(ax, ratios)
    for p in range(n, blocks * cols):
        r, c = divmod(p, cols)
        axes[2 * r, c].set_visible(False)
        axes[2 * r + 1, c].set_visible(False)
    return fig


# --- noise sensitivity ------------------------------------------------------------------------------


def _point_color(name: str) -> str:
    return GROUP_COLORS["cluster"] if name == "cluster" else GROUP_COLORS["kick-zone"]


@renderer
def render_noise_sensitivity(result, *, width: str = "double", max_rollouts: int = 40):
    """Rollouts from the cluster and kick points per noise mix gamma, and their spread over time."""
    proj = np.asarray(result.projections)
    n_p, n_g = proj.shape[:2]
    names = list(result.point_names)
    lower = 2.2 if width == "double" else 3.6
    fig = new_figure(width, height=(1.65 if width == "double" else 1.45) * n_p + lower)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.6 * n_p, lower])
    grid = top.subplots(n_p, n_g, sharex=True, sharey=True, squeeze=False)
    for p in range(n_p):
        for g in range(n_g):
            ax = grid[p, g]
            paths = proj[p, g, :max_rollouts]
            ax.add_collection(
                LineCollection(
                    list(paths), colors=_point_color(names[p]), linewidths=0.5, alpha=0.5
                )
            )
            ax.update_datalim(paths.reshape(-1, 2))
            ax.plot(*paths[0, 0], marker="o", ms=3.5, color="k", ls="none")
            ax.autoscale_view()
            if p == 0:
                ax.set_title(f"γ = {result.gammas[g]:g}")
            if g == 0:
                ax.set_ylabel(f"{names[p]}\nPC2")
            if p == n_p - 1:
                ax.set_xlabel("PC1")
    panel_label(grid[0, 0], "a")
    ax_t, ax_d = bottom.subplots(1, 2) if width == "double" else bottom.subplots(2, 1, sharex=True)
    colors = sequential(n_g, "viridis", 0.0, 0.8)
    steps = np.arange(1, proj.shape[3])
    repeats = int(getattr(result, "repeats", 1))
    for p in range(n_p):
        ls = POINT_STYLES.get(names[p], "-")
        for g in range(n_g):
            for ax, values, se in (
                (ax_t, result.trace, getattr(result, "trace_se", None)),
                (ax_d, result.distance, getattr(result, "distance_se", None)),
            ):
                ax.plot(steps, values[p, g], color=colors[g], ls=ls, marker="o", ms=2)
                if se is not None and np.isfinite(se[p, g]).all():  # ± 1 s.e. over the draws
                    lo, hi = values[p, g] - se[p, g], values[p, g] + se[p, g]
                    ax.fill_between(steps, lo, hi, color=colors[g], alpha=0.2, lw=0)
    band = f" (band: ± s.e., {repeats} draws)" if repeats > 1 else ""
    ax_t.set_ylabel("covariance trace")
    ax_d.set_ylabel("distance to mean")
    ax_t.set_title("spread over rollouts" + band, fontsize="small", loc="left")
    for ax in (ax_t, ax_d):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_t, ax_d) if width == "double" else (ax_d,):
        ax.set_xlabel("step")
    handles = [
        Line2D([], [], color=c, label=f"γ = {g:g}")
        for c, g in zip(colors, result.gammas, strict=True)
    ]
    handles += [
        Line2D([], [], color="k", ls=POINT_STYLES.get(n, "-"), label=f"from {n}") for n in names
    ]
    ncols = min(len(handles), 5 if width == "double" else 3)
    bottom.legend(handles=handles, loc="outside upper center", ncols=ncols)
    panel_label(ax_t, "b")
    panel_label(ax_d, "c")
    return fig


# --- neurons ----------------------------------------------------------------------------------------


def _stacked(fig, n: int):
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    return list(axes)


@renderer
def render_preactivations(result, *, width: str = "double"):
    """Pre-activation of each chosen unit along one driven run; bands show the emitted output."""
    units = np.asarray(result.units)
    pre = np.asarray(result.pre)
    n = min(len(units), MAX_TRACES)
    if n == 0:
        raise ValueError("no units to draw (the result holds no unit)")
    fig = new_figure(width, height=0.6 + 0.75 * n)
    axes = _stacked(fig, n)
    starts, ends, outs = result.dwell_start, result.dwell_end, result.dwell_output
    t = np.arange(pre.shape[0])
    for i, ax in enumerate(axes):
        dwell_bands(ax, starts, ends, outs)
        ax.plot(t, pre[:, i], color="k", lw=0.6)
        ax.axhline(0, color="0.5", lw=0.4, ls=":")
        ax.set_ylabel(f"unit {units[i]}", rotation=0, ha="right", va="center")
        ax.set_xlim(t[0] - 0.5, t[-1] + 0.5)
    axes[-1].set_xlabel("step")
    more = f" (first {n} of {len(units)})" if len(units) > n else ""
    axes[0].set_title(f"pre-activations W_hh h + W_ih x{more}")
    _add_band_legend(fig, outs)
    return fig


def _block(ax, m, sizes_rows, sizes_cols, norm, title, rows_name, cols_name):
    im = ax.imshow(
        m if m.size else np.zeros((1, 1)),
        cmap=DIFF_CMAP,
        norm=norm,
        interpolation="nearest",
        aspect="auto",
    )
    for cuts, line in (
        (np.cumsum(sizes_rows)[:-1], ax.axhline),
        (np.cumsum(sizes_cols)[:-1], ax.axvline),
    ):
        for c in cuts:
            line(c - 0.5, color="k", lw=0.6)
    for centers, sizes, setter in (
        (np.cumsum(sizes_rows) - np.asarray(sizes_rows) / 2 - 0.5, sizes_rows, ax.set_yticks),
        (np.cumsum(sizes_cols) - np.asarray(sizes_cols) / 2 - 0.5, sizes_cols, ax.set_xticks),
    ):
        setter(centers, [f"{chr(65 + i)} ({s})" for i, s in enumerate(sizes)])
    ax.set_title(title)
    ax.set_ylabel(f"to {rows_name}")
    ax.set_xlabel(f"from {cols_name}")
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return im


@renderer
def render_weight_blocks(result, *, width: str = "double"):
    """Recurrent weights kick→kick, populations→kick and population→population (rows receive)."""
    blocks = [result.kick_kick, result.kick_pop, result.pop_pop]
    lim = max([float(np.abs(b).max()) for b in blocks if b.size] + [1e-6])
    norm = TwoSlopeNorm(0.0, -lim, lim)
    if width == "double":
        fig = new_figure(width, height=2.7)
        axes = fig.subplots(1, 3)
    else:
        fig = new_figure(width, height=7.6)
        axes = fig.subplots(3, 1)
    ks, ps = list(result.kick_sizes), list(result.pop_sizes)
    im = _block(axes[0], result.kick_kick, ks, ks, norm, "kick → kick", "kick", "kick")
    _block(axes[1], result.kick_pop, ks, ps, norm, "population → kick", "kick", "population")
    _block(
        axes[2], result.pop_pop, ps, ps, norm, "population → population", "population", "population"
    )
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="W_hh weight")
    label_panels(axes)
    return fig


@renderer
def render_group_activity(result, *, width: str = "double"):
    """Mean activity of each unit group along one run over the output dwells: populations build
    up during a dwell, kick units fire at its end."""
    names = list(result.names)
    n = min(len(names), MAX_TRACES)
    if n == 0:
        raise ValueError("no groups to draw")
    fig = new_figure(width, height=0.6 + 0.85 * n)
    axes = _stacked(fig, n)
    t = np.arange(np.asarray(result.activity).shape[1])
    for i, ax in enumerate(axes):
        dwell_bands(ax, result.dwell_start, result.dwell_end, result.dwell_output)
        color, ls = LINE_STYLES[i % len(LINE_STYLES)]
        ax.plot(t, result.activity[i], color=color, ls=ls, lw=0.8)
        size = f" ({int(result.sizes[i])})" if len(result.sizes) > i else ""
        ax.set_ylabel(f"{names[i]}{size}", rotation=0, ha="right", va="center")
        ax.set_xlim(t[0] - 0.5, t[-1] + 0.5)
    axes[-1].set_xlabel("step")
    axes[0].set_title("mean activity per group (units in brackets)")
    _add_band_legend(fig, result.dwell_output)
    return fig


# --- ablation ---------------------------------------------------------------------------------------


def _shown_mus(mus: np.ndarray, width: str) -> list[int]:
    idx = [0, int(np.argmin(np.abs(mus - 1.0))), len(mus) - 1]
    if width == "double" and len(mus) > 3:
        idx.insert(1, int(np.argmin(np.abs(mus - 0.5 * (mus[0] + 1.0)))))
    seen: list[int] = []
    for i in idx:
        if i not in seen:
            seen.append(i)
    return sorted(seen, key=lambda i: mus[i])


def _outside(paths: np.ndarray, lims) -> bool:
    pts = paths.reshape(-1, 2)
    (x0, x1), (y0, y1) = lims
    bad = ~np.isfinite(pts).all(axis=1)
    bad |= (pts[:, 0] < x0) | (pts[:, 0] > x1) | (pts[:, 1] < y0) | (pts[:, 1] > y1)
    return bool(bad.any())


@renderer
def render_ablation(result, *, width: str = "double"):
    """Trajectories per set and gain mu (top), critical pairs per switch and switch rate vs mu."""
    proj = np.asarray(result.projections)
    mus = np.asarray(result.mus)
    sets = list(result.set_names)
    shown = _shown_mus(mus, width)
    n_s = len(sets)
    lower = 2.1 if width == "double" else 3.4
    fig = new_figure(width, height=(1.35 if width == "double" else 1.2) * n_s + lower)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.3 * n_s, lower])
    grid = top.subplots(n_s, len(shown), sharex=True, sharey=True, squeeze=False)
    nominal = int(np.argmin(np.abs(mus - 1.0)))
    lims = robust_limits(proj[:, nominal], pad=0.35, q=0.0) or robust_limits(proj)
    for s, name in enumerate(sets):
        for j, m in enumerate(shown):
            ax = grid[s, j]
            paths = proj[s, m]
            ax.add_collection(
                LineCollection(list(paths), colors=set_color(name, s), linewidths=0.5, alpha=0.7)
            )
            ax.plot(*paths[0, 0], marker="o", ms=3, color="k", ls="none")
            if lims is not None:
                ax.set_xlim(*lims[0])
                ax.set_ylim(*lims[1])
                if _outside(paths, lims):
                    ax.text(
                        0.98,
                        0.04,
                        "leaves the frame",
                        transform=ax.transAxes,
                        ha="right",
                        va="bottom",
                        fontsize=7,
                        color="0.35",
                    )
            if s == 0:
                ax.set_title(f"μ = {mus[m]:g}")
            if j == 0:
                ax.set_ylabel(f"{name} ({result.drives[s]})\nPC2")
            if s == n_s - 1:
                ax.set_xlabel("PC1")
    panel_label(grid[0, 0], "a")
    ax_c, ax_r = bottom.subplots(1, 2) if width == "double" else bottom.subplots(2, 1, sharex=True)
    for s, name in enumerate(sets):
        c = set_color(name, s)
        crit, sd = result.critical_per_switch[s], result.critical_std[s]
        ax_c.plot(mus, crit, color=c, marker="o", ms=2, label=name)
        ax_c.fill_between(mus, crit - sd, crit + sd, color=c, alpha=0.15, linewidth=0)
        ax_r.plot(mus, result.rate[s], color=c, marker="o", ms=2, label=name)
    for ax in (ax_c, ax_r):
        ax.axvline(1.0, color="0.5", ls=":", lw=0.8)
    for ax in (ax_c, ax_r) if width == "double" else (ax_r,):
        ax.set_xlabel("gain μ")
    ax_c.set_ylabel("critical pairs / switch")
    ax_r.set_ylabel("switches / step")
    ax_c.legend(loc="best")
    if getattr(result, "protocol", "rollouts") == "long":  # where b and c were counted
        where = f"{result.long_runs} runs x {result.long_steps} steps of fresh noise per μ"
    else:
        where = f"the rollouts shown ({result.n_traj} x {result.steps} steps, γ {result.gamma:g})"
    ax_c.set_title(f"counted on {where}", fontsize="small", loc="left")
    panel_label(ax_c, "b")
    panel_label(ax_r, "c")
    return fig


# --- training evolution -----------------------------------------------------------------------------


def _drawable_epochs(proj: np.ndarray, max_epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch indices to draw (at most max_epochs, evenly spaced, always the last) and those whose
    states diverge (non-finite, or a spread over 100x the median spread): they would flatten the
    others into dots."""
    with np.errstate(all="ignore"):
        spread = np.sqrt(np.nansum(np.nanvar(proj, axis=1), axis=-1))
    finite = np.isfinite(proj).reshape(len(proj), -1).all(axis=1) & np.isfinite(spread)
    ref = np.median(spread[finite]) if finite.any() else np.inf
    ok = finite & (spread <= 100 * max(ref, 1e-12))
    good = np.flatnonzero(ok)
    if len(good) > max_epochs:
        pick = np.unique(np.linspace(0, len(good) - 1, max_epochs).round().astype(int))
        good = good[pick]
    return good, np.flatnonzero(~ok)


def _ranges(values) -> str:
    """'3-5, 9' from [3, 4, 5, 9] (consecutive runs joined)."""
    vals = [int(v) for v in values]
    out, start = [], None
    for i, v in enumerate(vals):
        if start is None:
            start = v
        if i + 1 == len(vals) or vals[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(out)


@renderer
def render_evolution(result, *, width: str = "double", max_points: int = 400, max_epochs: int = 40):
    """Per-epoch driven states on the final PCs stacked along the epoch axis, and per-epoch
    transition rate, unstable/critical fractions and E[δh²]; dotted: the bifurcation epoch."""
    epochs = np.asarray(result.epochs)
    proj = np.asarray(result.projections)
    if width == "double":
        fig = new_figure(width, height=4.2)
        left, right = fig.subfigures(1, 2, width_ratios=[1.15, 1])
    else:
        fig = new_figure(width, height=8.0)
        left, right = fig.subfigures(2, 1, height_ratios=[1, 1.2])
    ax3 = left.add_subplot(projection="3d")
    colors = sequential(len(epochs), "viridis", 0.0, 0.9)
    stride = max(1, proj.shape[1] // max_points)
    drawn, diverging = _drawable_epochs(proj, max_epochs)
    for e in drawn:
        pts = proj[e, ::stride]
        ax3.plot(
            pts[:, 0], np.full(len(pts), epochs[e]), pts[:, 1], color=colors[e], lw=0.4, alpha=0.8
        )
    ax3.set_ylim(epochs.min(), max(epochs.max(), epochs.min() + 1))
    ax3.set_xlabel("PC1")
    ax3.set_ylabel("epoch")
    ax3.set_zlabel("PC2")
    tidy_3d(ax3)
    ax3.set_xticklabels([])  # arbitrary units; offsets of far-off epochs would only clutter
    ax3.set_zticklabels([])
    ax3.view_init(elev=20, azim=-55)
    note = f"\nnot drawn (diverging): epochs {_ranges(epochs[diverging])}" if diverging.size else ""
    ax3.set_title("driven states on the final PCs" + note)
    panel_label(ax3, "a")
    ax_r, ax_f, ax_n = right.subplots(3, 1, sharex=True)
    ax_r.plot(epochs, result.transition_rate, color="k", marker="o", ms=2, label="argmax output")
    ax_r.plot(
        epochs, result.sampled_rate, color="0.55", ls="--", marker="o", ms=2, label="emitted symbol"
    )
    dwell = np.asarray(getattr(result, "dwell_rate", []), dtype=float)
    if dwell.size == epochs.size:
        ax_r.plot(
            epochs, dwell, color="0.3", ls=":", marker="s", ms=2, label="mean 1/dwell (study)"
        )
    gone = np.asarray(getattr(result, "diverged", []), dtype=bool)
    if gone.size == epochs.size and gone.any():  # flagged, never drawn as a rate of 0
        ax_r.plot(epochs[gone], np.zeros(int(gone.sum())), ls="none", marker="x", color="k",
                  clip_on=False, label="diverged checkpoint")  # fmt: skip
    ax_r.set_ylabel("rate per step")
    ax_r.legend(loc="best")
    ax_f.plot(
        epochs,
        result.unstable_fraction,
        color=GROUP_COLORS["kick-zone"],
        marker="o",
        ms=2,
        label="unstable",
    )
    ax_f.plot(
        epochs,
        result.critical_fraction,
        color=GROUP_COLORS["transition"],
        marker="o",
        ms=2,
        label="critical pair",
    )
    ax_f.set_ylabel("share of steps")
    ax_f.legend(loc="best")
    ax_n.plot(epochs, result.second_order, color="k", marker="o", ms=2)
    ax_n.set_ylabel("E[δh²]")
    ax_n.set_xlabel("epoch")
    bif = int(result.bifurcation_epoch)
    for ax in (ax_r, ax_f, ax_n):
        _mark_epoch(ax, bif)
    ax_r.set_title(f"bifurcation epoch: {bif}" if bif >= 0 else "no bifurcation detected")
    for ax, letter in zip((ax_r, ax_f, ax_n), "bcd", strict=True):
        panel_label(ax, letter)
    return fig


@renderer
def render_evolution_noise_units(result, *, width: str = "double"):
    """E[δh²] per unit and epoch (the study's heat map): which units carry the second-order noise
    response as training proceeds. Units are ordered by their final value; diverged epochs blank."""
    per_unit = np.asarray(getattr(result, "second_order_units", np.zeros((0, 0))), dtype=float)
    if per_unit.ndim != 2 or not per_unit.size:
        raise ValueError("this evolution result has no per-unit E[δh²] (recompute it)")
    epochs = np.asarray(result.epochs)
    last = per_unit[np.flatnonzero(np.isfinite(per_unit).all(axis=1))[-1]]
    order = np.argsort(-last, kind="stable")
    fig = new_figure(width, height=2.6 if width == "double" else 3.0)
    ax = fig.subplots()
    im = ax.imshow(
        per_unit[:, order].T,
        aspect="auto",
        interpolation="nearest",
        cmap=SEQ_CMAP,
        extent=(-0.5, len(epochs) - 0.5, len(order) - 0.5, -0.5),
    )
    ticks = np.unique(np.linspace(0, len(epochs) - 1, min(len(epochs), 8)).round().astype(int))
    ax.set_xticks(ticks, [str(int(epochs[i])) for i in ticks])
    ax.set_xlabel("epoch")
    ax.set_ylabel("unit (by final E[δh²])")
    ax.set_title("second-order noise term E[δh²] per unit")
    fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01, label="E[δh²]")
    return fig


# --- locating areas and kick neurons ----------------------------------------------------------------


@renderer
def render_locate(result, *, width: str = "double"):
    """The dwell used to locate the areas: outputs around it, the cluster and kick points, and the
    share of probe rollouts that switch within a few steps from each step of the dwell."""
    fig = new_figure(width, height=2.6 if width == "double" else 3.6)
    ax_o, ax_p = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2.2])
    outs = np.asarray(result.window_outputs)
    t = int(result.window_start) + np.arange(len(outs))
    dwell_bands(
        ax_o,
        result.window_dwell_start,
        result.window_dwell_end,
        result.window_dwell_output,
        alpha=0.6,
    )
    ax_o.set_yticks([])
    ax_o.spines["left"].set_visible(False)
    ax_o.set_title(
        f"output {result.output_before} → {result.dwell_output} → {result.output_after}"
        f" (run seed {result.seed_used})"
    )
    frac = np.asarray(result.probe_switch_fraction)
    steps = int(result.dwell_start) + np.arange(len(frac))
    ax_p.step(steps, frac, where="mid", color="k", lw=0.9)
    for ax in (ax_o, ax_p):
        for when, name in ((result.t_cluster, "cluster"), (result.t_kick, "kick-zone")):
            ax.axvline(when, color=GROUP_COLORS[name], lw=1.2, ls="--")
    handles = [
        Line2D([], [], color=GROUP_COLORS["cluster"], ls="--", label="cluster point"),
        Line2D([], [], color=GROUP_COLORS["kick-zone"], ls="--", label="kick point"),
    ]
    ax_p.legend(handles=handles, loc="upper left")
    ax_p.set_ylim(-0.03, 1.05)
    ax_p.set_ylabel("probes switching")
    ax_p.set_xlabel("step of the simulated run")
    ax_p.set_xlim(t[0] - 0.5, t[-1] + 0.5)
    _add_band_legend(fig, outs)
    return fig


def _random_lesion_ranges(ax, y: np.ndarray, rates: np.ndarray) -> None:
    """The 5-95% range and median of the matched random lesions' rates, over each group's bar."""
    rows = [i for i in range(len(rates)) if rates.ndim == 2 and np.isfinite(rates[i]).any()]
    if not rows:
        return
    lo, mid, hi = (np.nanpercentile(rates[rows], q, axis=1) for q in (5, 50, 95))
    ax.errorbar(
        mid, y[rows], xerr=[mid - lo, hi - mid], fmt="|", color="k", ms=6, lw=0.8, capsize=2,
        label="random lesions (5–95%)",
    )  # fmt: skip


@renderer
def render_kick_neurons(result, *, width: str = "double"):
    """Event-triggered pre-activation peak (z) of every unit before each switch direction, the
    detected kick units (dots), and each direction's switch rate with its group silenced."""
    z = np.asarray(result.z)
    dirs = np.asarray(result.directions).reshape(-1, 2)
    labels = [f"{a}→{b}" for a, b in dirs]
    if width == "double":
        fig = new_figure(width, height=1.4 + 0.22 * len(dirs))
        ax_z, ax_r = fig.subplots(1, 2, width_ratios=[3, 1])
    else:
        fig = new_figure(width, height=2.4 + 0.4 * len(dirs))
        ax_z, ax_r = fig.subplots(2, 1)
    lim = max(float(np.nanmax(np.abs(z))) if z.size else 0.0, 1e-6)
    im = ax_z.imshow(
        z, cmap=DIFF_CMAP, norm=TwoSlopeNorm(0.0, -lim, lim), aspect="auto", interpolation="nearest"
    )
    rows, cols = np.nonzero(np.asarray(result.mask))
    ax_z.plot(cols, rows, ls="none", marker="o", ms=2.5, mfc="k", mec="w", mew=0.4)
    ax_z.set_yticks(range(len(dirs)), labels)
    ax_z.set_xlabel("unit")
    ax_z.set_ylabel("switch")
    ax_z.set_title(f"peak z before the switch (dots: kick units, z ≥ {result.z_threshold:g})")
    fig.colorbar(im, ax=ax_z, shrink=0.9, pad=0.01, label="z")
    y = np.arange(len(dirs))
    h = 0.38
    ax_r.barh(y - h / 2, result.rate_nominal, h, color="0.6", label="nominal")
    ax_r.barh(y + h / 2, result.rate_silenced, h, color=SET_COLORS_KICK, label="group silenced")
    _random_lesion_ranges(ax_r, y + h / 2, np.asarray(result.rate_random, dtype=float))
    for i, ok in enumerate(np.asarray(result.confirmed, dtype=bool)):
        if ok:
            ax_r.annotate(
                "✓",
                (max(result.rate_nominal[i], result.rate_silenced[i]), i),
                xytext=(3, -3),
                textcoords="offset points",
                fontsize=7,
            )
    ax_r.set_yticks(y, labels)
    ax_r.invert_yaxis()
    ax_r.set_xlabel("switches / step (✓ confirmed)")
    ax_r.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=1, borderaxespad=0.2)
    label_panels([ax_z, ax_r])
    return fig
