"""The saved evaluations of a model tree as one table: what the tree figures and the reproduction
report compare across models.

Only each model's saved evaluation file is read (`evaluation.json` from `hmmrnn evaluate`, or
`evaluation-study.json` from `hmmrnn reproduce` at the study's protocol), never re-evaluated: a
tree of 144 models would take hours. Models without one are listed as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from hmmrnn.errors import UserError
from hmmrnn.params import P

STUDY_EVALUATION_NAME = "evaluation-study.json"
# protocol -> the file each model's evaluation is read from
EVALUATION_FILES = {"saved": "evaluation.json", "study": STUDY_EVALUATION_NAME}


def tree_figure_params(
    protocol: Annotated[
        Literal["saved", "study"],
        P(
            "which saved evaluations: evaluation.json, or the study protocol's from hmmrnn reproduce"
        ),
    ] = "saved",
) -> dict:
    """The parameters of the tree figures (their schema is built from this signature)."""
    return {"protocol": protocol}


_LEVEL = re.compile(r"^(hidden|input|seed)[_ ]?\d+$", re.IGNORECASE)
_SEED = re.compile(r"seed[_ ]?(\d+)", re.IGNORECASE)


@dataclass
class TreeRows:
    """One row per model of a tree: where it is, its group (HMM family), sizes and seed."""

    root: str
    rel: list[str]
    group: list[str]
    states: np.ndarray
    hidden: np.ndarray
    input: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.rel)


@dataclass
class TreeEvaluations(TreeRows):
    """Per evaluated model, beside its TreeRows columns: the saved statistics."""

    baseline_mean: np.ndarray
    baseline_std: np.ndarray
    rnn_mean: np.ndarray
    rnn_std: np.ndarray
    transition_sq_error: np.ndarray
    transition_error: np.ndarray
    method: list[str] = field(default_factory=list)
    seq_len: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    num_sequences: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    model_files: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def protocol(self) -> str:
        """How the saved evaluations were made: matching, length and sample size (ranges when the
        models differ, since distances at different lengths or by different matchings do not
        compare)."""
        methods = "/".join(dict.fromkeys(self.method)) or "?"
        return f"{methods}, L {_span(self.seq_len)}, N {_span(self.num_sequences)}"

    @property
    def mixed(self) -> bool:
        """Whether the models were evaluated by more than one protocol."""
        rows = zip(self.method, self.seq_len.tolist(), self.num_sequences.tolist(), strict=True)
        return len(set(rows)) > 1

    @property
    def groups(self) -> list[str]:
        """Groups ordered by number of states, then name."""
        first = {}
        for g, m in zip(self.group, self.states, strict=True):
            first.setdefault(g, int(m))
        return sorted(first, key=lambda g: (first[g], g))

    @classmethod
    def from_root(cls, root: str | Path, file_name: str | None = None) -> TreeEvaluations:
        """Discover the tree and read every model's `file_name` (default evaluation.json); a
        UserError when none can be read."""
        from hmmrnn.analyses.base import ResultFileError
        from hmmrnn.analyses.evaluation import EVALUATION_NAME, load_evaluation
        from hmmrnn.tree import discover

        file_name = file_name or EVALUATION_NAME

        root = Path(root).expanduser()
        pairs, skipped = [], []
        for entry in discover(root):
            if not usable(entry):
                skipped.append({"model": entry.rel, "reason": entry.reason or entry.status})
                continue
            path = entry.path / file_name
            if not path.is_file():
                skipped.append({"model": entry.rel, "reason": f"no {file_name}"})
                continue
            try:
                pairs.append((entry, load_evaluation(path).result))
            except ResultFileError as exc:
                skipped.append({"model": entry.rel, "reason": str(exc)})
        if not pairs:
            why = "; ".join(f"{s['model']}: {s['reason']}" for s in skipped[:5]) or "no models"
            raise UserError(f"{root}: no model with a readable {file_name} ({why})")
        return cls.from_results(root, pairs, skipped)

    @classmethod
    def from_results(
        cls, root: str | Path, pairs: list, skipped: list[dict] | None = None
    ) -> TreeEvaluations:
        """The table of (ModelEntry, EvaluationResult) pairs already at hand (e.g. just computed)."""
        root = Path(root).expanduser()
        cols: dict[str, list] = {k: [] for k in _COLUMNS}
        for entry, ev in pairs:
            _append(cols, entry, ev, root)
        return cls(
            root=str(root),
            **{k: (np.asarray(v) if _COLUMNS[k] else v) for k, v in cols.items()},
            skipped=list(skipped or []),
        )


_COLUMNS = {  # name -> stored as numpy array?
    "rel": False,
    "group": False,
    "states": True,
    "hidden": True,
    "input": True,
    "seed": True,
    "baseline_mean": True,
    "baseline_std": True,
    "rnn_mean": True,
    "rnn_std": True,
    "transition_sq_error": True,
    "transition_error": True,
    "method": False,
    "seq_len": True,
    "num_sequences": True,
    "model_files": False,
}


def _span(values: np.ndarray) -> str:
    if not len(values):
        return "?"
    lo, hi = int(np.min(values)), int(np.max(values))
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _group_of(rel: str, root: Path) -> str:
    """The HMM family of a model: its first path part that is not hidden_/input_/seed_ N."""
    parts = [p for p in Path(rel).parts if not _LEVEL.match(p)]
    return parts[0] if parts else root.name


def _append(cols: dict, entry, ev, root: Path) -> None:
    cols["rel"].append(entry.rel)
    cols["group"].append(_group_of(entry.rel, root))
    cols["states"].append(int(entry.config.states))
    cols["input"].append(int(entry.sizes[0]))
    cols["hidden"].append(int(entry.sizes[1]))
    cols["seed"].append(_seed_of(entry))
    for name in ("baseline_mean", "baseline_std", "rnn_mean", "rnn_std"):
        cols[name].append(float(getattr(ev, name)))
    cols["transition_sq_error"].append(float(ev.transition_sq_error))
    cols["transition_error"].append(float(ev.transition_error))
    cols["method"].append(str(ev.method))
    cols["seq_len"].append(int(ev.seq_len))
    cols["num_sequences"].append(int(ev.num_sequences))
    cols["model_files"].append(str(entry.model_file))


# --- the state-space grid: one driven PC plane per model ------------------------------------------


def tree_pca_params(
    steps: Annotated[int, P("driven steps of each model's PCA", ge=2)] = 1000,
    seed: Annotated[int, P("seed of the driving noise", ge=0)] = 0,
    max_models: Annotated[
        int, P("most models drawn (the lowest seed of each size first)", ge=1)
    ] = 48,
) -> dict:
    """The parameters of the state-space grid (its schema is built from this signature)."""
    return {"steps": steps, "seed": seed, "max_models": max_models}


@dataclass
class TreePCA(TreeRows):
    """Per model (one per family, hidden and input size: the lowest seed), its driven run on its own
    PC1-PC2 plane. points (N, T, 2), outputs (N, T), evr (N, 2); skipped: models left out."""

    points: np.ndarray
    outputs: np.ndarray
    evr: np.ndarray
    skipped: list[dict] = field(default_factory=list)


def tree_pca(
    root: str | Path,
    *,
    steps: int = 1000,
    seed: int = 0,
    max_models: int = 48,
    device: str = "auto",
    progress=None,
    cancel=None,
) -> TreePCA:
    """Each model's driven PCA (the registered `pca` analysis, through the cache)."""
    from hmmrnn.analyses.base import check_cancel
    from hmmrnn.analyses.registry import run_analysis
    from hmmrnn.tree import discover, load_model

    root = Path(root).expanduser()
    chosen: dict[tuple, tuple] = {}
    skipped = []
    for entry in discover(root):
        if not usable(entry):
            skipped.append({"model": entry.rel, "reason": entry.reason or entry.status})
            continue
        seed_of = _seed_of(entry)
        key = (_group_of(entry.rel, root), entry.sizes[1], entry.sizes[0])
        if key not in chosen or seed_of < chosen[key][1]:
            chosen[key] = (entry, seed_of)
    keys = sorted(chosen, key=lambda k: (int(chosen[k][0].config.states), k))
    for k in keys[max_models:]:
        skipped.append({"model": chosen[k][0].rel, "reason": f"beyond max_models {max_models}"})
    rows = []
    for i, key in enumerate(keys[:max_models]):
        check_cancel(cancel)
        entry, seed_of = chosen[key]
        if progress is not None:
            progress(i / max(1, min(len(keys), max_models)), f"PCA of {entry.rel}")
        try:
            loaded = load_model(entry.path, device=device)
            r = run_analysis("pca", loaded, {"steps": steps, "seed": seed}, cancel=cancel).result
        except UserError as exc:
            skipped.append({"model": entry.rel, "reason": str(exc)})
            continue
        proj = np.zeros((len(r.projections), 2))
        c = min(2, r.projections.shape[1])
        proj[:, :c] = r.projections[:, :c]
        evr = np.zeros(2)
        evr[:c] = r.explained_variance_ratio[:c]
        rows.append((entry, key, seed_of, proj, np.asarray(r.outputs), evr))
    if not rows:
        why = "; ".join(f"{s['model']}: {s['reason']}" for s in skipped[:5]) or "no models"
        raise UserError(f"{root}: no model to draw ({why})")
    return TreePCA(
        root=str(root),
        rel=[r[0].rel for r in rows],
        group=[r[1][0] for r in rows],
        states=np.array([int(r[0].config.states) for r in rows]),
        hidden=np.array([r[1][1] for r in rows]),
        input=np.array([r[1][2] for r in rows]),
        seed=np.array([r[2] for r in rows]),
        points=np.stack([r[3] for r in rows]),
        outputs=np.stack([r[4] for r in rows]),
        evr=np.stack([r[5] for r in rows]),
        skipped=skipped,
    )


def usable(entry) -> bool:
    """Whether a discovered model can be compared: it loads, with known sizes and a config."""
    return entry.status == "ok" and entry.sizes is not None and entry.config is not None


def _seed_of(entry) -> int:
    seed_match = next((m for p in entry.parts[::-1] if (m := _SEED.search(p))), None)
    return int(seed_match.group(1)) if seed_match else int(entry.config.seed)
