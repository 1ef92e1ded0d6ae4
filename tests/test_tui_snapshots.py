"""Snapshot tests of the main screen at 80x24 and 160x48 on a fixed tree.

The tree is written from seeded weights and the app shows only the tree's name and paths relative
to it, so the screen does not depend on where pytest puts its temporary folder. Update with
`pytest tests/test_tui_snapshots.py --snapshot-update` after an intended change, and look at the
SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import time

import pytest

from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn_tui.app import HmmrnnApp
from tests.conftest import study_state, write_study_model

# A config.json as the study wrote them: its own keys only (new library keys take defaults and
# must not change this screen).
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


@pytest.fixture
def fixed_tree(tmp_path):
    set_cache(ResultCache(tmp_path / "cache"))
    root = tmp_path / "TrainedModels"
    seeds = {"Three/hidden_12/input_4/seed_0": 0, "Three/hidden_12/input_4/seed_1": 1,
             "Fully_Connected/Seed 1": 2, "Three/hidden_12/input_4/seed_2": 3}  # fmt: skip
    for rel, seed in seeds.items():
        write_study_model(root / rel, study_state(seed=seed), config=STUDY_CONFIG)
    (root / "Three/hidden_12/input_4/seed_2/models").iterdir().__next__().write_text("garbage")
    yield root
    set_cache(None)


async def _settled(pilot) -> None:
    """Wait until the tree is shown and the details of the first model are on screen."""
    app = pilot.app
    browser = app.pane("models")
    end = time.monotonic() + 60
    while not (
        app.tree_ready
        and app.current is not None
        and browser.details_info.get("model") == app.current.rel
    ):
        assert time.monotonic() < end, "the app did not settle"
        await pilot.pause(0.05)
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen(snap_compare, fixed_tree, tmp_path, size):
    app = HmmrnnApp(
        fixed_tree, runs_dir=tmp_path / "runs", exports_dir=tmp_path / "x", device="cpu"
    )
    assert snap_compare(app, terminal_size=size, run_before=_settled)
