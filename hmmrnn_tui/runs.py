"""Training runs as separate processes: launch, follow, cancel and find again after a restart.

A run is `python -m hmmrnn.cli train ... --out DIR --quiet` in its own session (start_new_session), so
neither quitting the TUI nor a dropped SSH connection (SIGHUP to the terminal's process group) stops
it; its output goes to DIR/train.log. Everything the TUI shows is read back from the run folder
(run.json, metrics.jsonl), which is why a run started yesterday can be re-attached to today.
No textual import here: this is plain process and file handling, testable on its own.
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

from hmmrnn.io import parse_records
from hmmrnn.tree import METRICS_NAME, RUN_NAME, pid_alive, read_json

LOG_NAME = "train.log"
__all__ = ["METRICS_NAME", "RUN_NAME", "LOG_NAME", "pid_alive", "read_json"]


@dataclass
class TrainRequest:
    """What the training form asks for; empty strings mean "the preset's / config's value"."""

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

    def command(self, out: Path) -> list[str]:
        """The CLI command line; flag values are passed through for the CLI to validate."""
        cmd = [sys.executable, "-m", "hmmrnn.cli", "train", "--out", str(out), "--quiet"]
        if self.config.strip():
            cmd += ["--config", self.config.strip()]
        else:
            cmd += ["--preset", self.preset]
        pairs = (
            ("--hidden-size", self.hidden_size),
            ("--input-size", self.input_size),
            ("--epochs", self.epochs),
            ("--learning-rates", self.learning_rate),
            ("--seed", self.seed),
            ("--device", self.device),
        )
        cmd += [x for flag, value in pairs if value.strip() for x in (flag, value.strip())]
        return cmd + shlex.split(self.extra)

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


def launch(request: TrainRequest, out: Path) -> RunHandle:
    """Start a detached training process writing into `out`; returns at once."""
    from hmmrnn.sweep import python_child_env  # lazy: the app does not need it to paint

    out = Path(out)
    if (out / RUN_NAME).exists() or (out / METRICS_NAME).exists():
        raise FileExistsError(f"{out} already holds a run; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    env = python_child_env()
    with open(out / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            request.command(out),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
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
            info = read_json(folder / RUN_NAME)
            if info.get("status") == "running" and pid_alive(info.get("pid")):
                found[folder] = RunHandle(folder=folder, pid=info["pid"])
    return sorted(found.values(), key=lambda h: str(h.folder))


def eta_seconds(info: dict) -> float | None:
    """Remaining time from the run's own clock (started/updated) and epoch counts."""
    done, total = info.get("epochs_done"), info.get("total_epochs")
    started, updated = info.get("started"), info.get("updated")
    if not all(isinstance(v, (int, float)) for v in (done, total, started, updated)) or done <= 0:
        return None
    return max(0.0, (updated - started) / done * (total - done))


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
