"""Tree figures: distance and transition error across a model tree, as the study's grid plots.

A tree root (e.g. `TrainedModels/`) holds one folder per HMM family, each with hidden_H/input_D/
seed_S models. These figures only read each model's saved `evaluation.json` (from `hmmrnn evaluate`),
never re-evaluate: a tree of 144 models would take hours. Models without one are listed as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmmrnn.errors import UserError
from hmmrnn.figures.style import (
    HMM_COLOR,
    hide_unused,
    new_figure,
    renderer,
    sequential,
)

_LEVEL = re.compile(r"^(hidden|input|seed)[_ ]?\d+$", re.IGNORECASE)
_SEED = re.compile(r"seed[_ ]?(\d+)", re.IGNORECASE)


@dataclass
class TreeEvaluations:
    """One row per evaluated model: its group (HMM family), sizes, seed and saved statistics."""

    root: str
    rel: list[str]
    group: list[str]
    states: np.ndarray
    hidden: np.ndarray
    input: np.ndarray
    seed: np.ndarray
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

    def __len__(self) -> int:
        return len(self.rel)

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
    def from_root(cls, root: str | Path) -> TreeEvaluations:
        """Discover the tree and read every evaluation.json (ValueError when none can be read)."""
        from hmmrnn.analyses.base import ResultFileError
        from hmmrnn.analyses.evaluation import EVALUATION_NAME, load_evaluation
        from hmmrnn.tree import discover

        root = Path(root).expanduser()
        cols: dict[str, list] = {k: [] for k in _COLUMNS}
        skipped: list[dict] = []
        for entry in discover(root):
            if entry.status != "ok" or entry.sizes is None or entry.config is None:
                skipped.append({"model": entry.rel, "reason": entry.reason or entry.status})
                continue
            path = entry.path / EVALUATION_NAME
            if not path.is_file():
                skipped.append({"model": entry.rel, "reason": "no evaluation.json"})
                continue
            try:
                ev = load_evaluation(path).result
            except ResultFileError as exc:
                skipped.append({"model": entry.rel, "reason": str(exc)})
                continue
            _append(cols, entry, ev, root)
        if not cols["rel"]:
            why = "; ".join(f"{s['model']}: {s['reason']}" for s in skipped[:5]) or "no models"
            raise UserError(f"{root}: no model with a readable evaluation.json ({why})")
        return cls(
            root=str(root),
            **{k: (np.asarray(v) if _COLUMNS[k] else v) for k, v in cols.items()},
            skipped=skipped,
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
    parts = Path(entry.rel).parts
    seed_match = next((m for p in parts[::-1] if (m := _SEED.search(p))), None)
    cols["rel"].append(entry.rel)
    cols["group"].append(_group_of(entry.rel, root))
    cols["states"].append(int(entry.config.states))
    cols["input"].append(int(entry.sizes[0]))
    cols["hidden"].append(int(entry.sizes[1]))
    cols["seed"].append(int(seed_match.group(1)) if seed_match else int(entry.config.seed))
    for name in ("baseline_mean", "baseline_std", "rnn_mean", "rnn_std"):
        cols[name].append(float(getattr(ev, name)))
    cols["transition_sq_error"].append(float(ev.transition_sq_error))
    cols["transition_error"].append(float(ev.transition_error))
    cols["method"].append(str(ev.method))
    cols["seq_len"].append(int(ev.seq_len))
    cols["num_sequences"].append(int(ev.num_sequences))
    cols["model_files"].append(str(entry.model_file))


def _grid_shape(n: int, width: str) -> tuple[int, int]:
    """(rows, columns) for n panels: 4 across a double-width page, 2 across a single column."""
    ncols = min(n, 4 if width == "double" else 2)
    return -(-n // ncols), ncols


def _grid_axes(fig, n: int, width: str):
    nrows, ncols = _grid_shape(n, width)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    hide_unused(axes, n)
    return axes[:n]


def _series(tree: TreeEvaluations, values: np.ndarray, group: str, inp: int):
    """(hidden sizes, mean over seeds, std over seeds) of one input dimension within a group."""
    sel = (np.asarray(tree.group) == group) & (tree.input == inp) & np.isfinite(values)
    hs = np.unique(tree.hidden[sel])
    means = np.array([values[sel & (tree.hidden == h)].mean() for h in hs])
    stds = np.array([values[sel & (tree.hidden == h)].std() for h in hs])
    return hs, means, stds


def _legend_key(label: str) -> tuple[int, float]:
    """The baseline first, then the input sizes in increasing order."""
    return (1, float(label.split()[-1])) if label.startswith("input size ") else (0, 0.0)


def _offset(series: dict, inp, hidden) -> float:
    """Where input size `inp` sits among the input sizes that have a point at `hidden`."""
    sharing = [i for i, (hs, _, _) in series.items() if hidden in hs]
    return sharing.index(inp) - (len(sharing) - 1) / 2


def _panel_title(group: str, states: int) -> str:
    """The group and its state count, on two lines when the name would run into the next panel."""
    label = group.replace("_", " ")
    return f"{label} ({states} states)" if len(label) <= 12 else f"{label}\n({states} states)"


def _spans_decade(values: np.ndarray) -> bool:
    """Whether the finite positive values span more than a factor 10: only then is log worth it."""
    finite = values[np.isfinite(values) & (values > 0)]
    return bool(finite.size and finite.max() / finite.min() > 10)


def _render_grid(
    tree: TreeEvaluations, values, ylabel: str, width: str, *, baseline=None, log=False
):
    groups = tree.groups
    n_rows, _ = _grid_shape(len(groups), width)
    fig = new_figure(width, height=0.4 + 2.0 * n_rows)
    axes = _grid_axes(fig, len(groups), width)
    inputs = np.unique(tree.input)
    colors = dict(zip(inputs, sequential(len(inputs), "cividis", 0.0, 0.8), strict=True))
    all_hidden = np.unique(tree.hidden)
    pos = {h: i for i, h in enumerate(all_hidden)}
    dodge = 0.4 / max(len(inputs), 1)
    log_y = log and _spans_decade(values)
    for ax, group in zip(axes, groups, strict=False):
        series = {inp: _series(tree, values, group, inp) for inp in inputs}
        series = {inp: s for inp, s in series.items() if len(s[0])}
        for inp, (hs, mean, std) in series.items():
            # side by side only where several input sizes share a hidden size, else on the tick
            x = np.array([pos[h] + _offset(series, inp, h) * dodge for h in hs], dtype=float)
            ax.errorbar(
                x,
                mean,
                yerr=std,
                color=colors[inp],
                marker="o",
                ms=3,
                lw=0.8,
                capsize=1.5,
                elinewidth=0.7,
                label=f"input size {inp}",
            )
        if baseline is not None:
            sel = np.asarray(tree.group) == group
            ref = baseline[sel]
            ref = ref[np.isfinite(ref)]
            if ref.size:
                ax.axhline(float(ref.mean()), color=HMM_COLOR, ls="--", lw=0.8, label="HMM–HMM")
        m = int(tree.states[np.asarray(tree.group) == group][0])
        ax.set_title(_panel_title(group, m), fontsize="medium")
        ax.set_xticks(range(len(all_hidden)), [str(h) for h in all_hidden])
        ax.set_xlim(-0.6, len(all_hidden) - 0.4)
        ax.set_xlabel("hidden units")
        if log_y:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: _legend_key(labels[i]))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6))
    return fig


@renderer
def render_grid_distances(tree: TreeEvaluations, *, width: str = "double"):
    """HMM–RNN matched distance (mean ± std over seeds) per group, hidden size and input dimension;
    dashed: the HMM–HMM baseline of the group."""
    fig = _render_grid(tree, tree.rnn_mean, "matched distance", width, baseline=tree.baseline_mean)
    fig.suptitle(f"evaluations: {tree.protocol}", fontsize="small")  # what the distances mean
    return fig


@renderer
def render_grid_transition_error(tree: TreeEvaluations, *, width: str = "double"):
    """Largest squared difference of the transition matrices (the study's measure), log scale."""
    values = np.maximum(tree.transition_sq_error, 1e-12)
    return _render_grid(tree, values, "max squared transition difference", width, log=True)
