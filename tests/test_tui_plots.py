"""The terminal plots' axes: what the user reads off them must be the data's values."""

from __future__ import annotations

import re

import plotext
import pytest

from hmmrnn_tui import plots

RECORDS = [
    {"epoch": i + 1, "train_loss": 12 + 5 / (i + 1), "val_loss": 12.2 + 4 / (i + 1)}
    for i in range(6)
]


def tick_values(text: str) -> list[float]:
    """Numbers left of the y-axis tick marks of a built plotext canvas."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return [float(m) for m in re.findall(r"^\s*([-0-9.e+]+)[┤├]", plain, flags=re.M)]


@pytest.mark.parametrize("view", plots.LOSS_VIEWS)
def test_loss_views_label_the_axis_in_the_datas_units(view):
    plt = plotext
    plt.plotsize(70, 18)
    plots.loss(plt, [("run", RECORDS)], 11.5, view)
    ticks = tick_values(plt.build())
    assert len(ticks) >= 2
    shift = 11.5 if view == "loss - floor" else 0.0
    lo = min(11.5, *(r["train_loss"] for r in RECORDS)) - shift
    hi = max(r["train_loss"] for r in RECORDS) - shift
    span = hi - lo
    assert min(ticks) >= lo - 0.2 * span and max(ticks) <= hi + 0.2 * span


def test_epoch_ticks_are_whole_round_numbers():
    assert plots.integer_ticks(1, 6) == [1, 2, 3, 4, 5, 6]
    assert plots.integer_ticks(1, 1000) == [200, 400, 600, 800, 1000]
    assert plots.integer_ticks(1, 13) == [2, 4, 6, 8, 10, 12]
    assert plots.integer_ticks(5, 5) == [5]


def test_series_labels_become_a_legend_line_not_canvas_text():
    from hmmrnn_tui.legendplot import LegendFigure, legend_lines

    fig = LegendFigure(plotext)
    fig.clear_figure()
    fig.plotsize(60, 12)
    fig.scatter([0, 1], [0, 1], marker="hd", color=(0, 114, 178), label="output 0")
    fig.scatter([1, 2], [2, 3], marker="●", color=(220, 30, 30), label="stable fixed pt")
    canvas = re.sub(r"\x1b\[[0-9;]*m", "", fig.build())
    assert "output 0" not in canvas and "stable" not in canvas  # nothing drawn over the data
    assert [e[0] for e in fig.entries] == ["output 0", "stable fixed pt"]
    (line,) = legend_lines(fig.entries, 60)
    assert line.plain == "▞ output 0  ● stable fixed pt"
    narrow = [t.plain for t in legend_lines(fig.entries, 18)]
    assert narrow == ["▞ output 0", "● stable fixed pt"]  # whole entries per line, never split
    assert all(len(t) <= 8 for t in legend_lines(fig.entries, 8))
    fig.clear_figure()
    assert fig.entries == []


def test_kick_views_show_only_the_directions_that_switched():
    from types import SimpleNamespace

    import numpy as np

    from hmmrnn.figures import terminal

    r = SimpleNamespace(
        directions=np.array([[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]),
        n_events=np.array([0, 50, 0, 0, 40, 0]),
        rate_nominal=np.array([0, 0.02, 0, 0, 0.02, 0]),
        rate_silenced=np.array([0, 0.01, 0, 0, 0.02, 0]),
        rate_random=np.full((6, 4), np.nan),
        mask=np.zeros((6, 5), dtype=bool),
    )
    r.rate_random[1] = [0.02, 0.019, 0.021, 0.02]
    for view in (terminal.kick_rates, terminal.kick_groups):
        plt = plotext
        plt.clear_figure()
        plt.plotsize(70, 18)
        view(plt, r)
        text = re.sub(r"\x1b\[[0-9;]*m", "", plt.build())
        assert "0→2" in text and "2→0" in text and "0→1" not in text and "1→2" not in text
