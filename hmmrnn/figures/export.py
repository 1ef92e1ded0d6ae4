"""Writing figures to disk: collision-free names inside the export folder, and a JSON sidecar.

A name is claimed atomically: every file is first written to a temporary file in the export folder
and then hard-linked to its final name, which fails if the name exists, so two exports running at
the same moment (two TUI sessions, a script and the TUI) can never overwrite each other or a file
from an earlier export; the loser moves on to `-2`, `-3`, ... All files of one export (its formats
and its sidecar) share one stem. A stem that would leave the export folder is refused, not fixed.
"""

from __future__ import annotations

import datetime as _dt
import errno
import io
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from hmmrnn.errors import UserError
from hmmrnn.figures.style import PNG_DPI, styled
from hmmrnn.io import normal_permissions

FORMATS = ("pdf", "svg", "png")
MAX_SUFFIX = 10000

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


@dataclass
class ExportResult:
    """The figure files written (in the order of the requested formats) and the sidecar."""

    paths: list[Path]
    sidecar: Path
    notes: list[str] = field(default_factory=list)


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """('pdf', 'png') from 'pdf,png' or a sequence; unknown formats are a UserError naming them."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        fmt = str(item).strip().lower().lstrip(".")
        if not fmt:
            continue
        if fmt not in FORMATS:
            raise UserError(f"unknown figure format {item!r}; choose from {', '.join(FORMATS)}")
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise UserError(f"no figure format given; choose from {', '.join(FORMATS)}")
    return tuple(out)


def safe_label(text: str, limit: int = 80) -> str:
    """A file-name-safe version of a label derived from a path (separators become dashes)."""
    label = _UNSAFE.sub("-", str(text)).strip("-.")
    label = re.sub(r"\.{2,}", ".", re.sub(r"-{2,}", "-", label))
    return label[:limit].strip("-.") or "model"


def check_stem(stem: str, out_dir: Path) -> None:
    """Refuse a stem that is empty, hidden, has a separator, or resolves outside out_dir."""
    bad = (
        not stem
        or stem.startswith(".")
        or "/" in stem
        or "\\" in stem
        or "\x00" in stem
        or os.sep in stem
        or (os.altsep is not None and os.altsep in stem)
    )
    root = Path(out_dir).resolve()
    if not bad:
        target = (root / f"{stem}.pdf").resolve()
        bad = target.parent != root
    if bad:
        raise UserError(f"refusing export name {stem!r}: it would not stay inside {root}")


def creation_date() -> _dt.datetime | None:
    """The date written into PDF and SVG files: SOURCE_DATE_EPOCH when set (reproducible
    builds' convention), else none at all, so that exporting the same figure twice gives the
    same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), tz=_dt.UTC)
    return None


def file_metadata(fmt: str, title: str = "", subject: str = "") -> dict[str, Any]:
    """What each format records about the figure: title, the model, and hmmrnn's version."""
    import hmmrnn

    creator = f"hmmrnn {hmmrnn.__version__}"
    if fmt == "pdf":
        return {
            "Title": title,
            "Subject": subject,
            "Creator": creator,
            "CreationDate": creation_date(),
        }
    if fmt == "svg":
        return {"Title": title, "Description": subject, "Creator": creator, "Date": creation_date()}
    return {"Software": creator, "Title": title, "Description": subject}


def figure_bytes(
    fig: Figure, fmt: str, dpi: int = PNG_DPI, title: str = "", subject: str = ""
) -> bytes:
    """One format of a figure, rendered in the shared style (embedded TrueType fonts); the same
    figure gives the same bytes every time."""
    buf = io.BytesIO()
    metadata = {k: v for k, v in file_metadata(fmt, title, subject).items() if v != ""}
    with styled():
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()


def _write_exclusive(path: Path, data: bytes) -> None:
    """Create `path` with `data`, atomically, failing with FileExistsError if it exists."""
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".tmp", dir=path.parent)
    normal_permissions(fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in (
                errno.EPERM,
                errno.ENOTSUP,
                errno.EOPNOTSUPP,
                errno.EXDEV,
                errno.EMLINK,
            ):
                raise
            _write_o_excl(path, data)  # no hard links here: still exclusive, just not atomic
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _write_o_excl(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def claim_files(
    out_dir: Path, stem: str, payloads: Callable[[str], dict[str, bytes]]
) -> tuple[str, list[Path]]:
    """Write the files `payloads(stem')` returns under the first free stem' (stem, stem-2, ...).

    A stem is taken only if all its files could be created; otherwise the files this call created
    for it are removed and the next suffix is tried.
    """
    out_dir = Path(out_dir)
    check_stem(stem, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_SUFFIX + 1):
        candidate = stem if n == 1 else f"{stem}-{n}"
        written: list[Path] = []
        try:
            for name, data in payloads(candidate).items():
                target = out_dir / name
                _write_exclusive(target, data)
                written.append(target)
        except FileExistsError:
            for path in written:
                path.unlink(missing_ok=True)
            continue
        return candidate, written
    raise FileExistsError(f"{out_dir}: no free name for {stem!r} after {MAX_SUFFIX} tries")


def render_to_files(
    fig: Figure, stem: str, out_dir: str | Path = "exports", formats=FORMATS
) -> list[Path]:
    """Save `fig` in each format as out_dir/<stem>[-n].<ext>, never overwriting anything."""
    paths, _ = _save(fig, stem, Path(out_dir), parse_formats(formats), sidecar=None)
    return paths


def _save(
    fig: Figure,
    stem: str,
    out_dir: Path,
    formats: tuple[str, ...],
    sidecar: Callable[[str, list[str]], dict] | None,
    title: str = "",
    subject: str = "",
) -> tuple[list[Path], Path | None]:
    check_stem(stem, out_dir)
    blobs = {fmt: figure_bytes(fig, fmt, title=title, subject=subject) for fmt in formats}

    def payloads(candidate: str) -> dict[str, bytes]:
        files = {f"{candidate}.{fmt}": data for fmt, data in blobs.items()}
        if sidecar is not None:
            meta = sidecar(candidate, list(files))
            text = json.dumps(meta, indent=2, default=_json_default) + "\n"
            files[f"{candidate}.json"] = text.encode("utf-8")
        return files

    _, written = claim_files(out_dir, stem, payloads)
    paths = written[: len(formats)]
    return paths, (written[len(formats)] if sidecar is not None else None)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


def timestamp(now: _dt.datetime | None = None) -> str:
    return (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def library_versions() -> dict[str, str]:
    """Versions of what drew the figure (torch and scipy only if this process loaded them)."""
    import matplotlib
    import numpy

    import hmmrnn

    versions = {
        "hmmrnn": hmmrnn.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
    }
    for mod, name in (("torch", "torch"), ("scipy", "scipy")):
        module = sys.modules.get(mod)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = str(module.__version__)
    return versions


def write_export(
    fig: Figure,
    stem: str,
    out_dir: str | Path,
    formats,
    meta: dict,
) -> ExportResult:
    """Save `fig` and a sidecar (meta + the file names + versions + time) under one free stem."""
    fmts = parse_formats(formats)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

    def sidecar(candidate: str, files: list[str]) -> dict:
        return {
            **meta,
            "files": files,
            "created": created,
            "versions": library_versions(),
        }

    model = meta.get("model") or {}
    subject = f"model {model.get('path', '')} (sha256 {model.get('sha256', '-')})"
    title = f"{meta.get('figure', stem)}: {meta.get('description', '')}"
    paths, side = _save(fig, stem, Path(out_dir), fmts, sidecar, title=title, subject=subject)
    assert side is not None
    return ExportResult(paths=paths, sidecar=side, notes=list(meta.get("notes", [])))
