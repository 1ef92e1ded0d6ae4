"""The errors a user can cause, shared by every front-end.

A `UserError` is bad input — a file, a flag, a parameter, a config value — whose message names the
problem. The CLI prints it and exits 2, the TUI shows it next to the field or as a notification;
neither shows a traceback. Anything else that escapes is a bug in hmmrnn, not in the input.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input; the message says which input and what is wrong with it."""


class ParamError(UserError):
    """An analysis or figure parameter that is unknown, of the wrong type or out of range.

    The message names the parameter as a command-line flag (`--num-sequences`); `name` and
    `detail`, when set, let a form say the same thing in the words typed there (`num_sequences`).
    """

    def __init__(self, message: str, *, name: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.name = name
        self.detail = detail


def form_message(exc: Exception) -> str:
    """An error as a form shows it: a parameter by its name rather than its flag."""
    if isinstance(exc, ParamError) and exc.name and exc.detail:
        return f"{exc.name}: {exc.detail}"
    return str(exc)


class JobError(Exception):
    """The job itself failed for a reason outside its input (a full disk, a read-only folder);
    the message says what happened and what was kept. The CLI exits 1."""


class SaveError(JobError):
    """A result was computed but could not be saved; `run` holds it, so it is not lost."""

    def __init__(self, message: str, run) -> None:
        super().__init__(message)
        self.run = run
