"""hmmrnn's use-case layer: everything the CLI, the TUI, the figure export and scripts ask of it.

    from hmmrnn import api
    model = api.load("TrainedModels/Two/hidden_50/input_10/seed_0")
    ev = api.evaluate(model, {"num_sequences": 2000})      # ev.result.distance_ratio, ev.params
    fp = api.analyze(model, "fixed-points", {"n_starts": 64})
    api.export_figure("pca-2d", model, out_dir="exports")   # PDF/SVG/PNG + JSON sidecar

Front-ends call these functions and nothing below them, so there is one place that resolves
parameters (the user's value, else the model config's, else the analysis default), one result
cache, and one record of what was used (`AnalysisRun.params`, written into every evaluation.json
and figure sidecar). Errors a user can cause are `hmmrnn.errors.UserError`. Heavy modules (torch,
matplotlib) are imported inside the functions: importing this module is cheap, so the TUI can
import it before its first paint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmmrnn.errors import JobError, ParamError, SaveError, UserError

if TYPE_CHECKING:
    from hmmrnn.analyses.base import AnalysisRun
    from hmmrnn.analyses.registry import Analysis
    from hmmrnn.cancel import CancelToken
    from hmmrnn.config import ExperimentConfig
    from hmmrnn.figures.export import ExportResult
    from hmmrnn.tree import LoadedModel, ModelEntry

__all__ = [
    "JobError",
    "ParamError",
    "SaveError",
    "UserError",
    "analyses",
    "analysis",
    "analyze",
    "config_for",
    "describe",
    "discover",
    "entry_row",
    "evaluate",
    "evaluation_for",
    "export_figure",
    "figures",
    "load",
    "model_info",
    "resume",
    "saved_evaluation",
    "train",
]

ProgressFn = Callable[[float, str], None]


# --- models and trees -----------------------------------------------------------------------------


def load(path: str | Path, device: str = "auto") -> LoadedModel:
    """A model folder or .pth file, loaded with its config onto `device` (auto: CUDA if present)."""
    from hmmrnn.tree import load_model

    return load_model(path, device=device)


def _loaded(model: LoadedModel | str | Path, device: str = "auto") -> LoadedModel:
    return model if hasattr(model, "model_file") else load(model, device)


def shipped_models() -> Path:
    """Where the models shipped with hmmrnn are (the installed package `hmmrnn_models`)."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("hmmrnn_models")))
    except ModuleNotFoundError as exc:
        raise UserError("this installation of hmmrnn has no shipped models") from exc


def default_tree() -> tuple[Path, str]:
    """(tree, note): ./TrainedModels when there is one, else the shipped models (and a note
    saying so, for the front-end to show)."""
    here = Path("TrainedModels")
    if here.is_dir():
        return here, ""
    shipped = shipped_models()
    return shipped, f"no ./TrainedModels here: showing the shipped models in {shipped}"


def discover(root: str | Path, summaries: bool = False) -> list[ModelEntry]:
    """Every model folder under a tree root, broken ones with their reason (with `summaries`,
    each with its curves' summary, which entry_row then reuses)."""
    from hmmrnn.tree import discover as _discover

    return _discover(root, summaries)


def entry_row(entry: ModelEntry) -> dict:
    """The facts a listing shows for one entry (`hmmrnn ls`, the TUI's tables)."""
    from hmmrnn.tree import curve_summary

    cfg = entry.config
    curves = entry.summary or curve_summary(entry.path)
    return {
        "model": entry.rel,
        "status": entry.status,
        "reason": entry.reason,
        "states": cfg.states if cfg else None,
        "hidden": entry.sizes[1] if entry.sizes else (cfg.hidden_size if cfg else None),
        "input": entry.sizes[0] if entry.sizes else (cfg.input_size if cfg else None),
        "outputs": entry.sizes[2] if entry.sizes else (cfg.outputs if cfg else None),
        "seed": cfg.seed if cfg else None,
        "best_val": curves.best_val,
        "floor": curves.floor,  # the HMM-vs-HMM loss: what a perfect model gets
        "epochs": curves.epochs,
        "checkpoints": len(entry.evolution),
        "config_inferred": entry.config_inferred,
        "warnings": entry.warnings,
    }


def _files(folder: Path) -> list[str]:
    """The folder's files, without hidden ones (the run lock, temporary files of atomic writes)."""
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            found.append(str(rel))
    return sorted(found)


def model_info(path: str | Path) -> dict:
    """Everything `hmmrnn info` shows about a healthy model, as plain data."""
    from hmmrnn.tree import inspect_folder, model_folder, read_run_info

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    folder = model_folder(path)
    entry = inspect_folder(folder, folder.parent)
    if entry.status == "broken":
        raise UserError(f"{entry.rel} is broken: {entry.reason}")
    hmm = entry.config.build_hmm()
    return {
        **entry_row(entry),
        "folder": str(entry.path),
        "model_file": str(entry.model_file),
        "config": entry.config.to_dict(),
        "transition": hmm.transition.round(4).tolist(),
        "emission": hmm.emission.round(4).tolist(),
        "run": read_run_info(entry.path),
        "files": _files(entry.path),
    }


def describe(entry: ModelEntry) -> dict:
    """`model_info` for an entry that can be loaded; for others what is known without loading.

    `config_file` holds config.json as written (a study file names only its own keys).
    """
    from hmmrnn.tree import read_json, read_run_info

    info: dict[str, Any]
    if entry.status == "ok" or (entry.status == "training" and entry.model_file is not None):
        try:
            info = model_info(entry.path)
            info["model"] = entry.rel  # model_info names the folder alone
        except UserError as exc:
            info = {**entry_row(entry), "status": "broken", "reason": str(exc), "files": []}
    else:
        info = entry_row(entry)
        info["run"] = read_run_info(entry.path)
        info["files"] = _files(entry.path)
        if entry.config is not None:
            hmm = entry.config.build_hmm()
            info["transition"] = hmm.transition.round(4).tolist()
            info["emission"] = hmm.emission.round(4).tolist()
            info["config"] = entry.config.to_dict()
    info["run_time"] = run_time(info.get("run") or {}, entry.path)
    info["config_file"] = read_json(Path(entry.path) / "config.json")
    return info


def run_time(run: dict, folder: Path) -> float | None:
    """Wall time of the run as recorded by the trainer (run.json), else the logged epoch times."""
    from hmmrnn.tree import read_metrics_records as read_metrics

    started, updated = run.get("started"), run.get("updated")
    if isinstance(started, (int, float)) and isinstance(updated, (int, float)):
        return float(updated - started)
    secs = [m.get("seconds") for m in read_metrics(folder)]
    secs = [s for s in secs if isinstance(s, (int, float))]
    return float(sum(secs)) if secs else None


# --- analyses ---------------------------------------------------------------------------------------


def analyses() -> dict[str, Analysis]:
    """Every registered analysis (evaluation included) by name."""
    from hmmrnn.analyses.registry import all_specs

    return all_specs()


def analysis(name: str) -> Analysis:
    """One analysis: its schema (`.schema`), help, version, figures and terminal views."""
    from hmmrnn.analyses.registry import get_spec

    return get_spec(name)


def evaluation_schema():
    """The evaluation's parameter schema, without importing the other analyses (or torch)."""
    from hmmrnn.analyses.evaluation import SPEC

    return SPEC.schema


def analyze(
    model: LoadedModel | str | Path,
    name: str,
    params: dict[str, Any] | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    use_cache: bool = True,
    device: str = "auto",
) -> AnalysisRun:
    """Run analysis `name` on a model (through the cache); the run records the parameters used.

    `params` may hold typed values or text (as typed in a form); Cancelled propagates.
    """
    from hmmrnn.analyses.registry import run_analysis

    return run_analysis(
        name, _loaded(model, device), params, progress=progress, cancel=cancel, use_cache=use_cache
    )


def evaluate(
    model: LoadedModel | str | Path,
    params: dict[str, Any] | None = None,
    *,
    save: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    use_cache: bool = True,
    device: str = "auto",
) -> AnalysisRun:
    """Evaluate a model against its HMM and (unless save=False) write evaluation.json beside it.

    The file is written only once the evaluation is complete: a cancelled one raises Cancelled
    and leaves the previous file as it was. A folder that cannot be written raises SaveError,
    which carries the computed run.
    """
    loaded = _loaded(model, device)
    run = analyze(
        loaded, "evaluation", params, progress=progress, cancel=cancel, use_cache=use_cache
    )
    if save:
        from hmmrnn.analyses.base import check_cancel
        from hmmrnn.analyses.evaluation import save_evaluation

        check_cancel(cancel)  # a cancel that came during the last stage still writes nothing
        save_evaluation(run, loaded)
    return run


def saved_evaluation(folder: str | Path) -> AnalysisRun | None:
    """The evaluation saved beside a model (None if there is none; ResultFileError if unreadable)."""
    from hmmrnn.analyses.evaluation import EVALUATION_NAME, load_evaluation

    path = Path(folder) / EVALUATION_NAME
    return load_evaluation(path) if path.is_file() else None


def evaluation_for(
    model: LoadedModel | str | Path,
    params: dict[str, Any] | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    device: str = "auto",
) -> AnalysisRun:
    """The evaluation a figure of this model shows: the saved one when it was made with the same
    parameters, algorithm version and weights, else a fresh one (cached, not saved)."""
    from hmmrnn.analyses.base import model_hash
    from hmmrnn.analyses.registry import get_spec, resolve_params

    loaded = _loaded(model, device)
    spec = get_spec("evaluation")
    wanted = resolve_params(spec, params, loaded)
    try:
        saved = saved_evaluation(loaded.folder)
    except UserError:
        saved = None
    if saved is not None and saved.version == spec.version:
        same_weights = saved.model_sha256 in (None, model_hash(loaded.model_file))
        try:
            same_params = spec.schema.resolve(saved.params, loaded.config) == wanted
        except ParamError:
            same_params = False
        if same_weights and same_params:
            return saved
    return analyze(loaded, "evaluation", wanted, progress=progress, cancel=cancel)


def study_protocol() -> dict:
    """The study's cross-model evaluation protocol (method, seq_len, num_sequences, seed)."""
    from hmmrnn.reproduce import STUDY_PROTOCOL

    return dict(STUDY_PROTOCOL)


def reproduce(root: str | Path, **kwargs):
    """The study's headline checks on a tree (hmmrnn.reproduce.reproduce): a ReproductionReport."""
    from hmmrnn.reproduce import reproduce as run

    return run(root, **kwargs)


def save_report(report, out_dir: str | Path = "exports") -> tuple[Path, Path]:
    """Write a reproduction report as Markdown and JSON (atomically, never overwriting)."""
    from hmmrnn.figures.export import timestamp
    from hmmrnn.io import atomic_write_json, atomic_write_text

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    stem, n = f"reproduction_{timestamp()}", 1
    while (out / f"{stem}.md").exists() or (out / f"{stem}.json").exists():
        n += 1
        stem = f"reproduction_{timestamp()}-{n}"
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    atomic_write_text(md, report.to_markdown())
    atomic_write_json(js, report.to_dict())
    return md, js


def parse_params(name: str, text: str) -> dict[str, Any]:
    """`steps=200 kick_units=1,2,3` into typed parameters of analysis `name` (the TUI's line)."""
    return analysis(name).schema.parse_assignments(text)


# --- figures ---------------------------------------------------------------------------------------


def figures() -> dict:
    """Every publication figure by name (FigureEntry: help, the analysis it draws, renderer)."""
    from hmmrnn.figures.catalog import all_figures

    return all_figures()


def export_figure(
    name: str,
    target: LoadedModel | str | Path,
    *,
    params: dict[str, Any] | None = None,
    run: AnalysisRun | None = None,
    out_dir: str | Path = "exports",
    formats: str | Sequence[str] = ("pdf", "svg", "png"),
    width: str = "double",
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    view: dict[str, Any] | None = None,
) -> ExportResult:
    """Draw figure `name` and write it (PDF/SVG/PNG) with a JSON sidecar into `out_dir`.

    target: a model (folder, .pth or loaded), or a tree root for grid-* figures. `run`: a result
    already at hand (the TUI's, on screen) is drawn as it is, with its recorded parameters;
    otherwise the result is obtained with `params` like everywhere else. `view`: what the screen
    shows on top (e.g. {"pair": (0, 2), "fixed_points": <AnalysisRun>}); recorded in the sidecar.
    Files are named <model>_<figure>_<time>[-n].<fmt> and never overwrite anything.
    """
    from hmmrnn.figures.export import parse_formats, timestamp, write_export

    fmts = parse_formats(formats)
    entry, drawable, meta = figure_data(
        name, target, params=params, run=run, device=device, progress=progress, cancel=cancel
    )
    meta["width"] = width
    options, meta["view"] = _view_options(view or {})
    fig = entry.render(drawable, width=width, **options)
    stem = f"{meta['model']['label']}_{name}_{timestamp()}"
    return write_export(fig, stem, out_dir, fmts, meta)


def figure_data(
    name: str,
    target: LoadedModel | str | Path,
    *,
    params: dict[str, Any] | None = None,
    run: AnalysisRun | None = None,
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Any, Any, dict]:
    """(figure entry, what it draws, sidecar fields) for figure `name` of `target`: the one place
    that decides where a figure's result comes from (see export_figure)."""
    from hmmrnn.figures.catalog import LOSS_CURVES, TREE, TREE_PCA, get_figure
    from hmmrnn.figures.export import safe_label

    entry = get_figure(name)
    meta: dict[str, Any] = {"figure": name, "description": entry.help}
    notes: list[str] = []
    if entry.analysis == TREE:
        from hmmrnn.figures.grid import TreeEvaluations
        from hmmrnn.tree_evaluations import EVALUATION_FILES

        root = Path(target).expanduser()
        used = figure_schema(name).resolve(params or {})
        file_name = EVALUATION_FILES[used["protocol"]]
        drawable = TreeEvaluations.from_root(root, file_name)
        meta.update(analysis=TREE, params=used, seed=None, result_source=f"{file_name} files")
        meta["model"] = {"path": str(root.resolve()), "label": safe_label(root.name)}
        meta["tree"] = _tree_meta(drawable)
        if drawable.skipped:
            notes.append(f"{len(drawable.skipped)} model(s) skipped (see tree.skipped)")
        if drawable.mixed:
            notes.append(
                f"models evaluated by different protocols ({drawable.protocol}): their "
                "distances do not compare; re-evaluate them alike (hmmrnn reproduce TREE saves "
                "the study's protocol for protocol=study, or hmmrnn evaluate --all TREE)"
            )
    elif entry.analysis == TREE_PCA:
        from hmmrnn.tree_evaluations import tree_pca

        root = Path(target).expanduser()
        used = figure_schema(name).resolve(params or {})
        drawable = tree_pca(root, **used, device=device, progress=progress, cancel=cancel)
        meta.update(analysis="pca", params=used, seed=used["seed"], result_source="pca per model")
        meta["model"] = {"path": str(root.resolve()), "label": safe_label(root.name)}
        meta["tree"] = {"models": drawable.rel, "skipped": drawable.skipped}
        if drawable.skipped:
            notes.append(f"{len(drawable.skipped)} model(s) skipped (see tree.skipped)")
    elif entry.analysis == LOSS_CURVES:
        from hmmrnn.figures.training import LossCurves

        if params:
            raise ParamError(f"{name}: takes no parameters")
        folder = _folder_of(target)
        drawable = LossCurves.from_folder(folder)
        meta.update(analysis=LOSS_CURVES, params={}, seed=None, result_source="metrics.jsonl")
        meta["model"] = _model_meta(folder, None)
    else:
        loaded = _loaded(target, device)
        if run is None and entry.analysis == "evaluation":
            run = evaluation_for(loaded, params, progress=progress, cancel=cancel)
        elif run is None:
            run = analyze(loaded, entry.analysis, params, progress=progress, cancel=cancel)
        elif run.analysis != entry.analysis:
            raise UserError(f"figure {name!r} draws {entry.analysis}, not {run.analysis}")
        drawable = entry.derived(loaded, run.result)
        if entry.derive is not None:
            notes.append(f"view computed on top of the {run.analysis} analysis")
        meta.update(
            analysis=run.analysis,
            version=run.version,
            params=run.params,
            seed=run.params.get("seed"),
            result_source=run.source,
        )
        meta["model"] = _model_meta(Path(loaded.folder), Path(loaded.model_file))
    meta["notes"] = notes
    return entry, drawable, meta


def _view_options(view: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the renderer draws, what the sidecar records): overlays given as AnalysisRuns are
    drawn from their result and recorded by their analysis, version and parameters."""
    from hmmrnn.analyses.base import AnalysisRun

    options, recorded = {}, {}
    for key, value in view.items():
        if isinstance(value, AnalysisRun):
            options[key] = value.result
            recorded[key] = {"analysis": value.analysis, "version": value.version,
                             "params": jsonable(value.params)}  # fmt: skip
        else:
            options[key] = value
            recorded[key] = jsonable(value)
    return options, recorded


def _folder_of(target) -> Path:
    from hmmrnn.tree import model_folder

    if hasattr(target, "folder"):
        return Path(target.folder)
    path = Path(target).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    return model_folder(path)


def _model_meta(folder: Path, model_file: Path | None) -> dict:
    """Which model a sidecar is about: folder, label, weights file and its sha256, training seed."""
    from hmmrnn.analyses.base import model_hash
    from hmmrnn.figures.catalog import model_label
    from hmmrnn.tree import CONFIG_NAME, pick_model_file, read_json

    model_file = model_file or pick_model_file(folder)
    meta: dict[str, Any] = {"path": str(folder.resolve()), "label": model_label(folder)}
    if model_file is not None:
        meta["file"] = str(Path(model_file).resolve())
        meta["sha256"] = model_hash(Path(model_file))
    seed = read_json(folder / CONFIG_NAME).get("seed")
    if isinstance(seed, int):
        meta["training_seed"] = seed
    return meta


def _tree_meta(tree) -> dict:
    from hmmrnn.analyses.base import model_hash

    models = [
        {"model": rel, "file": file, "sha256": model_hash(Path(file))}
        for rel, file in zip(tree.rel, tree.model_files, strict=True)
    ]
    for row, method, length, n in zip(
        models, tree.method, tree.seq_len.tolist(), tree.num_sequences.tolist(), strict=True
    ):
        row["evaluation"] = {"method": method, "seq_len": length, "num_sequences": n}
    return {"root": tree.root, "models": models, "skipped": tree.skipped, "protocol": tree.protocol}


# --- training ---------------------------------------------------------------------------------------


def config_for(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """A validated config from a preset (default Three) or a config file, with key overrides."""
    from hmmrnn.config import ExperimentConfig

    if preset and config_file:
        raise UserError("give either a preset or a config file, not both")
    overrides = dict(overrides or {})
    if config_file:
        data = ExperimentConfig.load(Path(config_file).expanduser()).to_dict()
        return ExperimentConfig.from_dict({**data, **overrides})
    return ExperimentConfig.from_preset(preset or "Three", **overrides)


def config_keys() -> list[str]:
    """Every config key (the study's plus ours), in the record's order."""
    from hmmrnn.config import field_names

    return field_names()


def config_key_help(key: str) -> tuple[str, tuple | None, Any]:
    """(help, choices or None, default) of a config key, for flags and forms."""
    from hmmrnn.config import key_help

    return key_help(key)


def parse_config_value(key: str, text: str) -> Any:
    """A config value from text (a flag or a form field); validation happens in `config_for`."""
    from hmmrnn.config import parse_value

    return parse_value(key, text)


def load_config(path: str | Path) -> ExperimentConfig:
    """A config.json, validated (ConfigError names the key)."""
    from hmmrnn.config import ExperimentConfig

    return ExperimentConfig.load(Path(path).expanduser())


def presets() -> list[str]:
    """The study's preset names (Two, Three, Four, Five, Fully, Cyclic)."""
    from hmmrnn.hmm import PRESETS

    return list(PRESETS)


def train(config: ExperimentConfig, out: str | Path, **kwargs):
    """Train in this process (see hmmrnn.train.train for the callbacks); returns a TrainResult."""
    from hmmrnn import train as _train

    return _train.train(config, out, **kwargs)


def resume(folder: str | Path, **kwargs):
    """Continue a cancelled or interrupted run in this process."""
    from hmmrnn import train as _train

    return _train.resume(folder, **kwargs)


def train_request(**fields: str):
    """A training request from a form's text fields (see hmmrnn.runs.TrainRequest): `.build()`
    validates it into a config, naming the bad field, before anything is created on disk."""
    from hmmrnn import runs

    return runs.TrainRequest(**fields)


def metrics(folder: str | Path) -> list[dict]:
    """The epoch records of a run folder's metrics.jsonl (a partial last line is skipped)."""
    from hmmrnn.train import read_metrics

    return read_metrics(folder)


def discard_resume_state(folder: str | Path) -> None:
    """Delete what only a running or resumable run needs (checkpoint.pt, the trainer's lock file):
    not worth shipping once the run has finished."""
    from hmmrnn.runstate import LOCK_NAME
    from hmmrnn.tree import CHECKPOINT_NAME

    for name in (CHECKPOINT_NAME, LOCK_NAME):
        (Path(folder) / name).unlink(missing_ok=True)


def threads() -> int:
    """Threads torch computes with in this process."""
    import torch

    return torch.get_num_threads()


def start_training(config: ExperimentConfig, out: str | Path, device: str = "auto"):
    """Train in a detached process that outlives the caller (the TUI); returns a RunHandle."""
    from hmmrnn import runs

    return runs.launch(config, Path(out), device)


def start_resume(folder: str | Path, device: str = "auto"):
    """Resume a run in a detached process; returns a RunHandle. A run that cannot be resumed
    (finished, diverged, running, no config) is refused here, before anything starts."""
    from hmmrnn import runs
    from hmmrnn.train import check_resumable

    check_resumable(Path(folder))
    return runs.launch_resume(Path(folder), device)


def find_runs(roots: Sequence[str | Path]) -> list:
    """Runs under any root still being trained by a live process (RunHandles)."""
    from hmmrnn import runs

    return runs.find_running([Path(r) for r in roots])


def follow(folder: str | Path):
    """A RunHandle on a run folder, to poll its metrics and status."""
    from hmmrnn import runs

    return runs.RunHandle(folder=Path(folder))


def sweep_spec(path: str | Path) -> dict:
    """A TOML or JSON grid spec (SpecError names the problem)."""
    from hmmrnn.sweep import load_spec

    return load_spec(path)


def sweep_alternatives(key: str, value: Any) -> list:
    """The alternatives one grid key takes (lists of lists for list-valued keys)."""
    from hmmrnn.sweep import alternatives

    return alternatives(key, value)


def list_valued_keys() -> tuple[str, ...]:
    """Config keys whose value is itself a list (a grid separates their alternatives with ';')."""
    from hmmrnn.sweep import LIST_KEYS, MATRIX_KEYS

    return (*LIST_KEYS, *MATRIX_KEYS)


def expand_sweep(spec: dict, base: dict | None = None) -> list:
    """Every model of a grid, each with its folder in the study's layout (SweepJobs)."""
    from hmmrnn.sweep import expand

    return expand(spec, base)


def plan_sweep(jobs, root: str | Path) -> list:
    """(job, state) for every job: what a sweep would do, without doing it."""
    from hmmrnn.sweep import plan

    return plan(jobs, root)


def sweep(jobs, root: str | Path, **kwargs):
    """Train a grid of models (see hmmrnn.sweep.run_sweep); returns a SweepReport."""
    from hmmrnn.sweep import run_sweep

    return run_sweep(jobs, root, **kwargs)


def sweep_report_path(root: str | Path) -> Path:
    """Where a sweep writes its report (sweep.json in the tree root)."""
    from hmmrnn.sweep import SWEEP_NAME

    return Path(root) / SWEEP_NAME


# --- small helpers front-ends share ---------------------------------------------------------------


def save_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename) with the usual permissions."""
    from hmmrnn.io import atomic_write_json

    atomic_write_json(Path(path), data)


def save_text(path: str | Path, text: str) -> None:
    """Write text atomically (temp file + rename) with the usual permissions."""
    from hmmrnn.io import atomic_write_text

    atomic_write_text(Path(path), text)


def jsonable(value: Any) -> Any:
    """Strict-JSON form of result values (arrays to lists, non-finite numbers to strings)."""
    from hmmrnn.analyses.base import jsonable as _jsonable

    return _jsonable(value)


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """('pdf', 'png') from 'pdf,png'; an unknown format is a UserError naming it."""
    from hmmrnn.figures.export import parse_formats as _parse

    return _parse(formats)


def evaluation_rows(result) -> list[tuple[str, str, str]]:
    """(metric, HMM, RNN) rows of the evaluation table every front-end shows."""
    from hmmrnn.analyses.evaluation import table_rows

    return table_rows(result)


def evaluation_flags(result) -> list[str]:
    """Short warnings about an evaluation that the averages hide: a rare symbol emitted far too
    often or too rarely, chatter (switches undone at once, one-step runs), drift in long runs."""
    flags = [f"rare {k}" for k in result.rare_symbols()]
    _, reasons = result.passes_dynamics_bar()
    if any("switch-back" in r or "one-step" in r for r in reasons):
        flags.append("chatter")
    if any("long-run" in r for r in reasons):
        flags.append("drift")
    return flags


def figure(name: str):
    """Figure `name`'s entry (FigureEntry); a UserError naming the choices if there is none."""
    from hmmrnn.figures.catalog import get_figure

    return get_figure(name)


def figure_takes_params(name: str) -> bool:
    """Whether a figure takes parameters (an analysis's, or the tree figures' protocol)."""
    from hmmrnn.figures.catalog import LOSS_CURVES

    try:
        return figure(name).analysis != LOSS_CURVES
    except UserError:
        return False


def figure_schema(name: str):
    """The parameters figure `name` takes: its analysis's, or the tree figures' own."""
    from hmmrnn.figures.catalog import LOSS_CURVES, TREE, TREE_PCA
    from hmmrnn.params import Schema

    entry = figure(name)
    if entry.analysis == TREE:
        from hmmrnn.tree_evaluations import tree_figure_params

        return Schema.from_function("tree", tree_figure_params)
    if entry.analysis == TREE_PCA:
        from hmmrnn.tree_evaluations import tree_pca_params

        return Schema.from_function("tree-pca", tree_pca_params)
    if entry.analysis == LOSS_CURVES:
        return Schema("loss-curves")
    return analysis(entry.analysis).schema
