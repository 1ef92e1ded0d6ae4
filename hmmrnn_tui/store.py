"""Loaded models, kept while the app runs: moving the selection back and forth must not reload."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


def _stamp(path: Path) -> tuple[str, float]:
    try:
        return str(path.resolve()), path.stat().st_mtime
    except OSError:
        return str(path), 0.0


class ModelStore:
    """Thread-safe cache of loaded models keyed by weights file and its mtime (new weights on disk
    are loaded again)."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._models: dict[tuple[str, float], Any] = {}

    def get(self, entry) -> Any:
        from hmmrnn import api

        if entry.status == "broken":
            raise api.UserError(f"{entry.rel} is broken: {entry.reason}")
        if entry.model_file is None:
            raise api.UserError(f"{entry.rel} has no weights yet")
        key = _stamp(entry.model_file)
        with self._lock:
            if key not in self._models:
                self._models[key] = api.load(entry.model_file, device=self.device)
            return self._models[key]
