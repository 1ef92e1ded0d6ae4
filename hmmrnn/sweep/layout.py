"""Where each model of a sweep goes (the study's tree layout), and what state its folder is in.

Each model gets the folder the study used (`Three/hidden_150/input_100/seed_0`, `Fully_Connected/
Seed 0`), so a sweep's tree opens in every tool that reads the study's. What to do with a model is
decided from its folder alone (run.json, checkpoint), never from the sweep's own bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.hmm import PRESETS, get_preset
from hmmrnn.runstate import run_state
from hmmrnn.sweep.spec import MATRIX_KEYS, SpecError, SweepJob
from hmmrnn.tree import CONFIG_NAME

SEED_ONLY_FOLDERS = ("Fully_Connected", "Cyclic")  # the study's `Family/Seed S` layout
HMM_KEYS = (
    "states", "outputs", "transition_method", "emission_method", "stay_prob", "target_prob",
    *MATRIX_KEYS,
)  # fmt: skip


def _effective(job: SweepJob) -> dict:
    """The full key set of a job, also for invalid ones (for naming their would-be folder)."""
    if job.config is not None:
        return job.config.to_dict()
    preset = job.values.get("preset")
    start = ExperimentConfig.from_preset(preset) if preset else ExperimentConfig()
    return {**start.to_dict(), **job.values}


def _same_hmm(job: SweepJob, eff: dict, preset_name: str) -> bool:
    """Whether a config describes its preset's HMM (else it is named as a custom one)."""
    ref = ExperimentConfig.from_preset(preset_name)
    if job.config is None:
        return all(eff.get(k) == getattr(ref, k) for k in HMM_KEYS)
    import numpy as np

    a, b = job.config.build_hmm(), ref.build_hmm()
    return all(
        x.shape == y.shape and np.allclose(x, y)
        for x, y in ((a.transition, b.transition), (a.emission, b.emission))
    )


def _safe(text: str) -> str:
    """One path component: readable, no separators, never '.' or '..'."""
    cleaned = re.sub(r"[^A-Za-z0-9._+= -]", "-", text).strip() or "-"
    return cleaned if cleaned.strip(".") else cleaned.replace(".", "-")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return "+".join(f"{v:g}" for v in value)
    if isinstance(value, str):
        return value
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:8]


def _base_parts(job: SweepJob, eff: dict) -> tuple[str, bool]:
    """(family folder, whether it uses the study's `Seed S` leaf without hidden/input levels)."""
    name = eff.get("preset")
    if isinstance(name, str) and name.lower() in (p.lower() for p in PRESETS):
        preset = get_preset(name)
        if _same_hmm(job, eff, preset.name):
            folder = preset.folder or preset.name
            return folder, folder in SEED_ONLY_FOLDERS
    family = (
        f"Custom_{_fmt(eff.get('states'))}states_{_fmt(eff.get('transition_method'))}"
        f"_{_fmt(eff.get('emission_method'))}"
    )
    if eff.get("outputs") != 3:
        family += f"_{_fmt(eff.get('outputs'))}outputs"
    return _safe(family), False


def _seed_leaf(eff: dict, seed_only: bool) -> str:
    return f"Seed {_fmt(eff.get('seed'))}" if seed_only else f"seed_{_fmt(eff.get('seed'))}"


def assign_folders(jobs: list[SweepJob]) -> list[SweepJob]:
    """Study folders; where models would share one, the keys they differ in name them apart.

    hidden/input sizes become `hidden_H/input_D` levels (as in the study); any other differing key
    is appended to the leaf (`seed_0_epochs3`). Identical models are listed once.
    """
    effs = [_effective(j) for j in jobs]
    bases = []
    for job, eff in zip(jobs, effs, strict=True):
        family, seed_only = _base_parts(job, eff)
        sizes = [] if seed_only else [f"hidden_{_fmt(eff['hidden_size'])}",
                                      f"input_{_fmt(eff['input_size'])}"]  # fmt: skip
        bases.append((family, seed_only, tuple(sizes), _seed_leaf(eff, seed_only)))
    groups: dict[tuple, list[int]] = {}
    for i, b in enumerate(bases):
        groups.setdefault(b, []).append(i)
    seen: dict[str, str] = {}
    out = []
    for i, (job, eff) in enumerate(zip(jobs, effs, strict=True)):
        family, seed_only, sizes, leaf = bases[i]
        members = [effs[j] for j in groups[bases[i]]]
        varied = [k for k in eff if k != "preset" and any(m.get(k) != eff.get(k) for m in members)]
        parts = [family, *sizes]
        for key, label in (("hidden_size", "hidden"), ("input_size", "input")):
            if key in varied:
                varied.remove(key)
                parts.append(f"{label}_{_fmt(eff[key])}")
        leaf += "".join(f"_{key}{_fmt(eff[key])}" for key in varied)
        job.rel = "/".join(_safe(p) for p in [*parts, leaf])
        key = json.dumps(eff, sort_keys=True, default=str)
        if job.rel in seen:
            if seen[job.rel] == key:
                continue  # the same model listed twice
            raise SpecError(f"two different models would share {job.rel}")
        seen[job.rel] = key
        out.append(job)
    return out


# --- job state ----------------------------------------------------------------------------------


def job_state(folder: str | Path) -> str:
    """absent | finished | running | interrupted | diverged, from the folder's own files."""
    return run_state(folder)


def config_conflict(folder: Path, config: ExperimentConfig) -> str:
    """Why the run already in a folder is not this config's ('' when it is)."""
    try:
        stored = ExperimentConfig.load(folder / CONFIG_NAME).to_dict()
    except ConfigError as exc:
        return f"its {CONFIG_NAME} cannot be used ({exc})"
    new = config.to_dict()
    diff = sorted(k for k in set(stored) | set(new) if stored.get(k) != new.get(k))
    return f"it holds a run with a different config ({', '.join(diff)})" if diff else ""
