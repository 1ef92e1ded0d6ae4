"""Publication figures (matplotlib object API, no pyplot) and terminal plots of hmmrnn results.

- `catalog`: every figure by name (`all_figures`, `get_figure`, `figures_for`) and how it draws.
- `export`: collision-free files inside the export folder, with a JSON sidecar.
- `terminal`: the plotext recipes the TUI draws.
- `evaluation`, `statespace`, `mechanisms`, `training`, `grid`: the renderers.

Exporting a model's figure (obtaining its result first) is `hmmrnn.api.export_figure`. Importing
this package is light: the renderers load matplotlib only when first drawn.
"""
