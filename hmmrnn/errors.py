"""The errors a user can cause, shared by every front-end.

A `UserError` is bad input — a file, a flag, a parameter, a config value — whose message names the
problem. The CLI prints it and exits 2, the TUI shows it next to the field or as a notification;
neither shows a traceback. Anything else that escapes is a bug in hmmrnn, not in the input.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input; the message says which input and what is wrong with it."""


class ParamError(UserError):
    """An analysis or figure parameter that is unknown, of the wrong type or out of range."""


class JobError(Exception):
    """The job itself failed for a reason outside its input (a full disk, a read-only folder);
    the message says what happened and what was kept. The CLI exits 1."""


class SaveError(JobError):
    """A result was computed but could not be saved; `run` holds it, so it is not lost."""

    def __init__(self, message: str, run) -> None:
        super().__init__(message)
        self.run = run
