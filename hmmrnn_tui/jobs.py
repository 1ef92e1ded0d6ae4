"""Long work off the UI thread, reporting by typed messages, handled in one place.

A `JobPane` runs one job at a time in a worker thread: `start_job(name, what, fn)` calls
`fn(progress, cancel)` there, and the worker reports only by posting messages to the pane
(`JobProgress`, `JobDone`, `JobFailed`, `JobCancelled`; `post_message` is thread-safe). The pane's
handlers below keep the status line, the progress bar and ctrl+g the same in every pane, and turn a
failure into a notification with the message only, never a traceback. A pane says what a finished
job means in `job_done(name, value)`.

Small fire-and-forget reads (details, saved evaluations) use `Fetched` the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Label, ProgressBar

from hmmrnn_tui.panes import Pane


class JobProgress(Message):
    def __init__(self, name: str, fraction: float, text: str) -> None:
        super().__init__()
        self.name, self.fraction, self.text = name, fraction, text


class JobDone(Message):
    def __init__(self, name: str, value: Any) -> None:
        super().__init__()
        self.name, self.value = name, value


class JobFailed(Message):
    def __init__(self, name: str, error: str) -> None:
        super().__init__()
        self.name, self.error = name, error


class JobCancelled(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class Fetched(Message):
    """A background read finished: `key` says what was read, `value` what came back."""

    def __init__(self, key: str, value: Any) -> None:
        super().__init__()
        self.key, self.value = key, value


def error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Throttled:
    """A progress callback posting at most every `interval` seconds (the last report always)."""

    def __init__(self, target: Widget, name: str, interval: float = 0.1) -> None:
        self.target, self.name, self.interval = target, name, interval
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.perf_counter()
        if fraction < 1.0 and now - self._last < self.interval:
            return
        self._last = now
        self.target.post_message(JobProgress(self.name, float(fraction), str(message)))


class JobPane(Pane):
    """A pane with a status line (#<prefix>-status), a progress bar (#<prefix>-progress) and at
    most one job at a time, cancelled with ctrl+g."""

    PREFIX = ""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.job: str | None = None  # the running job's name
        self.job_what = ""
        self.token = None

    # --- widgets ----------------------------------------------------------------------------

    def status(self, text) -> None:
        self.query_one(f"#{self.PREFIX}-status", Label).update(text)

    @property
    def bar(self) -> ProgressBar:
        return self.query_one(f"#{self.PREFIX}-progress", ProgressBar)

    def on_mount(self) -> None:
        self.bar.display = False

    # --- starting and cancelling ------------------------------------------------------------

    def start_job(self, name: str, what: str, fn: Callable[[Callable, Any], Any]) -> bool:
        """Run fn(progress, cancel) in a worker; False (with a warning) when one is running."""
        if self.job is not None:
            self.app.notify(
                f"{self.job_what} is still running (ctrl+g cancels)", severity="warning"
            )
            return False
        from hmmrnn.cancel import CancelToken

        self.job, self.job_what, self.token = name, what, CancelToken()
        self.bar.display = True
        self.bar.update(total=1.0, progress=0)
        self.status(Text(f"{what}: starting … (ctrl+g cancels)", style="yellow"))
        self._run_job(name, fn, self.token)
        return True

    @work(thread=True, exit_on_error=False)
    def _run_job(self, name: str, fn: Callable, token) -> None:
        from hmmrnn.cancel import Cancelled

        try:
            value = fn(Throttled(self, name), token)
        except Cancelled:
            self.post_message(JobCancelled(name))
        except Exception as exc:  # every failure is shown as its message
            self.post_message(JobFailed(name, error_text(exc)))
        else:  # done, even if a cancel came too late to stop it: the result is real
            self.post_message(JobDone(name, value))

    def action_cancel(self) -> None:
        if self.token is not None and self.job is not None:
            self.token.cancel()
            self.status(Text(f"{self.job_what}: cancelling …", style="yellow"))
        else:
            self.app.notify("nothing to cancel")

    # --- the one place that handles what workers report ---------------------------------------

    def on_job_progress(self, message: JobProgress) -> None:
        message.stop()
        if message.name != self.job:
            return
        self.bar.update(total=1.0, progress=min(max(message.fraction, 0.0), 1.0))
        self.status(Text(f"{self.job_what}: {message.text} (ctrl+g cancels)", style="yellow"))

    def on_job_done(self, message: JobDone) -> None:
        message.stop()
        self._end()
        self.job_done(message.name, message.value)

    def on_job_failed(self, message: JobFailed) -> None:
        message.stop()
        what = self._end()
        self.app.notify(message.error, title=f"{what} failed", severity="error", timeout=8)
        self.status(Text(f"{what}: failed — {message.error}", style="red"))
        self.job_ended(message.name, "failed")

    def on_job_cancelled(self, message: JobCancelled) -> None:
        message.stop()
        what = self._end()
        self.app.notify(f"{what} cancelled; nothing was saved", severity="warning")
        self.status(Text(f"{what}: cancelled", style="yellow"))
        self.job_ended(message.name, "cancelled")

    def _end(self) -> str:
        what = self.job_what
        self.job, self.token = None, None
        self.bar.display = False
        return what

    # --- what panes override ------------------------------------------------------------------

    def job_done(self, name: str, value: Any) -> None:
        """A job finished with `value` (on the UI thread)."""

    def job_ended(self, name: str, outcome: str) -> None:
        """A job failed or was cancelled (the status line already says so)."""


def fetch(widget: Widget, key: str, fn: Callable[[], Any]) -> None:
    """Run fn() in a worker thread and post `Fetched(key, value)` to `widget`; an exception
    becomes the value, for the handler to show. A newer fetch of the same key supersedes it."""

    def job() -> None:
        try:
            value = fn()
        except Exception as exc:  # shown by the handler, never raised on the UI thread
            value = exc
        widget.post_message(Fetched(key, value))

    widget.run_worker(job, thread=True, group=f"fetch-{key}", exclusive=True, exit_on_error=False)
