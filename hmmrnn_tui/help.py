"""The `?` screen: every key, pane by pane."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

GLOBAL_KEYS = (
    ("1 … 5", "switch pane: Models, Metrics, State space, Training, Mechanisms"),
    ("tab / shift+tab", "move the focus between widgets"),
    ("e", "export the current view as a publication figure (into exports/)"),
    ("ctrl+p", "command palette: every action by name"),
    ("R", "rediscover the model tree"),
    ("ctrl+t", "toggle dark / light theme"),
    ("?", "this help"),
    ("q / ctrl+q", "quit (training runs keep going)"),
)
PANE_KEYS = (
    (
        "Models",
        (
            ("↑ ↓ ← →", "move in the tree; the details follow the cursor"),
            ("letters, /", "type to filter the tree; enter or ↓ returns to the tree, esc clears"),
        ),
    ),
    (
        "Metrics",
        (
            ("ctrl+r", "evaluate the selected model (HMM vs RNN); saved as evaluation.json"),
            ("a", "evaluate every model not evaluated yet"),
            ("s", "sort the table by the column under the cursor (again: reverse)"),
            ("enter", "select the model of the table row"),
            ("ctrl+g", "cancel the evaluation"),
        ),
    ),
    (
        "State space",
        (
            ("ctrl+r", "compute PCA, trajectories and fixed points"),
            ("p", "next pair of principal components"),
            ("v", "next view: hidden states / autonomous / driven trajectories"),
            ("ctrl+g", "cancel"),
        ),
    ),
    (
        "Training",
        (
            ("ctrl+r", "start a run with the form's settings (a separate process)"),
            ("ctrl+g", "cancel the followed run after the current batch (resumable)"),
            ("ctrl+o / enter", "re-attach to a run still going from an earlier session"),
        ),
    ),
    (
        "Mechanisms",
        (
            ("ctrl+r", "run the selected analysis; parameters as name=value"),
            ("ctrl+n", "next plot of the result"),
            ("ctrl+g", "cancel the analysis"),
        ),
    ),
)


def help_table() -> Table:
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    t.add_row(Text("everywhere", style="bold underline"), "")
    for key, what in GLOBAL_KEYS:
        t.add_row(key, what)
    for pane, keys in PANE_KEYS:
        t.add_row("", "")
        t.add_row(Text(pane, style="bold underline"), "")
        for key, what in keys:
            t.add_row(key, what)
    return t


class HelpScreen(ModalScreen):
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_table())
