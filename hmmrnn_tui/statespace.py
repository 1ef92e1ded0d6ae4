"""Pane 3: the hidden states on a pair of principal components, trajectories and fixed points."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, ProgressBar, Static
from textual_plotext import PlotextPlot

from hmmrnn_tui import jobs, plots, render
from hmmrnn_tui.panes import Pane

STAGES = (("pca", 0.0, 0.15), ("trajectories", 0.15, 0.35), ("fixed-points", 0.35, 1.0))
VIEWS = ("states", "autonomous", "driven")


class StateSpacePane(Pane):
    TITLE = "State space"
    BINDINGS = [
        Binding("ctrl+r", "compute", "Compute", priority=True),
        Binding("ctrl+g", "cancel", "Cancel", priority=True),
        Binding("p", "next_pair", "PC pair"),
        Binding("v", "next_view", "View"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pair_index = 0
        self.view = VIEWS[0]
        self.token = None
        self.busy_key: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield PlotextPlot(id="ss-plot")
            with VerticalScroll(id="ss-side"):
                yield Static("", id="ss-info")
        with Horizontal(classes="statusbar"):
            yield Label("select a model, then ctrl+r", id="ss-status")
            yield ProgressBar(total=1.0, show_eta=False, id="ss-progress")

    def on_mount(self) -> None:
        self.query_one("#ss-progress").display = False
        plots.message(self.plot.plt, "no state space computed")

    @property
    def plot(self) -> PlotextPlot:
        return self.query_one("#ss-plot", PlotextPlot)

    def focus_main(self) -> None:
        self.query_one("#ss-side").focus()  # the plot itself takes no focus; p and v work here

    def _results(self, entry=None) -> dict:
        entry = entry or self.hub.current
        if entry is None:
            return {}
        return {
            name: self.hub.results.get((str(entry.path), name))
            for name, _, _ in STAGES
            if (str(entry.path), name) in self.hub.results
        }

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
            if self.busy_key is None:
                status.update(Text(f"{entry.rel}: not computed — ctrl+r", style="dim"))
            self.query_one("#ss-info", Static).update("")
        else:
            self._draw(res)
            if self.busy_key is None:
                status.update(
                    f"{entry.rel} · view {self.view} (v) · PC{self.pair[0] + 1}-PC{self.pair[1] + 1} (p)"
                )
        self.plot.refresh()

    @property
    def pair(self) -> tuple[int, int]:
        res = self._results()
        pca = res.get("pca")
        n = pca[0].n_components if pca else 2
        pairs = plots.pc_pairs(n)
        return pairs[self.pair_index % len(pairs)]

    def _draw(self, res: dict) -> None:
        plt = self.plot.plt
        pca = res.get("pca")
        traj = res.get("trajectories")
        fixed = res.get("fixed-points")
        fixed_r = fixed[0] if fixed else None
        pair = self.pair
        if self.view == "states" and pca:
            plots.states(plt, pca[0], fixed_r, pair)
        elif self.view == "autonomous" and traj:
            plots.autonomous(plt, traj[0], fixed_r, pair)
        elif self.view == "driven" and traj:
            plots.driven(plt, traj[0], fixed_r, pair)
        else:
            plots.message(plt, f"{self.view}: not computed")
        parts = []
        for name, _, _ in STAGES:
            if name in res:
                parts.append(render.summary_table(name, res[name][1]))
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
        if self.busy_key is not None:
            self.app.notify("state space already being computed", severity="warning")
            return
        from hmmrnn.cancel import CancelToken

        self.token = CancelToken()
        self.busy_key = str(entry.path)
        bar = self.query_one("#ss-progress", ProgressBar)
        bar.display = True
        bar.update(total=1.0, progress=0)
        self.compute_worker(entry, self.token)

    @work(thread=True, exclusive=True, group="statespace", exit_on_error=False)
    def compute_worker(self, entry, token) -> None:
        from hmmrnn.cancel import Cancelled
        from hmmrnn_tui import services

        outcome = "done"
        try:
            loaded = self.hub.store.get(entry)
            for name, lo, hi in STAGES:
                token.raise_if_cancelled()

                def scaled(fraction: float, message: str = "", lo=lo, hi=hi, name=name) -> None:
                    self._progress(lo + (hi - lo) * fraction, f"{name}: {message}")

                progress = jobs.ThrottledProgress(self.app, scaled)
                got = services.analyse(name, loaded, self.hub.params_for(name), progress, token)
                jobs.post(self.app, self._stage_done, entry, name, got)
        except Cancelled:
            outcome = "cancelled"
        except Exception as exc:
            outcome = "failed"
            jobs.notify_error(self.app, f"state space of {entry.rel}", exc)
        jobs.post(self.app, self._finished, entry, outcome)

    def _progress(self, fraction: float, message: str) -> None:
        self.query_one("#ss-progress", ProgressBar).update(progress=fraction)
        self.query_one("#ss-status", Label).update(
            Text(f"{message} (ctrl+g cancels)", style="yellow")
        )

    def _stage_done(self, entry, name: str, got) -> None:
        self.hub.results[(str(entry.path), name)] = got
        if self.hub.current is not None and self.hub.current.path == entry.path:
            self.redraw()

    def _finished(self, entry, outcome: str) -> None:
        self.busy_key = None
        self.query_one("#ss-progress").display = False
        if outcome == "cancelled":
            self.app.notify(f"state space of {entry.rel} cancelled", severity="warning")
        self.redraw()

    def action_cancel(self) -> None:
        if self.token is not None and self.busy_key is not None:
            self.token.cancel()
        else:
            self.app.notify("nothing to cancel")

    def export_targets(self):
        entry = self.hub.current
        res = self._results()
        if entry is None or not res:
            raise LookupError("compute the state space first (ctrl+r)")
        if self.view == "states" and "pca" in res:
            name = "pca-3d" if self.pair == (0, 2) else "pca-2d"
            return [(name, res["pca"][0], entry)]
        if self.view != "states" and "trajectories" in res:
            return [("trajectories", res["trajectories"][0], entry)]
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
