"""`hmmrnn export MODEL FIGURE [--format pdf,svg,png] [--out exports/] [--param value ...]`.

Writes a publication figure and its JSON sidecar through hmmrnn.api.export_figure: the result it
draws is obtained as everywhere else (the saved evaluation when it matches, else the cache, else
computed). Analysis parameters follow the figure name as in `hmmrnn analyze`; `--help` after the
figure name lists them. Grid
figures (grid-*) take a tree root instead of a model. `hmmrnn export --list` prints the names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hmmrnn import api
from hmmrnn.cli.common import (
    EXIT_CANCELLED,
    EXIT_OK,
    UserError,
    console,
    console_err,
    schema_help,
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
    p.add_argument("--json", action="store_true", help="with --list: names, help and analysis")
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
    args.json = args.json or found.json
    args.format = found.format or args.format or "pdf,svg,png"
    args.out = found.out or args.out or Path("exports")
    args.width = found.width or args.width or "double"
    args.device = found.device or args.device or "auto"
    return rest


def run_export(args: argparse.Namespace) -> int:
    tokens = _split(args)
    if args.list:
        figures = api.figures()
        if args.json:
            print(
                json.dumps(
                    {n: {"help": f.help, "analysis": f.analysis} for n, f in figures.items()}
                )
            )
        else:
            for name in figures:
                print(name)
        return EXIT_OK
    if args.model is None or args.figure is None:
        raise UserError("usage: hmmrnn export MODEL FIGURE [--format pdf,svg,png] [--out DIR]")
    entry = api.figure(args.figure)
    plain = not api.figure_takes_params(entry.name)
    if "-h" in tokens or "--help" in tokens:
        text = f"{entry.name}: {entry.help}"
        if not plain:
            text = schema_help(api.figure_schema(entry.name), text)
        console.print(text, markup=False)
        return EXIT_OK
    formats = api.parse_formats(args.format)
    if plain and tokens:
        raise UserError(f"{entry.name}: takes no parameters, got {' '.join(tokens)}")
    params = {} if plain else api.figure_schema(entry.name).parse_flags(tokens)
    result = _export(entry.name, args, formats, params)
    if result is None:
        return EXIT_CANCELLED
    for path in result.paths:
        console.print(str(path))
    console.print(f"{result.sidecar}  [dim](sidecar)[/]")
    for note in result.notes:
        console_err.print(f"[yellow]note:[/] {note}")
    return EXIT_OK


def _export(name: str, args, formats, params):
    from hmmrnn.cli.progress import run_cancellable

    def job(progress, cancel):
        return api.export_figure(
            name,
            args.model,
            params=params,
            out_dir=args.out,
            formats=formats,
            width=args.width,
            device=args.device,
            progress=progress,
            cancel=cancel,
        )

    try:
        return run_cancellable(name, job)
    except OSError as exc:
        raise UserError(f"{name}: cannot write into {args.out}: {exc.strerror or exc}") from exc
