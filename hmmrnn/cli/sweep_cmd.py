"""`hmmrnn sweep`: train a grid of models in parallel into the study's tree layout.

Every config flag of `hmmrnn train` takes a comma-separated list of alternatives here; the grid is
every combination. Keys whose value is a list already (--learning-rates, --betas, the custom
matrices) separate alternatives with ';' or take a JSON list of lists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from hmmrnn import api
from hmmrnn.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    UserError,
    console,
    sigint_cancels,
)
from hmmrnn.cli.train_cmd import add_config_flags, config_flag_names, parse_flag_value

EPILOG = """\
examples:
  hmmrnn sweep --preset Two --preset Three --hidden-size 50,150 --input-size 1,10,100 \\
      --seed 0,1,2 --jobs 2 --out TrainedModels
  hmmrnn sweep --spec study.toml --out TrainedModels --evaluate
  hmmrnn sweep --preset Three --learning-rates "0.01;0.01,0.001" --out lr_trial
      (two models: learning_rates [0.01] and [0.01, 0.001]; or '[[0.01],[0.01,0.001]]')
  hmmrnn sweep --spec study.toml --engine ray --address ray://head:10001 --out /shared/tree

a spec (TOML or JSON) holds config keys; a list means alternatives; [[grid]] tables are expanded
one after the other, with the top-level keys as their defaults:
  seed = [0, 1, 2]
  [[grid]]
  preset = ["Two", "Three", "Four", "Five"]
  hidden_size = [50, 150, 200]
  input_size = [1, 10, 100, 200]
  [[grid]]
  preset = ["Fully", "Cyclic"]
flags given with --spec replace that key everywhere in the spec.

Re-running a sweep skips finished models and resumes interrupted ones from their checkpoints.
exit codes: 0 all done or skipped, 1 a model failed, 2 bad input, 130 interrupted (resumable)."""


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid of models in parallel (local processes or Ray)",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", action="append", help="a preset; repeat or comma-separate")
    p.add_argument("--config", type=Path, help="a config.json under every model (no presets)")
    p.add_argument("--spec", type=Path, help="a grid spec, .toml or .json")
    p.add_argument("--seed", help="seeds, e.g. 0,1,2")
    p.add_argument("--out", type=Path, default=Path("TrainedModels"), help="the model tree")
    p.add_argument("--jobs", type=int, help="jobs at once (default: one per GPU, or cores/4)")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument(
        "--gpus-per-job",
        type=float,
        default=None,
        help="Ray: GPUs each job claims, fractions allowed (0.25: four jobs per GPU)",
    )
    p.add_argument(
        "--retries", type=int, default=2,
        help="Ray: retries of a job whose worker or node died (resumes from its checkpoint)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--evaluate", action="store_true", help="evaluate the whole tree afterwards")
    p.add_argument("--eval-sequences", type=int, help="sequences per evaluation (default 5000)")
    p.add_argument("--dry-run", action="store_true", help="list the models and what would happen")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    p.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    add_config_flags(p, as_list=True)
    p.set_defaults(func=run_sweep_cmd)


# --- flags -> grid --------------------------------------------------------------------------------


def flag_alternatives(name: str, text: str) -> list[Any]:
    """The alternatives one flag gives: comma-separated, or ';'-separated for list-valued keys."""
    flag = "--" + name.replace("_", "-")
    if name in api.list_valued_keys():
        parts = [t.strip() for t in text.split(";")]
        if any(not t for t in parts):
            raise UserError(f"{flag}: empty alternative in {text!r}")
        values = [parse_flag_value(name, t) for t in parts]
        if len(values) == 1:  # maybe a JSON list of alternatives already
            return api.sweep_alternatives(name, values[0])
        return [[v] if isinstance(v, (int, float)) else v for v in values]
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, list):
        if not parsed:
            raise UserError(f"{flag}: empty list")
        return parsed
    parts = [t.strip() for t in text.split(",")]
    if any(not t for t in parts):
        raise UserError(f"{flag}: empty value in {text!r}")
    return [parse_flag_value(name, t) for t in parts]


def flags_spec(args: argparse.Namespace) -> dict:
    """The grid the flags describe (to be laid over --spec)."""
    spec: dict[str, Any] = {}
    if args.preset:
        names = [n.strip() for item in args.preset for n in item.split(",")]
        if any(not n for n in names):
            raise UserError("--preset: empty name")
        spec["preset"] = names
    if args.seed is not None:
        spec["seed"] = flag_alternatives("seed", args.seed)
    for name in config_flag_names():
        text = getattr(args, f"cfg_{name}", None)
        if text is not None:
            spec[name] = flag_alternatives(name, text)
    return spec


def build_spec(args: argparse.Namespace) -> dict:
    flags = flags_spec(args)
    if args.spec is None:
        if args.config is None and "preset" not in flags:
            flags["preset"] = ["Three"]  # as `hmmrnn train`
        return flags
    spec = api.sweep_spec(args.spec)
    grids = spec.get("grid")
    if isinstance(grids, list):
        spec["grid"] = [
            {k: v for k, v in g.items() if k not in flags} if isinstance(g, dict) else g
            for g in grids
        ]
    spec.update(flags)
    return spec


# --- the command -----------------------------------------------------------------------------------


def run_sweep_cmd(args: argparse.Namespace) -> int:
    from hmmrnn.cancel import CancelToken

    if args.preset and args.config:
        raise UserError("give either --preset or --config, not both")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    if args.eval_sequences is not None and args.eval_sequences < 2:
        raise UserError(f"--eval-sequences must be >= 2, got {args.eval_sequences}")
    spec = build_spec(args)
    base = api.load_config(args.config).to_dict() if args.config else None
    jobs = api.expand_sweep(spec, base)
    if not jobs:
        raise UserError("the grid is empty")
    if args.dry_run:
        planned = api.plan_sweep(jobs, args.out)
        if args.json:
            print(json.dumps([{"model": j.rel, "state": state, "error": j.error}
                              for j, state in planned]))  # fmt: skip
        else:
            console.print(plan_table(planned, args.out))
        return EXIT_OK
    if args.engine == "local" and (args.address or args.gpus_per_job is not None):
        raise UserError("--address and --gpus-per-job are for --engine ray")
    token = CancelToken()
    if not args.quiet:
        console.print(f"sweep: {len(jobs)} models into {args.out} ({args.engine} engine)")
    with sigint_cancels(token):
        report = api.sweep(
            jobs, args.out, engine=args.engine, workers=args.jobs, device=args.device,
            address=args.address, cancel=token, spec=spec,
            on_event=None if args.quiet else _print_event,
            gpus_per_job=args.gpus_per_job, max_retries=args.retries,
        )  # fmt: skip
    print_summary(report)
    counts = report.counts()
    console.print(
        f"done {counts['done']} · failed {counts['failed']} · skipped {counts['skipped']}"
        + (f" · cancelled {counts['cancelled']}" if counts["cancelled"] else "")
        + f" — {report.wall_seconds:.1f} s, {report.workers} at once; {api.sweep_report_path(args.out)}"
    )
    if counts["cancelled"] or token.cancelled:
        console.print(f"re-run the same command to finish the sweep ({args.out})")
        return EXIT_CANCELLED
    code = EXIT_FAILED if counts["failed"] else EXIT_OK
    if args.evaluate and evaluate_tree(args.out, args.device, args.eval_sequences) != EXIT_OK:
        code = EXIT_FAILED
    return code


def evaluate_tree(tree: Path, device: str, sequences: int | None) -> int:
    """`hmmrnn evaluate --all TREE`, through that command's own parser and code."""
    from hmmrnn.cli import model_cmds

    parser = argparse.ArgumentParser(prog="hmmrnn")
    model_cmds.register(parser.add_subparsers())
    argv = ["evaluate", "--all", str(tree), "--device", device]
    if sequences is not None:
        argv += ["--num-sequences", str(sequences)]
    ev = parser.parse_args(argv)
    console.print(f"evaluating every model of {tree}")
    return ev.func(ev)


def _print_event(kind: str, out) -> None:
    if kind == "start":
        console.print(f"[cyan]start[/] {out.rel}")
        return
    colour = {"done": "green", "skipped": "blue", "cancelled": "yellow"}.get(out.status, "red")
    extra = f" best val {out.best_val:.4f}" if out.best_val is not None else ""
    took = f" in {out.seconds:.1f} s" if out.seconds is not None else ""
    msg = f": {out.message}" if out.message and out.status != "done" else ""
    console.print(f"[{colour}]{out.status}[/] {out.rel} ({out.action or '-'}){took}{extra}{msg}")


def summary_table(report) -> Table:
    t = Table(title=f"sweep of {report.root}", title_justify="left")
    width = min(60, max((len(o.rel) for o in report.outcomes), default=5))
    t.add_column("model", min_width=width)
    for col in ("status", "action", "epochs", "best val", "time"):
        t.add_column(col, justify="right" if col in ("epochs", "best val", "time") else "left")
    colours = {"done": "green", "skipped": "blue", "cancelled": "yellow", "failed": "red"}
    for o in report.outcomes:
        t.add_row(
            o.rel,
            f"[{colours.get(o.status, 'white')}]{o.status}[/]",
            o.action or "–",
            "–" if o.epochs_done is None else str(o.epochs_done),
            "–" if o.best_val is None else f"{o.best_val:.4f}",
            "–" if o.seconds is None else f"{o.seconds:.1f} s",
        )
    return t


def print_summary(report) -> None:
    """The table, then each model's message on its own line (long errors stay readable)."""
    console.print(summary_table(report))
    for o in report.outcomes:
        if o.message:
            colour = "red" if o.status == "failed" else "yellow"
            console.print(f"[{colour}]{o.status}[/] {o.rel}: {o.message}")


def plan_table(planned, root: Path) -> Table:
    actions = {"absent": "train", "interrupted": "resume", "finished": "skip",
               "running": "wait, then resume", "diverged": "fail (diverged)",
               "invalid": "fail (bad config)"}  # fmt: skip
    t = Table(title=f"sweep plan for {root} — {len(planned)} models", title_justify="left")
    t.add_column("model")
    t.add_column("now")
    t.add_column("will")
    t.add_column("note")
    for job, state in planned:
        t.add_row(job.rel, state, actions.get(state, state), job.error)
    return t
