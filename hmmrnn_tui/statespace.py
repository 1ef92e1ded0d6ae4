"""Pane 3: the hidden states on a pair of principal components, trajectories and fixed points."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Label, ProgressBar, Static

from hmmrnn_tui import plots, render
from hmmrnn_tui.jobs import JobPane
from hmmrnn_tui.legendplot import LegendPlot


class StageDone(Message):
    """One analysis of the state-space job is done (sent from the worker as it goes)."""

    def __init__(self, entry, name: str, run) -> None:
        super().__init__()
        self.entry, self.name, self.run = entry, name, run


STAGES = (("pca", 0.0, 0.15), ("trajectories", 0.15, 0.35), ("fixed-points", 0.35, 1.0))
VIEWS = ("states", "autonomous", "driven")


class StateSpacePane(JobPane):
    TITLE = "State space"
    PREFIX = "ss"
    BINDINGS = [
        Binding("ctrl+r", "compute", "Compute", priority=True, id="statespace.compute"),
        Binding("ctrl+g", "cancel", "Cancel", priority=True, id="statespace.cancel"),
        Binding("p", "next_pair", "PC pair", id="statespace.next_pair"),
        Binding("v", "next_view", "View", id="statespace.next_view"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pair_index = 0
        self.view = VIEWS[0]

    def compose(self) -> ComposeResult:
        with Horizontal(id="ss-body"):
            yield LegendPlot(id="ss-plot")
            yield LegendPlot(id="ss-plot2")  # the model marked for comparison (Metrics: c)
            with VerticalScroll(id="ss-side"):
                yield Static("", id="ss-info")
        with Horizontal(classes="statusbar"):
            yield Label("select a model, then ctrl+r", id="ss-status")
            yield ProgressBar(total=1.0, show_eta=False, id="ss-progress")

    def on_mount(self) -> None:
        super().on_mount()
        plots.message(self.plot.plt, "no state space computed")
        self.query_one("#ss-plot2").display = False

    @property
    def plot(self) -> LegendPlot:
        return self.query_one("#ss-plot", LegendPlot)

    def focus_main(self) -> None:
        self.query_one("#ss-side").focus()  # the plot itself takes no focus; p and v work here

    def _results(self, entry=None) -> dict:
        entry = entry if entry is not None else self.hub.current
        if entry is None:
            return {}
        return {
            name: self.hub.results.get((str(entry.path), name))
            for name, _, _ in STAGES
            if (str(entry.path), name) in self.hub.results
        }

    def on_show(self) -> None:
        self.redraw()  # the model marked for comparison may have changed meanwhile

    def model_changed(self, entry) -> None:
        self.pair_index = 0
        self.redraw()

    # --- drawing ----------------------------------------------------------------------------

    def redraw(self) -> None:
        entry = self.hub.current
        res = self._results()
        plt = self.plot.plt
        status = self.query_one("#ss-status", Label)
        if entry is None:
            plots.message(plt, "no model selected")
        elif not res:
            plots.message(plt, f"{entry.rel}: press ctrl+r to compute")
            if self.job is None:
                status.update(Text(f"{entry.rel}: not computed — ctrl+r", style="dim"))
            self.query_one("#ss-info", Static).update("")
        else:
            self._draw(res)
            self._draw_comparison(entry)
            if self.job is None:
                status.update(
                    f"{entry.rel} · view {self.view} (v) · PC{self.pair[0] + 1}-PC{self.pair[1] + 1} (p)"
                )
        self.plot.refresh()

    @property
    def pair(self) -> tuple[int, int]:
        res = self._results()
        pca = res.get("pca")
        n = pca.result.n_components if pca else 2
        pairs = plots.pc_pairs(n)
        return pairs[self.pair_index % len(pairs)]

    def _draw_comparison(self, entry) -> None:
        """The marked model's state space beside this one's, same view and PC pair."""
        second = self.query_one("#ss-plot2", LegendPlot)
        marked = self.hub.compare
        other = self._results(marked) if marked is not None and marked.path != entry.path else {}
        second.display = bool(other)
        if not other:
            return
        self._draw(other, second, info=False)
        second.plt.title(f"{marked.rel} ({self.view})")
        second.refresh()

    def _draw(self, res: dict, plot: LegendPlot | None = None, info: bool = True) -> None:
        plot = plot or self.plot
        plt = plot.plt
        pca = res.get("pca")
        traj = res.get("trajectories")
        fixed = res.get("fixed-points")
        fixed_r = fixed.result if fixed else None
        pair = self.pair
        if self.view == "states" and pca:
            plots.states(plt, pca.result, fixed_r, pair)
        elif self.view == "autonomous" and traj:
            plots.autonomous(plt, traj.result, fixed_r, pair)
        elif self.view == "driven" and traj:
            plots.driven(plt, traj.result, fixed_r, pair)
        else:
            plots.message(plt, f"{self.view}: not computed")
        if not info:
            return
        parts = []
        for name, _, _ in STAGES:
            if name in res:
                parts.append(render.summary_table(name, res[name].summary()))
                parts.append(Text(""))
        self.query_one("#ss-info", Static).update(Group(*parts))

    def action_next_pair(self) -> None:
        self.pair_index += 1
        self.redraw()

    def action_next_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self.redraw()

    # --- computing --------------------------------------------------------------------------

    def action_compute(self) -> None:
        entry = self.healthy_model()
        if entry is None:
            return
        from hmmrnn import api

        store, params_for = self.hub.store, self.hub.params_for

        def job(progress, cancel) -> list[str]:
            loaded = store.get(entry)
            sources = []
            for name, lo, hi in STAGES:
                cancel.raise_if_cancelled()

                def scaled(fraction: float, message: str = "", lo=lo, hi=hi, name=name) -> None:
                    progress(lo + (hi - lo) * fraction, f"{name}: {message}")

                run = api.analyze(loaded, name, params_for(name), progress=scaled, cancel=cancel)
                self.post_message(StageDone(entry, name, run))
                sources.append(run.source)
            return sources

        self.start_job("statespace", f"state space of {entry.rel}", job)

    @on(StageDone)
    def _stage_done(self, message: StageDone) -> None:
        message.stop()
        self.hub.results[(str(message.entry.path), message.name)] = message.run
        if self.hub.current is not None and self.hub.current.path == message.entry.path:
            self.redraw()

    def job_done(self, name: str, value) -> None:
        if value and all(source == "cache" for source in value):
            self.app.notify(
                "from the cache: computed before for these weights and parameters "
                "(change one to compute anew)", title="state space", timeout=6,
            )  # fmt: skip
        self.redraw()

    def job_ended(self, name: str, outcome: str) -> None:
        self.redraw()

    def export_targets(self):
        entry = self.hub.current
        res = self._results()
        if entry is None or not res:
            raise LookupError("compute the state space first (ctrl+r)")
        view = {"pair": tuple(self.pair)}  # the figure shows what the screen shows
        if "fixed-points" in res:
            view["fixed_points"] = res["fixed-points"]
        if self.view == "states" and "pca" in res:
            return [("pca-2d", res["pca"], entry, view)]
        if self.view != "states" and "trajectories" in res:
            return [("trajectories", res["trajectories"], entry, view)]
        raise LookupError("nothing computed for this view yet")

    def commands(self):
        return [
            (
                "State space: compute",
                "PCA, trajectories and fixed points of the selected model",
                self.action_compute,
            ),
            ("State space: cancel", "Stop the state-space computation", self.action_cancel),
            ("State space: next PC pair", "PC1-PC2, PC1-PC3, PC2-PC3", self.action_next_pair),
            (
                "State space: next view",
                "hidden states / autonomous / driven trajectories",
                self.action_next_view,
            ),
        ]
