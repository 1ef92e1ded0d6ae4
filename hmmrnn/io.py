"""File helpers: atomic writes and safe weight loading.

Every write goes to a temporary file in the target folder and is moved into place with os.replace,
so a crash or a full disk never leaves a half-written model, config or log behind. Weights are read
with torch.load(weights_only=True) only: a pickle that needs code to load is refused, not executed.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hmmrnn.errors import UserError


class ModelFileError(UserError):
    """A weights file that cannot be used; the message says why."""


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/hmmrnn/<name>`` (``~/.cache/hmmrnn/<name>``): where each kind of
    rebuildable file (analysis results, built kernels) is kept."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmmrnn" / name


def _current_umask() -> int:
    """The process umask, read without changing it where the OS tells (Linux), else set back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_permissions(fd: int) -> None:
    """Give a temporary file (mkstemp makes them 0600) the mode a plain open() would: 0666 less
    the umask, so results, exports and run files are readable by the user's group as usual."""
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())
    except OSError:
        pass  # a filesystem without modes keeps what it has


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    normal_permissions(fd)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), "wb")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data), "wb")


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    """torch.save, serialised in memory first: torch's own writer reports a full disk as an
    opaque RuntimeError, a plain write as the OSError it is."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def safe_torch_load(path: Path) -> Any:
    """Load tensors only; translate every failure into a ModelFileError with a reason."""
    import pickle
    import struct
    import zipfile

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path.name}: file not found") from exc
    except pickle.UnpicklingError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "unpickling failed"
        if "weights_only" in str(exc) or "Unsupported" in str(exc) or "global" in str(exc):
            msg = "refused: the pickle needs code to load (only plain tensors are accepted)"
        raise ModelFileError(f"{path.name}: {msg}") from exc
    except (
        RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError,
        AttributeError, IndexError, struct.error, RecursionError, MemoryError,
    ) as exc:  # fmt: skip
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path.name}: not a readable torch file ({first[:160]})") from exc


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Content hash used to key caches and figure sidecars."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_records(lines: Iterable[str | bytes]) -> list[dict]:
    """JSON-lines records: lines that do not parse (a partial line being written, one nested
    past the decoder's recursion limit) or that hold something other than an object are skipped,
    so a live log can be read at any moment."""
    records = []
    for line in lines:
        rec = _record(line)
        if isinstance(rec, dict):
            records.append(rec)
    return records


# json.loads' own scanner, called directly: a line that starts with "{" and scans to its end is
# what json.loads would return, at three quarters of the cost (listing a sweep parses 300,000).
_SCAN = json.scanner.make_scanner(json.JSONDecoder())


def _record(line: str | bytes) -> Any:
    if isinstance(line, str) and line[:1] == "{":
        try:
            rec, end = _SCAN(line, 0)
        except (StopIteration, ValueError, RecursionError):
            return None  # json.loads fails on it too (no leading space to skip)
        if end == len(line):
            return rec
    try:  # bytes, leading or trailing white space, other values: json.loads decides
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def read_text_file(path: Path, error: type[Exception]) -> str:
    """A UTF-8 text file; a missing, unreadable or binary file raises `error` naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not a UTF-8 text file") from exc


def read_json_file(path: Path, error: type[Exception]) -> Any:
    """Parsed JSON of a file; unreadable, non-UTF-8 or malformed files raise `error` naming it."""
    text = read_text_file(path, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise error(f"{path} is not usable JSON: {str(exc).splitlines()[0][:120]}") from exc
    except RecursionError as exc:
        raise error(f"{path} is nested too deeply to read") from exc
