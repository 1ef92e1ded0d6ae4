"""Training runs as separate processes: launch, follow, cancel and find again after a restart.

A run is `python -m hmmrnn.cli train --config DIR/config.json --out DIR --quiet` in its own session
(start_new_session), so neither quitting the TUI nor a dropped SSH connection (SIGHUP to the
terminal's process group) stops it; its output goes to DIR/train.log. Everything the TUI shows is read back from the run folder
(run.json, metrics.jsonl), which is why a run started yesterday can be re-attached to today.
Plain process and file handling, shared by every front-end through hmmrnn.api.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmmrnn.errors import UserError
from hmmrnn.io import parse_records
from hmmrnn.runstate import is_running, pid_alive
from hmmrnn.tree import CONFIG_NAME, METRICS_NAME, RUN_NAME, read_json

LOG_NAME = "train.log"


class FieldError(UserError):
    """A bad value in one field of a training request; `field` names it (the TUI shows the
    message next to that field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class TrainRequest:
    """What a training form asks for, as text; empty strings mean "the preset's / config's value".

    `build()` turns it into a validated config before anything is created on disk.
    """

    preset: str = "Three"
    config: str = ""
    hidden_size: str = ""
    input_size: str = ""
    epochs: str = ""
    learning_rate: str = ""
    seed: str = "0"
    device: str = "auto"
    out: str = ""
    extra: str = ""

    _KEYS = {  # form field -> config key
        "hidden_size": "hidden_size",
        "input_size": "input_size",
        "epochs": "epochs",
        "learning_rate": "learning_rates",
        "seed": "seed",
    }

    def overrides(self) -> dict[str, Any]:
        """Config keys the form sets, parsed; an unreadable field raises FieldError naming it."""
        from hmmrnn.config import field_names, parse_value

        out: dict[str, Any] = {}
        for name, key in self._KEYS.items():
            text = getattr(self, name).strip()
            if text:
                out[key] = self._parsed(name, key, text, parse_value)
        try:
            tokens = shlex.split(self.extra)
        except ValueError as exc:
            raise FieldError("extra", f"flags: {exc}") from None
        known = set(field_names())
        i = 0
        while i < len(tokens):
            flag = tokens[i]
            name, eq, value = flag.removeprefix("--").partition("=")
            key = name.replace("-", "_")
            if not flag.startswith("--") or key not in known:
                raise FieldError("extra", f"flags: unknown config flag {flag!r}")
            if not eq:
                if i + 1 >= len(tokens):
                    raise FieldError("extra", f"flags: {flag} needs a value")
                value, i = tokens[i + 1], i + 1
            out[key] = self._parsed("extra", key, value, parse_value)
            i += 1
        return out

    @staticmethod
    def _parsed(field: str, key: str, text: str, parse_value) -> Any:
        try:
            return parse_value(key, text)
        except UserError as exc:
            raise FieldError(field, str(exc)) from None

    def build(self):
        """The validated ExperimentConfig; FieldError (or ConfigError) says what is wrong."""
        from hmmrnn.config import ConfigError, ExperimentConfig

        overrides = self.overrides()
        try:
            if self.config.strip():
                path = Path(self.config.strip()).expanduser()
                data = ExperimentConfig.load(path).to_dict()
                return ExperimentConfig.from_dict({**data, **overrides})
            return ExperimentConfig.from_preset(self.preset, **overrides)
        except ConfigError as exc:
            raise FieldError(self._field_of(str(exc)), str(exc)) from None

    def _field_of(self, message: str) -> str:
        for name, key in self._KEYS.items():
            if message.startswith(key) or f" {key} " in f" {message} ":
                return name
        return "config" if self.config.strip() else "extra"

    def default_out(self, runs_dir: Path) -> Path:
        name = Path(self.config).stem if self.config.strip() else self.preset
        parts = [name]
        if self.hidden_size.strip():
            parts.append(f"h{self.hidden_size.strip()}")
        if self.input_size.strip():
            parts.append(f"i{self.input_size.strip()}")
        parts.append(f"s{self.seed.strip() or 0}")
        parts.append(time.strftime("%Y%m%d-%H%M%S"))
        return runs_dir / "_".join(parts)


@dataclass
class RunHandle:
    """A run being followed: its folder, pid and (when this process launched it) the Popen."""

    folder: Path
    pid: int | None = None
    process: subprocess.Popen | None = None
    follower: MetricsFollower = field(init=False)

    def __post_init__(self) -> None:
        self.follower = MetricsFollower(self.folder / METRICS_NAME)

    def info(self) -> dict:
        return read_json(self.folder / RUN_NAME)

    def exit_code(self) -> int | None:
        """The launched process' exit status (None while running or when not launched here)."""
        return None if self.process is None else self.process.poll()

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.pid)

    def cancel(self) -> bool:
        """Ask the run to stop after the current batch (SIGINT, as Ctrl-C in a terminal would)."""
        pid = self.process.pid if self.process is not None else self.pid
        if pid is None or not self.alive():
            return False
        try:
            os.kill(pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def eta(self, info: dict | None = None) -> float | None:
        """Seconds left, from the run's own clock (None before the first epoch)."""
        return eta_seconds(self.info() if info is None else info)

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = (self.folder / LOG_NAME).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


class MetricsFollower:
    """Reads only the lines appended to metrics.jsonl since the last call (cheap to poll).

    A partial last line (the trainer is writing it) is kept until its newline arrives. If the file
    shrinks (a resumed run truncates its log), reading starts again from the top.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.records: list[dict] = []

    def poll(self) -> list[dict]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self.partial, self.records = 0, b"", []
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        new = parse_records(lines)
        self.records.extend(new)
        return new


def launch(config, out: Path, device: str = "auto") -> RunHandle:
    """Start a detached training process for a validated config, writing into `out`.

    The config is written to `out/config.json` and the process is `hmmrnn train --config` on it,
    so the run folder holds from the first moment exactly what reproduces it. Returns at once.
    """

    out = Path(out)
    if (out / RUN_NAME).exists() or (out / METRICS_NAME).exists():
        raise UserError(f"{out} already holds a run; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG_NAME)
    cmd = [
        sys.executable, "-m", "hmmrnn.cli", "train", "--config", str(out / CONFIG_NAME),
        "--out", str(out), "--device", device, "--quiet",
    ]  # fmt: skip
    return _spawn(cmd, out)


def launch_resume(folder: Path, device: str = "auto") -> RunHandle:
    """Continue an interrupted or cancelled run in a detached process."""
    folder = Path(folder)
    cmd = [sys.executable, "-m", "hmmrnn.cli", "resume", str(folder), "--device", device, "--quiet"]
    return _spawn(cmd, folder)


def _spawn(cmd: list[str], out: Path) -> RunHandle:
    from hmmrnn.sweep import python_child_env

    with open(out / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=python_child_env(),
        )
    return RunHandle(folder=out, pid=proc.pid, process=proc)


def find_running(roots: list[Path], max_depth: int = 6) -> list[RunHandle]:
    """Runs under any root whose run.json says "running" and whose process is alive."""
    found: dict[Path, RunHandle] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        base = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root):
            if len(Path(dirpath).parts) - base >= max_depth:
                dirnames[:] = []
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "models"]
            if RUN_NAME not in filenames:
                continue
            folder = Path(dirpath).resolve()
            if is_running(folder):  # the live trainer itself, not a reused pid
                found[folder] = RunHandle(folder=folder, pid=read_json(folder / RUN_NAME)["pid"])
    return sorted(found.values(), key=lambda h: str(h.folder))


def eta_seconds(info: dict) -> float | None:
    """Remaining time from the run's own clock (started/updated) and epoch counts."""
    done, total = info.get("epochs_done"), info.get("total_epochs")
    started, updated = info.get("started"), info.get("updated")
    if not all(isinstance(v, (int, float)) for v in (done, total, started, updated)) or done <= 0:
        return None
    return max(0.0, (updated - started) / done * (total - done))
