"""Pane 2: the selected model's evaluation (HMM vs RNN) and a sortable table of every model."""

from __future__ import annotations

import math

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Label, ProgressBar, Static

from hmmrnn_tui import jobs, render
from hmmrnn_tui.jobs import JobPane

COLUMNS = (  # (key, header); the help line under the table says what they mean
    ("model", "model"),
    ("states", "M"),
    ("hidden", "H"),
    ("input", "d"),
    ("seed", "seed"),
    ("loss_floor", "loss/fl"),
    ("distance_ratio", "ratio"),
    ("transition_error", "trans"),
    ("bars", "bars"),
    ("flags", "flags"),
)
OTHER_WIDTH = 66  # the other columns with their padding: the model column gets the rest
RATIO_BAR, TRANSITION_BAR = 1.05, 0.1  # the shipping bar (EvaluationResult.passes_bar)


COLUMN_HELP = (
    "loss/fl: best loss ÷ HMM-vs-HMM floor (≈1: as good as the HMM) · ratio: matched distance "
    "RNN ÷ HMM, bar 1.05 · trans: bar 0.1 · bars: averages, dynamics"
)
CSV_COLUMNS = (
    "model", "status", "states", "hidden", "input", "seed", "best_val", "floor", "loss_floor",
    "distance_ratio", "transition_error", "bars", "flags", "reason",
)  # fmt: skip


def shorten(name: str, width: int) -> str:
    """A path cut in the middle, so that its family (first part) and seed (last) stay visible."""
    if len(name) <= width:
        return name
    parts = name.split("/")
    if len(parts) > 2:
        short = f"{parts[0]}/…/{parts[-1]}"
        if len(short) <= width:
            return short
    keep = max(width - 1, 2)
    return name[: keep // 2] + "…" + name[len(name) - (keep - keep // 2) :]


def good(value, bar: float, spec: str = ".3f") -> Text:
    """A number coloured against its bar: green within it, red past it."""
    if _missing(value):
        return Text("–", justify="right")
    return Text(format(value, spec), style="green" if value <= bar else "bold red", justify="right")


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


class Evaluated(Message):
    """One model of an evaluation job is done (sent from the worker as it goes)."""

    def __init__(self, entry, run) -> None:
        super().__init__()
        self.entry, self.run = entry, run


def eval_columns(run) -> dict:
    """The cross-model table's evaluation columns of a run (None without one), written in one
    place so the rows built at load time and those updated after an evaluation stay alike."""
    from hmmrnn import api

    result = None if run is None else run.result
    if result is None:
        return {"distance_ratio": None, "transition_error": None, "bars": None, "flags": None}
    has_dynamics = not math.isnan(result.hmm_switch_back)
    bars = ("✓" if result.passes_bar()[0] else "✗") + (
        ("✓" if result.passes_dynamics_bar()[0] else "✗") if has_dynamics else "?"
    )
    return {
        "distance_ratio": result.distance_ratio,
        "transition_error": result.transition_error,
        "bars": bars,
        "flags": ", ".join(api.evaluation_flags(result)) if has_dynamics else "old eval",
    }


def cross_row(entry) -> dict:
    """One row of the cross-model table: the listing facts plus the saved evaluation."""
    from hmmrnn import api

    row = api.entry_row(entry)
    best, floor = row.get("best_val"), row.get("floor")
    row["loss_floor"] = best / floor if best is not None and floor else None
    try:
        run = api.saved_evaluation(entry.path) if entry.status == "ok" else None
    except api.UserError:  # an unreadable evaluation.json is the same as none here
        run = None
    row.update(eval_columns(run))
    return row


class MetricsPane(JobPane):
    TITLE = "Metrics"
    PREFIX = "eval"
    BINDINGS = [
        Binding("ctrl+r", "evaluate", "Evaluate", priority=True, id="metrics.evaluate"),
        Binding("ctrl+g", "cancel", "Cancel", priority=True, id="metrics.cancel"),
        Binding("a", "evaluate_all", "Evaluate all", id="metrics.evaluate_all"),
        Binding("s", "sort", "Sort by column", id="metrics.sort"),
        Binding("ctrl+w", "save_csv", "Table as CSV", id="metrics.save_csv"),
        Binding("c", "compare", "Compare", id="metrics.compare"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, dict] = {}
        self.sort_column = "model"
        self.sort_reverse = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="statusbar"):
            yield Label("select a model", id="eval-status")
            yield ProgressBar(total=1.0, show_eta=False, id="eval-progress")
        with VerticalScroll(id="eval-scroll"):
            yield Static("", id="eval-body")
        yield Label("all models", id="cross-title")
        yield DataTable(id="cross", cursor_type="cell", zebra_stripes=True)
        yield Label(COLUMN_HELP, id="cross-help")

    def on_mount(self) -> None:
        super().on_mount()
        self._title()

    def focus_main(self) -> None:
        self.query_one("#cross", DataTable).focus()

    # --- selected model ---------------------------------------------------------------------

    def model_changed(self, entry) -> None:
        self.show_evaluation(entry)
        self._cursor_to_current()

    def show_evaluation(self, entry) -> None:
        body = self.query_one("#eval-body", Static)
        if entry is None:
            return
        if entry.status == "broken":
            self._idle_status(Text(f"{entry.rel}: broken — {entry.reason}", style="red"))
            body.update("")
            return
        run = self.hub.evaluations.get(str(entry.path))
        if run is not None:
            other, name = self._comparison(entry)
            if other is not None:  # both names first: at 80 columns the tail is cut
                line = f"{shorten(entry.rel, 28)} vs {shorten(name, 28)} · c on it: stop · ctrl+r"
            else:
                line = f"{entry.rel}: evaluation (ctrl+r evaluates again)"
            self._idle_status(Text(line))
            body.update(render.evaluation_view(run, other, name))
            return
        self._idle_status(Text(f"{entry.rel}: not evaluated yet — ctrl+r evaluates", style="dim"))
        body.update("")
        self.load_saved(entry)

    def _comparison(self, entry):
        """(evaluation, name) of the model marked for comparison, if any and not this one."""
        marked = self.hub.compare
        if marked is None or marked.path == entry.path:
            return None, ""
        run = self.hub.evaluations.get(str(marked.path))
        if run is None:
            self.load_saved(marked)
        return run, marked.rel.split("/")[0] + "…" + marked.rel.split("/")[-1]

    def action_compare(self) -> None:
        """Mark the selected model: every other model's evaluation shows it beside its own (the
        State space pane draws both as well); again on the marked model: unmark."""
        entry = self.hub.current
        if entry is None:
            return
        if self.hub.compare is not None and self.hub.compare.path == entry.path:
            self.hub.compare = None
            self.app.notify("comparison off")
        else:
            self.hub.compare = entry
            self.app.notify(f"{entry.rel} marked: select another model to compare")
        self.show_evaluation(entry)

    def _idle_status(self, text) -> None:
        if self.job is None:  # a running job's progress keeps the status line
            self.status(text)

    def load_saved(self, entry) -> None:
        from hmmrnn import api

        jobs.fetch(self, "saved", lambda: (entry, api.saved_evaluation(entry.path)))

    @on(jobs.Fetched)
    def _fetched(self, message: jobs.Fetched) -> None:
        message.stop()
        if isinstance(message.value, Exception):
            if message.key == "rows":
                self.app.notify(str(message.value), title="cannot list models", severity="error")
            return  # an unreadable evaluation.json is the same as none
        if message.key == "saved":
            entry, run = message.value
            if run is not None:
                self._evaluated(entry, run)
        elif message.key == "rows":
            self._rows_loaded(message.value)

    @on(Evaluated)
    def _on_evaluated(self, message: Evaluated) -> None:
        message.stop()
        self._evaluated(message.entry, message.run)

    def _evaluated(self, entry, run) -> None:
        self.hub.evaluations[str(entry.path)] = run
        row = self.rows.get(str(entry.path))
        if row is not None:
            row.update(eval_columns(run))
            self.fill_table()
        current = self.hub.current
        marked = self.hub.compare
        if current is not None and (
            current.path == entry.path or (marked is not None and marked.path == entry.path)
        ):
            self.show_evaluation(current)

    # --- evaluation jobs --------------------------------------------------------------------

    def action_evaluate(self) -> None:
        entry = self.healthy_model()
        if entry is None:
            return
        if entry.status != "ok":
            self.app.notify(f"{entry.rel} cannot be evaluated: {entry.status}", severity="error")
            return
        self.start_job("evaluate", f"evaluating {entry.rel}", self._evaluation_job([entry]))

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
        self.start_job("evaluate", f"evaluating {len(todo)} models", self._evaluation_job(todo))

    def _evaluation_job(self, entries: list):
        """The worker's function: each model's evaluation is saved only once complete; a
        cancelled one raises Cancelled before anything is written."""
        from hmmrnn import api

        params = dict(self.hub.eval_params)
        store = self.hub.store

        def job(progress, cancel) -> tuple[int, list[str], int]:
            failures, cached = [], 0
            n = len(entries)
            for i, entry in enumerate(entries):
                cancel.raise_if_cancelled()

                def scaled(fraction: float, text: str = "", i=i, entry=entry) -> None:
                    label = f"{entry.rel} ({i + 1}/{n}) " if n > 1 else ""
                    progress((i + fraction) / n, label + text)

                try:
                    run = api.evaluate(store.get(entry), params, progress=scaled, cancel=cancel)
                except api.SaveError as exc:  # computed but not saved: show it, report it
                    self.post_message(Evaluated(entry, exc.run))
                    if n == 1:
                        raise
                    failures.append(f"{entry.rel}: {exc}")
                    continue
                except api.UserError as exc:
                    if n == 1:
                        raise
                    failures.append(f"{entry.rel}: {exc}")
                    continue
                self.post_message(Evaluated(entry, run))
                cached += run.source == "cache"
            return n, failures, cached

        return job

    def job_done(self, name: str, value) -> None:
        total, failures, cached = value
        if cached and cached == total - len(failures):
            self.app.notify(
                "from the cache: these weights were evaluated with these parameters before "
                "(change one to compute anew)", title="evaluation", timeout=6,
            )  # fmt: skip
        for line in failures:
            self.app.notify(line, title="evaluation failed", severity="error", timeout=8)
        if total > 1:
            self.app.notify(f"evaluated {total - len(failures)} of {total} models")
        self.show_evaluation(self.hub.current)

    def job_ended(self, name: str, outcome: str) -> None:
        if self.hub.current is not None:
            self.show_evaluation(self.hub.current)

    # --- cross-model table ------------------------------------------------------------------

    def tree_loaded(self, entries: list) -> None:
        self.rows = {}

        def read() -> dict:
            rows = {}
            for entry in entries:
                try:
                    rows[str(entry.path)] = cross_row(entry)
                except Exception as exc:  # one unreadable model never hides the others
                    rows[str(entry.path)] = {
                        "model": entry.rel, "status": "broken", "reason": str(exc)
                    }  # fmt: skip
            return rows

        jobs.fetch(self, "rows", read)

    def _rows_loaded(self, rows: dict) -> None:
        for key, row in rows.items():
            run = self.hub.evaluations.get(key)
            if run is not None:
                row.update(eval_columns(run))
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
            self._cursor_to_current()
        self._title()

    def _cursor_to_current(self) -> None:
        """The table's cursor on the selected model's row, so that the row read is the model
        shown above it."""
        from textual.widgets.data_table import RowKey

        entry = self.hub.current
        table = self.query_one("#cross", DataTable)
        if entry is None or RowKey(str(entry.path)) not in table.rows:
            return
        table.move_cursor(row=table.get_row_index(str(entry.path)))

    def _cells(self, row: dict, width: int) -> list:
        status = row.get("status", "ok")
        name = Text(
            f"{render.STATUS_MARK.get(status, '?')} ", style=render.STATUS_STYLE.get(status, "")
        )
        name.append(shorten(str(row.get("model", "")), width - 2))
        cells: list = [name]
        for key, _ in COLUMNS[1:]:
            value = row.get(key)
            if key == "distance_ratio":
                cells.append(good(value, RATIO_BAR))
            elif key == "transition_error":
                cells.append(good(value, TRANSITION_BAR))
            elif key == "loss_floor":
                cells.append(Text(render.fmt(value, ".2f"), justify="right"))
            elif key == "bars":
                text = value or "–"
                cells.append(Text(text, style="green" if text == "✓✓" else "yellow"))
            elif key == "flags":
                cells.append(Text(value or "", style="yellow"))
            else:
                cells.append(Text(render.fmt(value), justify="right"))
        return cells

    def _title(self) -> None:
        label = dict(COLUMNS)[self.sort_column]
        arrow = "↓" if self.sort_reverse else "↑"
        self.query_one("#cross-title", Label).update(
            f"all models ({len(self.rows)}) — sorted by {label} {arrow} · s: sort by cursor column"
        )

    def action_save_csv(self) -> None:
        """The cross-model table, every row and column, as CSV in the exports folder."""
        import csv
        import io
        import time
        from types import SimpleNamespace

        from hmmrnn import api

        if not self.rows:
            self.app.notify("no models in the table yet", severity="warning")
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for _, row in sort_rows(self.rows, self.sort_column, self.sort_reverse):
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
        name = f"{self.hub.tree_root.name or 'models'}_models_{time.strftime('%Y%m%d-%H%M%S')}.csv"
        path = self.hub.exports_dir / name
        try:
            api.save_text(path, buf.getvalue())
        except OSError as exc:
            self.app.notify(f"cannot write {path}: {exc.strerror or exc}", severity="error")
            return
        self.hub.exports.append(SimpleNamespace(paths=[path], sidecar=None))  # no sidecar
        self.app.notify(str(path.resolve()), title="table saved", timeout=10)

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
        run = None if entry is None else self.hub.evaluations.get(str(entry.path))
        if run is None:
            raise LookupError(
                "evaluate the selected model first (ctrl+r); the Models pane exports the tree grid"
            )
        return [(name, run, entry) for name in ("distances", "transition-matrices")]

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
            (
                "Metrics: save the table as CSV",
                "Every model and column, into exports/",
                self.action_save_csv,
            ),
        ]
