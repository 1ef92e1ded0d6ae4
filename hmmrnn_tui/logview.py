"""A run's train.log, followed live: the output of the training process (errors included)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

TAIL_BYTES = 64 * 1024  # the end of a long log is what matters


class LogScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,f8", "dismiss", "Close", id="log.close")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._log_bytes = -1

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static("", id="log-text")

    def on_mount(self) -> None:
        self.refresh_log()
        self.set_interval(1.0, self.refresh_log)

    def refresh_log(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            self.query_one("#log-text", Static).update(
                Text(f"{self.path}: no log yet", style="dim")
            )
            return
        if size == self._log_bytes:
            return
        self._log_bytes = size
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
        head = Text(f"{self.path} ({size:,} bytes; esc closes)\n\n", style="bold")
        self.query_one("#log-text", Static).update(head + Text(text))
        self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        self.query_one(VerticalScroll).scroll_end(animate=False)
