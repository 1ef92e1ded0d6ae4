"""`hmmrnn analyze MODEL ANALYSIS [--param value ...]`: any registered analysis from the shell.

Analyses register themselves (hmmrnn.analyses.registry), each with its own parameters, so argparse
cannot know them up front: everything after ANALYSIS is collected as text, our own flags (--json,
--no-cache, --device, --list) are taken out, and the rest is matched against the analysis' defaults.
Values parse as JSON when they can ("3", "0.5", "[1, 2]", "true"), else as text, and are coerced to
the type of the default, so `--steps 200` and the TUI's `steps=200` share one cache entry.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hmmrnn.cli.common import (
    EXIT_CANCELLED,
    EXIT_OK,
    UserError,
    console,
    user_errors,
)


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="run a named analysis on a model (see --list)",
        description="Run a registered analysis. Analysis parameters follow as --name value "
        "(dashes or underscores); `hmmrnn analyze --list` shows them with their defaults.",
    )
    p.add_argument("model", nargs="?", type=Path, help="model folder or .pth file")
    p.add_argument("analysis", nargs="?", help="analysis name")
    _add_own_flags(p)
    p.add_argument(
        "params", nargs=argparse.REMAINDER, help="--name value ... (analysis parameters)"
    )
    p.set_defaults(func=run_analyze)


def _add_own_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="list analyses with their defaults")
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


def parse_params(tokens: list[str], defaults: dict[str, Any], analysis: str) -> dict[str, Any]:
    """`--name value` / `--name=value` pairs, checked against and coerced to the defaults."""
    params: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise UserError(f"{analysis}: expected --name value, got {tok!r}")
        name, eq, text = tok[2:].partition("=")
        name = name.replace("-", "_")
        if not eq:
            if i + 1 >= len(tokens):
                raise UserError(f"{analysis}: --{name.replace('_', '-')} needs a value")
            text, i = tokens[i + 1], i + 1
        i += 1
        if name not in defaults:
            valid = ", ".join("--" + k.replace("_", "-") for k in sorted(defaults)) or "none"
            raise UserError(
                f"{analysis}: unknown parameter --{name.replace('_', '-')}; valid: {valid}"
            )
        params[name] = coerce(name, text, defaults[name])
    return params


def coerce(name: str, text: str, default: Any) -> Any:
    """Parse `text` like the default: JSON first, comma lists for sequences, numeric widening."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    flag = "--" + name.replace("_", "-")
    if isinstance(default, (list, tuple)):
        if isinstance(value, str):
            try:
                value = [json.loads(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise UserError(f"{flag}: cannot parse {text!r} as a list") from None
        value = value if isinstance(value, list) else [value]
        like = default[0] if default else None
        return [coerce(name, json.dumps(v), like) if like is not None else v for v in value]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise UserError(f"{flag}: expected true or false, got {text!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise UserError(f"{flag}: expected an integer, got {text!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{flag}: expected a number, got {text!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        return text
    return value


def finite(value: Any) -> Any:
    """NaN/inf become null so the output is strict JSON (jq and browsers reject NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def print_list(specs: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps({n: {"help": s.help, "defaults": s.defaults} for n, s in specs.items()}))
        return EXIT_OK
    table = Table(title="analyses", title_justify="left")
    for col in ("name", "what", "parameters (defaults)"):
        table.add_column(col, overflow="fold")
    for name in sorted(specs):
        spec = specs[name]
        params = "  ".join(
            f"--{k.replace('_', '-')} {json.dumps(v)}" for k, v in spec.defaults.items()
        )
        table.add_row(name, spec.help, params)
    console.print(table)
    return EXIT_OK


def run_analyze(args: argparse.Namespace) -> int:
    from hmmrnn.analyses.registry import all_specs

    tokens = split_own_flags(args)
    specs = all_specs()
    if args.list:
        return print_list(specs, args.json)
    if args.model is None or args.analysis is None:
        raise UserError("usage: hmmrnn analyze MODEL ANALYSIS [--param value ...] (or --list)")
    if args.analysis not in specs:
        raise UserError(
            f"unknown analysis {args.analysis!r}; choose one of {', '.join(sorted(specs))}"
        )
    spec = specs[args.analysis]
    params = parse_params(tokens, spec.defaults, spec.name)
    loaded = _load(args.model, args.device)
    result = _run(spec, loaded, params, use_cache=not args.no_cache, quiet=args.json)
    if result is None:
        return EXIT_CANCELLED
    if args.json:
        print(json.dumps(finite(result.to_dict())))
        return EXIT_OK
    console.print(f"[bold]{spec.name}[/] — {escape(str(loaded.model_file))}")
    table = Table()
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for key, value in spec.summary(result):
        # summaries hold text such as E[δh²]; print it literally, not as markup
        table.add_row(Text(str(key)), Text(str(value)))
    console.print(table)
    return EXIT_OK


def _load(path: Path, device: str):
    from hmmrnn.tree import load_model

    with user_errors():
        try:
            return load_model(path, device=device)
        except ValueError as exc:  # a bad --device
            raise UserError(str(exc)) from exc


def _run(spec, loaded, params: dict, *, use_cache: bool, quiet: bool):
    """Run with a progress bar on stderr; None when cancelled (Ctrl-C)."""
    from hmmrnn.analyses.registry import run_analysis
    from hmmrnn.cli.progress import run_cancellable

    def job(progress, cancel):
        return run_analysis(
            spec.name, loaded, params, progress=progress, cancel=cancel, use_cache=use_cache
        )

    try:
        return run_cancellable(spec.name, job, quiet=quiet)
    except ValueError as exc:
        raise UserError(f"{spec.name}: {exc}") from exc
