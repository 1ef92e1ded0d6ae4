"""The named analyses the CLI (`hmmrnn analyze`), the TUI and the exporters share.

Each analysis module defines plain functions taking a model and keyword parameters, and registers an
`AnalysisSpec` whose `run(loaded, params, progress, cancel)` adapts a LoadedModel to that function.
`run_analysis` fills defaults, validates parameter names and goes through the result cache.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hmmrnn.analyses.base import ProgressFn, Result, cached, no_progress
from hmmrnn.cancel import CancelToken

# Modules whose import registers analyses (each calls `register(...)` at import time).
ANALYSIS_MODULES = (
    "hmmrnn.analyses.pca",
    "hmmrnn.analyses.statespace",
    "hmmrnn.analyses.residency",
    "hmmrnn.analyses.locate",
    "hmmrnn.analyses.noise",
    "hmmrnn.analyses.neurons",
    "hmmrnn.analyses.ablation",
    "hmmrnn.analyses.evolution",
)


@dataclass(frozen=True)
class AnalysisSpec:
    """One named analysis: defaults, the adapter that runs it and how to summarise its result."""

    name: str
    help: str
    result_cls: type[Result]
    defaults: dict[str, Any]
    run: Callable[[Any, dict, ProgressFn, CancelToken | None], Result]
    summary: Callable[[Result], list[tuple[str, str]]] = field(default=lambda r: [])
    cacheable: bool = True


_REGISTRY: dict[str, AnalysisSpec] = {}


def register(spec: AnalysisSpec) -> AnalysisSpec:
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    for module in ANALYSIS_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def all_specs() -> dict[str, AnalysisSpec]:
    _load_all()
    return dict(_REGISTRY)


def get_spec(name: str) -> AnalysisSpec:
    specs = all_specs()
    if name not in specs:
        raise KeyError(f"unknown analysis {name!r}; choose one of {', '.join(sorted(specs))}")
    return specs[name]


def resolve_params(spec: AnalysisSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the user's values; unknown names are an error naming them."""
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"{spec.name}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(spec.defaults)) or 'none'}"
        )
    return {**spec.defaults, **params}


def run_analysis(
    name: str,
    loaded,
    params: dict[str, Any] | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    use_cache: bool = True,
) -> Result:
    """Run (or fetch from the cache) analysis `name` on a LoadedModel."""
    spec = get_spec(name)
    full = resolve_params(spec, params or {})
    progress = progress or no_progress

    def compute() -> Result:
        return spec.run(loaded, full, progress, cancel)

    if not (use_cache and spec.cacheable):
        return compute()
    return cached(name, spec.result_cls, loaded.model_file, full, compute)
