"""`hmmrnn analyze MODEL ANALYSIS [--param value ...]`: any registered analysis from the shell.

Analyses register themselves, each with its own typed parameter schema, so argparse cannot know
them up front: everything after ANALYSIS is collected as text, our own flags (--json, --no-cache,
--device, --list) are taken out, and the rest is parsed by the analysis' schema — the same parser
the TUI's parameter line uses, so `--steps 200` and the TUI's `steps=200` share one cache entry.
`hmmrnn analyze MODEL ANALYSIS --help` lists that analysis' parameters.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hmmrnn import api
from hmmrnn.cli.common import EXIT_CANCELLED, EXIT_OK, UserError, console, schema_help


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="run a named analysis on a model (see --list)",
        description="Run a registered analysis. Analysis parameters follow as --name value "
        "(dashes or underscores); `hmmrnn analyze MODEL ANALYSIS --help` lists them. Parameters "
        "not given come from the model's config where they are tied to it (noise_std, ...), "
        "else the defaults.",
    )
    p.add_argument("model", nargs="?", type=Path, help="model folder or .pth file")
    p.add_argument("analysis", nargs="?", help="analysis name")
    _add_own_flags(p)
    p.add_argument(
        "params", nargs=argparse.REMAINDER, help="--name value ... (analysis parameters)"
    )
    p.set_defaults(func=run_analyze)


def _add_own_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="list analyses with their parameters")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")


def split_own_flags(args: argparse.Namespace) -> list[str]:
    """Take our own flags out of the trailing tokens (they may come after ANALYSIS)."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --no must not be --no-cache
    _add_own_flags(own)
    found, rest = own.parse_known_args(args.params or [])
    for name in ("list", "json", "no_cache"):
        setattr(args, name, getattr(args, name) or getattr(found, name))
    args.device = found.device or args.device or "auto"
    return rest


def print_list(specs: dict, as_json: bool) -> int:
    if as_json:
        listing = {
            n: {
                "help": s.help,
                "version": s.version,
                "defaults": api.jsonable(s.defaults),
                "params": {
                    p.name: {
                        "type": p.type_text(),
                        "default": api.jsonable(p.default),
                        "help": p.help,
                    }
                    for p in s.schema
                },
            }
            for n, s in specs.items()
        }
        print(json.dumps(listing))
        return EXIT_OK
    table = Table(title="analyses", title_justify="left")
    for col in ("name", "what", "parameters (defaults)"):
        table.add_column(col, overflow="fold")
    for name in sorted(specs):
        spec = specs[name]
        params = "  ".join(f"{p.flag} {p.format(p.default)}" for p in spec.schema)
        table.add_row(name, spec.help, params)
    console.print(table)
    return EXIT_OK


def run_analyze(args: argparse.Namespace) -> int:
    tokens = split_own_flags(args)
    if args.list:
        return print_list(api.analyses(), args.json)
    if args.model is None or args.analysis is None:
        raise UserError("usage: hmmrnn analyze MODEL ANALYSIS [--param value ...] (or --list)")
    spec = api.analysis(args.analysis)
    if "-h" in tokens or "--help" in tokens:
        console.print(schema_help(spec.schema, f"{spec.name}: {spec.help}"), markup=False)
        return EXIT_OK
    params = spec.schema.parse_flags(tokens)
    loaded = api.load(args.model, args.device)
    run = _run(spec.name, loaded, params, use_cache=not args.no_cache, quiet=args.json)
    if run is None:
        return EXIT_CANCELLED
    if args.json:
        print(json.dumps(run.result.to_dict()))
        return EXIT_OK
    console.print(f"[bold]{spec.name}[/] — {escape(str(loaded.model_file))}")
    table = Table()
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for key, value in run.summary():
        # summaries hold text such as E[δh²]; print it literally, not as markup
        table.add_row(Text(str(key)), Text(str(value)))
    console.print(table)
    used = ", ".join(f"{k}={v}" for k, v in run.params.items())
    console.print(Text(f"parameters used ({run.source}): {used}", style="dim"))
    return EXIT_OK


def _run(name: str, loaded, params: dict, *, use_cache: bool, quiet: bool):
    """Run with a progress bar on stderr; None when cancelled (Ctrl-C)."""
    from hmmrnn.cli.progress import run_cancellable

    def job(progress, cancel):
        return api.analyze(
            loaded, name, params, progress=progress, cancel=cancel, use_cache=use_cache
        )

    return run_cancellable(name, job, quiet=quiet)
