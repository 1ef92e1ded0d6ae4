"""The named figures and `export_figure`, the one entry point the CLI and the TUI share.

Each FigureSpec names the result it draws: a registry analysis (computed through the result cache),
"evaluation" (the model's evaluation.json, or a cached evaluation), "loss-curves" (metrics.jsonl) or
"tree" (every evaluation.json under a tree root). A caller that already holds the result (the TUI)
passes it and nothing is recomputed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from hmmrnn.analyses.base import ProgressFn, Result, cached, model_hash, no_progress
from hmmrnn.cancel import CancelToken
from hmmrnn.figures import evaluation as ev
from hmmrnn.figures import grid, mechanisms, statespace, training
from hmmrnn.figures.export import ExportResult, parse_formats, safe_label, timestamp, write_export

SPECIAL_SOURCES = ("evaluation", "loss-curves", "tree")


@dataclass(frozen=True)
class FigureSpec:
    """A named figure: what it draws (`analysis`), how (`render`) and which result types it takes.

    derive: for figures drawn from a view computed on top of an analysis (neuron views), builds
    the drawable result from (LoadedModel, analysis result).
    """

    name: str
    help: str
    analysis: str
    render: Callable[..., Figure]
    accepts: tuple[str, ...] = ()
    derive: Callable[[Any, Any], Any] | None = None
    colors_outputs: bool = False  # colours something by output symbol (tests check the palette)


# --- neuron views: derived from the populations analysis --------------------------------------------


def _preactivations(loaded, pop):
    from hmmrnn.analyses.neurons import preactivations

    units = [int(u) for g in (pop.kick_a, pop.kick_b) for u in g]
    return preactivations(loaded.model, units)


def _weight_blocks(loaded, pop):
    from hmmrnn.analyses.neurons import weight_blocks

    return weight_blocks(loaded.model, pop, pop)


def _group_activity(loaded, pop):
    from hmmrnn.analyses.neurons import group_activity

    return group_activity(loaded.model, pop)


def _spec(name, help, analysis, render, accepts, **kw) -> tuple[str, FigureSpec]:
    return name, FigureSpec(name, help, analysis, render, tuple(accepts), **kw)


FIGURES: dict[str, FigureSpec] = dict(
    [
        _spec(
            "loss-curves",
            "training and validation loss per epoch and learning rate",
            "loss-curves",
            training.render_loss_curves,
            ["LossCurves"],
        ),
        _spec(
            "distances",
            "matched distances HMM–HMM vs HMM–RNN (mean ± std)",
            "evaluation",
            ev.render_distances,
            ["EvaluationResult"],
        ),
        _spec(
            "volatilities",
            "output changes per sequence, HMM vs RNN",
            "evaluation",
            ev.render_volatilities,
            ["EvaluationResult"],
        ),
        _spec(
            "frequencies",
            "output frequencies per symbol, HMM vs RNN",
            "evaluation",
            ev.render_frequencies,
            ["EvaluationResult"],
            colors_outputs=True,
        ),
        _spec(
            "transition-matrices",
            "output transition matrices HMM | RNN | difference",
            "evaluation",
            ev.render_transition_matrices,
            ["EvaluationResult"],
        ),
        _spec(
            "grid-distances",
            "tree: matched distance by states x hidden x input (seed means)",
            "tree",
            grid.render_grid_distances,
            ["TreeEvaluations"],
        ),
        _spec(
            "grid-transition-error",
            "tree: transition error by states x hidden x input",
            "tree",
            grid.render_grid_transition_error,
            ["TreeEvaluations"],
        ),
        _spec(
            "pca-2d",
            "PC1-PC2 of driven states by output, arrows along time",
            "pca",
            statespace.render_pca_2d,
            ["PCAResult"],
            colors_outputs=True,
        ),
        _spec(
            "pca-3d",
            "PC1-PC3 of driven states by output",
            "pca",
            statespace.render_pca_3d,
            ["PCAResult"],
            colors_outputs=True,
        ),
        _spec(
            "explained-variance",
            "variance explained per principal component",
            "pca",
            statespace.render_explained_variance,
            ["PCAResult"],
        ),
        _spec(
            "trajectories",
            "autonomous and driven trajectories with their fixed points",
            "trajectories",
            statespace.render_trajectories,
            ["TrajectoriesResult"],
            colors_outputs=True,
        ),
        _spec(
            "fixed-points",
            "fixed/slow points and their Jacobian spectra",
            "fixed-points",
            statespace.render_fixed_points,
            ["FixedPointsResult"],
        ),
        _spec(
            "variance-contours",
            "95% density contours per input noise std",
            "variance-contours",
            statespace.render_variance_contours,
            ["ContoursResult"],
        ),
        _spec(
            "readout-alignment",
            "readout rows against the PC1-PC2 plane",
            "readout-alignment",
            statespace.render_readout_alignment,
            ["ReadoutResult"],
            colors_outputs=True,
        ),
        _spec(
            "residency",
            "residency four-panel: RT, sign changes, unstable eigenvalues",
            "residency",
            mechanisms.render_residency,
            ["ResidencyResult"],
        ),
        _spec(
            "subspace-residency",
            "residency within runs confined to a pair of outputs",
            "subspace-residency",
            mechanisms.render_subspace_residency,
            ["SubspaceResidencyResult"],
        ),
        _spec(
            "locate",
            "the dwell, cluster and kick points, and probe switch shares",
            "locate",
            mechanisms.render_locate,
            ["LocateResult"],
            colors_outputs=True,
        ),
        _spec(
            "kick-neurons",
            "units peaking before each switch direction, and rates with them silenced",
            "kick-neurons",
            mechanisms.render_kick_neurons,
            ["KickResult"],
        ),
        _spec(
            "noise-sensitivity",
            "rollouts per gamma from cluster and kick points, spread",
            "noise-sensitivity",
            mechanisms.render_noise_sensitivity,
            ["NoiseSensitivityResult"],
        ),
        _spec(
            "preactivations",
            "kick units' pre-activations along a driven run",
            "populations",
            mechanisms.render_preactivations,
            ["PreactivationResult"],
            derive=_preactivations,
            colors_outputs=True,
        ),
        _spec(
            "weight-blocks",
            "recurrent weights kick/population blocks",
            "populations",
            mechanisms.render_weight_blocks,
            ["WeightBlocks"],
            derive=_weight_blocks,
        ),
        _spec(
            "group-activity",
            "mean activity of kick groups and populations with dwells",
            "populations",
            mechanisms.render_group_activity,
            ["GroupActivity"],
            derive=_group_activity,
            colors_outputs=True,
        ),
        _spec(
            "ablation",
            "gain sweep: trajectories, critical pairs and switch rate vs mu",
            "ablation",
            mechanisms.render_ablation,
            ["AblationResult"],
        ),
        _spec(
            "evolution",
            "training evolution: stacked PCA, rates, eigenvalues, bifurcation",
            "evolution",
            mechanisms.render_evolution,
            ["EvolutionResult"],
        ),
    ]
)


def list_figures() -> list[str]:
    return list(FIGURES)


def figures_for(analysis: str) -> list[str]:
    """Figure names that draw a given analysis (or 'evaluation' / 'loss-curves' / 'tree')."""
    return [n for n, s in FIGURES.items() if s.analysis == analysis]


def get_figure(name: str) -> FigureSpec:
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    return FIGURES[name]


# --- where results come from ------------------------------------------------------------------------

_LEVEL = re.compile(r"^(hidden|input|seed)[_ ]?(\d+)$", re.IGNORECASE)
_SHORT = {"hidden": "h", "input": "i", "seed": "s"}


def model_label(folder: Path) -> str:
    """Readable name of a model folder: `Two/hidden_50/input_10/seed_0` -> `Two-h50-i10-s0`."""
    parts = list(Path(folder).parts)
    levels: list[str] = []
    i = len(parts)
    while i > 0 and (m := _LEVEL.match(parts[i - 1])):
        levels.insert(0, f"{_SHORT[m.group(1).lower()]}{m.group(2)}")
        i -= 1
    family = parts[i - 1] if i > 0 else "model"
    return safe_label("-".join([family, *levels]))


@dataclass
class _Target:
    """What export_figure was given: a model folder/file, a LoadedModel or a tree root."""

    given: Any
    device: str | None = None
    _loaded: Any = None

    @property
    def is_loaded(self) -> bool:
        return hasattr(self.given, "model") and hasattr(self.given, "model_file")

    @property
    def path(self) -> Path:
        return Path(self.given.folder) if self.is_loaded else Path(self.given).expanduser()

    def folder(self) -> Path:
        if self.is_loaded:
            return Path(self.given.folder)
        from hmmrnn.tree import find_config, model_folder

        path = self.path
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_file():
            cfg = find_config(path)
            return cfg.parent if cfg else model_folder(path)
        return path

    def model_file(self) -> Path | None:
        if self.is_loaded:
            return Path(self.given.model_file)
        from hmmrnn.tree import pick_model_file

        return self.path if self.path.is_file() else pick_model_file(self.folder())

    def loaded(self):
        if self.is_loaded:
            return self.given
        if self._loaded is None:
            from hmmrnn.tree import load_model

            self._loaded = load_model(self.path, device=self.device)
        return self._loaded


def _model_meta(target: _Target) -> dict:
    folder = target.folder()
    model_file = target.model_file()
    meta: dict[str, Any] = {"path": str(folder.resolve()), "label": model_label(folder)}
    if model_file is not None:
        meta["file"] = str(Path(model_file).resolve())
        meta["sha256"] = model_hash(Path(model_file))
    try:
        from hmmrnn.config import ExperimentConfig
        from hmmrnn.tree import CONFIG_NAME

        meta["training_seed"] = ExperimentConfig.load(folder / CONFIG_NAME).seed
    except Exception:  # noqa: BLE001 - the sidecar only loses an optional field
        pass
    return meta


EVALUATION_DEFAULTS = {
    "num_sequences": 5000,
    "seq_len": None,
    "seed": 0,
    "method": "assignment",
    "noise_std": 1.0,
    "h0": "zero",
    "reg": 0.1,
}


@dataclass
class _CachedEvaluation(Result):
    """An EvaluationResult stored as its JSON so it goes through the shared result cache."""

    payload: str


def evaluation_result(target, params: dict | None = None, *, use_file: bool = True):
    """(EvaluationResult, resolved params, source): the saved evaluation.json beside the model when
    no parameters are asked for, else a (cached) fresh evaluation."""
    from hmmrnn.evaluate import EvaluationResult, evaluate_model
    from hmmrnn.tree import EVALUATION_NAME

    target = target if isinstance(target, _Target) else _Target(target)
    unknown = sorted(set(params or {}) - set(EVALUATION_DEFAULTS))
    if unknown:
        raise ValueError(
            f"evaluation: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(EVALUATION_DEFAULTS)}"
        )
    saved = target.folder() / EVALUATION_NAME
    if use_file and not params and saved.is_file():
        result = EvaluationResult.load(saved)
        used = {
            k: getattr(result, k)
            for k in ("num_sequences", "seq_len", "seed", "method", "noise_std", "h0")
        }
        return result, used, f"file {saved}"
    loaded = target.loaded()
    full = {**EVALUATION_DEFAULTS, **(params or {})}
    if full["seq_len"] is None:
        full["seq_len"] = int(loaded.config.seq_len)

    def compute() -> _CachedEvaluation:
        res = evaluate_model(loaded.model, loaded.config.build_hmm(), **full)
        return _CachedEvaluation(payload=json.dumps(res.to_dict()))

    entry = cached("evaluation", _CachedEvaluation, loaded.model_file, full, compute)
    return EvaluationResult.from_dict(json.loads(entry.payload)), full, "computed (cache)"


def _tree_meta(tree) -> dict:
    models = []
    for rel, file in zip(tree.rel, tree.model_files, strict=True):
        models.append({"model": rel, "file": file, "sha256": model_hash(Path(file))})
    return {"root": tree.root, "models": models, "skipped": tree.skipped}


def _type_name(obj) -> str:
    return type(obj).__name__


def _resolved(spec: FigureSpec, params: dict) -> dict:
    """The caller's parameters completed with the analysis defaults (for the sidecar)."""
    if spec.analysis == "evaluation":
        return {**EVALUATION_DEFAULTS, **params}
    if spec.analysis in SPECIAL_SOURCES:
        return dict(params)
    from hmmrnn.analyses.registry import get_spec, resolve_params

    try:
        return resolve_params(get_spec(spec.analysis), params)
    except (KeyError, ValueError):
        return dict(params)


def _obtain(spec: FigureSpec, target: _Target, params, result, progress, cancel):
    """(drawable result, sidecar fields) for one figure."""
    meta: dict[str, Any] = {}
    notes: list[str] = []
    if result is not None and params is not None:
        params = _resolved(spec, params)
    if result is not None and _type_name(result) in spec.accepts:
        meta["result_source"] = "supplied by the caller"
        out = result
    elif result is not None and spec.derive is not None:
        meta["result_source"] = f"derived from a supplied {_type_name(result)}"
        out = spec.derive(target.loaded(), result)
    elif result is not None:
        raise TypeError(
            f"figure {spec.name!r} draws {' or '.join(spec.accepts)}, got {_type_name(result)}"
        )
    elif spec.analysis == "loss-curves":
        out = training.LossCurves.from_folder(target.folder())
        meta["result_source"] = "metrics.jsonl"
    elif spec.analysis == "evaluation":
        out, params, source = evaluation_result(target, params)
        meta["result_source"] = source
    elif spec.analysis == "tree":
        out = grid.TreeEvaluations.from_root(target.path)
        meta["result_source"] = "evaluation.json of each model"
    else:
        from hmmrnn.analyses.registry import get_spec, resolve_params, run_analysis

        params = resolve_params(get_spec(spec.analysis), params or {})
        out = run_analysis(spec.analysis, target.loaded(), params, progress=progress, cancel=cancel)
        meta["result_source"] = "analysis (through the cache)"
        if spec.derive is not None:
            out = spec.derive(target.loaded(), out)
            notes.append(f"view computed on top of the {spec.analysis} analysis, default settings")
    if spec.analysis == "tree":
        meta["tree"] = _tree_meta(out)
        meta["model"] = {"path": str(target.path.resolve()), "label": safe_label(target.path.name)}
        if out.skipped:
            notes.append(f"{len(out.skipped)} model(s) skipped (see tree.skipped)")
    else:
        meta["model"] = _model_meta(target)
    meta["params"] = params
    meta["seed"] = params.get("seed") if isinstance(params, dict) else None
    meta["notes"] = notes
    return out, meta


def export_figure(
    name: str,
    model_path_or_loaded,
    *,
    out_dir: str | Path = "exports",
    formats=("pdf", "svg", "png"),
    params: dict | None = None,
    result=None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    width: str = "double",
    device: str | None = None,
) -> ExportResult:
    """Draw figure `name` for a model (or a tree root for grid-* figures) and write it.

    Files: out_dir/<model>_<figure>_<YYYYmmdd-HHMMSS>[-n].<fmt> plus a .json sidecar (model path
    and sha256, analysis and parameters, seed, library versions, time). `result` is drawn as given
    (no recomputation); otherwise the result is computed through the cache with `params`.
    """
    spec = get_figure(name)
    fmts = parse_formats(formats)
    progress = progress or no_progress
    target = _Target(model_path_or_loaded, device=device)
    drawable, meta = _obtain(spec, target, params, result, progress, cancel)
    fig = spec.render(drawable, width=width)
    label = meta["model"]["label"]
    stem = f"{label}_{name}_{timestamp()}"
    sidecar = {
        "figure": name,
        "description": spec.help,
        "analysis": spec.analysis,
        "width": width,
        **meta,
    }
    return write_export(fig, stem, out_dir, fmts, sidecar)
