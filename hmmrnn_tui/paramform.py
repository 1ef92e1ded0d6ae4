"""A form for an analysis' parameters, built from its schema (one row per parameter).

Each row shows the name, the value as text (the same text the parameter line and the CLI take),
and the type, range and help from the schema. ctrl+s checks every field with the schema's own
parser and applies the form; a bad value is reported under its field and nothing is applied. Esc
leaves without changes.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from hmmrnn.errors import form_message


class ParamForm(ModalScreen[dict[str, Any] | None]):
    """Dismissed with the parameter values set, or None when left with Esc."""

    BINDINGS = [
        Binding("ctrl+s", "apply", "Apply", priority=True, id="params.apply"),
        Binding("escape", "leave", "Back", priority=True, id="params.leave"),
        Binding("ctrl+o", "pick_units", "Pick units", priority=True, id="params.pick_units"),
    ]

    def __init__(self, title: str, schema, values: dict[str, Any], units=None) -> None:
        super().__init__()
        self.title_text = title
        self.schema = schema
        self.values = dict(values)
        self.units = units or []  # (unit, label) choices for unit-list parameters

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box"):
            yield Label(Text(self.title_text, style="bold"), id="form-title")
            with VerticalScroll(id="form-rows"):
                for p in self.schema:
                    with Horizontal(classes="form-row"):
                        yield Label(p.name, classes="form-name")
                        from_config = p.config and p.name not in self.values
                        yield Input(
                            value=""
                            if from_config
                            else p.format(self.values.get(p.name, p.default)),
                            placeholder="the model's config" if p.config else "",
                            id=f"p-{p.name}",
                            compact=True,
                        )
                    yield Static(
                        _help(p),
                        classes="form-help",
                        id=f"h-{p.name}",
                    )
            yield Label("ctrl+s apply · esc cancel · tab next · ctrl+o pick units", id="form-keys")

    def on_mount(self) -> None:
        first = next(iter(self.schema), None)
        if first is not None:
            self.query_one(f"#p-{first.name}", Input).focus()

    def parsed(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(values set before or changed here, errors by parameter name); untouched fields keep
        meaning "the default" (or the model config's value, for the parameters tied to it)."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for p in self.schema:
            text = self.query_one(f"#p-{p.name}", Input).value
            if p.config and not text.strip():
                continue  # empty: the model's config value, as on the parameter line
            try:
                value = p.parse(text)
            except ValueError as exc:
                errors[p.name] = form_message(exc)
                continue
            if p.name in self.values or text != p.format(p.default):
                values[p.name] = value
        return values, errors

    def action_apply(self) -> None:
        values, errors = self.parsed()
        for p in self.schema:
            help_text = _help(p)
            if p.name in errors:
                help_text = Text(errors[p.name], style="bold red")
            self.query_one(f"#h-{p.name}", Static).update(help_text)
        if errors:
            first = next(iter(errors))
            self.query_one(f"#p-{first}", Input).focus()
            self.app.notify(f"{len(errors)} parameter(s) need a fix", severity="error")
            return
        self.dismiss(values)

    def action_leave(self) -> None:
        self.dismiss(None)

    def action_pick_units(self) -> None:
        """A list of units (kick scores first when known) for the focused unit-list field; for
        two groups (populations' kick units) group A, then group B."""
        from hmmrnn_tui.unitpicker import UnitPicker

        field = self.focused
        name = (field.id or "")[2:] if field is not None else ""
        param = self.schema[name] if name in self.schema else None
        if param is None or param.kind not in ("int_list", "int_groups") or not self.units:
            self.app.notify("move to a units field (kick_units) first", severity="warning")
            return
        try:
            current = param.parse(field.value) or []
        except ValueError:
            current = []
        if param.kind == "int_list":

            def took(units):
                if units is not None:
                    field.value = param.format(units)

            self.app.push_screen(UnitPicker(f"{name}: units", self.units, current), took)
            return
        groups = [list(g) for g in current] if current else [[], []]
        groups += [[]] * (2 - len(groups))

        def took_b(units, first):
            if units is not None:
                field.value = param.format([first, units])

        def took_a(units):
            if units is not None:
                self.app.push_screen(
                    UnitPicker(f"{name}: group B", self.units, groups[1]),
                    lambda b: took_b(b, units),
                )

        self.app.push_screen(UnitPicker(f"{name}: group A", self.units, groups[0]), took_a)


def _help(p) -> Text:
    plain = p.format(p.default)
    default = f"the model config's {p.config}, else {plain}" if p.config else plain
    return Text(f"{p.type_text()} · default {default} · {p.help}")
