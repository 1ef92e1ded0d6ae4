"""`hmmrnn ls`, `hmmrnn info` and `hmmrnn evaluate`: look at models and test them against their HMM."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from hmmrnn import api
from hmmrnn.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_OK,
    UserError,
    add_schema_flags,
    console,
    schema_values,
    tree_or_default,
)


def register(sub) -> None:
    p = sub.add_parser("ls", help="list the models of a tree with their status")
    p.add_argument(
        "tree", nargs="?", type=Path, default=None,
        help="model tree (default ./TrainedModels, else the shipped models)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_ls)

    i = sub.add_parser("info", help="config, sizes, HMM and training summary of a model")
    i.add_argument("model", type=Path, help="model folder or .pth file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=run_info)

    m = sub.add_parser("models", help="where the shipped models are")
    m.add_argument("what", choices=("path",), help="path: print the shipped models' folder")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run_models)

    e = sub.add_parser(
        "evaluate",
        help="compare a model's outputs with its HMM's",
        description="Evaluate against the HMM on fresh samples and save evaluation.json. "
        "Parameters not given come from the model's config (seq_len, noise_std, h0), else the "
        "defaults below.",
    )
    e.add_argument("model", type=Path, nargs="?", help="model folder or .pth file")
    e.add_argument(
        "--all", dest="all_tree", type=Path, metavar="TREE", help="every model of a tree"
    )
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-save", action="store_true", help="do not write evaluation.json")
    e.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    add_schema_flags(e, api.evaluation_schema(), "evaluation parameters")
    e.set_defaults(func=run_evaluate)


# --- ls ------------------------------------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    args.tree = tree_or_default(args.tree)
    entries = api.discover(args.tree, summaries=True)
    rows = [api.entry_row(e) for e in entries]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    title = f"{args.tree} — {len(rows)} models"
    columns = ("model", "status", "M", "hidden", "input", "seed", "best val", "epochs", "note")
    cells = [
        (
            r["model"],
            r["status"],
            *(_cell(r[k]) for k in ("states", "hidden", "input", "seed")),
            _cell(r["best_val"], ".3f"),
            _cell(r["epochs"] or None),
            r["reason"] or "; ".join(r["warnings"]),
        )
        for r in rows
    ]
    if len(rows) > LS_TABLE_ROWS:
        console.print(_plain_columns(title, columns, cells), soft_wrap=True)
        return EXIT_OK
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in _NUMERIC else "left")
    for row in cells:
        table.add_row(row[0], f"[{_COLOURS.get(row[1], 'white')}]{row[1]}[/]", *row[2:])
    console.print(table)
    return EXIT_OK


LS_TABLE_ROWS = 500  # above this many models, aligned columns: a rich table takes ~3 s per 2,000
_NUMERIC = ("M", "hidden", "input", "seed")
_COLOURS = {"ok": "green", "broken": "red", "training": "yellow", "interrupted": "yellow"}


def _plain_columns(title: str, columns: tuple[str, ...], cells: list[tuple]) -> Text:
    """The same listing as aligned columns, built as one Text: fast for thousands of rows."""
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *cells, strict=True)]

    def line(row, header: bool = False) -> Text:
        text = Text()
        for i, (value, width) in enumerate(zip(row, widths, strict=True)):
            value = str(value)
            padded = value.rjust(width) if columns[i] in _NUMERIC else value.ljust(width)
            style = "bold" if header else (_COLOURS.get(value, "") if i == 1 else "")
            text.append(padded + "  ", style=style)
        text.rstrip()
        return text

    out = Text(title + "\n", style="italic")
    out.append_text(line(columns, header=True))
    for row in cells:
        out.append("\n")
        out.append_text(line(row))
    return out


def _cell(value, fmt: str = "") -> str:
    return "–" if value is None else format(value, fmt)


def run_models(args: argparse.Namespace) -> int:
    path = api.shipped_models()
    print(json.dumps({"path": str(path)}) if args.json else path)
    return EXIT_OK


# --- info ------------------------------------------------------------------------------------------


def run_info(args: argparse.Namespace) -> int:
    info = api.model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    console.print(f"[bold]{info['folder']}[/]  ({info['status']})")
    console.print(
        f"sizes: input {info['input']}, hidden {info['hidden']}, outputs {info['outputs']}; "
        f"HMM {info['states']} states"
    )
    console.print(f"weights: {info['model_file']}")
    for name in ("transition", "emission"):
        console.print(f"{name}:")
        for row in info[name]:
            console.print("  " + "  ".join(f"{v:6.3f}" for v in row))
    if info["best_val"] is not None:
        console.print(
            f"training: {info['epochs']} epochs, best validation loss {info['best_val']:.4f}"
        )
    for w in info["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print("files: " + ", ".join(info["files"]))
    return EXIT_OK


# --- evaluate --------------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> int:
    params = schema_values(args, api.evaluation_schema())
    if args.all_tree is not None:
        return _evaluate_tree(args, params)
    if args.model is None:
        raise UserError("give a MODEL or --all TREE")
    model = api.load(args.model, device=args.device)
    try:
        run = _evaluate(model, args, params, quiet=args.json)
    except api.SaveError as exc:  # the numbers exist: show them, then say what failed
        _show(exc.run, args.json)
        raise
    if run is None:
        return EXIT_CANCELLED
    _show(run, args.json)
    if not args.no_save:
        console.print(f"saved {Path(model.folder) / 'evaluation.json'}")
    return EXIT_OK


def _show(run, as_json: bool) -> None:
    if as_json:
        print(json.dumps(run.to_dict(), indent=2))
    else:
        print_evaluation(run)


def _evaluate(model, args: argparse.Namespace, params: dict, quiet: bool):
    """The evaluation under a progress bar; None when cancelled with Ctrl-C."""
    from hmmrnn.cli.progress import run_cancellable

    def job(progress, cancel):
        return api.evaluate(
            model,
            params,
            save=not args.no_save,
            progress=progress,
            cancel=cancel,
            use_cache=not args.no_cache,
        )

    return run_cancellable("evaluation", job, quiet=quiet)


def _evaluate_tree(args: argparse.Namespace, params: dict) -> int:
    failures = 0
    for entry in api.discover(args.all_tree):
        if entry.status != "ok":
            console.print(f"[yellow]skip[/] {entry.rel}: {entry.status} {entry.reason}")
            continue
        try:
            run = _evaluate(api.load(entry.path, args.device), args, params, quiet=True)
        except (UserError, api.JobError) as exc:
            failures += 1
            console.print(f"[red]fail[/] {entry.rel}: {exc}")
            continue
        if run is None:
            return EXIT_CANCELLED
        r = run.result
        console.print(
            f"{entry.rel}: distance ratio {r.distance_ratio:.3f}, "
            f"transition error {r.transition_error:.3f}"
        )
    return EXIT_BAD_INPUT if failures else EXIT_OK


def print_evaluation(run) -> None:
    console.print(evaluation_table(run.result))
    console.print(f"[dim]{_used(run.params)}[/]")


def _used(params: dict) -> str:
    return "parameters used: " + ", ".join(f"{k}={v}" for k, v in params.items())


def evaluation_table(result) -> Table:
    """HMM vs RNN side by side."""
    t = Table(title="HMM vs RNN", title_justify="left")
    t.add_column("metric")
    t.add_column("HMM (baseline)", justify="right")
    t.add_column("RNN", justify="right")
    for row in api.evaluation_rows(result):
        t.add_row(*row)
    return t
