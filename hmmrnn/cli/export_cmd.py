"""`hmmrnn export MODEL FIGURE [--format pdf,svg,png] [--out exports/] [--param value ...]`.

Writes a publication figure and its JSON sidecar; the result it draws comes from the analysis cache
(computed when missing). Analysis parameters follow the figure name as in `hmmrnn analyze`. Grid
figures (grid-*) take a tree root instead of a model. `hmmrnn export --list` prints the names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hmmrnn.cli.common import (
    EXIT_CANCELLED,
    EXIT_OK,
    UserError,
    console,
    console_err,
    user_errors,
)


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a publication figure (PDF/SVG/PNG + JSON sidecar); see --list",
        description="Draw a figure for a model (or a tree root for grid-* figures) and write it "
        "under --out with a JSON sidecar. Analysis parameters follow as --name value.",
    )
    p.add_argument("model", nargs="?", type=Path, help="model folder or .pth file (tree root)")
    p.add_argument("figure", nargs="?", help="figure name (see --list)")
    _add_own_flags(p)
    p.add_argument("params", nargs=argparse.REMAINDER, help="--name value ... (analysis params)")
    p.set_defaults(func=run_export)


def _add_own_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="print the figure names, one per line")
    p.add_argument("--format", default=None, help="comma list of pdf, svg, png (default all)")
    p.add_argument("--out", type=Path, default=None, help="export folder (default exports/)")
    p.add_argument("--width", choices=("double", "single"), default=None, help="journal width")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")


def _split(args: argparse.Namespace) -> list[str]:
    """Our flags may also come after FIGURE, among the analysis parameters."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_own_flags(own)
    found, rest = own.parse_known_args(args.params or [])
    args.list = args.list or found.list
    args.format = found.format or args.format or "pdf,svg,png"
    args.out = found.out or args.out or Path("exports")
    args.width = found.width or args.width or "double"
    args.device = found.device or args.device or "auto"
    return rest


def _defaults_for(spec) -> dict:
    if spec.analysis == "evaluation":
        from hmmrnn.figures.catalog import EVALUATION_DEFAULTS

        return {k: (0 if v is None else v) for k, v in EVALUATION_DEFAULTS.items()}
    if spec.analysis in ("loss-curves", "tree"):
        return {}
    from hmmrnn.analyses.registry import get_spec

    return get_spec(spec.analysis).defaults


def run_export(args: argparse.Namespace) -> int:
    from hmmrnn.cli.analyze_cmd import parse_params
    from hmmrnn.figures import FIGURES, export_figure, get_figure, parse_formats

    tokens = _split(args)
    if args.list:
        for name in FIGURES:
            print(name)
        return EXIT_OK
    if args.model is None or args.figure is None:
        raise UserError("usage: hmmrnn export MODEL FIGURE [--format pdf,svg,png] [--out DIR]")
    try:
        spec = get_figure(args.figure)
        formats = parse_formats(args.format)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    # loss-curves and tree figures have empty defaults, so parse_params rejects any parameter
    params = parse_params(tokens, _defaults_for(spec), spec.name) or None
    result = _export(spec, args, formats, params, export_figure)
    if result is None:
        return EXIT_CANCELLED
    for path in result.paths:
        console.print(str(path))
    console.print(f"{result.sidecar}  [dim](sidecar)[/]")
    for note in result.notes:
        console_err.print(f"[yellow]note:[/] {note}")
    return EXIT_OK


def _export(spec, args, formats, params, export_figure):
    from hmmrnn.cli.progress import run_cancellable
    from hmmrnn.evaluate import EvaluationFileError

    device = None if spec.analysis in ("loss-curves", "tree") else args.device

    def job(progress, cancel):
        with user_errors():
            return export_figure(
                spec.name,
                args.model,
                out_dir=args.out,
                formats=formats,
                params=params,
                progress=progress,
                cancel=cancel,
                width=args.width,
                device=device,
            )

    try:
        return run_cancellable(spec.name, job)
    except (ValueError, TypeError, EvaluationFileError, OSError) as exc:
        raise UserError(f"{spec.name}: {exc}") from exc
