"""hmmrnn-tui: the keyboard-driven workbench over a model tree.

`hmmrnn-tui [TREE]` opens TREE (default ./TrainedModels, else the models shipped with hmmrnn). The app is a thin layer over the hmmrnn
library: discovery, evaluation and analyses run in worker threads, training in detached processes;
the UI thread only lays out what they return. Nothing heavy is imported at start-up (torch loads in
the discovery worker), so the first screen paints quickly even over SSH.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from hmmrnn_tui import jobs
from hmmrnn_tui.browser import BrowserPane
from hmmrnn_tui.help import HelpScreen
from hmmrnn_tui.mechanisms import MechanismsPane
from hmmrnn_tui.metrics import MetricsPane
from hmmrnn_tui.panes import Pane
from hmmrnn_tui.settings import Settings
from hmmrnn_tui.statespace import StateSpacePane
from hmmrnn_tui.store import ModelStore
from hmmrnn_tui.timing import StallMeter, freeze_startup_heap, process_age
from hmmrnn_tui.training import TrainingPane

PANES: tuple[tuple[str, type[Pane]], ...] = (
    ("models", BrowserPane),
    ("metrics", MetricsPane),
    ("statespace", StateSpacePane),
    ("training", TrainingPane),
    ("mechanisms", MechanismsPane),
)


class HmmrnnApp(App):
    """The workbench. State shared by the panes lives here; the panes render it."""

    CSS_PATH = "app.tcss"
    TITLE = "hmmrnn"
    # Pane keys: digits where no text field has the focus, F1-F5 and alt+digits everywhere (a
    # field types digits). Nothing that writes files is a plain letter. Every binding has an id,
    # which the settings file's "keymap" can bind to other keys.
    BINDINGS = [
        *(
            Binding(
                f"{i},f{i},alt+{i}",
                f"show_pane('{pid}')",
                cls.TITLE,
                show=False,
                id=f"app.pane_{pid}",
                priority=False,
            )
            for i, (pid, cls) in enumerate(PANES, start=1)
        ),  # fmt: skip
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+s", "export", "Export figure", id="app.export"),
        Binding("f9", "exports", "Exports", show=False, id="app.exports"),
        Binding("ctrl+l", "reload", "Reload tree", show=False, id="app.reload"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False, id="app.theme"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        tree_root: str | Path = "TrainedModels",
        *,
        runs_dir: str | Path = "runs",
        exports_dir: str | Path = "exports",
        device: str = "auto",
        analysis_params: dict[str, dict[str, Any]] | None = None,
        eval_params: dict[str, Any] | None = None,
        poll_interval: float = 0.5,
        exit_after_paint: bool = False,
        start_note: str = "",
        settings: Settings | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings if settings is not None else Settings()
        self.tree_root = Path(tree_root).expanduser()
        self.runs_dir = Path(runs_dir).expanduser()
        self.exports_dir = Path(exports_dir).expanduser()
        self.device = device
        self.analysis_params = analysis_params or {}
        self.eval_params = eval_params or {}
        self.poll_interval = poll_interval
        self.exit_after_paint = exit_after_paint
        self.entries: list = []
        self.current = None
        self.compare = None  # a model marked for side-by-side comparison
        self.store = ModelStore(device)
        self.evaluations: dict[str, Any] = {}
        self.results: dict[tuple[str, str], Any] = {}
        self.stalls = StallMeter()
        self.first_paint: float | None = None
        self.torch_at_paint: bool | None = None
        self.tree_ready = False
        self.warm = False  # the analysis stack is imported (see prewarm)
        self.exports: list[Any] = []  # ExportResults written this session
        self.sub_title = self.tree_root.name
        self.start_note = start_note  # e.g. that the shipped models are shown

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="models", id="tabs"):
            for i, (pid, cls) in enumerate(PANES, start=1):
                with TabPane(f"{i} {cls.TITLE}", id=pid):
                    yield cls(id=f"{pid}-pane")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_settings()
        self.set_interval(self.stalls.period, self.stalls.tick)
        self.call_after_refresh(self._painted)
        if self.start_note:
            self.notify(self.start_note, title="models", timeout=8)
        self.pane("models").focus_main()

    NARROW = 120  # columns below which side panels go under their plot

    COMPACT_FOOTER = 100  # columns below which the footer drops its padding to show more keys

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < self.NARROW, "narrow")
        self.query_one(Footer).compact = event.size.width < self.COMPACT_FOOTER

    def _painted(self) -> None:
        """First frame is on screen: only now start the work that imports torch, so that its
        import (which holds the GIL) cannot delay the first paint."""
        self.first_paint = process_age()
        self.torch_at_paint = "torch" in sys.modules
        if self.exit_after_paint:
            self.exit(self.first_paint)
            return
        self.discover_tree()

    def _apply_settings(self) -> None:
        """The user's keymap and theme; an unknown binding id or theme is said, not fatal."""
        keymap = self.settings.keymap
        known = set(binding_ids(self))
        unknown = sorted(set(keymap) - known)
        if unknown:
            self.notify(f"unknown binding ids ignored: {', '.join(unknown)} (? lists them)",
                        title="settings", severity="warning", timeout=10)  # fmt: skip
        if keymap:
            self.set_keymap({k: v for k, v in keymap.items() if k in known})
        theme = self.settings.get("theme")
        if isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme
        if self.settings.problem:
            self.notify(self.settings.problem, title="settings", severity="warning", timeout=10)

    # --- panes --------------------------------------------------------------------------------

    def pane(self, pid: str) -> Pane:
        return self.query_one(f"#{pid}-pane", Pane)

    @property
    def panes(self) -> list[Pane]:
        return [self.pane(pid) for pid, _ in PANES]

    @property
    def active_pane(self) -> Pane:
        return self.pane(self.query_one("#tabs", TabbedContent).active or "models")

    def action_show_pane(self, pid: str) -> None:
        self.query_one("#tabs", TabbedContent).active = pid
        self.pane(pid).focus_main()

    def params_for(self, analysis: str) -> dict[str, Any]:
        """Parameter overrides configured for an analysis (the rest are the library's defaults)."""
        return dict(self.analysis_params.get(analysis, {}))

    # --- the tree and the selection -------------------------------------------------------------

    def discover_tree(self) -> None:
        root, runs = self.tree_root, self.runs_dir
        jobs.fetch(self, "tree", lambda: discover_all(root, runs))

    def prewarm(self) -> None:
        """Import the analysis stack now, while the user reads the tree.

        Loading a C extension holds the GIL for its whole initialisation (torch's ~0.2 s), which
        freezes the UI thread however the work is threaded; paying that right after start-up keeps
        such pauses out of the moments when the user is typing or a run is being followed.
        """
        from hmmrnn import api

        def warm():
            specs = api.analyses()
            api.figures()  # the figure catalogue; matplotlib loads on the first export
            return specs

        jobs.fetch(self, "specs", warm)

    @on(jobs.Fetched)
    def _fetched(self, message: jobs.Fetched) -> None:
        value = message.value
        if message.key == "tree":
            if isinstance(value, Exception):  # a bug while listing: shown, the app stays usable
                value = ([], jobs.error_text(value))
            entries, problem = value
            if problem:  # a missing tree is shown, the app stays usable (its runs still listed)
                self.notify(problem, title=f"cannot read {self.tree_root}", severity="error",
                            timeout=8)  # fmt: skip
            self._tree_loaded(entries)
            if not self.warm:
                self.prewarm()
        elif message.key == "specs":
            self.warm = True
            freeze_startup_heap()
            if not isinstance(value, Exception):  # each feature reports its own import problem
                self.pane("mechanisms").set_specs(value)
        elif message.key == "export":
            self._exported(value)

    def _tree_loaded(self, entries: list) -> None:
        self.entries = entries
        if self.current is not None:
            self.current = next((e for e in entries if e.path == self.current.path), None)
        for pane in self.panes:
            pane.tree_loaded(entries)
        if self.current is not None:  # its status or weights may have changed on disk
            for pane in self.panes:
                pane.model_changed(self.current)
        self.tree_ready = True

    def select_entry(self, entry) -> None:
        if entry is not None and entry is self.current:
            return
        self.current = entry
        for pane in self.panes:
            pane.model_changed(entry)

    def action_reload(self) -> None:
        self.tree_ready = False
        self.discover_tree()
        self.notify(f"rediscovering {self.tree_root} …")

    def run_finished(self, folder: Path) -> None:
        """A followed run ended: if it lives in the tree or the runs folder, list it anew, so that
        its weights open in every pane."""
        for root in (self.tree_root, self.runs_dir):
            try:
                Path(folder).resolve().relative_to(root.resolve())
            except (ValueError, OSError):
                continue
            self.tree_ready = False
            self.discover_tree()
            return

    # --- global actions -----------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"
        self.settings.set("theme", self.theme)

    def action_exports(self) -> None:
        from hmmrnn_tui.help import ExportsScreen

        self.push_screen(ExportsScreen(self.exports, self.exports_dir))

    def action_export(self) -> None:
        try:
            targets = self.active_pane.export_targets()
        except LookupError as exc:
            self.notify(str(exc), title="nothing to export", severity="warning")
            return
        self.notify(f"exporting {', '.join(t[0] for t in targets)} …")
        self.export_worker(targets)

    def export_worker(self, targets: list[tuple[str, Any, Any]]) -> None:
        """Render the view's figures from the results on screen, with the parameters they were
        computed with (nothing is recomputed)."""
        from hmmrnn import api

        store, out, device = self.store, self.exports_dir, self.device

        def export() -> list:
            written = []
            for figure, run, target, *rest in targets:
                view = rest[0] if rest else None
                if figure.startswith("analysis:"):
                    names = [n for n, f in api.figures().items() if f.analysis == figure[9:]]
                else:
                    names = [figure]
                if not names:
                    raise LookupError(f"no publication figure draws {figure[9:]} yet")
                if hasattr(target, "status"):  # a tree entry: hand over the loaded model
                    target = store.get(target)
                for name in names:
                    written.append(
                        api.export_figure(
                            name, target, run=run, out_dir=out, device=device, view=view
                        )
                    )
            return written

        jobs.fetch(self, "export", export)

    def _exported(self, value) -> None:
        if isinstance(value, Exception):
            self.notify(jobs.error_text(value), title="export failed", severity="error", timeout=8)
            return
        self.exports.extend(value)
        lines = [_stem_line(e.paths) for e in value if e.paths]
        if lines:
            self.notify("\n".join(lines), title=f"exported into {self.exports_dir}", timeout=10)

    def action_responsiveness(self) -> None:
        paint = "–" if self.first_paint is None else f"{self.first_paint:.2f} s"
        self.notify(
            f"first paint {paint} after process start; longest UI stall "
            f"{self.stalls.max_stall * 1000:.0f} ms over {self.stalls.ticks} ticks",
            title="responsiveness",
        )

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for i, (pid, cls) in enumerate(PANES, start=1):
            yield SystemCommand(
                f"Go to {cls.TITLE} ({i})",
                f"Show the {cls.TITLE} pane",
                lambda pid=pid: self.action_show_pane(pid),
            )
        yield SystemCommand(
            "Export current view", "Publication figure into exports/ (ctrl+s)", self.action_export
        )
        yield SystemCommand(
            "Exports of this session", "Every file written, with its full path (f9)",
            self.action_exports,
        )  # fmt: skip
        yield SystemCommand(
            "Reload model tree", "Rediscover models on disk (ctrl+l)", self.action_reload
        )
        yield SystemCommand("Help", "All keys, pane by pane (?)", self.action_help)
        yield SystemCommand("Toggle dark/light theme", "ctrl+t", self.action_toggle_theme)
        yield SystemCommand(
            "Show responsiveness",
            "First-paint time and longest UI stall",
            self.action_responsiveness,
        )
        for pid, _ in PANES:
            for title, help_text, callback in self.pane(pid).commands():
                yield SystemCommand(title, help_text, self._in_pane(pid, callback))

    def _in_pane(self, pid: str, callback):
        def run() -> None:
            # Focus moves into the pane too: TabbedContent follows the focus, and the palette
            # hands the focus back to where it was when it closes.
            self.action_show_pane(pid)
            callback()

        return run


RUNS_NODE = "Runs"


def discover_all(tree_root: Path, runs_dir: Path) -> tuple[list, str]:
    """The tree's models, then the runs of --runs under a "Runs" node (running, finished,
    cancelled, failed: each a model like any other once it has weights), and what went wrong."""
    from hmmrnn import api

    entries, problem = [], ""
    try:
        entries = api.discover(tree_root)
    except api.UserError as exc:
        problem = str(exc)
    inside = False
    try:
        runs_dir.resolve().relative_to(tree_root.resolve())
        inside = True  # already listed with the tree
    except (ValueError, OSError):
        pass
    if runs_dir.is_dir() and not inside:
        for entry in api.discover(runs_dir):
            entry.rel = f"{RUNS_NODE}/{entry.rel}"
            entries.append(entry)
    return entries, problem


def binding_ids(app: App) -> list[str]:
    """Every binding id of the app and its panes (what a keymap may name)."""
    from hmmrnn_tui.fields import Field
    from hmmrnn_tui.help import ExportsScreen, HelpScreen
    from hmmrnn_tui.paramform import ParamForm

    classes = [type(app), *(cls for _, cls in PANES), Field, HelpScreen, ExportsScreen, ParamForm]
    return [b.id for cls in classes for b in cls.BINDINGS if isinstance(b, Binding) and b.id]


def _stem_line(paths: list) -> str:
    """`exports/x_pca-2d_20250101-120000.{pdf,svg,png}` for one figure's files."""
    first = Path(paths[0])
    suffixes = ",".join(Path(p).suffix.lstrip(".") for p in paths)
    return f"{first.with_suffix('')}.{{{suffixes}}}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hmmrnn-tui", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "tree", nargs="?", type=Path, default=None,
        help="model tree (default ./TrainedModels, else the shipped models)",
    )  # fmt: skip
    p.add_argument(
        "--runs", type=Path, default=Path("runs"), help="where new runs go (default runs/)"
    )
    p.add_argument("--exports", type=Path, default=Path("exports"), help="figure folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N for analyses")
    p.add_argument(
        "--first-paint", action="store_true", help="print the time to first paint and exit"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from hmmrnn import api

    args = parse_args(argv)
    note = ""
    if args.tree is None:
        args.tree, note = api.default_tree()
    app = HmmrnnApp(
        args.tree,
        runs_dir=args.runs,
        exports_dir=args.exports,
        device=args.device,
        exit_after_paint=args.first_paint,
        start_note=note,
    )
    result = app.run(headless=args.first_paint and os.environ.get("HMMRNN_TUI_HEADLESS") == "1")
    if args.first_paint and result is not None:
        loaded = "loaded" if app.torch_at_paint else "not loaded"
        print(f"first paint {result:.3f} s after process start (torch {loaded} at paint)")
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
