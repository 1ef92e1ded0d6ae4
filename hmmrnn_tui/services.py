"""The library calls the panes make, wrapped for use from worker threads (no textual here).

Everything heavy (torch, the analyses, evaluation) is imported inside these functions, never at
module import, so the app paints before torch is loaded. Loaded models and evaluations are cached
per weights file (path + mtime) because moving the selection back and forth must not reload them.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hmmrnn_tui.runs import read_json

EVALUATION_DEFAULTS: dict[str, Any] = {
    "num_sequences": 5000,
    "seq_len": None,
    "seed": 0,
    "method": "assignment",
}


def _stamp(path: Path) -> tuple[str, float]:
    try:
        return str(path.resolve()), path.stat().st_mtime
    except OSError:
        return str(path), 0.0


class ModelStore:
    """Thread-safe cache of LoadedModel keyed by weights file and its mtime."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._models: dict[tuple[str, float], Any] = {}

    def get(self, entry) -> Any:
        from hmmrnn.tree import load_model

        if entry.status == "broken":
            raise ValueError(f"{entry.rel} is broken: {entry.reason}")
        if entry.model_file is None:
            raise ValueError(f"{entry.rel} has no weights yet")
        key = _stamp(entry.model_file)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(entry.model_file, device=self.device)
            return self._models[key]


def discover(root: Path) -> list:
    from hmmrnn.tree import discover as _discover

    return _discover(root)


def model_details(entry) -> dict:
    """`hmmrnn info` as data for a healthy entry; for others what is known without loading.

    `config_file` holds config.json as written (the study's files name only their own keys; the
    rest take defaults), which is what the details panel shows.
    """
    info = _model_details(entry)
    info["config_file"] = read_json(Path(entry.path) / "config.json")
    return info


def _model_details(entry) -> dict:
    from hmmrnn.cli.common import UserError
    from hmmrnn.cli.model_cmds import entry_row, model_info
    from hmmrnn.tree import read_run_info

    if entry.status == "ok" or (entry.status == "training" and entry.model_file is not None):
        try:
            info = model_info(entry.path)
            info["model"] = entry.rel  # model_info names the folder alone
            info["run_time"] = run_time(info.get("run") or {}, entry.path)
            return info
        except UserError as exc:
            return {**entry_row(entry), "status": "broken", "reason": str(exc), "files": []}
    info = entry_row(entry)
    info["run"] = read_run_info(entry.path)
    info["run_time"] = run_time(info["run"], entry.path)
    info["files"] = sorted(
        str(p.relative_to(entry.path)) for p in entry.path.rglob("*") if p.is_file()
    )
    if entry.config is not None:
        hmm = entry.config.build_hmm()
        info["transition"] = hmm.transition.round(4).tolist()
        info["emission"] = hmm.emission.round(4).tolist()
        info["config"] = entry.config.to_dict()
    return info


def run_time(run: dict, folder: Path) -> float | None:
    """Wall time of the run as recorded by the trainer (run.json), else the logged epoch times."""
    started, updated = run.get("started"), run.get("updated")
    if isinstance(started, (int, float)) and isinstance(updated, (int, float)):
        return float(updated - started)
    from hmmrnn.train import read_metrics

    secs = [m.get("seconds") for m in read_metrics(folder)]
    secs = [s for s in secs if isinstance(s, (int, float))]
    return float(sum(secs)) if secs else None


def load_evaluation(folder: Path):
    """The evaluation saved beside a model (evaluation.json), or None."""
    from hmmrnn.evaluate import EvaluationResult
    from hmmrnn.tree import EVALUATION_NAME

    path = Path(folder) / EVALUATION_NAME
    if not path.is_file():
        return None
    try:
        return EvaluationResult.load(path)
    except (ValueError, OSError, KeyError, TypeError):
        return None


def evaluate(entry, device: str, params: dict | None = None):
    """Evaluate a model against its HMM (as `hmmrnn evaluate` does) and save evaluation.json."""
    from hmmrnn.cli.model_cmds import evaluate_path

    args = argparse.Namespace(**{**EVALUATION_DEFAULTS, **(params or {})})
    args.device = device
    args.no_save = False
    result, _ = evaluate_path(entry.path, args)
    return result


def cross_row(entry) -> dict:
    """One row of the cross-model table: the listing facts plus the saved evaluation."""
    from hmmrnn.cli.model_cmds import entry_row

    row = entry_row(entry)
    ev = load_evaluation(entry.path) if entry.status == "ok" else None
    row.update(eval_columns(ev))
    return row


def eval_columns(ev) -> dict:
    """The cross-model table's evaluation columns of a result (None without one), written in one
    place so the rows built at load time and those updated after an evaluation stay alike."""
    return {
        "distance_ratio": None if ev is None else ev.distance_ratio,
        "transition_error": None if ev is None else ev.transition_error,
    }


def analyse(
    name: str,
    loaded,
    params: dict,
    progress: Callable[[float, str], None],
    cancel,
) -> tuple[Any, list[tuple[str, str]]]:
    """Run (or fetch from the shared cache) a registered analysis; returns it with its summary."""
    from hmmrnn.analyses.registry import get_spec, run_analysis

    result = run_analysis(name, loaded, params, progress=progress, cancel=cancel)
    return result, [(str(k), str(v)) for k, v in get_spec(name).summary(result)]


def prewarm() -> None:
    """Import what evaluation and export will need (see HmmrnnApp.prewarm)."""
    import hmmrnn.evaluate  # noqa: F401
    import hmmrnn.figures  # noqa: F401


def analysis_specs() -> dict:
    from hmmrnn.analyses.registry import all_specs

    return all_specs()


def parse_params(text: str, spec) -> dict:
    """`steps=200 noise_std=0.5 mus=[0,1]` into typed parameters, validated like the CLI's flags."""
    import shlex

    from hmmrnn.cli.analyze_cmd import parse_params as _parse

    tokens = []
    for item in shlex.split(text):
        if "=" not in item:
            raise ValueError(f"expected name=value, got {item!r}")
        tokens.append("--" + item)
    return _parse(tokens, spec.defaults, spec.name)
