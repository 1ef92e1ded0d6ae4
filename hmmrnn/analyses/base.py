"""What every analysis shares: result records, progress/cancel hooks and the result cache.

Results are dataclasses of numpy arrays and plain scalars. They serialise to one `.npz` file (arrays)
with a JSON header (everything else), read back with allow_pickle=False, so a cache file can never
run code. The cache key is (model weights' sha256, analysis name, parameters, format version): the
TUI and the CLI never compute the same thing twice, and a retrained model never hits a stale entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hmmrnn.cancel import CancelToken
from hmmrnn.io import atomic_write_bytes, file_sha256

CACHE_VERSION = 1
ProgressFn = Callable[[float, str], None]
R = TypeVar("R", bound="Result")


def no_progress(fraction: float, message: str = "") -> None:  # noqa: ARG001
    """Default progress callback."""


class Result:
    """Mixin for result dataclasses: lossless to/from npz bytes and JSON-safe dicts."""

    def to_dict(self) -> dict:
        """JSON-safe view (arrays become nested lists) for `--json` and figure sidecars."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_bytes(self) -> bytes:
        arrays, meta = {}, {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                meta[f.name] = _jsonable(value)
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.array(json.dumps(meta)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls: type[R], data: bytes) -> R:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["__meta__"]))
            arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**meta, **arrays}.items() if k in names})


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- the cache ------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get("HMMRNN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmmrnn" / "analyses"


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
    def key(model_hash: str, name: str, params: dict) -> str:
        blob = json.dumps(
            {"v": CACHE_VERSION, "model": model_hash, "name": name, "params": _jsonable(params)},
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
    cls: type[R],
    model_file: Path | None,
    params: dict,
    compute: Callable[[], R],
    cache: ResultCache | None = None,
) -> R:
    """Return the cached result for (model, name, params) or compute and store it."""
    if model_file is None:
        return compute()
    cache = cache or get_cache()
    key = cache.key(model_hash(model_file), name, params)
    hit = cache.get(key, cls)
    if hit is not None:
        return hit
    result = compute()
    cache.put(key, result)
    return result


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()
