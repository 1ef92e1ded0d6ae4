"""A text field that never keeps the keyboard: Esc always leaves it for its pane's main widget."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class Field(Input):
    """An Input whose Esc hands the focus back to the pane (which may clear it, as the filter
    does); pane keys (F1-F5, ctrl+...) keep working while it has the focus."""

    BINDINGS = [Binding("escape", "leave", "Leave field", show=False, id="field.leave")]

    def action_leave(self) -> None:
        from hmmrnn_tui.panes import Pane

        pane = next((a for a in self.ancestors if isinstance(a, Pane)), None)
        if pane is not None:
            pane.field_left(self)
        else:
            self.screen.focus_next()
