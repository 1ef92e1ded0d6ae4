"""The workbench's settings file: key remapping, the theme and the training form's last values.

It lives at `$XDG_CONFIG_HOME/hmmrnn/tui.json` (default `~/.config/hmmrnn/tui.json`;
`HMMRNN_TUI_SETTINGS` names another file). Example, remapping two actions by their binding ids
(the help screen, `?`, lists every id):

    {"keymap": {"app.export": "ctrl+s,f6", "metrics.evaluate": "f10"},
     "theme": "textual-light"}

A missing or unreadable file means the defaults (an unreadable one is reported once); the file is
rewritten atomically when the theme or the form changes, keeping keys it does not know.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def settings_path() -> Path:
    env = os.environ.get("HMMRNN_TUI_SETTINGS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "hmmrnn" / "tui.json"


class Settings:
    """The settings as a dict, read once and written back on change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else settings_path()
        self.problem = ""
        self.data: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, RecursionError) as exc:
            self.problem = f"{self.path}: unreadable settings ignored ({str(exc)[:120]})"
            data = {}
        if not isinstance(data, dict):
            self.problem = f"{self.path}: settings must be a JSON object; ignored"
            data = {}
        self.data = data

    @property
    def keymap(self) -> dict[str, str]:
        keymap = self.data.get("keymap")
        if not isinstance(keymap, dict):
            return {}
        return {str(k): str(v) for k, v in keymap.items() if isinstance(v, str) and v.strip()}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Remember `value` and write the file (a failure only costs the remembering)."""
        from hmmrnn import api

        self.data[key] = value
        try:
            api.save_json(self.path, self.data)
        except OSError as exc:
            self.problem = f"cannot save settings to {self.path}: {exc.strerror or exc}"
