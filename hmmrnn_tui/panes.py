"""What every pane shares: access to the app's state and the hooks the app calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.containers import Container

if TYPE_CHECKING:
    from hmmrnn_tui.app import HmmrnnApp


class Pane(Container):
    """A tab's content. Subclasses override the hooks they need."""

    TITLE = ""

    @property
    def hub(self) -> HmmrnnApp:
        return self.app  # type: ignore[return-value]

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """A pane's keys act only while its tab is shown: right after a switch the focus may
        still sit in the pane left (it moves on the next cycle), and ctrl+r there must not start
        that pane's job."""
        try:
            return self.hub.active_pane is self
        except Exception:  # while composing: no tabs yet
            return True

    def healthy_model(self):
        """The selected entry when it can be analysed; otherwise say why and return None."""
        entry = self.hub.current
        if entry is None or entry.status == "broken":
            why = (
                "select a healthy model first"
                if entry is None
                else f"{entry.rel} is broken: {entry.reason}"
            )
            self.app.notify(why, severity="error")
            return None
        return entry

    def model_changed(self, entry) -> None:
        """The selected model changed (entry may be None)."""

    def tree_loaded(self, entries: list) -> None:
        """The model tree was (re)discovered."""

    def focus_main(self) -> None:
        """Put the keyboard focus on the pane's main widget."""

    def field_left(self, field) -> None:
        """Esc in one of the pane's text fields: the focus goes back to the pane."""
        self.focus_main()

    def export_targets(self) -> list[tuple[str, object | None, object]]:
        """What the export key writes for this view: (figure, AnalysisRun or None, target[, view])

        figure is a figure name (hmmrnn.api.figures()), or "analysis:NAME" for every figure that
        draws analysis NAME; target is a tree entry (its loaded model is used), a folder or a tree
        root; view holds what the screen shows on top (a PC pair, overlays), so that the file
        reproduces it. Raise LookupError with a hint when the view has nothing to export yet.
        """
        raise LookupError("nothing to export in this view")

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """(title, help, callback) for the command palette."""
        return []
