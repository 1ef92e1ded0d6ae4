"""The figure catalogue: every publication figure by name, and how it is drawn from its result.

Analysis figures are registered next to their analysis (`hmmrnn.analyses.registry.Figure`); three
more draw what is not an analysis result: the loss curves of a model folder and two grids over a
tree. Figures consume results only. Obtaining the result — through the cache, from a saved file,
or as the TUI already has it on screen — is the use-case layer's job (`hmmrnn.api.export_figure`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmmrnn.errors import UserError
from hmmrnn.figures.export import safe_label

# sources that are not registered analyses
LOSS_CURVES, TREE, TREE_PCA = "loss-curves", "tree", "tree-pca"


@dataclass(frozen=True)
class FigureEntry:
    """A named figure and the result it draws: `analysis` is a registered analysis' name, or
    "loss-curves" (a model folder's training log) or "tree" (the evaluations of a model tree)."""

    name: str
    help: str
    analysis: str
    renderer: str | Callable
    derive: str | Callable | None = None
    colors_outputs: bool = False

    def options(self) -> list[str]:
        """View options the renderer takes besides the result and the width (e.g. `pair`)."""
        import inspect

        from hmmrnn.analyses.registry import resolve_ref

        params = inspect.signature(resolve_ref(self.renderer)).parameters
        return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "width"]

    def render(self, drawable, *, width: str = "double", **options):
        """The matplotlib Figure, drawn in the shared style at a journal width; `options` are
        view settings (a PC pair, an overlay) the renderer accepts."""
        from hmmrnn.analyses.registry import resolve_ref
        from hmmrnn.figures.style import WIDTHS, styled

        if width not in WIDTHS:
            raise UserError(f"width must be 'single' or 'double', got {width!r}")
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            raise UserError(f"figure {self.name!r} has no view option {', '.join(unknown)}")
        with styled():
            return resolve_ref(self.renderer)(drawable, width=width, **options)

    def derived(self, loaded, result) -> Any:
        """The drawable: the result itself, or the view `derive` computes from it."""
        from hmmrnn.analyses.registry import resolve_ref

        return result if self.derive is None else resolve_ref(self.derive)(loaded, result)


_OTHER = (
    FigureEntry(
        "loss-curves",
        "training and validation loss per epoch and learning rate",
        LOSS_CURVES,
        "hmmrnn.figures.training:render_loss_curves",
    ),
    FigureEntry(
        "grid-distances",
        "tree: matched distance by states x hidden x input (seed means)",
        TREE,
        "hmmrnn.figures.grid:render_grid_distances",
    ),
    FigureEntry(
        "grid-transition-error",
        "tree: transition error by states x hidden x input",
        TREE,
        "hmmrnn.figures.grid:render_grid_transition_error",
    ),
    FigureEntry(
        "grid-pca",
        "tree: each model's driven PC1-PC2 plane, by family x hidden x input",
        TREE_PCA,
        "hmmrnn.figures.grid:render_grid_pca",
    ),
)


def all_figures() -> dict[str, FigureEntry]:
    """Every figure: the training and tree figures, then those of each registered analysis."""
    from hmmrnn.analyses.registry import all_specs

    out = {f.name: f for f in _OTHER}
    for spec in all_specs().values():
        for fig in spec.figures:
            out[fig.name] = FigureEntry(
                fig.name, fig.help, spec.name, fig.render, fig.derive, fig.colors_outputs
            )
    return out


def list_figures() -> list[str]:
    return list(all_figures())


def figures_for(analysis: str) -> list[str]:
    """Figure names that draw a given analysis (or "loss-curves" / "tree")."""
    return [n for n, f in all_figures().items() if f.analysis == analysis]


def get_figure(name: str) -> FigureEntry:
    """One figure's entry. The training and tree figures are found without importing the
    analysis modules (torch among them: 1.5 s of a 3.4 s `loss-curves` export)."""
    for entry in _OTHER:
        if entry.name == name:
            return entry
    figures = all_figures()
    if name not in figures:
        raise UserError(f"unknown figure {name!r}; choose one of {', '.join(figures)}")
    return figures[name]


# --- labels ---------------------------------------------------------------------------------------

_LEVEL = re.compile(r"^(hidden|input|seed)[_ ]?(\d+)$", re.IGNORECASE)
_SHORT = {"hidden": "h", "input": "i", "seed": "s"}


def model_label(folder: Path) -> str:
    """Readable name of a model folder: `Two/hidden_50/input_10/seed_0` -> `Two-h50-i10-s0`."""
    parts = list(Path(folder).parts)
    levels: list[str] = []
    i = len(parts)
    while i > 0 and (m := _LEVEL.match(parts[i - 1])):
        levels.insert(0, f"{_SHORT[m.group(1).lower()]}{m.group(2)}")
        i -= 1
    family = parts[i - 1] if i > 0 else "model"
    return safe_label("-".join([family, *levels]))
