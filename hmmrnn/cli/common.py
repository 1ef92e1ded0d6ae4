"""Shared pieces of the CLI: consoles, exit codes, Ctrl-C as cancel, and flags from a schema."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from hmmrnn.cancel import CancelToken
from hmmrnn.errors import UserError

__all__ = ["UserError", "console", "console_err", "sigint_cancels", "add_schema_flags"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def _console(stderr: bool) -> Console:
    """A console that wraps to the terminal, or, into a pipe or a file, never cuts or wraps:
    `hmmrnn ls | cat` must print whole paths."""
    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, highlight=False, width=None if tty else 4096, soft_wrap=not tty)


console = _console(stderr=False)
console_err = _console(stderr=True)


def tree_or_default(tree: Path | None) -> Path:
    """The TREE argument, or the default tree (as `hmmrnn ls` picks it) with its note on stderr."""
    if tree is not None:
        return tree
    from hmmrnn import api

    tree, note = api.default_tree()
    if note:
        console_err.print(f"[dim]{note}[/]")
    return tree


@contextlib.contextmanager
def sigint_cancels(token: CancelToken) -> Iterator[None]:
    """First Ctrl-C asks the job to stop after the current batch; a second one interrupts."""

    def handler(signum, frame):  # noqa: ARG001
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        console_err.print("[yellow]stopping after the current batch (Ctrl-C again to abort)[/]")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no signal handling
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def param_help(param) -> str:
    """`driven steps (int >= 2; default 2000)` for a schema parameter."""
    return f"{param.help} ({param.type_text()}; default {param.default_text()})".replace("%", "%%")


def add_schema_flags(parser: argparse.ArgumentParser, schema, title: str) -> None:
    """One flag per schema parameter, holding the text as typed (`schema_values` parses it), so the
    CLI accepts exactly what the TUI's parameter line does."""
    group = parser.add_argument_group(title)
    for p in schema:
        group.add_argument(
            p.flag, dest=f"param_{p.name}", metavar="VALUE", default=None, help=param_help(p)
        )


def schema_values(args: argparse.Namespace, schema) -> dict[str, Any]:
    """The parameters given on the command line (parsed by the schema; the rest stay default)."""
    return {
        p.name: p.parse(text)
        for p in schema
        if (text := getattr(args, f"param_{p.name}", None)) is not None
    }


def schema_help(schema, title: str) -> str:
    """The parameter list `hmmrnn analyze MODEL NAME --help` prints."""
    lines = [title, ""]
    for p in schema:
        lines.append(f"  {p.flag} VALUE")
        lines.append(f"      {p.help} ({p.type_text()}; default {p.default_text()})")
    return "\n".join(lines)
