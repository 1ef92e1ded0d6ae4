"""State-space figures: PCA views, trajectories and fixed points, variance contours, readout.

Every renderer takes a result of `hmmrnn.analyses.pca` / `hmmrnn.analyses.statespace` and only draws
it. Anything coloured by output symbol uses `output_color(k)` and carries the gid `output-k`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from hmmrnn.figures.style import (
    HMM_COLOR,
    label_panels,
    new_figure,
    output_color,
    output_gid,
    renderer,
    sequential,
)

TRAJECTORY_STEPS = 60  # steps of one run drawn with arrows: enough to see a switch, still legible


# --- shared helpers ---------------------------------------------------------------------------------


def pc_label(i: int, ratios) -> str:
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    if i < ratios.size and np.isfinite(ratios[i]) and ratios[i] > 0:
        return f"PC{i + 1} ({ratios[i]:.0%})"
    return f"PC{i + 1}"


def label_pcs(ax, ratios, dims: int = 2, pair: tuple[int, int] = (0, 1)) -> None:
    ax.set_xlabel(pc_label(pair[0], ratios))
    ax.set_ylabel(pc_label(pair[1], ratios))
    if dims == 3:
        ax.set_zlabel(pc_label(2, ratios))


def check_pair(pair, n_components: int, what: str) -> tuple[int, int]:
    """The PC pair a view shows (as chosen on screen), checked against the components there are."""
    i, j = (int(v) for v in pair)
    if not (0 <= i < n_components and 0 <= j < n_components and i != j):
        raise ValueError(f"{what}: PC pair {i + 1}-{j + 1} needs two of {n_components} components")
    return i, j


def fixed_point_overlay(ax, fixed, pair: tuple[int, int]) -> None:
    """The fixed/slow points of a FixedPointsResult on a PC pair, one marker per stability kind
    (filled: fixed, hollow: slow), as the TUI's state-space view shows them."""
    proj = np.asarray(fixed.projections)
    if proj.ndim != 2 or proj.shape[1] <= max(pair):
        return
    kinds = np.asarray(fixed.kinds)
    for kind in dict.fromkeys(kinds.tolist()):
        for is_fixed in (True, False):
            sel = (kinds == kind) & (np.asarray(fixed.is_fixed) == is_fixed)
            pts = proj[sel][:, list(pair)]
            pts = pts[np.isfinite(pts).all(axis=1)]
            if len(pts):
                ax.plot(*pts.T, ls="none", marker=KIND_MARKERS.get(kind, "o"), ms=6,
                        mfc="k" if is_fixed else "w", mec="k", mew=0.8, zorder=6,
                        label=f"{kind} {'fixed' if is_fixed else 'slow'} point")  # fmt: skip


def need_components(proj: np.ndarray, n: int, what: str) -> None:
    if proj.ndim == 0 or proj.shape[-1] < n:
        have = 0 if proj.ndim == 0 else proj.shape[-1]
        raise ValueError(f"{what} needs at least {n} principal components, the result has {have}")


def output_handles(outputs, marker: str = "o") -> list[Line2D]:
    """Legend entries for the outputs present (drawn in their fixed colours)."""
    present = sorted({int(k) for k in np.unique(np.asarray(outputs)) if k >= 0})
    return [
        Line2D([], [], color=output_color(k), marker=marker, ls="none", ms=4, label=f"output {k}")
        for k in present
    ]


def scatter_by_output(ax, points: np.ndarray, outputs: np.ndarray, *, s=2.0, alpha=0.4, **kw):
    """One scatter per output (fixed colour, gid output-k); rasterised so PDFs stay small."""
    outputs = np.asarray(outputs).astype(np.int64)
    for k in np.unique(outputs):
        sel = outputs == k
        cols = [points[sel, i] for i in range(points.shape[1])]
        ax.scatter(
            *cols,
            s=s,
            color=output_color(k),
            alpha=alpha,
            linewidths=0,
            rasterized=True,
            gid=output_gid(k),
            **kw,
        )


def lines_by_output(ax, xy: np.ndarray, outputs: np.ndarray, *, lw=0.9, alpha=1.0) -> None:
    """A path (T, 2) whose segment t-1 -> t takes the colour of the output at step t."""
    if len(xy) < 2:
        return
    segments = np.stack([xy[:-1], xy[1:]], axis=1)
    out = np.asarray(outputs)[1:].astype(np.int64)
    for k in np.unique(out):
        sel = out == k
        ax.add_collection(
            LineCollection(
                segments[sel], colors=output_color(k), linewidths=lw, alpha=alpha, gid=output_gid(k)
            )
        )
    ax.update_datalim(xy[np.isfinite(xy).all(axis=1)])
    ax.autoscale_view()


def arrows_by_output(ax, xy: np.ndarray, outputs: np.ndarray) -> None:
    """Arrows from step t-1 to t coloured by the output at t: the direction of travel."""
    if len(xy) < 2:
        return
    start, delta = xy[:-1], np.diff(xy, axis=0)
    out = np.asarray(outputs)[1:].astype(np.int64)
    for k in np.unique(out):
        sel = out == k
        ax.quiver(
            start[sel, 0],
            start[sel, 1],
            delta[sel, 0],
            delta[sel, 1],
            angles="xy",
            scale_units="xy",
            scale=1.0,
            width=0.004,
            headwidth=4.0,
            headlength=4.5,
            headaxislength=4.0,
            color=output_color(k),
            gid=output_gid(k),
            zorder=3,
        )


def _first_run(result, steps: int, pair=(0, 1)) -> tuple[np.ndarray, np.ndarray]:
    n = min(int(result.steps) if result.steps else len(result.projections), steps)
    return result.projections[:n][:, list(pair)], result.outputs[:n]


# --- PCA --------------------------------------------------------------------------------------------


@renderer
def render_pca_2d(result, *, width: str = "double", pair=(0, 1), fixed_points=None):
    """A PC pair (PC1-PC2 unless chosen) of the driven states coloured by output; arrows follow
    one run through time; optionally the fixed/slow points on top."""
    need_components(result.projections, 2, "pca-2d")
    pair = check_pair(pair, result.projections.shape[1], "pca-2d")
    pts, outs = result.projections[:, list(pair)], result.outputs
    xy, seg_out = _first_run(result, TRAJECTORY_STEPS, pair)
    if width == "double":
        fig = new_figure(width, aspect=0.45)
        ax_cloud, ax_traj = fig.subplots(1, 2, sharex=True, sharey=True)
        scatter_by_output(ax_cloud, pts, outs)
        ax_cloud.set_title(f"driven states ({len(pts)} steps)")
        ax_traj.scatter(*pts.T, s=1.5, color="0.85", linewidths=0, rasterized=True)
        axes = [ax_cloud, ax_traj]
    else:
        fig = new_figure(width, aspect=0.9)
        ax_traj = fig.subplots()
        scatter_by_output(ax_traj, pts, outs, alpha=0.15)
        axes = [ax_traj]
    ax_traj.plot(*xy.T, color="0.55", lw=0.4, zorder=2)
    arrows_by_output(ax_traj, xy, seg_out)
    ax_traj.set_title(f"{len(xy)} consecutive steps")
    for ax in axes:
        label_pcs(ax, result.explained_variance_ratio, pair=pair)
        if fixed_points is not None:
            fixed_point_overlay(ax, fixed_points, pair)
    handles = output_handles(outs)
    if fixed_points is not None:
        handles += [h for h in axes[-1].get_legend_handles_labels()[0] if "point" in h.get_label()]
    axes[0].legend(handles=handles, loc="best", markerscale=1.0)
    if len(axes) > 1:
        label_panels(axes)
    return fig


def tidy_3d(ax, zoom: float = 0.82) -> None:
    """3-D axes inside a constrained layout: shrink the box so tick and axis labels stay inside
    the axes' own area instead of running into neighbouring panels."""
    ax.set_box_aspect(None, zoom=zoom)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.labelpad = 0
        axis.set_tick_params(pad=0)
    for pane in (ax.xaxis.pane, ax.yaxis.pane, ax.zaxis.pane):
        pane.set_facecolor((0.97, 0.97, 0.97, 1.0))


@renderer
def render_pca_3d(result, *, width: str = "double"):
    """PC1-PC3 of the driven states coloured by output, with one run's path (two views if wide)."""
    need_components(result.projections, 3, "pca-3d")
    pts, outs = result.projections[:, :3], result.outputs
    n = min(int(result.steps) or len(pts), TRAJECTORY_STEPS // 2)
    views = [(25, -60), (20, 30)] if width == "double" else [(25, -60)]
    fig = new_figure(width, aspect=0.5 if width == "double" else 0.95)
    axes = []
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1, projection="3d")
        scatter_by_output(ax, pts, outs, s=3.0, alpha=0.6)
        ax.plot(*pts[:n].T, color="0.35", lw=0.4, alpha=0.7)
        ax.view_init(elev=elev, azim=azim)
        label_pcs(ax, result.explained_variance_ratio, dims=3)
        tidy_3d(ax)
        axes.append(ax)
    fig.legend(handles=output_handles(outs), loc="outside upper center", ncols=len(np.unique(outs)))
    return fig


@renderer
def render_explained_variance(result, *, width: str = "double"):
    """Variance explained per component (bars) and cumulative (line)."""
    ratios = np.asarray(result.explained_variance_ratio, dtype=np.float64)
    fig = new_figure(width, height=2.2 if width == "double" else 2.4)
    ax = fig.add_subplot()
    idx = np.arange(1, len(ratios) + 1)
    ax.bar(idx, ratios * 100, color=HMM_COLOR, width=0.6, label="per component")
    ax.plot(idx, np.cumsum(ratios) * 100, color="k", marker="o", ms=3, label="cumulative")
    for i, r in zip(idx, np.cumsum(ratios), strict=True):
        ax.annotate(
            f"{r:.0%}",
            (i, r * 100),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(idx, [f"PC{i}" for i in idx])
    ax.set_ylim(0, 110)
    ax.set_ylabel("variance explained (%)")
    ax.legend(loc="center right")
    return fig


# --- trajectories and fixed points ------------------------------------------------------------------


def _fixed_point_marks(ax, proj: np.ndarray, label: str = "fixed point") -> None:
    proj = proj[np.isfinite(proj).all(axis=1)] if len(proj) else proj
    if len(proj):
        ax.plot(
            proj[:, 0],
            proj[:, 1],
            ls="none",
            marker="*",
            ms=8,
            mfc="k",
            mec="w",
            mew=0.5,
            zorder=7,  # above the solver's markers, which often sit on the same point
            label=label,
        )


@renderer
def render_trajectories(result, *, width: str = "double", pair=(0, 1), fixed_points=None):
    """Autonomous runs collapse onto fixed points; noise-driven runs keep circling between outputs.
    `pair` picks the principal components shown; `fixed_points` adds the solver's points."""
    need_components(result.autonomous, 2, "trajectories")
    pair = check_pair(pair, result.autonomous.shape[-1], "trajectories")
    cols = list(pair)
    if width == "double":
        fig = new_figure(width, aspect=0.45)
        ax_a, ax_d = fig.subplots(1, 2, sharex=True, sharey=True)
    else:
        fig = new_figure(width, height=5.4)
        ax_a, ax_d = fig.subplots(2, 1, sharex=True, sharey=True)
    ok = ~np.asarray(result.autonomous_diverged, dtype=bool)
    auto = result.autonomous[ok][..., cols]
    if len(auto):
        ax_a.add_collection(LineCollection(list(auto), colors="0.45", linewidths=0.5, alpha=0.6))
        ax_a.plot(
            *auto[:, 0].T,
            ls="none",
            marker="o",
            ms=2.5,
            mfc="none",
            mec="0.3",
            mew=0.5,
            label="start (driven state)",
        )
        ax_a.update_datalim(auto.reshape(-1, 2)[np.isfinite(auto.reshape(-1, 2)).all(axis=1)])
    ends = np.asarray(result.end_projections)[..., cols]
    _fixed_point_marks(ax_a, ends, "end point (fixed point)")
    ax_a.autoscale_view()
    n_div = int((~ok).sum())
    ax_a.set_title("autonomous (no input)" + (f", {n_div} diverged" if n_div else ""))
    for r in range(result.driven.shape[0]):
        lines_by_output(
            ax_d, result.driven[r][:, cols], result.driven_outputs[r], lw=0.7, alpha=0.85
        )
    _fixed_point_marks(ax_d, ends)
    if fixed_points is not None:
        for ax in (ax_a, ax_d):
            fixed_point_overlay(ax, fixed_points, pair)
    ax_a.legend(loc="best")  # every marker of both panels; the driven panel adds the outputs
    mode = {"recurrence_only": ", input off", "input_only": ", recurrence cut"}
    ax_d.set_title(
        f"driven by noise ({result.driven.shape[0]} runs{mode.get(result.dynamics, '')})"
    )
    ax_d.legend(handles=output_handles(result.driven_outputs, marker="s"), loc="best")
    for ax in (ax_a, ax_d):
        label_pcs(ax, result.explained_variance_ratio, pair=pair)
    label_panels([ax_a, ax_d])
    return fig


KIND_MARKERS = {"stable": "o", "marginal": "D", "saddle": "X", "unstable": "^"}


def _unit_circle(ax) -> None:
    """Dashed |z| = 1 reference: where eigenvalues turn unstable, where a unit vector lies in-plane."""
    theta = np.linspace(0, 2 * np.pi, 256)
    ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.6, ls="--")


@renderer
def render_fixed_points(result, *, width: str = "double", max_spectra: int = 4):
    """Fixed/slow points in the PC plane (marker = stability) and their Jacobian spectra."""
    if width == "double":
        fig = new_figure(width, aspect=0.45)
        ax_p, ax_e = fig.subplots(1, 2)
    else:
        fig = new_figure(width, height=5.6)
        ax_p, ax_e = fig.subplots(2, 1)
    n_pts = len(result.points)
    colors = ["k"] + sequential(max(n_pts - 1, 1), "cividis", 0.1, 0.85)
    proj = np.asarray(result.projections)
    if proj.ndim == 2 and proj.shape[1] >= 2:
        for p in range(n_pts):
            kind = result.kinds[p] if p < len(result.kinds) else "stable"
            fixed = bool(result.is_fixed[p])
            ax_p.plot(
                proj[p, 0],
                proj[p, 1],
                ls="none",
                marker=KIND_MARKERS.get(kind, "o"),
                ms=6 if p == 0 else 5,
                mec=colors[p],
                mfc=colors[p] if fixed else "none",
                mew=0.8,
            )
        label_pcs(ax_p, result.explained_variance_ratio)
    else:
        ax_p.text(
            0.5,
            0.5,
            "no PCA basis in this result",
            ha="center",
            va="center",
            transform=ax_p.transAxes,
        )
    handles = [
        Line2D([], [], ls="none", marker=m, mec="k", mfc="k", ms=5, label=kind)
        for kind, m in KIND_MARKERS.items()
        if kind in set(result.kinds)
    ]
    handles.append(Line2D([], [], ls="none", marker="o", mec="k", mfc="none", ms=5, label="slow"))
    ax_p.legend(handles=handles, loc="best")
    ax_p.set_title(f"{n_pts} points (origin black; filled: fixed)")
    _unit_circle(ax_e)
    shown = min(n_pts, max_spectra + 1)
    for p in range(shown):
        ax_e.plot(
            result.eigenvalues_real[p],
            result.eigenvalues_imag[p],
            ls="none",
            marker=".",
            ms=3,
            color=colors[p],
            label="origin" if p == 0 else f"point {p}",
        )
    ax_e.set_aspect("equal", adjustable="datalim")
    ax_e.set_xlabel("Re λ")
    ax_e.set_ylabel("Im λ")
    ax_e.set_title("Jacobian eigenvalues (dashed: |λ| = 1)")
    ax_e.legend(loc="best", markerscale=2)
    label_panels([ax_p, ax_e])
    return fig


# --- variance contours and readout ------------------------------------------------------------------


@renderer
def render_variance_contours(result, *, width: str = "double"):
    """95%-mass contours of the driven states per input-noise std, and how the spread grows."""
    stds = np.asarray(result.noise_stds, dtype=np.float64)
    if width == "double":
        fig = new_figure(width, aspect=0.42)
        ax_c, ax_s = fig.subplots(1, 2, width_ratios=[1.3, 1])
    else:
        fig = new_figure(width, height=5.6)
        ax_c, ax_s = fig.subplots(2, 1, height_ratios=[1.3, 1])
    colors = sequential(len(stds), "viridis", 0.0, 0.85)
    for i, (std, color) in enumerate(zip(stds, colors, strict=True)):
        polys = result.level_polygons(i)
        if polys:
            ax_c.add_collection(LineCollection(polys, colors=[color], linewidths=1.0))
            for poly in polys:
                ax_c.update_datalim(poly)
        ax_c.plot([], [], color=color, label=f"σ = {std:g}")
    ax_c.autoscale_view()
    ax_c.plot([0], [0], ls="none", marker="+", color="k", ms=5)
    pair = list(getattr(result, "pair", []))
    where = f", outputs {pair[0]}–{pair[1]} only" if pair else ""
    ax_c.set_title(f"{result.mass:.0%} density contours{where}")
    label_pcs(ax_c, result.explained_variance_ratio)
    ax_c.legend(loc="best", title="input std")
    ax_s.plot(stds, result.spread, color="k", marker="o", ms=3, label="trace of covariance")
    ax_s.set_xlabel("input noise std σ")
    ax_s.set_ylabel("spread in PC1–PC2")
    ax2 = ax_s.twinx()
    ax2.spines["right"].set_visible(True)
    ax2.plot(stds, result.areas, color=HMM_COLOR, marker="s", ms=3, ls="--", label="contour area")
    ax2.set_ylabel("contour area", color=HMM_COLOR)
    ax2.tick_params(axis="y", colors=HMM_COLOR)
    handles = ax_s.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax_s.legend(handles=handles, loc="upper left")
    ax_s.set_title("spread vs noise")
    label_panels([ax_c, ax_s])
    return fig


@renderer
def render_readout_alignment(result, *, width: str = "double"):
    """Each readout row in the PC1-PC2 plane (unit circle = fully in-plane) and its angle to it."""
    if width == "double":
        fig = new_figure(width, aspect=0.42)
        ax_v, ax_a = fig.subplots(1, 2)
    else:
        fig = new_figure(width, height=5.6)
        ax_v, ax_a = fig.subplots(2, 1)
    _unit_circle(ax_v)
    coords = np.asarray(result.plane_coords)
    for k, (x, y) in enumerate(coords[:, :2]):
        ax_v.annotate(
            "",
            xy=(x, y),
            xytext=(0, 0),
            arrowprops=dict(
                arrowstyle="-|>",
                color=output_color(k),
                lw=1.2,
                shrinkA=0,
                shrinkB=0,
                mutation_scale=8,
            ),
            gid=output_gid(k),
        )
        ax_v.plot([], [], color=output_color(k), label=f"output {k}")
    ax_v.set_xlim(-1.1, 1.1)
    ax_v.set_ylim(-1.1, 1.1)
    ax_v.set_aspect("equal")
    ax_v.axhline(0, color="0.85", lw=0.5, zorder=0)
    ax_v.axvline(0, color="0.85", lw=0.5, zorder=0)
    label_pcs(ax_v, result.explained_variance_ratio)
    ax_v.set_title("unit readout rows projected")
    ax_v.legend(
        loc="upper left", borderaxespad=0.1, handlelength=1.2
    )  # the corner outside the circle
    names = [f"output {k}" for k in range(len(result.angle_deg))]
    colors = [output_color(k) for k in range(len(result.angle_deg))]
    pair_names = [f"{i}−{j}" for i, j in np.asarray(result.pairs).reshape(-1, 2)]
    angles = np.concatenate([result.angle_deg, result.pair_angle_deg])
    y = np.arange(len(angles))[::-1]
    bars = ax_a.barh(y, angles, color=colors + ["0.6"] * len(pair_names), height=0.6)
    for k, bar in enumerate(list(bars)[: len(names)]):
        bar.set_gid(output_gid(k))
    ax_a.set_yticks(y, names + [f"outputs {p}" for p in pair_names])
    ax_a.set_xlim(0, 90)
    ax_a.set_xticks([0, 30, 60, 90])
    ax_a.set_xlabel("angle to PC1–PC2 plane (deg)")
    ax_a.set_title("rows and row differences")
    label_panels([ax_v, ax_a])
    return fig
