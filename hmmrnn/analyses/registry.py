"""The named analyses every front-end shares, and the one way an analysis is run.

An analysis is registered once, at the bottom of the module that defines it:

    register(Analysis(
        name="pca", fn=driven_pca, result=PCAResult, version=1, help="...",
        summary=_summary,
        figures=(Figure("pca-2d", "...", "hmmrnn.figures.statespace:render_pca_2d"),),
        views=(View("states", "hmmrnn.figures.terminal:pca_states"),),
    ))

Its parameters are the typed schema of `fn` (see hmmrnn.params): the CLI's flags and `--help`, the
TUI's parameter form, sidecars and cache keys all come from it. `run_analysis` resolves the user's
values (user > model config > default), injects what `fn` asks for (`progress`, `cancel`, `hmm`,
`device`, `folder`, `context`), and goes through the result cache, whose key holds the model's
sha256, the analysis name and version, and the resolved parameters: bumping `version` after
changing an algorithm makes every cached result of the old one unreachable.

Every module of the hmmrnn.analyses package is imported when the registry is first asked, so an
analysis is added by adding its module. Figures and terminal views are callables or
"module:function" strings; renderers import matplotlib only when they draw, so running an analysis
never imports it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hmmrnn.analyses.base import AnalysisRun, ProgressFn, Result, check_cancel, no_progress
from hmmrnn.cancel import CancelToken
from hmmrnn.errors import ParamError, UserError
from hmmrnn.params import Schema

_LOADED = False


def resolve_ref(ref: str | Callable) -> Callable:
    """A callable, or the object a "package.module:attribute" string names."""
    if callable(ref):
        return ref
    module, _, attr = str(ref).partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Figure:
    """A publication figure of an analysis' result.

    render(result, *, width) -> matplotlib Figure. derive(loaded, result) -> the drawable, for
    figures of a view computed on top of the result (e.g. weight blocks from the populations).
    """

    name: str
    help: str
    render: str | Callable
    derive: str | Callable | None = None
    colors_outputs: bool = False  # colours something by output symbol (tests check the palette)


@dataclass(frozen=True)
class View:
    """A terminal plot of an analysis' result: draw(plt, result) on a plotext figure."""

    title: str
    draw: str | Callable

    def function(self) -> Callable:
        return resolve_ref(self.draw)


@dataclass(frozen=True)
class Analysis:
    """One named analysis: the function, its result class, schema, version and presentations.

    subject: what `fn` takes first, "model" (the network) or "folder" (the model folder, e.g. its
    checkpoints). fingerprint(loaded) -> text that also enters the cache key, for analyses that
    read more than the best weights.
    """

    name: str
    fn: Callable
    result: type[Result]
    help: str
    version: int = 1
    summary: Callable[[Any], list[tuple[str, str]]] = field(default=lambda r: [])
    figures: tuple[Figure, ...] = ()
    views: tuple[View, ...] = ()
    subject: str = "model"
    fingerprint: Callable[[Any], str] | None = None
    cacheable: bool = True
    bias_free: bool = False  # relies on h -> ReLU(W h) (no biases): refused on a biased model
    schema: Schema = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", Schema.from_function(self.name, self.fn))

    @property
    def defaults(self) -> dict[str, Any]:
        return self.schema.defaults

    def injected(self) -> set[str]:
        return set(inspect.signature(self.fn).parameters)


_REGISTRY: dict[str, Analysis] = {}


def register(spec: Analysis) -> Analysis:
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    """Import every module of hmmrnn.analyses: each registers its analyses at import, so a new
    analysis is one new module and nothing else."""
    global _LOADED
    if _LOADED:
        return
    import pkgutil

    import hmmrnn.analyses as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def all_specs() -> dict[str, Analysis]:
    _load_all()
    return dict(_REGISTRY)


def get_spec(name: str) -> Analysis:
    specs = all_specs()
    if name not in specs:
        raise UserError(f"unknown analysis {name!r}; choose one of {', '.join(sorted(specs))}")
    return specs[name]


def resolve_params(spec: Analysis, params: dict[str, Any] | None, loaded=None) -> dict[str, Any]:
    """The values the analysis runs with (user > model config > default), checked."""
    config = getattr(loaded, "config", None)
    return spec.schema.resolve(params or {}, config)


@dataclass
class Context:
    """What an analysis function may ask for (`context=`): the model's folder and config, and
    other analyses run through the same cache, cancellation and progress."""

    loaded: Any
    progress: ProgressFn = no_progress
    cancel: CancelToken | None = None
    use_cache: bool = True

    def run(self, name: str, params: dict | None = None, span: tuple[float, float] = (0, 1)):
        """The result of another analysis on the same model (cached); its progress fills `span`
        of this one's bar."""
        lo, hi = span

        def scaled(fraction: float, message: str = "") -> None:
            self.progress(lo + (hi - lo) * fraction, f"{name}: {message}")

        return run_analysis(
            name, self.loaded, params, progress=scaled, cancel=self.cancel, use_cache=self.use_cache
        ).result


def _call(spec: Analysis, loaded, params: dict, progress: ProgressFn, cancel, use_cache) -> Result:
    wants = spec.injected()
    kwargs = dict(params)
    offers = {
        "progress": lambda: progress,
        "cancel": lambda: cancel,
        "context": lambda: Context(loaded, progress, cancel, use_cache),
        "device": lambda: loaded.model.device,
        "hmm": lambda: loaded.config.build_hmm(),
        "folder": lambda: loaded.folder,
    }
    for name, make in offers.items():
        if name in wants:
            kwargs[name] = make()
    first = loaded.folder if spec.subject == "folder" else loaded.model
    progress(0.0, "starting")  # every analysis shows it started, and can be cancelled from here
    check_cancel(cancel)
    from hmmrnn.device import limited_threads

    device = getattr(getattr(loaded, "model", None), "device", "cpu")
    with limited_threads(device):  # see hmmrnn.device.analysis_threads
        return spec.fn(first, **kwargs)


def run_analysis(
    name: str,
    loaded,
    params: dict[str, Any] | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    use_cache: bool = True,
) -> AnalysisRun:
    """Run analysis `name` on a LoadedModel (or fetch it from the cache).

    Bad parameters raise ParamError; a ValueError from the analysis itself (a model on which it
    cannot run, e.g. no switches to locate) becomes a UserError naming the analysis.
    """
    from hmmrnn.analyses.base import cached, model_hash

    spec = get_spec(name)
    if spec.bias_free and getattr(getattr(loaded, "model", None), "has_bias", False):
        raise UserError(
            f"{name} assumes a bias-free network (h = 0 is then a fixed point and the map is "
            "positively homogeneous); this model has biases"
        )
    full = resolve_params(spec, params, loaded)
    progress = progress or no_progress
    model_file = getattr(loaded, "model_file", None)
    sha = model_hash(model_file) if model_file is not None else None

    def compute() -> Result:
        try:
            return _call(spec, loaded, full, progress, cancel, use_cache)
        except (UserError, ParamError):
            raise
        except ValueError as exc:
            raise UserError(f"{name}: {exc}") from exc
        except MemoryError as exc:
            raise UserError(f"{name}: not enough memory for these parameters") from exc
        except RuntimeError as exc:  # torch's allocator failing: too large, not a bug
            if "alloc" not in str(exc).lower() and "out of memory" not in str(exc).lower():
                raise
            raise UserError(f"{name}: not enough memory for these parameters ({exc})") from exc

    source = "computed"
    if use_cache and spec.cacheable and sha is not None:
        extra = spec.fingerprint(loaded) if spec.fingerprint else ""
        result, hit = cached(name, spec.version, spec.result, sha, full, compute, extra=extra)
        source = "cache" if hit else "computed"
    else:
        result = compute()
    return AnalysisRun(
        analysis=name,
        version=spec.version,
        params=full,
        result=result,
        model_file=None if model_file is None else str(model_file),
        model_sha256=sha,
        source=source,
    )


def figures() -> dict[str, tuple[Analysis, Figure]]:
    """Every registered analysis figure by name."""
    return {fig.name: (spec, fig) for spec in all_specs().values() for fig in spec.figures}
