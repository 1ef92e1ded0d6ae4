"""What every analysis shares: result records, their files, progress/cancel hooks and the cache.

Results are dataclasses of numpy arrays and plain scalars. They serialise two ways:
- `.npz` bytes (arrays) with a JSON header (everything else), read back with allow_pickle=False, so
  a cache file can never run code. The cache key is (model weights' sha256, analysis name and
  version, resolved parameters): the TUI and the CLI never compute the same thing twice, a retrained
  model never hits a stale entry, and a changed algorithm (a version bump) never serves an old one.
- strict JSON (`to_dict` / `from_dict`): arrays as nested lists, non-finite numbers as the strings
  "nan", "inf" and "-inf". An `AnalysisRun` wraps a result with what produced it (analysis, version,
  parameters, model file and hash); `evaluation.json` is a saved AnalysisRun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import threading
import typing
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hmmrnn.cancel import CancelToken
from hmmrnn.errors import UserError
from hmmrnn.io import (
    atomic_write_bytes,
    atomic_write_json,
    file_sha256,
    read_json_file,
    user_cache_dir,
)

CACHE_VERSION = 2
RUN_FORMAT = "hmmrnn.run/1"
ProgressFn = Callable[[float, str], None]
R = TypeVar("R", bound="Result")


class ResultFileError(UserError):
    """A saved result that cannot be read back; the message says why."""


def no_progress(fraction: float, message: str = "") -> None:  # noqa: ARG001
    """Default progress callback."""


class Result:
    """Mixin for result dataclasses: lossless to/from npz bytes, and strict JSON dicts."""

    def to_dict(self) -> dict:
        """Strict-JSON view (arrays become nested lists, non-finite numbers strings)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        """Inverse of to_dict; a ValueError names the first missing or malformed field."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ValueError(f"{cls.__name__} lacks field {f.name}")
                continue
            values[f.name] = _from_json(f.name, data[f.name], hints.get(f.name))
        return cls(**values)

    def to_bytes(self) -> bytes:
        arrays, meta = {}, {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                meta[f.name] = jsonable(value)
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.array(json.dumps(meta)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls: type[R], data: bytes) -> R:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["__meta__"]))
            arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        meta = {k: _from_json(k, v, hints.get(k)) for k, v in meta.items() if k in names}
        return cls(**{**meta, **{k: v for k, v in arrays.items() if k in names}})


def jsonable(value: Any) -> Any:
    """Strict-JSON form of a result value: arrays to lists, non-finite floats to strings."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _from_json(name: str, value: Any, hint: Any) -> Any:
    if hint is np.ndarray:
        try:
            arr = np.asarray(value)
            if arr.dtype.kind in "USO":  # lists holding "nan"/"inf" strings
                arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a numeric array") from exc
        return arr
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError as exc:
            raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {value!r}")
    return value


@dataclasses.dataclass
class AnalysisRun:
    """A result with what produced it: the analysis and its version, the parameters actually used,
    the model file and its sha256, and where the result came from (computed, cache, file)."""

    analysis: str
    version: int
    params: dict
    result: Any
    model_file: str | None = None
    model_sha256: str | None = None
    source: str = "computed"

    def summary(self) -> list[tuple[str, str]]:
        from hmmrnn.analyses.registry import get_spec

        return [(str(k), str(v)) for k, v in get_spec(self.analysis).summary(self.result)]

    def to_dict(self) -> dict:
        return {
            "format": RUN_FORMAT,
            "analysis": self.analysis,
            "version": self.version,
            "params": jsonable(self.params),
            "model": {"file": self.model_file, "sha256": self.model_sha256},
            "result": self.result.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, result_cls: type[Result] | None = None) -> AnalysisRun:
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise ValueError(f"not an hmmrnn result file (format {RUN_FORMAT} expected)")
        if result_cls is None:
            from hmmrnn.analyses.registry import get_spec

            result_cls = get_spec(str(data.get("analysis"))).result
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        version, params = data.get("version"), data.get("params")
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not isinstance(params, dict)
        ):
            raise ValueError("the version must be an integer and the params an object")
        return cls(
            analysis=str(data["analysis"]),
            version=version,
            params=params,
            result=result_cls.from_dict(data.get("result")),
            model_file=model.get("file"),
            model_sha256=model.get("sha256"),
            source="file",
        )

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path, result_cls: type[Result] | None = None) -> AnalysisRun:
        path = Path(path)
        data = read_json_file(path, ResultFileError)
        try:
            return cls.from_dict(data, result_cls)
        except (ValueError, TypeError, KeyError) as exc:
            raise ResultFileError(f"{path}: {exc}") from exc


# --- the cache ------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get("HMMRNN_CACHE")
    if env:
        return Path(env).expanduser()
    return user_cache_dir("analyses")


class ResultCache:
    """Two levels: a small in-memory LRU and `.npz` files on disk. Thread-safe."""

    def __init__(self, directory: Path | None = None, memory_items: int = 64) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()
        self.memory_items = memory_items
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_hash: str, name: str, version: int, params: dict, extra: str = "") -> str:
        blob = json.dumps(
            {
                "v": CACHE_VERSION,
                "model": model_hash,
                "name": name,
                "version": version,
                "params": jsonable(params),
                "extra": extra,
            },
            sort_keys=True,
        )
        return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"

    def get(self, key: str, cls: type[R]) -> R | None:
        with self._lock:
            data = self._memory.get(key)
            if data is not None:
                self._memory.move_to_end(key)
        if data is None:
            path = self.directory / f"{key}.npz"
            try:
                data = path.read_bytes()
            except OSError:
                self.misses += 1
                return None
        try:
            result = cls.from_bytes(data)
        except (ValueError, KeyError, TypeError, OSError):
            self.misses += 1
            return None  # a corrupt or outdated entry is recomputed, never trusted
        self.hits += 1
        self._remember(key, data)
        return result

    def put(self, key: str, result: Result) -> None:
        data = result.to_bytes()
        self._remember(key, data)
        try:
            atomic_write_bytes(self.directory / f"{key}.npz", data)
        except OSError:
            pass  # a read-only cache folder only costs recomputation

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            self._memory[key] = data
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)


_DEFAULT_CACHE: ResultCache | None = None
_HASHES: dict[tuple[str, float, int], str] = {}


def get_cache() -> ResultCache:
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = ResultCache()
    return _DEFAULT_CACHE


def set_cache(cache: ResultCache | None) -> None:
    """Swap the process-wide cache (tests point it at a temporary folder)."""
    global _DEFAULT_CACHE
    _DEFAULT_CACHE = cache


def model_hash(path: Path) -> str:
    """sha256 of a weights file, memoised on (path, mtime, size)."""
    st = Path(path).stat()
    k = (str(Path(path).resolve()), st.st_mtime, st.st_size)
    if k not in _HASHES:
        _HASHES[k] = file_sha256(Path(path))
    return _HASHES[k]


def cached(
    name: str,
    version: int,
    cls: type[R],
    sha256: str,
    params: dict,
    compute: Callable[[], R],
    cache: ResultCache | None = None,
    extra: str = "",
) -> tuple[R, bool]:
    """(result, True) from the cache for (model, name, version, params, extra), else
    (compute(), False) after storing it."""
    cache = cache or get_cache()
    key = cache.key(sha256, name, version, params, extra)
    hit = cache.get(key, cls)
    if hit is not None:
        return hit, True
    result = compute()
    cache.put(key, result)
    return result, False


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()
