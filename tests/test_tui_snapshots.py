"""Snapshot tests of every pane (Models, Metrics, State space, Training, Mechanisms, Help, the
command palette) at 80x24 and 120x36, in the dark and the light theme, from fixed data.

The tree is written from seeded weights; the Metrics pane shows a saved evaluation, State space and
Mechanisms show results computed with small fixed parameters (deterministic), and the Training pane
follows a finished run whose log and status are written by the test (fixed times, so no clock shows
on screen). Paths are shown relative to the tree, so the screen does not depend on where pytest
puts its temporary folder. Update with `pytest tests/test_tui_snapshots.py --snapshot-update`
after an intended change, look at the SVGs under tests/__snapshots__/ before committing them, and
copy the Models one at 120x36 (dark) to docs/screenshot.svg.
"""

from __future__ import annotations

import json
import time

import pytest

from hmmrnn import api
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.config import ExperimentConfig
from hmmrnn_tui.app import HmmrnnApp
from hmmrnn_tui.settings import Settings
from tests.conftest import study_state, write_study_model

# A config.json as the study wrote them: its own keys only (new library keys take defaults and
# must not change these screens).
STUDY_CONFIG = {
    "states": 3,
    "outputs": 3,
    "stay_prob": 0.95,
    "target_prob": 0.05,
    "transition_method": "target_prob",
    "emission_method": "linear",
    "num_seq": 30000,
    "seq_len": 30,
    "input_size": 4,
    "hidden_size": 12,
    "batch_size": 4096,
    "epochs": 500,
    "learning_rates": [0.001],
    "grad_clip": 0.9,
}
FIRST = "Fully_Connected/Seed 1"  # the model selected at start (first in the tree)
SMALL = {
    "pca": {"steps": 200},
    "trajectories": {"n_starts": 6, "autonomous_steps": 15, "n_traj": 2, "driven_steps": 30,
                     "pca_steps": 200},
    "fixed-points": {"n_starts": 8, "iters": 40, "pca_steps": 200},
    "residency": {"n_states": 120, "n_samples": 4, "max_steps": 12, "pca_steps": 200},
}  # fmt: skip


@pytest.fixture
def fixed_tree(tmp_path):
    set_cache(ResultCache(tmp_path / "cache"))
    root = tmp_path / "TrainedModels"
    seeds = {"Three/hidden_12/input_4/seed_0": 0, "Three/hidden_12/input_4/seed_1": 1,
             FIRST: 2, "Three/hidden_12/input_4/seed_2": 3}  # fmt: skip
    for rel, seed in seeds.items():
        write_study_model(root / rel, study_state(seed=seed), config=STUDY_CONFIG)
    (root / "Three/hidden_12/input_4/seed_2/models").iterdir().__next__().write_text("garbage")
    api.evaluate(root / FIRST, {"num_sequences": 60, "seq_len": 12, "long_runs": 4})
    yield root
    set_cache(None)


def finished_run(folder):
    """A finished run folder with a fixed log and status (no wall-clock time on screen)."""
    config = ExperimentConfig.from_preset("Two", hidden_size=8, input_size=3, epochs=6)
    folder.mkdir(parents=True)
    config.save(folder / "config.json")
    lines = [
        {
            "epoch": e,
            "lr": 0.001,
            "train_loss": 14 - e * 0.6,
            "val_loss": 14.2 - e * 0.55,
            "floor": 9.8,
            "seconds": 1.0,
            "best_val": 14.2 - e * 0.55,
        }
        for e in range(1, 7)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "run.json").write_text(json.dumps({
        "status": "finished", "pid": 2**22 + 5, "host": "snapshot", "started": 1.7e9,
        "updated": 1.7e9 + 6, "epochs_done": 6, "total_epochs": 6, "best_val": 10.9,
        "floor": 9.8, "message": ""}))  # fmt: skip
    return folder


async def _settled(pilot) -> None:
    """The tree shown, the first model's details on screen, the analysis stack loaded."""
    app = pilot.app
    browser = app.pane("models")
    end = time.monotonic() + 60
    while not (
        app.tree_ready
        and app.warm
        and app.current is not None
        and browser.details_info.get("model") == app.current.rel
    ):
        assert time.monotonic() < end, "the app did not settle"
        await pilot.pause(0.05)
    await pilot.pause(0.2)


async def _until(pilot, cond) -> None:
    end = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < end, "the pane did not settle"
        await pilot.pause(0.05)
    await pilot.pause(0.3)


def _runs(app, names):
    entry = app.current
    loaded = app.store.get(entry)
    for name in names:
        app.results[(str(entry.path), name)] = api.analyze(loaded, name, SMALL[name])


async def models(pilot) -> None:
    await _settled(pilot)


async def metrics(pilot) -> None:
    await _settled(pilot)
    await pilot.press("2")
    app = pilot.app
    await _until(pilot, lambda: str(app.current.path) in app.evaluations)


async def statespace(pilot) -> None:
    await _settled(pilot)
    _runs(pilot.app, ("pca", "trajectories", "fixed-points"))
    await pilot.press("3")
    await pilot.pause(0.5)


async def training(pilot) -> None:
    await _settled(pilot)
    app = pilot.app
    pane = app.pane("training")
    await pilot.press("4")
    pane.follow(api.follow(finished_run(app.runs_dir / "snapshot_run")))
    await _until(pilot, lambda: pane.reported and app.tree_ready)
    app.clear_notifications()  # they name the temporary folder
    await pilot.pause(0.3)


async def mechanisms(pilot) -> None:
    await _settled(pilot)
    _runs(pilot.app, ("residency",))
    await pilot.press("5")
    await pilot.pause(0.5)


async def help_screen(pilot) -> None:
    await _settled(pilot)
    await pilot.press("question_mark")
    await pilot.pause(0.3)


async def palette(pilot) -> None:
    await _settled(pilot)
    await pilot.press("ctrl+p")
    await pilot.pause(0.3)
    from textual.command import CommandList
    from textual.widgets import Input

    pilot.app.screen.query_one(Input).cursor_blink = False  # a blinking cursor: half the time
    await pilot.press(*"table as csv")  # one match: equal scores would come in any order
    # the palette searches in the background: wait for its one result, then for the list to draw
    await _until(pilot, lambda: pilot.app.screen.query(CommandList)
                 and pilot.app.screen.query_one(CommandList).option_count == 1)  # fmt: skip
    await pilot.pause(0.5)


VIEWS = {f.__name__: f for f in (models, metrics, statespace, training, mechanisms, help_screen,
                                 palette)}  # fmt: skip


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=["80x24", "120x36"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_pane(snap_compare, fixed_tree, tmp_path, view, size, theme):
    settings = Settings(tmp_path / "settings.json")
    settings.data["theme"] = f"textual-{theme}"
    app = HmmrnnApp(
        fixed_tree, runs_dir=tmp_path / "runs", exports_dir=tmp_path / "x", device="cpu",
        settings=settings, poll_interval=0.1,
    )  # fmt: skip
    assert snap_compare(app, terminal_size=size, run_before=VIEWS[view])
