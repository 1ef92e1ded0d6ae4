"""`hmmrnn ls`, `hmmrnn info` and `hmmrnn evaluate`: look at models and test them against their HMM."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from hmmrnn.cli.common import EXIT_BAD_INPUT, EXIT_OK, UserError, console, user_errors


def register(sub) -> None:
    p = sub.add_parser("ls", help="list the models of a tree with their status")
    p.add_argument("tree", nargs="?", type=Path, default=Path("TrainedModels"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_ls)

    i = sub.add_parser("info", help="config, sizes, HMM and training summary of a model")
    i.add_argument("model", type=Path, help="model folder or .pth file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=run_info)

    e = sub.add_parser("evaluate", help="compare a model's outputs with its HMM's")
    e.add_argument("model", type=Path, nargs="?", help="model folder or .pth file")
    e.add_argument(
        "--all", dest="all_tree", type=Path, metavar="TREE", help="every model of a tree"
    )
    e.add_argument("--num-sequences", type=int, default=5000)
    e.add_argument("--seq-len", type=int, default=None, help="default: the config's seq_len")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--method", choices=("assignment", "argmax"), default="assignment")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-save", action="store_true", help="do not write evaluation.json")
    e.set_defaults(func=run_evaluate)


# --- ls ------------------------------------------------------------------------------------------


def entry_row(entry) -> dict:
    """The facts a listing shows for one entry (shared by ls --json and the table)."""
    from hmmrnn.train import read_metrics

    cfg = entry.config
    metrics = read_metrics(entry.path)
    best = min((m.get("val_loss", float("inf")) for m in metrics), default=None)
    return {
        "model": entry.rel,
        "status": entry.status,
        "reason": entry.reason,
        "states": cfg.states if cfg else None,
        "hidden": entry.sizes[1] if entry.sizes else (cfg.hidden_size if cfg else None),
        "input": entry.sizes[0] if entry.sizes else (cfg.input_size if cfg else None),
        "outputs": entry.sizes[2] if entry.sizes else (cfg.outputs if cfg else None),
        "seed": cfg.seed if cfg else None,
        "best_val": best,
        "epochs": len(metrics),
        "checkpoints": len(entry.evolution),
        "warnings": entry.warnings,
    }


def run_ls(args: argparse.Namespace) -> int:
    from hmmrnn.tree import discover

    with user_errors():
        entries = discover(args.tree)
    rows = [entry_row(e) for e in entries]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table(title=f"{args.tree} — {len(rows)} models", title_justify="left")
    for col in ("model", "status", "M", "hidden", "input", "seed", "best val", "epochs", "note"):
        table.add_column(
            col, justify="right" if col in ("M", "hidden", "input", "seed") else "left"
        )
    colours = {"ok": "green", "broken": "red", "training": "yellow"}
    for r in rows:
        table.add_row(
            r["model"],
            f"[{colours[r['status']]}]{r['status']}[/]",
            *(_cell(r[k]) for k in ("states", "hidden", "input", "seed")),
            _cell(r["best_val"], ".3f"),
            _cell(r["epochs"] or None),
            r["reason"] or "; ".join(r["warnings"]),
        )
    console.print(table)
    return EXIT_OK


def _cell(value, fmt: str = "") -> str:
    return "–" if value is None else format(value, fmt)


# --- info ------------------------------------------------------------------------------------------


def model_info(path: Path) -> dict:
    """Everything `info` prints, as plain data."""
    from hmmrnn.tree import inspect_folder, model_folder, read_run_info

    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    folder = model_folder(path)
    entry = inspect_folder(folder, folder.parent)
    if entry.status == "broken":
        raise UserError(f"{entry.rel} is broken: {entry.reason}")
    row = entry_row(entry)
    hmm = entry.config.build_hmm()
    return {
        **row,
        "folder": str(entry.path),
        "model_file": str(entry.model_file),
        "config": entry.config.to_dict(),
        "transition": hmm.transition.round(4).tolist(),
        "emission": hmm.emission.round(4).tolist(),
        "run": read_run_info(entry.path),
        "files": sorted(
            str(p.relative_to(entry.path)) for p in entry.path.rglob("*") if p.is_file()
        ),
    }


def run_info(args: argparse.Namespace) -> int:
    with user_errors():
        info = model_info(args.model)
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
    if args.all_tree is not None:
        return _evaluate_tree(args)
    if args.model is None:
        raise UserError("give a MODEL or --all TREE")
    if args.num_sequences < 2:
        raise UserError(f"--num-sequences must be >= 2, got {args.num_sequences}")
    with user_errors():
        result, folder = evaluate_path(args.model, args)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_evaluation(result)
    if not args.no_save:
        console.print(f"saved {folder / 'evaluation.json'}")
    return EXIT_OK


def evaluate_path(path: Path, args: argparse.Namespace):
    from hmmrnn.evaluate import evaluate_model
    from hmmrnn.tree import EVALUATION_NAME, load_model

    loaded = load_model(path, device=args.device)
    try:
        result = evaluate_model(
            loaded.model,
            loaded.config.build_hmm(),
            num_sequences=args.num_sequences,
            seq_len=args.seq_len or loaded.config.seq_len,
            seed=args.seed,
            method=args.method,
            noise_std=loaded.config.noise_std,
            h0=loaded.config.h0,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if not args.no_save:
        result.save(loaded.folder / EVALUATION_NAME)
    return result, loaded.folder


def _evaluate_tree(args: argparse.Namespace) -> int:
    from hmmrnn.tree import discover

    with user_errors():
        entries = discover(args.all_tree)
    failures = 0
    for entry in entries:
        if entry.status != "ok":
            console.print(f"[yellow]skip[/] {entry.rel}: {entry.status} {entry.reason}")
            continue
        try:
            with user_errors():
                result, _ = evaluate_path(entry.path, args)
        except UserError as exc:
            failures += 1
            console.print(f"[red]fail[/] {entry.rel}: {exc}")
            continue
        console.print(
            f"{entry.rel}: distance ratio {result.distance_ratio:.3f}, "
            f"transition error {result.transition_error:.3f}"
        )
    return EXIT_BAD_INPUT if failures else EXIT_OK


def print_evaluation(result) -> None:
    console.print(evaluation_table(result))


def evaluation_table(result) -> Table:
    """HMM vs RNN side by side (shared with the TUI's metrics pane)."""
    t = Table(title="HMM vs RNN", title_justify="left")
    t.add_column("metric")
    t.add_column("HMM (baseline)", justify="right")
    t.add_column("RNN", justify="right")
    t.add_row(
        f"matched distance ({result.method})",
        f"{result.baseline_mean:.3f} ± {result.baseline_std:.3f}",
        f"{result.rnn_mean:.3f} ± {result.rnn_std:.3f}",
    )
    t.add_row("distance ratio", "1", f"{result.distance_ratio:.3f}")
    t.add_row(
        "volatility",
        f"{result.hmm_volatility_mean:.2f} ± {result.hmm_volatility_std:.2f}",
        f"{result.rnn_volatility_mean:.2f} ± {result.rnn_volatility_std:.2f}",
    )
    for k in range(len(result.hmm_freq_mean)):
        t.add_row(
            f"frequency of output {k}",
            f"{result.hmm_freq_mean[k]:.3f}",
            f"{result.rnn_freq_mean[k]:.3f}",
        )
    t.add_row("transition error (max |Δ|)", "", f"{result.transition_error:.3f}")
    return t
