"""Pane 2: the selected model's evaluation (HMM vs RNN) and a sortable table of every model."""

from __future__ import annotations

import math

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Label, ProgressBar, Static
from textual.worker import get_current_worker

from hmmrnn_tui import jobs, render
from hmmrnn_tui.panes import Pane

COLUMNS = (
    ("model", "model"),
    ("states", "states"),
    ("hidden", "hidden"),
    ("input", "input"),
    ("seed", "seed"),
    ("best_val", "best loss"),
    ("distance_ratio", "dist ratio"),
    ("transition_error", "trans err"),
)
OTHER_WIDTH = 68  # the numeric columns with their padding: the model column gets the rest


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _sort_key(value):
    """Numbers before text (a column mixes them only when a value is missing)."""
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value).lower())


def sort_rows(rows: dict[str, dict], column: str, reverse: bool) -> list[tuple[str, dict]]:
    """Rows ordered by one column; missing values always go last, whichever the direction."""
    known = [kv for kv in rows.items() if not _missing(kv[1].get(column))]
    missing = [kv for kv in rows.items() if _missing(kv[1].get(column))]
    known.sort(key=lambda kv: _sort_key(kv[1].get(column)), reverse=reverse)
    return known + missing


class MetricsPane(Pane):
    TITLE = "Metrics"
    BINDINGS = [
        Binding("ctrl+r", "evaluate", "Evaluate", priority=True),
        Binding("ctrl+g", "cancel", "Cancel", priority=True),
        Binding("a", "evaluate_all", "Evaluate all"),
        Binding("s", "sort", "Sort by column"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, dict] = {}
        self.sort_column = "model"
        self.sort_reverse = False
        self.busy: str | None = None
        self.token = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="statusbar"):
            yield Label("select a model", id="eval-status")
            yield ProgressBar(total=None, show_eta=False, id="eval-progress")
        with VerticalScroll(id="eval-scroll"):
            yield Static("", id="eval-body")
        yield Label("all models", id="cross-title")
        yield DataTable(id="cross", cursor_type="cell", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#eval-progress").display = False
        self._title()

    def focus_main(self) -> None:
        self.query_one("#cross", DataTable).focus()

    # --- selected model ---------------------------------------------------------------------

    def model_changed(self, entry) -> None:
        self.show_evaluation(entry)

    def show_evaluation(self, entry) -> None:
        body = self.query_one("#eval-body", Static)
        if entry is None:
            return
        if entry.status == "broken":
            self._status(Text(f"{entry.rel}: broken — {entry.reason}", style="red"))
            body.update("")
            return
        cached = self.hub.evaluations.get(str(entry.path))
        if cached is not None:
            self._status(Text(f"{entry.rel}: evaluation (ctrl+r recomputes)"))
            body.update(render.evaluation_view(cached))
            return
        self._status(Text(f"{entry.rel}: not evaluated yet — ctrl+r evaluates", style="dim"))
        body.update("")
        self.load_saved(entry)

    @work(thread=True, exclusive=True, group="eval-load", exit_on_error=False)
    def load_saved(self, entry) -> None:
        from hmmrnn_tui import services

        try:
            result = services.load_evaluation(entry.path)
        except Exception:  # an unreadable evaluation.json is the same as none
            result = None
        if result is not None and not get_current_worker().is_cancelled:
            jobs.post(self.app, self._evaluated, entry, result)

    def _evaluated(self, entry, result) -> None:
        from hmmrnn_tui import services

        self.hub.evaluations[str(entry.path)] = result
        row = self.rows.get(str(entry.path))
        if row is not None:
            row.update(services.eval_columns(result))
            self.fill_table()
        current = self.hub.current
        if current is not None and current.path == entry.path:
            self.show_evaluation(entry)

    def _status(self, text) -> None:
        self.query_one("#eval-status", Label).update(text)

    def _busy(self, what: str | None) -> None:
        self.busy = what
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.display = what is not None
        if what is not None:
            bar.update(total=None, progress=0)
            self._status(Text(f"{what} … (ctrl+g cancels)", style="yellow"))

    # --- evaluation jobs --------------------------------------------------------------------

    def action_evaluate(self) -> None:
        entry = self.hub.current
        if entry is None:
            self.app.notify("select a model first", severity="warning")
            return
        if entry.status != "ok":
            self.app.notify(
                f"{entry.rel} cannot be evaluated: {entry.status} {entry.reason}", severity="error"
            )
            return
        self._start(f"evaluating {entry.rel}", [entry])

    def action_evaluate_all(self) -> None:
        todo = [
            e
            for e in self.hub.entries
            if e.status == "ok"
            and str(e.path) not in self.hub.evaluations
            and self.rows.get(str(e.path), {}).get("distance_ratio") is None
        ]
        if not todo:
            self.app.notify("every healthy model is evaluated already")
            return
        self._start(f"evaluating {len(todo)} models", todo)

    def _start(self, what: str, entries: list) -> None:
        """Run the evaluation worker unless one is going: one at a time, so ctrl+g has one
        token to cancel and the progress bar one job to show."""
        if self.busy:
            self.app.notify(f"already {self.busy}", severity="warning")
            return
        from hmmrnn.cancel import CancelToken

        self.token = CancelToken()
        self._busy(what)
        self.evaluate_worker(entries, self.token)

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def evaluate_worker(self, entries: list, token) -> None:
        from hmmrnn_tui import services

        done = 0
        for i, entry in enumerate(entries):
            if token.cancelled:
                break
            jobs.post(self.app, self._progress, i, len(entries), entry.rel)
            try:
                result = services.evaluate(entry, self.hub.device, self.hub.eval_params)
            except Exception as exc:
                jobs.notify_error(self.app, f"evaluation of {entry.rel} failed", exc)
                continue
            if (
                token.cancelled
            ):  # finished after the user gave up on it: keep the file, not the view
                break
            done += 1
            jobs.post(self.app, self._evaluated, entry, result)
        jobs.post(self.app, self._finished, done, len(entries), token.cancelled)

    def _progress(self, i: int, n: int, name: str) -> None:
        bar = self.query_one("#eval-progress", ProgressBar)
        if n > 1:
            bar.update(total=n, progress=i)
        self._status(Text(f"evaluating {name} ({i + 1}/{n}) … ctrl+g cancels", style="yellow"))

    def _finished(self, done: int, total: int, cancelled: bool) -> None:
        self._busy(None)
        if cancelled:
            self.app.notify(f"evaluation cancelled after {done} of {total}", severity="warning")
        elif total > 1:
            self.app.notify(f"evaluated {done} of {total} models")
        self.show_evaluation(self.hub.current)

    def action_cancel(self) -> None:
        if self.token is not None and self.busy:
            self.token.cancel()
            self._status(Text("cancelling after the current model …", style="yellow"))
        else:
            self.app.notify("nothing to cancel")

    # --- cross-model table ------------------------------------------------------------------

    def tree_loaded(self, entries: list) -> None:
        self.rows = {}
        self.load_rows(entries)

    @work(thread=True, exclusive=True, group="cross", exit_on_error=False)
    def load_rows(self, entries: list) -> None:
        from hmmrnn_tui import services

        rows = {}
        for entry in entries:
            try:
                rows[str(entry.path)] = services.cross_row(entry)
            except Exception as exc:
                rows[str(entry.path)] = {"model": entry.rel, "status": "broken", "reason": str(exc)}
        if not get_current_worker().is_cancelled:
            jobs.post(self.app, self._rows_loaded, rows)

    def _rows_loaded(self, rows: dict) -> None:
        from hmmrnn_tui import services

        for key, row in rows.items():
            ev = self.hub.evaluations.get(key)
            if ev is not None:
                row.update(services.eval_columns(ev))
        self.rows = rows
        self.fill_table()

    def on_resize(self) -> None:
        self.fill_table()

    def fill_table(self) -> None:
        """Rebuild the table in sort order; the model column takes the width the numbers leave."""
        table = self.query_one("#cross", DataTable)
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        model_width = max(14, self.size.width - OTHER_WIDTH)
        for key, label in COLUMNS:
            table.add_column(label, key=key, width=model_width if key == "model" else None)
        for key, row in sort_rows(self.rows, self.sort_column, self.sort_reverse):
            table.add_row(*self._cells(row, model_width), key=key)
        if self.rows:
            table.cursor_coordinate = table.validate_cursor_coordinate(cursor)
        self._title()

    def _cells(self, row: dict, width: int) -> list:
        status = row.get("status", "ok")
        name = Text(
            f"{render.STATUS_MARK.get(status, '?')} ", style=render.STATUS_STYLE.get(status, "")
        )
        model = str(row.get("model", ""))
        if len(model) > width - 2:  # the end of a path says more than its start
            model = "…" + model[-(width - 3) :]
        name.append(model)
        cells: list = [name]
        for key, _ in COLUMNS[1:]:
            value = row.get(key)
            spec = ".3f" if key in ("best_val", "distance_ratio", "transition_error") else ""
            cells.append(
                Text(render.fmt(value, spec) if spec else render.fmt(value), justify="right")
            )
        return cells

    def _title(self) -> None:
        label = dict(COLUMNS)[self.sort_column]
        arrow = "↓" if self.sort_reverse else "↑"
        self.query_one("#cross-title", Label).update(
            f"all models ({len(self.rows)}) — sorted by {label} {arrow} · s: sort by cursor column"
        )

    def action_sort(self) -> None:
        table = self.query_one("#cross", DataTable)
        column = COLUMNS[min(table.cursor_column, len(COLUMNS) - 1)][0]
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self.fill_table()

    @on(DataTable.CellSelected, "#cross")
    def _open_row(self, event: DataTable.CellSelected) -> None:
        """Enter on a row makes its model the selected one (details, state space, ...)."""
        key = event.cell_key.row_key.value
        for entry in self.hub.entries:
            if str(entry.path) == key:
                self.hub.select_entry(entry)
                break

    def export_targets(self):
        entry = self.hub.current
        result = None if entry is None else self.hub.evaluations.get(str(entry.path))
        if result is None:
            raise LookupError(
                "evaluate the selected model first (ctrl+r); the Models pane exports the tree grid"
            )
        return [(name, result, entry) for name in ("distances", "transition-matrices")]

    def commands(self):
        return [
            (
                "Metrics: evaluate selected model",
                "HMM vs RNN distances, volatility, frequencies, transitions",
                self.action_evaluate,
            ),
            (
                "Metrics: evaluate all models",
                "Evaluate every healthy model not evaluated yet",
                self.action_evaluate_all,
            ),
            ("Metrics: cancel evaluation", "Stop after the current model", self.action_cancel),
            ("Metrics: sort by column under cursor", "Press again to reverse", self.action_sort),
        ]
