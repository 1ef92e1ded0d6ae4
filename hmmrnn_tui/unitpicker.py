"""Picking hidden units from a list (with their kick scores when kick-neurons has run) instead of
typing indices: for the kick-unit parameters of ablation and populations."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, SelectionList
from textual.widgets.selection_list import Selection


def unit_choices(hidden: int, kick=None) -> list[tuple[int, str]]:
    """(unit, label) for every hidden unit, strongest kick score first when a KickResult is
    given (`z`: peak pre-activation before a switch, in std of the unit's activity)."""
    if kick is None:
        return [(u, f"unit {u}") for u in range(hidden)]
    z = np.asarray(kick.z, dtype=np.float64)
    best = np.nanmax(np.where(np.isfinite(z), z, -np.inf), axis=0)
    direction = np.nanargmax(np.where(np.isfinite(z), z, -np.inf), axis=0)
    member = np.asarray(kick.mask).any(axis=0)
    order = np.argsort(-best, kind="stable")
    out = []
    for u in order:
        a, b = (int(v) for v in kick.directions[direction[u]])
        star = " ★ kick unit" if member[u] else ""
        out.append((int(u), f"unit {int(u):>4}  z {best[u]:5.2f} before {a}→{b}{star}"))
    return out


class UnitPicker(ModalScreen[list[int] | None]):
    """Space toggles a unit, enter (or ctrl+s) takes the selection, esc leaves unchanged."""

    BINDINGS = [
        Binding("ctrl+s,enter", "take", "Use these units", priority=True, id="units.take"),
        Binding("escape", "leave", "Back", priority=True, id="units.leave"),
    ]

    def __init__(self, title: str, choices: list[tuple[int, str]], selected: list[int]) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.selected = set(selected)

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box"):
            yield Label(Text(self.title_text, style="bold"))
            yield SelectionList[int](
                *(Selection(label, u, u in self.selected) for u, label in self.choices),
                id="units",
            )
            yield Label("space toggles · enter uses the selection · esc leaves", id="form-keys")

    def on_mount(self) -> None:
        self.query_one("#units", SelectionList).focus()

    def action_take(self) -> None:
        self.dismiss(sorted(self.query_one("#units", SelectionList).selected))

    def action_leave(self) -> None:
        self.dismiss(None)
