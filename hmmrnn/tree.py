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
from hmmrnn.io import ModelFileError, atomic_torch_save, parse_records, safe_torch_load
from hmmrnn.process_pool import map_in_processes, worker_count
from hmmrnn.runstate import (  # noqa: F401 - re-exported
    CHECKPOINT_NAME,
    METRICS_NAME,
    RUN_NAME,
    is_running,
    pid_alive,
    run_state,
)

CONFIG_NAME = "config.json"
MODELS_DIR = "models"
EVOLUTION_DIR = "evolution"
EVALUATION_NAME = "evaluation.json"
RESULTS_NAME = "training_results.json"  # the research code's loss curves

_LOSS_RE = re.compile(r"_(-?[0-9.]+(?:e-?[0-9]+)?)Loss\.pth$")
_EPOCH_RE = re.compile(r"model_epoch_(\d+)\.pth$")
_STUDY_NAME = re.compile(r"^(\d+)HMM_(\d+)Outputs_([A-Za-z]+)_")
# Folder names of the study's tree -> the preset whose HMM they hold.
_FOLDER_PRESET = {
    "two": "Two", "three": "Three", "four": "Four", "five": "Five", "fully_connected": "Fully",
    "fully": "Fully", "cyclic": "Cyclic", "reverseengineeredmodel": "Two",
}  # fmt: skip


@dataclass(frozen=True)
class CurveSummary:
    """What a listing shows of a run's curves: the best validation loss, the HMM's own loss
    (what a perfect model gets) and how many epoch records there are."""

    best_val: float | None
    floor: float | None
    epochs: int


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
    config_inferred: bool = False  # no config.json: HMM from the file name and folder
    run_status: str = ""  # what run.json says (running, finished, cancelled, diverged, failed)
    summary: CurveSummary | None = None  # filled by discover(summaries=True), for listings

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
    config_inferred: bool = False


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


def model_candidates(folder: Path) -> list[Path]:
    """Every weights file of a folder: in models/, or directly in the folder (the study's
    ReverseEngineeredModel/ is one flat .pth)."""
    found = []
    for sub in (folder / MODELS_DIR, folder):
        try:
            found += [p for p in sub.iterdir() if p.suffix == ".pth" and p.is_file()]
        except OSError:
            continue
    return found


def pick_model_file(
    folder: Path, info: dict | None = None, candidates: list[Path] | None = None
) -> Path | None:
    """The model's weights: the file run.json names (what its trainer saved last), else the lowest
    loss in the study's file names, else the newest. `info` (run.json) and `candidates` are what
    the caller has already read, if it has."""
    named = (read_run_info(folder) if info is None else info).get("model_file")
    if isinstance(named, str) and named and (folder / named).is_file():
        return folder / named
    candidates = model_candidates(folder) if candidates is None else candidates
    if not candidates:
        return None
    return min(candidates, key=lambda p: (_loss_from_name(p), -_mtime(p), p.name))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def choice_note(
    folder: Path, chosen: Path, info: dict | None = None, candidates: list[Path] | None = None
) -> str:
    """Why these weights, when a folder holds several ('' when there is only one)."""
    candidates = model_candidates(folder) if candidates is None else candidates
    if len(candidates) < 2:
        return ""
    newest = max(candidates, key=_mtime)
    named = (read_run_info(folder) if info is None else info).get("model_file")
    why = "named by run.json" if named else "lowest loss in its name"
    note = f"{len(candidates)} weight files; using {chosen.name} ({why})"
    if newest != chosen:
        note += f"; the research code would take the newest, {newest.name}"
    return note


def infer_config(folder: Path, model_file: Path, sizes: tuple[int, int, int]) -> ExperimentConfig:
    """A config for a study folder without config.json: the HMM from the weights' file name
    (`<M>HMM_<K>Outputs_<emission>_...`) and the preset its folders name, the sizes from the
    weights. ConfigError when neither says which HMM."""
    input_size, hidden, outputs = sizes
    sized = {"input_size": input_size, "hidden_size": hidden, "outputs": outputs}
    m = _STUDY_NAME.match(model_file.name)
    preset = next(
        (
            _FOLDER_PRESET[p.lower()]
            for p in reversed(Path(folder).parts)
            if p.lower() in _FOLDER_PRESET
        ),
        None,
    )
    if preset is not None:
        from hmmrnn.hmm import get_preset

        if m is None or int(m.group(1)) == get_preset(preset).states:
            return ExperimentConfig.from_preset(preset, **sized)
    if m is None:
        raise ConfigError(
            f"no {CONFIG_NAME}, and neither the weights' file name nor the folder says which HMM"
        )
    states, named_outputs, emission = int(m.group(1)), int(m.group(2)), m.group(3)
    if named_outputs != outputs:
        raise ConfigError(f"the file name says {named_outputs} outputs, the weights have {outputs}")
    return ExperimentConfig.from_dict({"states": states, "emission_method": emission, **sized})


def training_curves(folder: Path) -> list[dict]:
    """The run's epoch records: metrics.jsonl (ours), else the research code's
    training_results.json (`training_losses` / `validation_losses` per epoch, for its best lr)."""
    records = read_metrics_records(folder)
    if records:
        return records
    data = read_json(Path(folder) / RESULTS_NAME)
    train, val = data.get("training_losses"), data.get("validation_losses")
    if not isinstance(train, list) or not isinstance(val, list):
        return []
    lr = data.get("best_lr")
    out = []
    for i, (t, v) in enumerate(zip(train, val, strict=False), start=1):
        if isinstance(t, (int, float)) and isinstance(v, (int, float)):
            out.append({"epoch": i, "lr": lr, "train_loss": float(t), "val_loss": float(v),
                        "source": RESULTS_NAME})  # fmt: skip
    return out


def curve_summary(folder: Path) -> CurveSummary:
    metrics = training_curves(folder)
    losses = [m["val_loss"] for m in metrics if isinstance(m.get("val_loss"), (int, float))]
    floors = [m["floor"] for m in metrics if isinstance(m.get("floor"), (int, float))]
    return CurveSummary(min(losses, default=None), floors[0] if floors else None, len(metrics))


def read_metrics_records(folder: Path) -> list[dict]:
    """metrics.jsonl records; a partial or undecodable line (a run writing right now, a damaged
    file) is skipped, never fatal."""
    path = Path(folder) / METRICS_NAME
    try:
        data = path.read_bytes()
    except OSError:
        return []
    return parse_records(data.decode("utf-8", errors="replace").splitlines())


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


def _unwrap(state):
    """A bare state dict, or the `model` entry of our checkpoints."""
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        return state["model"]
    return state


def load_state(path: Path):
    """Weights of any supported file: a bare state dict or our checkpoint with a `model` key."""
    state = _unwrap(safe_torch_load(path))
    if not isinstance(state, dict):
        raise ModelFileError(f"{path.name}: holds a {type(state).__name__}, not a state dict")
    return state


def state_shape(path: Path):
    """Sizes and biases of a weights file, checked (ModelFileError naming the problem).

    Read with numpy where the file is a plain tensor archive (no torch import, a fraction of the
    time per file); anything else is loaded, or refused, by torch as everywhere else.
    """
    from hmmrnn.weights import NotPlain, check_state, read_plain

    try:
        state = _unwrap(read_plain(path))
    except NotPlain:
        state = None
    try:
        return check_state(state if isinstance(state, dict) else load_state(path))
    except ValueError as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path.name}: {exc}") from exc


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
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise ModelFileError(f"{path}: cannot read the folder (permission denied)")
    folder, model_file = _folder_for(path)
    if model_file is None:
        raise ModelFileError(
            f"{folder}: no .pth weights found (looked in {MODELS_DIR}/ and the folder)"
        )
    cfg_path = find_config(model_file)
    inferred = cfg_path is None
    if inferred:
        model = build_model(model_file)
        sizes = (model.input_size, model.hidden_size, model.output_size)
        config = infer_config(folder, model_file, sizes)
    else:
        config = ExperimentConfig.load(cfg_path)
        folder = cfg_path.parent
        model = build_model(model_file, tau=config.tau)
    if device is not None:
        from hmmrnn.device import resolve_device

        model = model.to(resolve_device(device))
    model.eval()
    return LoadedModel(model, config, model_file, folder, config_inferred=inferred)


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
    if CONFIG_NAME in names or RUN_NAME in names or RESULTS_NAME in names:
        return True
    if MODELS_DIR in names and (folder / MODELS_DIR).is_dir():
        return True
    return any(n.endswith(".pth") for n in names)


def read_json(path: Path) -> dict:
    """A JSON object file as a dict ({} when absent, unreadable or not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, 4300+ digits, too deep
        return {}
    return data if isinstance(data, dict) else {}


def read_run_info(folder: Path) -> dict:
    """run.json as a dict ({} when absent or unreadable)."""
    return read_json(Path(folder) / RUN_NAME)


def inspect_folder(folder: Path, root: Path) -> ModelEntry:
    """Check one model folder: config (or what it is inferred from), weights, shapes and values."""
    rel = str(folder.relative_to(root)) if folder != root else folder.name
    entry = ModelEntry(path=folder, rel=rel)
    if not os.access(folder, os.R_OK | os.X_OK):
        return _broken(entry, "cannot read the folder (permission denied)", "absent")
    entry.evolution = evolution_files(folder)
    info = read_run_info(folder)  # read once: the weights' choice and the run state use it too
    status = info.get("status")
    entry.run_status = status if isinstance(status, str) else ""
    has_config = (folder / CONFIG_NAME).exists()
    if has_config:
        try:
            entry.config = ExperimentConfig.load(folder / CONFIG_NAME)
        except ConfigError as exc:
            return _broken(
                entry, str(exc).replace(str(folder) + "/", ""), run_state(folder, info=info)
            )
    candidates = model_candidates(folder)
    entry.model_file = pick_model_file(folder, info, candidates)
    if entry.model_file is None:
        state = run_state(folder, has_weights=False, info=info)
        if state == "interrupted":
            entry.status = "interrupted"
            entry.reason = "no weights yet; resumable with hmmrnn resume"
            return entry
        return _broken(entry, "no .pth weights in models/", state)
    try:
        shape = state_shape(entry.model_file)
    except ModelFileError as exc:
        return _broken(entry, str(exc), run_state(folder, has_weights=True, info=info))
    entry.sizes = (shape.inputs, shape.hidden, shape.outputs)
    has_bias = shape.rnn_bias or shape.fc_bias
    if entry.config is None:
        try:
            entry.config = infer_config(folder, entry.model_file, entry.sizes)
        except ConfigError as exc:
            return _broken(entry, f"missing {CONFIG_NAME}: {exc}", "absent")
        entry.config_inferred = True
        entry.warnings.append(f"config inferred (no {CONFIG_NAME}): {_inferred_what(entry.config)}")
    entry.warnings += _config_mismatch(entry.config, entry.sizes)
    if (entry.config.rnn_bias or entry.config.fc_bias) != has_bias and has_config:
        entry.warnings.append(
            f"config says biased={entry.config.biased} but the weights "
            f"{'have' if has_bias else 'have no'} biases (the weights are used)"
        )
    if entry.config.unknown_keys:
        entry.warnings.append(f"unknown config keys kept: {', '.join(entry.config.unknown_keys)}")
    note = choice_note(folder, entry.model_file, info, candidates)
    if note:
        entry.warnings.append(note)
    state = run_state(folder, has_weights=True, info=info)
    entry.status = "training" if state == "running" else "ok"
    if state == "interrupted":
        entry.warnings.append("training was interrupted; resumable with hmmrnn resume")
    return entry


def _inferred_what(config: ExperimentConfig) -> str:
    return (
        f"{config.preset or 'custom'} HMM, {config.states} states, "
        f"{config.transition_method}/{config.emission_method}"
    )


def _broken(entry: ModelEntry, reason: str, state: str) -> ModelEntry:
    entry.status = "training" if state == "running" else "broken"
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


# A tree of fewer folders is listed faster than a worker process starts (~0.2 s).
_POOL_FROM = 300
_PER_WORKER = 150
_HEAD_START = 100  # folders this process checks while a worker starts (~0.15 s, ~1.2 ms each)


def discover(root: str | Path, summaries: bool = False) -> list[ModelEntry]:
    """Every model folder under root, sorted naturally; broken ones carry their reason. With
    `summaries`, each entry also carries its curves' summary (what `hmmrnn ls` prints). A large
    tree is checked by worker processes, one per core (see process_pool)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    if _is_model_folder(root, [p.name for p in root.iterdir()]):
        return [_inspected((root, root.parent, summaries))]
    entries, folders = [], []

    def unreadable(exc: OSError) -> None:  # a folder os.walk cannot list is shown, not skipped
        if exc.filename and Path(exc.filename) != root:
            folder = Path(exc.filename)
            why = exc.strerror.lower() if exc.strerror else type(exc).__name__
            entry = ModelEntry(path=folder, rel=str(folder.relative_to(root)))
            entries.append(_broken(entry, f"cannot read the folder ({why})", "absent"))

    # symlinks are not followed, so a link loop cannot trap the walk
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if folder != root and _is_model_folder(folder, filenames + dirnames):
            folders.append(folder)
            dirnames[:] = []  # models/ and evolution/ belong to this entry
    jobs = [(folder, root, summaries) for folder in folders]
    workers = worker_count(len(jobs), _POOL_FROM, _PER_WORKER)
    entries += map_in_processes(_inspected, jobs, workers, head_start=_HEAD_START)
    return sorted(entries, key=lambda e: natural_key(e.rel))


def _inspected(job: tuple[Path, Path, bool]) -> ModelEntry:
    folder, root, summaries = job
    entry = inspect_folder(folder, root)
    if summaries:
        entry.summary = curve_summary(folder)
    return entry


def natural_key(text: str) -> list:
    """Sort `hidden_50` before `hidden_150`."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]
