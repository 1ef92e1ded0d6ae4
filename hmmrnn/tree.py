"""The model tree: discover, load and save models in the study's `TrainedModels` layout.

A model folder holds `config.json` and a `models/` folder with the weights (study file names such as
`3HMM_3Outputs_linear_30kData_0.001lr_4.1Loss.pth`) and optional `models/evolution/model_epoch_N.pth`.
Our run folders add `metrics.jsonl`, `run.json`, `checkpoint.pt` and `evaluation.json`. Discovery never
stops at a broken entry: it is listed with the reason, and the rest are still found.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.errors import UserError
from hmmrnn.io import ModelFileError, atomic_torch_save, safe_torch_load

CONFIG_NAME = "config.json"
MODELS_DIR = "models"
EVOLUTION_DIR = "evolution"
METRICS_NAME = "metrics.jsonl"
RUN_NAME = "run.json"
CHECKPOINT_NAME = "checkpoint.pt"
EVALUATION_NAME = "evaluation.json"

_LOSS_RE = re.compile(r"_(-?[0-9.]+(?:e-?[0-9]+)?)Loss\.pth$")
_EPOCH_RE = re.compile(r"model_epoch_(\d+)\.pth$")


@dataclass
class ModelEntry:
    """One model folder found in a tree, with its status and what is known without loading torch."""

    path: Path
    rel: str
    status: str = "ok"  # ok | broken | training
    reason: str = ""
    model_file: Path | None = None
    config: ExperimentConfig | None = None
    sizes: tuple[int, int, int] | None = None  # input, hidden, output (from the weights)
    warnings: list[str] = field(default_factory=list)
    evolution: list[tuple[int, Path]] = field(default_factory=list)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(Path(self.rel).parts)

    @property
    def name(self) -> str:
        return self.rel


@dataclass
class LoadedModel:
    """A model ready for analysis: the network, its config and where it came from."""

    model: object  # HMMRNN; typed loosely to keep torch out of import time
    config: ExperimentConfig
    model_file: Path
    folder: Path


def model_file_name(config: ExperimentConfig, lr: float, loss: float) -> str:
    """The study's naming: `{M}HMM_{K}Outputs_{emission}_{N}kData_{lr}lr_{loss}Loss.pth`."""
    data = f"{config.num_seq / 1000:g}k"
    return (
        f"{config.states}HMM_{config.outputs}Outputs_{config.emission_method}_{data}Data_"
        f"{lr:g}lr_{loss:.1f}Loss.pth"
    )


def _loss_from_name(path: Path) -> float:
    m = _LOSS_RE.search(path.name)
    try:
        return float(m.group(1)) if m else float("inf")
    except ValueError:
        return float("inf")


def pick_model_file(folder: Path) -> Path | None:
    """The best weights in a folder: lowest loss in the study's name, else the newest .pth."""
    candidates = []
    for sub in (folder / MODELS_DIR, folder):
        if sub.is_dir():
            candidates += [p for p in sub.iterdir() if p.suffix == ".pth" and p.is_file()]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (_loss_from_name(p), -p.stat().st_mtime, p.name))


def evolution_files(folder: Path) -> list[tuple[int, Path]]:
    """Per-epoch checkpoints sorted by epoch."""
    evo = folder / MODELS_DIR / EVOLUTION_DIR
    if not evo.is_dir():
        return []
    found = []
    for p in evo.rglob("model_epoch_*.pth"):
        m = _EPOCH_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_config(model_file: Path) -> Path | None:
    """config.json beside `models/`, or beside the weights themselves."""
    for folder in (model_file.parent.parent, model_file.parent):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def load_state(path: Path):
    """Weights of any supported file: a bare state dict or our checkpoint with a `model` key."""
    state = safe_torch_load(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path.name}: holds a {type(state).__name__}, not a state dict")
    return state


def build_model(path: Path, tau: float = 1.0):
    """Load weights into an HMMRNN sized from the weights; errors name the file and the problem."""
    from hmmrnn.rnn import HMMRNN

    state = load_state(path)
    try:
        return HMMRNN.from_state_dict(state, tau=tau)
    except ValueError as exc:
        raise ModelFileError(f"{path.name}: {exc}") from exc


def model_folder(path: Path) -> Path:
    """The model folder of a folder or of a weights file inside it."""
    return _folder_for(path)[0]


def _folder_for(path: Path) -> tuple[Path, Path | None]:
    """(model folder, weights file or None) for a folder or a .pth path."""
    if path.is_file():
        folder = path.parent.parent if path.parent.name == MODELS_DIR else path.parent
        if path.parent.name == EVOLUTION_DIR:
            folder = path.parent.parent.parent
        return folder, path
    return path, pick_model_file(path)


def load_model(path: str | Path, device: str | None = None) -> LoadedModel:
    """Load a model from its folder or from a .pth file, with its config."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder")
    folder, model_file = _folder_for(path)
    if model_file is None:
        raise ModelFileError(
            f"{folder}: no .pth weights found (looked in {MODELS_DIR}/ and the folder)"
        )
    cfg_path = find_config(model_file)
    if cfg_path is None:
        raise ConfigError(f"{folder}: missing {CONFIG_NAME}")
    config = ExperimentConfig.load(cfg_path)
    model = build_model(model_file, tau=config.tau)
    if device is not None:
        from hmmrnn.device import resolve_device

        model = model.to(resolve_device(device))
    model.eval()
    return LoadedModel(model=model, config=config, model_file=model_file, folder=cfg_path.parent)


def cpu_state(model) -> dict:
    """A detached CPU copy of a model's weights (a real copy: later training cannot change it)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_model(
    folder: Path, model_or_state, config: ExperimentConfig, lr: float, loss: float
) -> Path:
    """Write config.json and the weights (a model or its CPU state dict) under the study's name;
    returns the weights path."""
    folder = Path(folder)
    config.save(folder / CONFIG_NAME)
    target = folder / MODELS_DIR / model_file_name(config, lr, loss)
    state = model_or_state if isinstance(model_or_state, dict) else cpu_state(model_or_state)
    atomic_torch_save(target, state)
    return target


# --- discovery ------------------------------------------------------------------------------------


def _is_model_folder(folder: Path, names: list[str]) -> bool:
    if CONFIG_NAME in names or RUN_NAME in names:
        return True
    if MODELS_DIR in names and (folder / MODELS_DIR).is_dir():
        return True
    return any(n.endswith(".pth") for n in names)


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_json(path: Path) -> dict:
    """A JSON object file as a dict ({} when absent, unreadable or not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_run_info(folder: Path) -> dict:
    """run.json as a dict ({} when absent or unreadable)."""
    return read_json(Path(folder) / RUN_NAME)


def is_running(folder: Path) -> bool:
    info = read_run_info(folder)
    return info.get("status") == "running" and pid_alive(info.get("pid"))


def inspect_folder(folder: Path, root: Path) -> ModelEntry:
    """Check one model folder: config, weights, shapes and values."""
    rel = str(folder.relative_to(root)) if folder != root else folder.name
    entry = ModelEntry(path=folder, rel=rel)
    entry.evolution = evolution_files(folder)
    running = is_running(folder)
    try:
        entry.config = ExperimentConfig.load(folder / CONFIG_NAME)
    except ConfigError as exc:
        reason = f"missing {CONFIG_NAME}" if not (folder / CONFIG_NAME).exists() else str(exc)
        return _broken(entry, reason.replace(str(folder) + "/", ""), running)
    entry.model_file = pick_model_file(folder)
    if entry.model_file is None:
        return _broken(entry, "no .pth weights in models/", running)
    try:
        model = build_model(entry.model_file)
    except ModelFileError as exc:
        return _broken(entry, str(exc), running)
    entry.sizes = (model.input_size, model.hidden_size, model.output_size)
    entry.warnings = _config_mismatch(entry.config, entry.sizes)
    if entry.config.unknown_keys:
        entry.warnings.append(f"unknown config keys kept: {', '.join(entry.config.unknown_keys)}")
    entry.status = "training" if running else "ok"
    return entry


def _broken(entry: ModelEntry, reason: str, running: bool) -> ModelEntry:
    entry.status = "training" if running else "broken"
    entry.reason = reason
    return entry


def _config_mismatch(config: ExperimentConfig, sizes: tuple[int, int, int]) -> list[str]:
    said = (config.input_size, config.hidden_size, config.outputs)
    names = ("input_size", "hidden_size", "outputs")
    return [
        f"config {n}={s} but the weights have {w} (the weights are used)"
        for n, s, w in zip(names, said, sizes, strict=True)
        if s != w
    ]


def discover(root: str | Path) -> list[ModelEntry]:
    """Every model folder under root, sorted naturally; broken ones carry their reason."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    if _is_model_folder(root, [p.name for p in root.iterdir()]):
        return [inspect_folder(root, root.parent)]
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if folder != root and _is_model_folder(folder, filenames + dirnames):
            entries.append(inspect_folder(folder, root))
            dirnames[:] = []  # models/ and evolution/ belong to this entry
    return sorted(entries, key=lambda e: natural_key(e.rel))


def natural_key(text: str) -> list:
    """Sort `hidden_50` before `hidden_150`."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]
