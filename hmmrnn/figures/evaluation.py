"""Evaluation figures: does the RNN's output process match the HMM's? (one EvaluationResult each)"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Patch

from hmmrnn.figures.style import (
    DIFF_CMAP,
    HMM_COLOR,
    RNN_COLOR,
    SEQ_CMAP,
    label_panels,
    new_figure,
    output_color,
    output_gid,
    renderer,
)

ERR_KW = {"elinewidth": 0.8, "capsize": 2.5, "capthick": 0.8, "ecolor": "k"}


def _pair_bars(fig, values, errors, labels, colors, width: str, label: str):
    """Two bars with error bars: horizontal across a double column, vertical in a single one."""
    ax = fig.add_subplot()
    x = np.arange(len(values))
    if width == "double":
        y = x[::-1]
        ax.barh(y, values, xerr=errors, color=colors, height=0.6, error_kw=ERR_KW)
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.7, len(values) - 0.3)
        ax.set_xlabel(label)
        ax.set_xlim(left=0)
    else:
        ax.bar(x, values, yerr=errors, color=colors, width=0.6, error_kw=ERR_KW)
        ax.set_xticks(x, labels)
        ax.set_xlim(-0.7, len(values) - 0.3)
        ax.set_ylabel(label)
    return ax


def _small_figure(width: str):
    return new_figure(width, height=1.7 if width == "double" else 2.6)


@renderer
def render_distances(result, *, width: str = "double"):
    """Matched distance of an independent HMM sample (the floor) and of the RNN to the HMM."""
    fig = _small_figure(width)
    ax = _pair_bars(
        fig,
        [result.baseline_mean, result.rnn_mean],
        [result.baseline_std, result.rnn_std],
        ["HMM–HMM", "HMM–RNN"],
        [HMM_COLOR, RNN_COLOR],
        width,
        "matched Euclidean distance",
    )
    sep = " · " if width == "double" else "\n"
    ax.set_title(
        f"ratio {result.distance_ratio:.3f}{sep}{result.num_sequences} sequences × "
        f"{result.seq_len} steps, {result.method} matching"
    )
    return fig


@renderer
def render_volatilities(result, *, width: str = "double"):
    """Output changes per sequence (mean ± std), HMM vs RNN."""
    fig = _small_figure(width)
    ax = _pair_bars(
        fig,
        [result.hmm_volatility_mean, result.rnn_volatility_mean],
        [result.hmm_volatility_std, result.rnn_volatility_std],
        ["HMM", "RNN"],
        [HMM_COLOR, RNN_COLOR],
        width,
        f"output changes per {result.seq_len}-step sequence",
    )
    ax.set_title(f"volatility · relative error {result.volatility_rel_error:.1%}")
    return fig


@renderer
def render_frequencies(result, *, width: str = "double"):
    """Frequency of each output per sequence (mean ± std): open bars HMM, filled bars RNN."""
    k = result.num_outputs
    fig = new_figure(width, height=2.2 if width == "double" else 2.6)
    ax = fig.add_subplot()
    x = np.arange(k)
    w = 0.3 if width == "double" else 0.38
    for j in range(k):
        c = output_color(j)
        ax.bar(
            x[j] - w / 2,
            result.hmm_freq_mean[j],
            w,
            yerr=result.hmm_freq_std[j],
            facecolor="white",
            edgecolor=c,
            linewidth=1.0,
            hatch="///",
            error_kw=ERR_KW,
            gid=output_gid(j),
        )
        ax.bar(
            x[j] + w / 2,
            result.rnn_freq_mean[j],
            w,
            yerr=result.rnn_freq_std[j],
            color=c,
            edgecolor=c,
            linewidth=1.0,
            error_kw=ERR_KW,
            gid=output_gid(j),
        )
    ax.set_xticks(x, [f"output {j}" for j in range(k)])
    ax.set_ylabel("frequency per sequence")
    ax.set_ylim(0, max(1.0, float(np.max(result.hmm_freq_mean + result.hmm_freq_std)) * 1.05))
    handles = [
        Patch(facecolor="white", edgecolor="0.3", hatch="///", label="HMM"),
        Patch(facecolor="0.3", edgecolor="0.3", label="RNN"),
    ]
    ax.legend(handles=handles, loc="upper right", ncols=2)
    ax.set_title("output frequencies")
    return fig


def _matrix(ax, m, *, cmap, norm=None, vmin=None, vmax=None, fmt="{:.2f}"):
    im = ax.imshow(m, cmap=cmap, norm=norm, vmin=vmin, vmax=vmax)
    k = m.shape[0]
    if k <= 8:
        for i in range(k):
            for j in range(k):
                r, g, b, _ = im.cmap(im.norm(m[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(
                    j,
                    i,
                    fmt.format(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("next output")
    ax.set_ylabel("output")
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return im


@renderer
def render_transition_matrices(result, *, width: str = "double"):
    """Output transition matrices HMM | RNN | RNN − HMM (what the study squares and plots)."""
    hmm, rnn = np.asarray(result.hmm_transition), np.asarray(result.rnn_transition)
    diff = rnn - hmm
    if width == "double":
        fig = new_figure(width, height=2.5)
        axes = fig.subplots(1, 3)
    else:
        fig = new_figure(width, height=7.2)
        axes = fig.subplots(3, 1)
    im = None
    for ax, m, title in zip(axes[:2], (hmm, rnn), ("HMM", "RNN"), strict=True):
        im = _matrix(ax, m, cmap=SEQ_CMAP, vmin=0.0, vmax=1.0)
        ax.set_title(title)
    fig.colorbar(im, ax=list(axes[:2]), shrink=0.8, label="P(next | output)")
    lim = max(float(np.abs(diff).max()), 1e-3)
    im_d = _matrix(axes[2], diff, cmap=DIFF_CMAP, norm=TwoSlopeNorm(0.0, -lim, lim), fmt="{:+.3f}")
    axes[2].set_title(f"RNN − HMM (max² {result.transition_sq_error:.1e})")
    fig.colorbar(im_d, ax=axes[2], shrink=0.8, label="difference")
    label_panels(axes)
    return fig
