"""Shared fixtures: tiny models and trees written in the study's exact format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hmmrnn.config import ExperimentConfig


def study_state(input_size=4, hidden=12, outputs=3, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "rnn.weight_ih_l0": torch.randn(hidden, input_size, generator=g) * 0.3,
        "rnn.weight_hh_l0": torch.randn(hidden, hidden, generator=g) * 0.2,
        "fc.weight": torch.randn(outputs, hidden, generator=g),
    }


def write_study_model(
    folder: Path,
    state: dict | None = None,
    config: dict | None = None,
    name: str = "3HMM_3Outputs_linear_30kData_0.001lr_4.1Loss.pth",
) -> Path:
    """A model folder exactly as the study saved them: config.json + models/<name>.pth."""
    state = state if state is not None else study_state()
    cfg = (
        config
        if config is not None
        else ExperimentConfig.from_dict(
            {
                "states": 3,
                "input_size": state["rnn.weight_ih_l0"].shape[1],
                "hidden_size": state["rnn.weight_hh_l0"].shape[0],
                "seq_len": 10,
            }
        ).to_dict()
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "models").mkdir(exist_ok=True)
    torch.save(state, folder / "models" / name)
    return folder / "models" / name


@pytest.fixture
def study_tree(tmp_path) -> Path:
    root = tmp_path / "TrainedModels"
    write_study_model(root / "Three" / "hidden_12" / "input_4" / "seed_0")
    write_study_model(root / "Fully_Connected" / "Seed 1", study_state(seed=1))
    return root


@pytest.fixture(autouse=True)
def _private_tui_settings(tmp_path, monkeypatch):
    """The workbench never reads or writes the user's own settings file in tests."""
    monkeypatch.setenv("HMMRNN_TUI_SETTINGS", str(tmp_path / "tui-settings.json"))


class HostReads:
    """Counts the places in hmmrnn's own code that read a tensor back to the host.

    On CUDA each of these (bool(), float(), .item(), .cpu(), torch.equal ...) waits for the device;
    on the CPU they cost nothing, so the count is what a test on this machine can check. Calls
    made inside torch itself (the optimizer's step counter) are not ours and are not counted.
    """

    _METHODS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy", "cpu")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import sys

        import hmmrnn

        self.calls: list[str] = []
        root = str(Path(hmmrnn.__file__).resolve().parent)

        def counted(name, original):
            def wrapper(*args, **kwargs):
                frame = sys._getframe(1)
                if str(Path(frame.f_code.co_filename).resolve()).startswith(root):
                    self.calls.append(f"{name} at {frame.f_code.co_filename}:{frame.f_lineno}")
                return original(*args, **kwargs)

            return wrapper

        for name in self._METHODS:
            monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        monkeypatch.setattr(torch, "equal", counted("torch.equal", torch.equal))


@pytest.fixture
def host_reads(monkeypatch) -> HostReads:
    return HostReads(monkeypatch)
