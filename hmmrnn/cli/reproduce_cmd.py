"""`hmmrnn reproduce [TREE]`: the study's headline numbers beside ours, as one table.

Every model is evaluated at the study's protocol (saved as evaluation-study.json, which the tree
figures draw with `protocol=study`), then the report is printed and written to `--out` as Markdown
and JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from hmmrnn import api
from hmmrnn.cli.common import EXIT_CANCELLED, EXIT_OK, console, console_err, tree_or_default

_COLOURS = {"agrees": "green", "near": "yellow", "differs": "red"}


def register(sub) -> None:
    STUDY_PROTOCOL = api.study_protocol()  # noqa: N806
    p = sub.add_parser(
        "reproduce",
        help="the study's headline checks on a tree: study value vs ours, one table",
        description="Evaluate every model of TREE at the study's protocol (saved beside each as "
        "evaluation-study.json), compare the published distances, transition errors and, on the "
        "tree's ReverseEngineeredModel (or --reference), the mechanistic headlines with ours, and "
        "write the table to --out as Markdown and JSON.",
    )
    p.add_argument("tree", nargs="?", type=Path, help="model tree (default: as hmmrnn ls)")
    p.add_argument("--reference", type=Path, help="model of the mechanistic checks")
    p.add_argument("--no-mechanisms", action="store_true", help="only the distance checks")
    p.add_argument(
        "--num-sequences", type=int, default=STUDY_PROTOCOL["num_sequences"],
        help="sequences per sample (default %(default)s, the study's)",
    )  # fmt: skip
    p.add_argument("--seq-len", type=int, default=STUDY_PROTOCOL["seq_len"],
                   help="steps per sequence (default %(default)s, the study's)")  # fmt: skip
    p.add_argument("--method", choices=("study", "assignment"), default=STUDY_PROTOCOL["method"],
                   help="matching (default %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=STUDY_PROTOCOL["seed"], help="evaluation seed")
    p.add_argument("--no-save", action="store_true", help="do not write evaluation-study.json")
    p.add_argument("--out", type=Path, default=Path("exports"), help="report folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    from hmmrnn.cli.progress import run_cancellable

    args.tree = tree_or_default(args.tree)

    def job(progress, cancel):
        return api.reproduce(
            args.tree,
            num_sequences=args.num_sequences,
            seq_len=args.seq_len,
            method=args.method,
            seed=args.seed,
            reference=args.reference,
            mechanisms=not args.no_mechanisms,
            save=not args.no_save,
            device=args.device,
            progress=progress,
            cancel=cancel,
        )

    report = run_cancellable("reproduce", job, quiet=args.json)
    if report is None:
        return EXIT_CANCELLED
    md, js = api.save_report(report, args.out)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return EXIT_OK
    console.print(_table(report))
    for s in report.skipped:
        console_err.print(f"[yellow]skipped[/] {s['model']}: {s['reason']}")
    console.print(f"{md}\n{js}")
    return EXIT_OK


def _table(report) -> Table:
    p = report.protocol
    t = Table(
        title=f"study vs ours — {report.root} — {p['method']}, N {p['num_sequences']}, "
        f"L {p['seq_len']}",
        title_justify="left",
    )
    for col in ("check", "models", "study", "ours", "verdict", "protocol"):
        t.add_column(col)
    for c in report.checks:
        colour = _COLOURS.get(c.verdict, "dim")
        t.add_row(c.check, c.subject, c.study, c.ours, f"[{colour}]{c.verdict}[/]", c.protocol)
    return t
