"""Pane 4: launch training as a detached process, follow its loss live, cancel it, re-attach."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select
from textual_plotext import PlotextPlot

from hmmrnn_tui import jobs, plots, render
from hmmrnn_tui.fields import Field
from hmmrnn_tui.legendplot import glyph
from hmmrnn_tui.panes import Pane

FIELDS = (
    # (field, label, placeholder)
    ("config", "config", "config.json"),
    ("hidden_size", "hidden", "preset: 150"),
    ("input_size", "input", "preset: 100"),
    ("epochs", "epochs", "preset"),
    ("learning_rate", "lr", "0.001"),
    ("seed", "seed", "0"),
    ("out", "out", "{runs}/<preset>_…"),
    ("extra", "flags", "--num-seq 3000 --seq-len 20"),
)
DEVICES = ("auto", "cpu", "cuda")
RESCAN_SECONDS = 5.0


def short_path(path, keep: int = 2) -> str:
    """The last `keep` parts of a path (`…/newuser/runs`): a placeholder has a dozen columns."""
    parts = Path(path).parts
    return str(Path(*parts[-keep:])) if len(parts) <= keep else "…/" + str(Path(*parts[-keep:]))


def gpu_text(info: dict) -> str:
    """` · GPU 1.2 GB, 45%` from what a CUDA trainer records in run.json ('' on the CPU)."""
    mem, util = info.get("gpu_memory_mb"), info.get("gpu_utilization")
    if not isinstance(mem, (int, float)):
        return ""
    text = f" · GPU {mem / 1024:.1f} GB" if mem >= 1024 else f" · GPU {mem:.0f} MB"
    return text + (f", {util:.0f}%" if isinstance(util, (int, float)) else "")


class TrainingPane(Pane):
    TITLE = "Training"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", priority=True, id="training.start"),
        Binding("ctrl+g", "cancel_run", "Cancel run", priority=True, id="training.cancel"),
        Binding("ctrl+o", "attach", "Attach", priority=True, id="training.attach"),
        Binding("ctrl+f", "resume", "Resume", priority=True, id="training.resume"),
        Binding("ctrl+y", "retry", "Retry", priority=True, id="training.retry"),
        Binding("f8", "log", "Log", priority=True, id="training.log"),
        Binding("ctrl+n", "next_view", "Plot view", priority=True, id="training.next_view"),
        Binding("ctrl+b", "pin", "Pin curves", priority=True, id="training.pin"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.handle = None  # the RunHandle followed
        self.reported = False
        self.stopping = False
        self.running: list = []
        self._drawn: tuple | None = None  # what the loss plot shows, see _plot_key
        self.view = plots.LOSS_VIEWS[0]
        self.pinned: list[tuple[str, list[dict]]] = []  # other runs' curves drawn alongside
        self._scanned = 0.0

    def _runs_label(self) -> str:
        """Where a run goes when `out` is empty (the app's --runs), as the field's hint."""
        return short_path(self.hub.runs_dir, 2)

    def compose(self) -> ComposeResult:
        with Horizontal():
            with VerticalScroll(id="train-form"):
                with Horizontal(classes="field"):
                    yield Label("preset", classes="field-label")
                    yield Select(
                        [("Three", "Three")],
                        value="Three",
                        allow_blank=False,
                        id="f-preset",
                        compact=True,
                    )
                for name, label, hint in FIELDS:
                    with Horizontal(classes="field"):
                        yield Label(label, classes="field-label")
                        yield Field(
                            value="0" if name == "seed" else "",
                            placeholder=hint.format(runs=self._runs_label()),
                            id=f"f-{name}",
                            compact=True,
                        )
                with Horizontal(classes="field"):
                    yield Label("device", classes="field-label")
                    yield Select(
                        [(d, d) for d in DEVICES],
                        value="auto",
                        allow_blank=False,
                        id="f-device",
                        compact=True,
                    )
                yield Label("", id="form-error")
                yield Button("Start (ctrl+r)", id="start", variant="primary", compact=True)
                yield Label("running elsewhere (enter attaches):", id="runs-title")
                yield DataTable(id="runs", cursor_type="row")
            with Vertical(id="train-right"):
                yield PlotextPlot(id="loss-plot")
                yield Label("", id="loss-legend")
                yield Label("no run followed", id="run-status")
                yield ProgressBar(total=1, show_eta=False, id="run-progress")

    def on_mount(self) -> None:
        self.query_one("#run-progress").display = False
        table = self.query_one("#runs", DataTable)
        table.add_column("run", width=18)
        table.add_column("epochs", width=9)
        table.add_column("pid", width=7)
        plots.loss(self.query_one("#loss-plot", PlotextPlot).plt, [], None)
        self.set_interval(self.hub.poll_interval, self.poll)
        self.load_presets()
        self.set_form(**self.hub.settings.get("training_form", {}) or {})

    def load_presets(self) -> None:
        from hmmrnn import api

        jobs.fetch(self, "presets", api.presets)

    @on(jobs.Fetched)
    def _fetched(self, message: jobs.Fetched) -> None:
        message.stop()
        if isinstance(message.value, Exception):
            if message.key == "runs":
                self.app.notify(
                    str(message.value), title="could not scan for runs", severity="error"
                )
            return  # the form keeps its default preset
        if message.key == "presets":
            self._set_presets(message.value)
        elif message.key == "runs":
            self._runs_found(message.value)

    def _set_presets(self, names: list[str]) -> None:
        select = self.query_one("#f-preset", Select)
        remembered = (self.hub.settings.get("training_form") or {}).get("preset")
        current = remembered if remembered in names else select.value
        select.set_options([(n, n) for n in names])
        select.value = current if current in names else names[0]

    def focus_main(self) -> None:
        self.query_one("#f-preset", Select).focus()

    # --- form -------------------------------------------------------------------------------

    def request(self):
        from hmmrnn import api

        values = {name: self.query_one(f"#f-{name}", Input).value for name, _, _ in FIELDS}
        values["preset"] = str(self.query_one("#f-preset", Select).value)
        values["device"] = str(self.query_one("#f-device", Select).value)
        return api.train_request(**values)

    def form_values(self) -> dict[str, str]:
        values = {name: self.query_one(f"#f-{name}", Input).value for name, _, _ in FIELDS}
        values["preset"] = str(self.query_one("#f-preset", Select).value)
        values["device"] = str(self.query_one("#f-device", Select).value)
        return values

    def set_form(self, **values: str) -> None:
        """Fill form fields by name (the remembered form, the palette, tests); unknown names and
        values a select does not offer are left out."""
        for name, value in values.items():
            widgets = self.query(f"#f-{name}")
            if not widgets or not isinstance(value, str):
                continue
            try:
                widgets.first().value = value
            except Exception:  # a preset or device this select does not offer (yet)
                continue

    def _show_field_error(self, field: str | None, message: str) -> None:
        """The message under the form, and the field it is about marked and focused."""
        for widget in self.query(".field Input"):
            widget.remove_class("bad-field")
        self.query_one("#form-error", Label).update(Text(message, style="bold red"))
        if field and self.query(f"#f-{field}"):
            widget = self.query_one(f"#f-{field}")
            widget.add_class("bad-field")
            widget.focus()

    @on(Input.Changed, ".field Input")
    def _field_edited(self, event: Input.Changed) -> None:
        if event.input.has_class("bad-field"):
            event.input.remove_class("bad-field")
            self.query_one("#form-error", Label).update("")

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if self.handle is not None and self.handle.alive() and self.handle.process is not None:
            self.app.notify(
                "a run started here is still going; cancel it first (ctrl+g)", severity="warning"
            )
            return
        from hmmrnn import api

        req = self.request()
        out = Path(req.out).expanduser() if req.out.strip() else req.default_out(self.hub.runs_dir)
        try:
            config = req.build()  # every field checked before anything is created on disk
            handle = api.start_training(config, out, req.device)
        except api.UserError as exc:
            self._show_field_error(getattr(exc, "field", None), str(exc))
            self.app.notify(str(exc), title="could not start training", severity="error")
            return
        self.query_one("#form-error", Label).update("")
        self.hub.settings.set("training_form", self.form_values())
        self._started(handle, f"training started in {out} (pid {handle.pid}); it keeps running "
                      "if you quit")  # fmt: skip

    def _started(self, handle, note: str) -> None:
        self.follow(handle)
        self.app.notify(note)
        self.hub.run_finished(handle.folder)  # list it (as training) in the tree's Runs

    # --- resume, retry, log ----------------------------------------------------------------

    def _run_folder(self) -> Path | None:
        """The run these actions are about: the followed one, else the selected model if it is
        a run (it has a run.json)."""
        if self.handle is not None:
            return self.handle.folder
        entry = self.hub.current
        if entry is not None and (Path(entry.path) / "run.json").exists():
            return Path(entry.path)
        return None

    def action_resume(self) -> None:
        from hmmrnn import api

        folder = self._run_folder()
        if folder is None:
            self.app.notify("follow a run or select one in the tree first", severity="warning")
            return
        device = str(self.query_one("#f-device", Select).value)
        try:  # refused here when it is running, finished or diverged
            handle = api.start_resume(folder, device)
        except api.UserError as exc:
            self.app.notify(str(exc), title="cannot resume", severity="error")
            return
        self._started(handle, f"resuming {folder.name} (pid {handle.pid})")

    def action_retry(self) -> None:
        """The same config again, into a new folder (a failed or diverged run's second chance,
        or another seed after editing the form)."""
        import time

        from hmmrnn import api

        folder = self._run_folder()
        if folder is None:
            self.app.notify("follow a run or select one in the tree first", severity="warning")
            return
        out = self.hub.runs_dir / f"{folder.name}_retry_{time.strftime('%Y%m%d-%H%M%S')}"
        device = str(self.query_one("#f-device", Select).value)
        try:
            config = api.load_config(folder / "config.json")
            handle = api.start_training(config, out, device)
        except api.UserError as exc:
            self.app.notify(str(exc), title="cannot retry", severity="error")
            return
        self._started(handle, f"retrying {folder.name} as {out.name} (pid {handle.pid})")

    def action_log(self) -> None:
        from hmmrnn_tui.logview import LogScreen

        folder = self._run_folder()
        if folder is None:
            self.app.notify("follow a run or select one in the tree first", severity="warning")
            return
        self.app.push_screen(LogScreen(folder / "train.log"))

    def action_next_view(self) -> None:
        views = plots.LOSS_VIEWS
        self.view = views[(views.index(self.view) + 1) % len(views)]
        self._drawn = None
        if self.handle is not None:
            self._draw(self.handle, self.handle.info())

    def action_pin(self) -> None:
        """Keep the followed run's validation curve on the plot while following others."""
        if self.handle is None or not self.records:
            self.app.notify("no run with logged epochs is followed", severity="warning")
            return
        name = self.handle.folder.name
        names = [n for n, _ in self.pinned]
        if name in names:
            self.pinned = [(n, r) for n, r in self.pinned if n != name]
            self.app.notify(f"{name} unpinned")
        else:
            self.pinned = [*self.pinned, (name, list(self.records))][-4:]
            self.app.notify(f"{name} pinned: its curve stays on the plot")
        self._drawn = None
        self._draw(self.handle, self.handle.info())

    def follow(self, handle) -> None:
        self.handle = handle
        self.reported = False
        self.stopping = False  # a cancel was sent; said on the status line until the run ends
        self._drawn = None
        self.query_one("#run-progress").display = True
        self.query_one("#run-status", Label).update(
            Text(f"starting {handle.folder.name} …", style="yellow")
        )
        self.poll()

    # --- following --------------------------------------------------------------------------

    def poll(self) -> None:
        """Cheap check of the followed run: new metrics lines, run.json, process state; every few
        seconds the runs still going elsewhere are looked for again (so none stays listed after
        it ended)."""
        import time

        if time.monotonic() - self._scanned > RESCAN_SECONDS and self.hub.tree_ready:
            self._scanned = time.monotonic()
            self.scan_runs()
        handle = self.handle
        if handle is None:
            return
        try:
            new = handle.follower.poll()
            info = handle.info()
            if new or self._plot_key(handle, info) != self._drawn:
                self._draw(handle, info)
            self._show_status(handle, info)
        except Exception as exc:  # a run folder removed under us: stop following, keep the app
            self.handle = None
            self._drawn = None
            self.app.notify(str(exc), title="stopped following the run", severity="error")

    @property
    def records(self) -> list[dict]:
        return [] if self.handle is None else self.handle.follower.records

    def _plot_key(self, handle, info: dict) -> tuple:
        """What the loss plot depends on: redrawing plotext on every tick of a run with no
        records yet would cost a full re-render each poll for an unchanged picture."""
        return (id(handle), len(handle.follower.records), info.get("floor"), self.view,
                len(self.pinned))  # fmt: skip

    def _draw(self, handle, info: dict) -> None:
        self._drawn = self._plot_key(handle, info)
        records = handle.follower.records
        floor = info.get("floor")
        if floor is None and records:
            floor = records[-1].get("floor")
        plot = self.query_one("#loss-plot", PlotextPlot)
        runs = [(handle.folder.name, records)]
        runs += [(n, r) for n, r in self.pinned if n != handle.folder.name]
        legend = plots.loss(plot.plt, runs, floor, self.view)
        plot.refresh()
        text = Text()
        for label, color, marker in legend:
            text.append(
                f"{glyph(marker)} {label}  ", style=f"rgb({color[0]},{color[1]},{color[2]})"
            )
        text.append("· ctrl+n: view, ctrl+b: pin", style="dim")
        self.query_one("#loss-legend", Label).update(text)

    def _show_status(self, handle, info: dict) -> None:
        status = info.get("status", "starting")
        done, total = info.get("epochs_done", 0), info.get("total_epochs")
        bar = self.query_one("#run-progress", ProgressBar)
        if isinstance(total, int) and total > 0:
            bar.update(total=total, progress=done or 0)
        label = self.query_one("#run-status", Label)
        best = info.get("best_val")
        best_text = f" · best {best:.4f}" if isinstance(best, (int, float)) else ""
        alive = handle.alive()
        if alive and info.get("pid") != handle.pid:
            status = "starting"  # run.json is still the previous run's (a resume starting up)
        if status == "running" and alive:
            eta = render.format_seconds(handle.eta(info))
            gpu = gpu_text(info)
            line = Text(f"epoch {done}/{total}{best_text} · ETA {eta}{gpu} · {handle.folder.name}")
            if self.stopping:
                line.append(" · stopping after the current batch …", style="yellow")
            label.update(line)
            return
        if status == "starting" and alive:
            return
        if self.reported:
            return
        self._draw(handle, info)
        self.reported = True
        code = handle.exit_code()
        if status == "finished":
            label.update(Text(f"{handle.folder.name}: finished{best_text}", style="green"))
            self.app.notify(f"training finished: {handle.folder}")
            self.hub.run_finished(handle.folder)
        elif status == "cancelled":
            label.update(
                Text(
                    f"{handle.folder.name}: cancelled after {done} epochs{best_text}",
                    style="yellow",
                )
            )
            self.app.notify(
                f"training cancelled; resume with: hmmrnn resume {handle.folder}",
                severity="warning",
            )
            self.hub.run_finished(handle.folder)
        else:
            why = info.get("message") or handle.log_tail() or f"exit code {code}"
            label.update(Text(f"{handle.folder.name}: failed", style="red"))
            self.app.notify(why, title="training run failed", severity="error", timeout=10)
        self.query_one("#run-progress").display = False

    def action_cancel_run(self) -> None:
        handle = self.handle
        if handle is None or not handle.alive():
            self.app.notify("no running training to cancel")
            return
        if handle.cancel():
            self.stopping = True
            self.query_one("#run-status", Label).update(
                Text(f"{handle.folder.name}: stopping after the current batch …", style="yellow")
            )
        else:
            self.app.notify("could not signal the training process", severity="error")

    # --- runs still going -------------------------------------------------------------------

    def tree_loaded(self, entries: list) -> None:
        self.scan_runs()

    def scan_runs(self) -> None:
        from hmmrnn import api

        roots = [self.hub.tree_root, self.hub.runs_dir]
        jobs.fetch(self, "runs", lambda: api.find_runs(roots))

    def _runs_found(self, found: list) -> None:
        followed = None if self.handle is None else self.handle.folder.resolve()
        known = {h.folder for h in self.running}
        self.running = [h for h in found if h.folder != followed]
        if {h.folder for h in self.running} == known and self.query_one("#runs").row_count:
            return  # nothing changed: keep the cursor where it is
        table = self.query_one("#runs", DataTable)
        table.clear()
        for h in self.running:
            info = h.info()
            table.add_row(
                h.folder.name,
                f"{info.get('epochs_done', 0)}/{info.get('total_epochs', '?')}",
                str(h.pid),
                key=str(h.folder),
            )
        new = {h.folder for h in self.running} - known
        if new:
            self.app.notify(
                f"{len(new)} training run(s) still going — Training pane (4), ctrl+o re-attaches",
                title="runs found",
            )

    @on(DataTable.RowSelected, "#runs")
    def _attach_row(self, event: DataTable.RowSelected) -> None:
        self._attach_key(event.row_key.value)

    def action_attach(self) -> None:
        table = self.query_one("#runs", DataTable)
        if not self.running:
            self.app.notify(
                "no other training runs found (they are looked for at start and on reload)"
            )
            return
        row = (
            table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            if table.row_count
            else None
        )
        self._attach_key(row or str(self.running[0].folder))

    def _attach_key(self, key: str | None) -> None:
        for h in self.running:
            if str(h.folder) == key:
                self.follow(h)
                self.app.notify(f"following {h.folder.name} (pid {h.pid})")
                return

    def export_targets(self):
        if self.handle is None or not self.records:
            raise LookupError("no training run with logged epochs is being followed")
        return [("loss-curves", None, self.handle.folder)]

    def commands(self):
        return [
            (
                "Training: start run",
                "Launch training with the form's settings in a separate process",
                self.action_start,
            ),
            (
                "Training: cancel run",
                "Stop the followed run after the current batch (resumable)",
                self.action_cancel_run,
            ),
            (
                "Training: attach to a running run",
                "Follow a run still going from an earlier session",
                self.action_attach,
            ),
            (
                "Training: resume",
                "Continue the followed or selected run (ctrl+f)",
                self.action_resume,
            ),
            (
                "Training: retry",
                "The same config again in a new folder (ctrl+y)",
                self.action_retry,
            ),
            (
                "Training: show log",
                "train.log of the followed or selected run (f8)",
                self.action_log,
            ),
            (
                "Training: next plot view",
                "loss / log loss / loss - floor (ctrl+n)",
                self.action_next_view,
            ),
            (
                "Training: pin curves",
                "Keep this run's curve while following others (ctrl+b)",
                self.action_pin,
            ),
        ]
