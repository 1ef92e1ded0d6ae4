"""The headless `hmmrnn` command: the same jobs as the TUI, from scripts.

Exit codes: 0 success, 1 the job itself failed (e.g. a diverged run), 2 bad input (the message names
the problem), 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.markup import escape

from hmmrnn.cli.common import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, console_err
from hmmrnn.errors import JobError, UserError

COMMAND_MODULES = (
    "train_cmd", "model_cmds", "analyze_cmd", "export_cmd", "sweep_cmd", "reproduce_cmd",
    "completion_cmd",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    import importlib

    import hmmrnn

    parser = argparse.ArgumentParser(
        prog="hmmrnn", description="Train RNNs that emulate HMMs, evaluate and analyse them."
    )
    parser.add_argument("--version", action="version", version=f"hmmrnn {hmmrnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"hmmrnn.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hmmrnn.cli.{name}":
                continue  # command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_BAD_INPUT
    except JobError as exc:
        console_err.print(f"[bold red]failed:[/] {escape(str(exc))}", highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console_err.print("[yellow]cancelled[/]")
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
