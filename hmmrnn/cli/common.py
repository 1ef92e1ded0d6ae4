"""Shared pieces of the CLI: consoles, exit codes and the translation of library errors."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from rich.console import Console

from hmmrnn.cancel import CancelToken

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130

console = Console(highlight=False)
console_err = Console(stderr=True, highlight=False)


class UserError(Exception):
    """Bad input from the command line; printed without a traceback, exit code 2."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's validation errors into UserError (exit 2, message only)."""
    from hmmrnn.config import ConfigError
    from hmmrnn.hmm import HMMSpecError
    from hmmrnn.io import ModelFileError

    try:
        yield
    except (ConfigError, HMMSpecError, ModelFileError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc


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
