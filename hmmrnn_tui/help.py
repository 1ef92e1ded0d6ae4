"""The `?` screen, generated from the bindings themselves (with the user's remapped keys and each
binding's id for the settings file), and the list of this session's exports."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# What the bindings cannot say about themselves.
NOTES = {
    "everywhere": (
        ("tab / shift+tab", "move the focus between widgets"),
        ("esc", "leave a text field (its pane keeps the focus)"),
        ("ctrl+p", "command palette: every action by name"),
        ("ctrl+q", "quit (training runs keep going)"),
    ),
    "Models": (("↑ ↓ ← →", "move in the tree; the details follow the cursor"),),
    "Metrics": (("enter", "select the model of the table row"),),
    "Training": (("enter", "in the runs table: follow that run"),),
}


def _key_text(key: str) -> str:
    return ", ".join(k.strip().replace("question_mark", "?").replace("slash", "/")
                     for k in key.split(","))  # fmt: skip


def help_table(app) -> Table:
    """Every key of every pane: key, what it does, the binding id to remap it by."""
    from hmmrnn_tui.app import PANES
    from hmmrnn_tui.fields import Field

    keymap = getattr(app, "_keymap", {}) or {}
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    t.add_column(style="dim", no_wrap=True)
    sections = [("everywhere", [*type(app).BINDINGS, *Field.BINDINGS])]
    sections += [(cls.TITLE, list(cls.BINDINGS)) for _, cls in PANES]
    for title, bindings in sections:
        t.add_row(Text(title, style="bold underline"), "", "")
        for b in bindings:
            if isinstance(b, Binding) and b.id:
                t.add_row(_key_text(keymap.get(b.id, b.key)), b.description, b.id)
        for key, what in NOTES.get(title, ()):
            t.add_row(key, what, "")
        t.add_row("", "", "")
    where = getattr(getattr(app, "settings", None), "path", None) or "the settings file"
    t.add_row("", Text(f'remap keys by id in {where}: {{"keymap": {{"app.export": "f10"}}}}',
                       style="italic"), "")  # fmt: skip
    return t


class HelpScreen(ModalScreen):
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_table(self.app))


class ExportsScreen(ModalScreen):
    """Every export of this session, newest first, with full paths (to copy from)."""

    BINDINGS = [Binding("escape,f9,q", "dismiss", "Close", id="exports.close")]

    def __init__(self, exports: list, folder: Path) -> None:
        super().__init__()
        self.exports = exports
        self.folder = folder

    def compose(self) -> ComposeResult:
        text = Text(f"exports of this session into {Path(self.folder).resolve()}\n\n", style="bold")
        if not self.exports:
            text.append("nothing exported yet: ctrl+s in a pane exports its view", style="dim")
        for export in reversed(self.exports):
            for path in [*export.paths, export.sidecar]:
                if path is not None:
                    text.append(f"{Path(path).resolve()}\n")
            text.append("\n")
        text.no_wrap = True  # a path stays whole on its line (scroll sideways), ready to copy
        with VerticalScroll(id="exports-box"):
            yield Static(text, expand=False)
