"""Sweep grids: a dict whose values are lists of alternatives, from flags or a TOML/JSON spec;
every combination is one model (a SweepJob with its config and tree folder)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.errors import UserError
from hmmrnn.hmm import HMMSpecError, get_preset
from hmmrnn.io import read_json_file, read_text_file

LIST_KEYS = ("learning_rates", "betas")  # values that are lists themselves
MATRIX_KEYS = ("custom_transition_matrix", "custom_emission_matrix")


class SpecError(UserError):
    """A grid that cannot be expanded (unknown key or preset, empty list); names the problem."""


@dataclass
class SweepJob:
    """One model of a grid: its folder in the tree and its config (None when invalid)."""

    rel: str
    values: dict
    config: ExperimentConfig | None
    error: str = ""


def spec_keys() -> list[str]:
    """Keys a grid may set: every config field (preset and seed included)."""
    return [f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "extra"]


def load_spec(path: str | Path) -> dict:
    """Read a TOML or JSON grid spec (by extension; JSON when in doubt)."""
    path = Path(path)
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(read_text_file(path, SpecError))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path} is not valid TOML: {exc}") from exc
    else:
        data = read_json_file(path, SpecError)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a table/object of keys, got {type(data).__name__}")
    return data


def check_spec(spec: dict) -> None:
    """Structural checks only: bad values are left for each model's config to report."""
    allowed = set(spec_keys())
    grids = spec.get("grid", [{}])
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise SpecError("'grid' must be a non-empty list of tables/objects")
    for where, table in [("top level", spec), *((f"grid {i + 1}", g) for i, g in enumerate(grids))]:
        unknown = sorted(set(table) - allowed - ({"grid"} if table is spec else set()))
        if unknown:
            raise SpecError(
                f"{where}: unknown key(s) {', '.join(unknown)}; keys are config fields: "
                + ", ".join(sorted(allowed))
            )
        for key, value in table.items():
            if key == "grid":
                continue
            if not alternatives(key, value):
                raise SpecError(f"{where}: {key} has an empty list of values")
            if key == "preset":
                for name in alternatives(key, value):
                    if name is not None:
                        _check_preset(name)


def _check_preset(name: Any) -> None:
    if not isinstance(name, str):
        raise SpecError(f"preset must be a name, got {name!r}")
    try:
        get_preset(name)
    except HMMSpecError as exc:
        raise SpecError(str(exc)) from exc


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def alternatives(key: str, value: Any) -> list:
    """The values a grid key takes. A list means alternatives, except for keys whose value is a
    list itself: there a list of lists (learning_rates, betas) or of matrices means alternatives."""
    if key in LIST_KEYS:
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return value
        return [value]
    if key in MATRIX_KEYS:
        return list(value) if _depth(value) >= 3 else [value]
    return list(value) if isinstance(value, list) else [value]


def expand(spec: dict, base: dict | None = None) -> list[SweepJob]:
    """Every model of a grid spec, each with its tree folder.

    `spec`: config keys (a list = alternatives) plus an optional `grid` list of tables, each expanded
    separately with the top-level keys as defaults. `base`: a config dict under everything (the
    CLI's --config). A model whose config is invalid keeps its error instead of raising, so that it
    fails alone.
    """
    from hmmrnn.sweep.layout import assign_folders

    check_spec(spec)
    top = {k: v for k, v in spec.items() if k != "grid"}
    first = ("preset", "hidden_size", "input_size")  # the study's order; seeds vary fastest
    order = {k: i for i, k in enumerate([*first, *(k for k in spec_keys() if k not in first)])}
    jobs: list[SweepJob] = []
    for grid in spec.get("grid", [{}]):
        merged = {**top, **grid}
        if base is not None and merged.get("preset") is not None:
            raise SpecError("give either presets or a base config, not both")
        keys = sorted(merged, key=lambda k: (k == "seed", order[k]))
        for combo in itertools.product(*(alternatives(k, merged[k]) for k in keys)):
            jobs.append(_make_job(dict(zip(keys, combo, strict=True)), base))
    return assign_folders(jobs)


def _make_job(values: dict, base: dict | None) -> SweepJob:
    """A job from one combination; an invalid config is kept as the job's error."""
    values = {**(base or {}), **values}
    data = dict(values)
    preset = data.pop("preset", None) if base is None else None
    try:
        if preset:
            config = ExperimentConfig.from_preset(preset, **data)
        else:
            config = ExperimentConfig.from_dict(values)
    except (ConfigError, HMMSpecError, TypeError) as exc:
        return SweepJob("", values, None, error=str(exc))
    return SweepJob("", values, config)
