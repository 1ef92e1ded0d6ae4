"""Pane 5: the mechanistic analyses (residency, noise sensitivity, kick neurons, populations,
ablation, training evolution): parameters, progress, cancel, and the results as plots and tables."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, ProgressBar, Select, Static

from hmmrnn.errors import form_message
from hmmrnn_tui import jobs, plots, render
from hmmrnn_tui.fields import Field
from hmmrnn_tui.jobs import JobPane
from hmmrnn_tui.legendplot import LegendPlot
from hmmrnn_tui.paramform import ParamForm

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


class MechanismsPane(JobPane):
    TITLE = "Mechanisms"
    PREFIX = "mech"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True, id="mechanisms.run"),
        Binding("ctrl+g", "cancel", "Cancel", priority=True, id="mechanisms.cancel"),
        Binding("ctrl+n", "next_view", "Plot view", priority=True, id="mechanisms.next_view"),
        Binding("f6", "edit_params", "Parameters", priority=True, id="mechanisms.params"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.specs: dict = {}
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
            yield Field(
                placeholder="name=value … (empty: defaults; f6: form)",
                id="mech-params",
                compact=True,
            )
        yield Static("", id="mech-defaults")
        with Horizontal(classes="statusbar"):
            yield Label("select a model and an analysis, then ctrl+r", id="mech-status")
            yield ProgressBar(total=1.0, show_eta=False, id="mech-progress")
        with Horizontal(id="mech-body"):
            yield LegendPlot(id="mech-plot")
            with VerticalScroll(id="mech-side"):
                yield Static("", id="mech-table")

    def on_mount(self) -> None:
        super().on_mount()
        plots.message(self.query_one("#mech-plot", LegendPlot).plt, "no analysis run yet")

    def focus_main(self) -> None:
        self.query_one("#mech-name", Select).focus()

    @property
    def analysis(self) -> str:
        return str(self.query_one("#mech-name", Select).value)

    # --- specs (the registry imports torch: done in a worker) ---------------------------------

    def on_show(self) -> None:
        self.show_result()  # results may have come in (or the model changed) meanwhile
        if not self.specs:
            from hmmrnn import api

            jobs.fetch(self, "specs", api.analyses)

    @on(jobs.Fetched)
    def _fetched(self, message: jobs.Fetched) -> None:
        message.stop()
        if message.key != "specs":
            return
        if isinstance(message.value, Exception):
            self.app.notify(
                str(message.value), title="could not load the analyses", severity="error"
            )
            return
        self.set_specs(message.value)

    def set_specs(self, specs: dict) -> None:
        if self.specs:
            return
        # evaluation has its own pane (Metrics)
        self.specs = {n: s for n, s in specs.items() if n != "evaluation"}
        names = [n for n in MECHANISMS if n in self.specs] + sorted(
            n for n in self.specs if n not in MECHANISMS
        )
        select = self.query_one("#mech-name", Select)
        current = select.value
        select.set_options([(n, n) for n in names])
        select.value = current if current in names else names[0]
        self._show_defaults()

    @on(Select.Changed, "#mech-name")
    def _analysis_changed(self) -> None:
        self.view_index = 0
        self.query_one("#mech-params", Input).value = ""
        self._show_defaults()
        self.show_result()

    @on(Input.Submitted, "#mech-params")
    def _params_entered(self) -> None:
        """Enter in the parameter line runs the analysis and leaves the line, so that single-key
        bindings (export, pane switching) work again. A line that does not parse keeps the
        cursor, with the problem under it: the next keys are meant as corrections."""
        try:
            self._given()
        except ValueError as exc:
            self.app.notify(form_message(exc), title="parameter line", severity="error")
            return
        self.query_one("#mech-name", Select).focus()
        self.action_run()

    @on(Input.Changed, "#mech-params")
    def _params_typed(self) -> None:
        self._show_defaults()

    def _given(self) -> dict:
        """The app's overrides for this analysis and the parameter line, parsed by the schema
        (ParamError names the parameter when the line does not parse)."""
        spec = self.specs[self.analysis]
        text = self.query_one("#mech-params", Input).value
        return {**self.hub.params_for(spec.name), **spec.schema.parse_assignments(text)}

    def _show_defaults(self) -> None:
        spec = self.specs.get(self.analysis)
        box = self.query_one("#mech-defaults", Static)
        if spec is None:
            box.update("")
            return
        text = Text(spec.help + "\n", style="italic")
        try:
            given = self._given()
        except ValueError as exc:
            box.update(text.append(form_message(exc), style="bold red"))
            return
        for p in spec.schema:
            value = given.get(p.name, p.default)
            shown = "config" if p.name not in given and p.config else p.format(value)
            text.append(f"{p.name}=", style="bold" if p.name in given else "dim")
            text.append(f"{shown}  ", style="bold" if p.name in given else "dim")
        box.update(text)

    def action_edit_params(self) -> None:
        spec = self.specs.get(self.analysis)
        if spec is None:
            self.app.notify("the analyses are still loading", severity="warning")
            return
        try:
            values = self._given()
        except ValueError as exc:
            self.app.notify(form_message(exc), title="parameter line", severity="error")
            values = self.hub.params_for(spec.name)

        def applied(result) -> None:
            self.query_one("#mech-name", Select).focus()  # out of any field: pane keys work
            if result is not None:
                self.query_one("#mech-params", Input).value = spec.schema.format_values(result)
                self._show_defaults()

        self.app.push_screen(
            ParamForm(f"{spec.name} parameters", spec.schema, values, self._unit_choices()),
            applied,
        )

    def _unit_choices(self) -> list[tuple[int, str]]:
        """Units of the selected model, scored by its kick-neurons result when there is one."""
        from hmmrnn_tui.unitpicker import unit_choices

        entry = self.hub.current
        if entry is None or entry.sizes is None:
            return []
        kick = self.hub.results.get((str(entry.path), "kick-neurons"))
        return unit_choices(entry.sizes[1], kick.result if kick is not None else None)

    # --- running ----------------------------------------------------------------------------

    def action_run(self) -> None:
        entry = self.healthy_model()
        if entry is None:
            return
        if self.analysis not in self.specs:
            self.app.notify("the analyses are still loading", severity="warning")
            return
        try:
            params = self._given()
        except ValueError as exc:
            self.app.notify(form_message(exc), title="parameter line", severity="error")
            return
        from hmmrnn import api

        name, store = self.analysis, self.hub.store

        def job(progress, cancel):
            run = api.analyze(store.get(entry), name, params, progress=progress, cancel=cancel)
            return entry, run

        self.start_job(name, f"{name} on {entry.rel}", job)

    def job_done(self, name: str, value) -> None:
        entry, run = value
        self.hub.results[(str(entry.path), name)] = run
        self.show_result()

    # --- results ----------------------------------------------------------------------------

    def model_changed(self, entry) -> None:
        self.show_result()

    def current_run(self):
        entry = self.hub.current
        if entry is None:
            return None
        return self.hub.results.get((str(entry.path), self.analysis))

    def show_result(self) -> None:
        entry = self.hub.current
        run = self.current_run()
        plot = self.query_one("#mech-plot", LegendPlot)
        table = self.query_one("#mech-table", Static)
        if run is None:
            self.shown = None
            plots.message(plot.plt, f"{self.analysis}: not run on this model (ctrl+r)")
            table.update("")
            if self.job is None and entry is not None:
                self.status(Text(f"{entry.rel}: {self.analysis} not run yet — ctrl+r", style="dim"))
            plot.refresh()
            return
        self.shown = (str(entry.path), self.analysis)
        spec = self.specs.get(self.analysis)
        views = list(spec.views) if spec is not None else []
        if views:
            view = views[self.view_index % len(views)]
            try:
                view.function()(plot.plt, run.result)
            except Exception as exc:  # a plot problem must not hide the table
                plots.message(plot.plt, f"cannot plot {self.analysis}: {exc}")
            suffix = f" · plot: {view.title} (ctrl+n)" if len(views) > 1 else ""
        else:
            plots.message(plot.plt, f"{self.analysis}: see the table")
            suffix = ""
        used = ", ".join(f"{k}={v}" for k, v in run.params.items())
        table.update(
            Group(
                render.summary_table(self.analysis, run.summary()),
                Text(f"\nparameters ({run.source}): {used}", style="dim"),
            )
        )
        if self.job is None:
            self.status(f"{entry.rel}: {self.analysis}{suffix}")
        plot.refresh()

    def action_next_view(self) -> None:
        self.view_index += 1
        self.show_result()

    def export_targets(self):
        run = self.current_run()
        if run is None:
            raise LookupError(f"run {self.analysis} first (ctrl+r)")
        return [(f"analysis:{self.analysis}", run, self.hub.current)]

    def commands(self):
        return [
            (
                "Mechanisms: run analysis",
                "Run the selected analysis on the selected model",
                self.action_run,
            ),
            ("Mechanisms: cancel analysis", "Stop the running analysis", self.action_cancel),
            (
                "Mechanisms: edit parameters",
                "A form of the analysis' parameters, with types and ranges",
                self.action_edit_params,
            ),
            (
                "Mechanisms: next plot view",
                "Switch between the result's plots",
                self.action_next_view,
            ),
        ]
