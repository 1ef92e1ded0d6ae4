"""A plotext plot whose legend sits below the plot area instead of over the data.

plotext draws a labelled series' legend inside the canvas, in the corner where the points often
are. LegendPlot hands the drawing code a figure that takes the `label=` of every series for itself
and renders the labels as one coloured line under the plot, with each series' marker: the recipes
(hmmrnn.figures.terminal, hmmrnn_tui.plots) stay unchanged.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

# plotext marker names as they look on screen; a one-character marker is itself
MARKER_GLYPHS = {"hd": "▞", "fhd": "▞", "braille": "⠿", "dot": "•", "sd": "▪", "─": "─"}


def glyph(marker: str | None) -> str:
    if not marker:
        return "─"
    return MARKER_GLYPHS.get(marker, marker if len(marker) == 1 else "■")


def legend_lines(entries: list[tuple[str, Any, str | None]], width: int) -> list[Text]:
    """`▞ output 0  • output 1  ● stable fixed pt` in the series' colours, packed into lines of at
    most `width` cells; an entry is never split between lines (rich would break it at its spaces,
    non-breaking ones included), and one wider than a line is cut at its end."""
    lines, line = [], Text()
    for label, color, marker in entries:
        style = f"rgb({color[0]},{color[1]},{color[2]})" if isinstance(color, tuple) else ""
        entry = Text(f"{glyph(marker)} {label}", style=style)
        entry.truncate(width, overflow="ellipsis")
        gap = 2 if line.cell_len else 0
        if line.cell_len and line.cell_len + gap + entry.cell_len > width:
            lines.append(line)
            line, gap = Text(), 0
        line.append(" " * gap)
        line.append_text(entry)
    if line.cell_len:
        lines.append(line)
    return lines


class LegendFigure:
    """The plotext figure, with series labels collected rather than drawn."""

    def __init__(self, figure) -> None:
        self._figure = figure
        self.entries: list[tuple[str, Any, str | None]] = []

    def __getattr__(self, name: str):
        return getattr(self._figure, name)

    def clear_figure(self) -> None:
        self.entries = []
        self._figure.clear_figure()

    def _note(self, kwargs: dict) -> None:
        label = kwargs.pop("label", None)
        if label and all(e[0] != str(label) for e in self.entries):
            self.entries.append((str(label), kwargs.get("color"), kwargs.get("marker")))

    def scatter(self, *args, **kwargs):
        self._note(kwargs)
        return self._figure.scatter(*args, **kwargs)

    def plot(self, *args, **kwargs):
        self._note(kwargs)
        return self._figure.plot(*args, **kwargs)


class LegendPlot(PlotextPlot):
    """PlotextPlot with the legend as the bottom line(s) of the widget."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._legend_figure = LegendFigure(self._plot)

    @property
    def plt(self) -> LegendFigure:  # type: ignore[override]
        return self._legend_figure

    @property
    def legend(self) -> list[tuple[str, Any, str | None]]:
        return self._legend_figure.entries

    def render(self) -> RenderResult:
        entries = self._legend_figure.entries
        width, height = self.size.width, self.size.height
        if not entries or height < 6 or width < 10:
            return super().render()
        lines = legend_lines(entries, width)[:2]
        plot_height = height - len(lines)
        self._plot.plotsize(width, plot_height)
        self._plot._set_size(width, plot_height)
        self._plot.theme(self._get_plotext_theme_name(self.app.theme))
        out = Text.from_ansi(self._plot.build().rstrip("\n"))
        for line in lines:
            out.append("\n")
            out.append_text(line)
        return out
