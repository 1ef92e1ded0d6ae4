"""Publication figures for every hmmrnn result (matplotlib object API, no pyplot, no Textual).

Public API (the CLI's `hmmrnn export` and the TUI's export key use exactly this):

- `FIGURES`: name -> FigureSpec(name, help, analysis, render(result, *, width="double"|"single"))
- `list_figures()`: the figure names
- `export_figure(name, model_path_or_loaded, *, out_dir="exports", formats=("pdf","svg","png"),
  params=None, result=None, progress=None, cancel=None) -> ExportResult(paths, sidecar)`
- `render_to_files(fig, stem, out_dir, formats) -> list[Path]` (collision-free, never escapes
  out_dir)
"""

from hmmrnn.figures.catalog import (
    FIGURES,
    FigureSpec,
    evaluation_result,
    export_figure,
    figures_for,
    get_figure,
    list_figures,
    model_label,
)
from hmmrnn.figures.export import FORMATS, ExportResult, parse_formats, render_to_files
from hmmrnn.figures.training import LossCurves

__all__ = [
    "FIGURES",
    "FORMATS",
    "ExportResult",
    "FigureSpec",
    "LossCurves",
    "evaluation_result",
    "export_figure",
    "figures_for",
    "get_figure",
    "list_figures",
    "model_label",
    "parse_formats",
    "render_to_files",
]
