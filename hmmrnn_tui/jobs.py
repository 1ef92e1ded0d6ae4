"""Bridges between worker threads and the UI thread: throttled progress and error reporting.

Workers never touch widgets directly; they hand small updates to the UI thread with
`call_from_thread`. Progress is throttled so a chatty analysis cannot flood the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import App


class ThrottledProgress:
    """A ProgressFn (fraction, message) that forwards at most every `interval` seconds."""

    def __init__(
        self, app: App, update: Callable[[float, str], None], interval: float = 0.1
    ) -> None:
        self.app = app
        self.update = update
        self.interval = interval
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.perf_counter()
        if fraction < 1.0 and now - self._last < self.interval:
            return
        self._last = now
        post(self.app, self.update, fraction, message)


def post(app: App, fn: Callable, *args, **kwargs) -> None:
    """Run fn on the UI thread (and wait for it); a no-op once the app is shutting down.

    A failure inside fn becomes an error notification: a display bug must never kill the worker
    half-way (leaving a progress bar up forever) or the app.
    """

    def guarded() -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            app.notify(str(exc) or type(exc).__name__, title="display error", severity="error")

    try:
        app.call_from_thread(guarded)
    except RuntimeError:
        pass


def notify_error(app: App, title: str, exc: BaseException) -> None:
    """Show a failure as a notification: the message only, never a traceback."""
    message = str(exc) or type(exc).__name__
    post(app, app.notify, message, title=title, severity="error", timeout=8)


def notify(app: App, message: str, *, title: str = "", severity: str = "information") -> None:
    post(app, app.notify, message, title=title, severity=severity)
