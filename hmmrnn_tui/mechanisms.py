"""Pane 5: the mechanistic analyses (residency, noise sensitivity, kick neurons, populations,
ablation, training evolution): parameters, progress, cancel, and the results as plots and tables."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, ProgressBar, Select, Static
from textual_plotext import PlotextPlot

from hmmrnn_tui import jobs, plots, render
from hmmrnn_tui.panes import Pane

# Shown first, in the order the study runs them; any other registered analysis follows.
MECHANISMS = (
    "residency",
    "subspace-residency",
    "locate",
    "noise-sensitivity",
    "kick-neurons",
    "populations",
    "ablation",
    "evolution",
)


class MechanismsPane(Pane):
    TITLE = "Mechanisms"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("ctrl+g", "cancel", "Cancel", priority=True),
        Binding("ctrl+n", "next_view", "Plot view", priority=True),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.specs: dict = {}
        self.token = None
        self.running: str | None = None
        self.view_index = 0
        self.shown: tuple[str, str] | None = None  # (model path, analysis) on screen

    def compose(self) -> ComposeResult:
        with Horizontal(id="mech-top"):
            yield Select(
                [(n, n) for n in MECHANISMS],
                value=MECHANISMS[0],
                allow_blank=False,
                id="mech-name",
                compact=True,
            )
            yield Input(
                placeholder="name=value … (empty: defaults)", id="mech-params", compact=True
            )
        yield Static("", id="mech-defaults")
        with Horizontal(classes="statusbar"):
            yield Label("select a model and an analysis, then ctrl+r", id="mech-status")
            yield ProgressBar(total=1.0, show_eta=False, id="mech-progress")
        with Horizontal(id="mech-body"):
            yield PlotextPlot(id="mech-plot")
            with VerticalScroll(id="mech-side"):
                yield Static("", id="mech-table")

    def on_mount(self) -> None:
        self.query_one("#mech-progress").display = False
        plots.message(self.query_one("#mech-plot", PlotextPlot).plt, "no analysis run yet")

    def focus_main(self) -> None:
        self.query_one("#mech-name", Select).focus()

    @property
    def analysis(self) -> str:
        return str(self.query_one("#mech-name", Select).value)

    # --- specs (registry import pulls in torch: done in a worker) -----------------------------

    def on_show(self) -> None:
        if not self.specs:
            self.load_specs()

    @work(thread=True, exclusive=True, group="specs", exit_on_error=False)
    def load_specs(self) -> None:
        from hmmrnn_tui import services

        try:
            specs = services.analysis_specs()
        except Exception as exc:
            jobs.notify_error(self.app, "could not load the analyses", exc)
            return
        jobs.post(self.app, self.set_specs, specs)

    def set_specs(self, specs: dict) -> None:
        if self.specs:
            return
        self.specs = specs
        names = [n for n in MECHANISMS if n in specs] + sorted(
            n for n in specs if n not in MECHANISMS
        )
        select = self.query_one("#mech-name", Select)
        current = select.value
        select.set_options([(n, n) for n in names])
        select.value = current if current in names else names[0]
        self._show_defaults()

    @on(Select.Changed, "#mech-name")
    def _analysis_changed(self) -> None:
        self.view_index = 0
        self._show_defaults()
        self.show_result()

    @on(Input.Submitted, "#mech-params")
    def _params_entered(self) -> None:
        """Enter in the parameter line runs the analysis and leaves the line, so that single-key
        bindings (export, pane switching) work again."""
        self.query_one("#mech-name", Select).focus()
        self.action_run()

    def _show_defaults(self) -> None:
        spec = self.specs.get(self.analysis)
        box = self.query_one("#mech-defaults", Static)
        if spec is None:
            box.update("")
            return
        params = {**spec.defaults, **self.hub.params_for(spec.name)}
        text = Text(spec.help + "\n", style="italic")
        text.append("  ".join(f"{k}={v}" for k, v in params.items()), style="dim")
        box.update(text)

    # --- running ----------------------------------------------------------------------------

    def action_run(self) -> None:
        entry = self.healthy_model()
        if entry is None:
            return
        if self.running is not None:
            self.app.notify(f"{self.running} is still running (ctrl+g cancels)", severity="warning")
            return
        from hmmrnn.cancel import CancelToken

        self.token = CancelToken()
        self.running = self.analysis
        bar = self.query_one("#mech-progress", ProgressBar)
        bar.display = True
        bar.update(total=1.0, progress=0)
        self._status(Text(f"{self.running}: starting …", style="yellow"))
        self.run_worker_thread(
            entry, self.running, self.query_one("#mech-params", Input).value, self.token
        )

    @work(thread=True, exclusive=True, group="mechanisms", exit_on_error=False)
    def run_worker_thread(self, entry, name: str, text: str, token) -> None:
        from hmmrnn.cancel import Cancelled
        from hmmrnn_tui import services

        outcome = "done"
        try:
            spec = services.analysis_specs()[name]
            params = {**self.hub.params_for(name), **services.parse_params(text, spec)}
            loaded = self.hub.store.get(entry)
            progress = jobs.ThrottledProgress(self.app, self._progress)
            got = services.analyse(name, loaded, params, progress, token)
            jobs.post(self.app, self._done, entry, name, got)
        except Cancelled:
            outcome = "cancelled"
        except Exception as exc:
            outcome = "failed"
            jobs.notify_error(self.app, f"{name} on {entry.rel}", exc)
        jobs.post(self.app, self._finished, name, outcome)

    def _progress(self, fraction: float, message: str) -> None:
        self.query_one("#mech-progress", ProgressBar).update(progress=fraction)
        self._status(Text(f"{self.running}: {message} (ctrl+g cancels)", style="yellow"))

    def _status(self, text) -> None:
        self.query_one("#mech-status", Label).update(text)

    def _done(self, entry, name: str, got) -> None:
        self.hub.results[(str(entry.path), name)] = got
        self.show_result()

    def _finished(self, name: str, outcome: str) -> None:
        self.running = None
        self.query_one("#mech-progress").display = False
        if outcome == "cancelled":
            self.app.notify(f"{name} cancelled", severity="warning")
            self._status(Text(f"{name}: cancelled", style="yellow"))
        elif outcome == "failed":
            self._status(Text(f"{name}: failed (see notification)", style="red"))
        else:
            self.show_result()

    def action_cancel(self) -> None:
        if self.token is not None and self.running is not None:
            self.token.cancel()
            self._status(Text(f"{self.running}: cancelling …", style="yellow"))
        else:
            self.app.notify("nothing to cancel")

    # --- results ----------------------------------------------------------------------------

    def model_changed(self, entry) -> None:
        self.show_result()

    def current_result(self):
        entry = self.hub.current
        if entry is None:
            return None
        return self.hub.results.get((str(entry.path), self.analysis))

    def show_result(self) -> None:
        entry = self.hub.current
        got = self.current_result()
        plot = self.query_one("#mech-plot", PlotextPlot)
        table = self.query_one("#mech-table", Static)
        if got is None:
            self.shown = None
            plots.message(plot.plt, f"{self.analysis}: not run on this model (ctrl+r)")
            table.update("")
            if self.running is None and entry is not None:
                self._status(
                    Text(f"{entry.rel}: {self.analysis} not run yet — ctrl+r", style="dim")
                )
            plot.refresh()
            return
        result, rows = got
        self.shown = (str(entry.path), self.analysis)
        views = plots.MECHANISM_VIEWS.get(self.analysis, [])
        if views:
            view_name, draw = views[self.view_index % len(views)]
            try:
                draw(plot.plt, result)
            except Exception as exc:  # a plot problem must not hide the table
                plots.message(plot.plt, f"cannot plot {self.analysis}: {exc}")
            suffix = f" · plot: {view_name} (ctrl+n)" if len(views) > 1 else ""
        else:
            plots.message(plot.plt, f"{self.analysis}: see the table")
            suffix = ""
        table.update(render.summary_table(self.analysis, rows))
        if self.running is None:
            self._status(f"{entry.rel}: {self.analysis}{suffix}")
        plot.refresh()

    def action_next_view(self) -> None:
        self.view_index += 1
        self.show_result()

    def export_targets(self):
        got = self.current_result()
        if got is None:
            raise LookupError(f"run {self.analysis} first (ctrl+r)")
        return [(f"analysis:{self.analysis}", got[0], self.hub.current)]

    def commands(self):
        return [
            (
                "Mechanisms: run analysis",
                "Run the selected analysis on the selected model",
                self.action_run,
            ),
            ("Mechanisms: cancel analysis", "Stop the running analysis", self.action_cancel),
            (
                "Mechanisms: next plot view",
                "Switch between the result's plots",
                self.action_next_view,
            ),
        ]
