"""Whether a run folder is being trained right now, and the lock that makes it one trainer at most.

`run.json` says "running" from the moment a trainer starts, and keeps saying it if the trainer is
killed. A pid alone cannot tell: pids are reused, so a finished model would show as "training"
forever. The trainer therefore records its host and its process's start time; a run is running
only if that host is this one, the pid is alive, and the live process started when the trainer
did — and where the folder's lock file exists, only if a process holds that lock, which a trainer
does for exactly as long as it trains. On another host (a shared filesystem) it is running while
it keeps writing (`updated` newer than STALE_SECONDS). A run whose process is gone is
"interrupted" and resumable.

Two trainers in one folder would interleave their logs, so training holds an exclusive lock
(`.lock`, flock) for its whole duration; a second one is refused with the holder's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from hmmrnn.errors import UserError

RUN_NAME = "run.json"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = ".lock"
STALE_SECONDS = 900.0  # a run on another host that has not written for this long is not running
START_SLACK = 2.0  # seconds between a process's start and the time it wrote into run.json


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return isinstance(pid, int) and pid < 2**31
    return True


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), or None where the OS does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time after boot
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def identity() -> dict:
    """What a trainer writes into run.json so that others can tell it is this very process."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "pid_start": process_start_time(pid)}


def read_info(folder: Path) -> dict:
    try:
        data = json.loads((Path(folder) / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_held(folder: Path) -> bool | None:
    """Whether a trainer holds the folder's lock now (None: no lock file, or no way to tell)."""
    import fcntl

    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the probe's shared lock at once
    return False


def trainer_alive(info: dict, folder: Path | None = None) -> bool:
    """Whether the process a run.json names is still the one training it."""
    held = None if folder is None else lock_held(folder)
    if held is not None:  # a trainer holds the lock for as long as it trains: the ground truth
        return held  # (across hosts too, on a shared filesystem with working locks)
    host = info.get("host")
    if host and host != socket.gethostname():
        updated = info.get("updated")
        return isinstance(updated, (int, float)) and time.time() - updated < STALE_SECONDS
    pid = info.get("pid")
    if not pid_alive(pid):
        return False
    started = process_start_time(pid)
    if started is None:
        return True  # no way to tell on this OS: trust the pid
    recorded = info.get("pid_start")
    if isinstance(recorded, (int, float)):
        return abs(started - recorded) < START_SLACK
    run_started = info.get("started")  # older run.json: the process must predate the run
    return not isinstance(run_started, (int, float)) or started <= run_started + START_SLACK


def is_running(folder: Path) -> bool:
    info = read_info(folder)
    return info.get("status") == "running" and trainer_alive(info, Path(folder))


def run_state(folder: str | Path, has_weights: bool | None = None, info: dict | None = None) -> str:
    """absent | finished | running | interrupted | diverged, from the folder's own files.

    has_weights: whether best weights exist (looked up when None); info: run.json as already
    read (read here when None).
    """
    folder = Path(folder)
    info = read_info(folder) if info is None else info
    status = info.get("status")
    if has_weights is None:
        from hmmrnn.tree import pick_model_file

        has_weights = pick_model_file(folder) is not None
    if status == "finished" and has_weights:
        return "finished"
    if status == "running" and trainer_alive(info, folder):
        return "running"
    if status == "diverged":
        return "diverged"
    if any((folder / n).exists() for n in (RUN_NAME, CHECKPOINT_NAME, METRICS_NAME)):
        return "interrupted"
    return "absent"


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's training lock; UserError naming the holder when another process has it."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        for attempt in range(20):  # a status probe holds a shared lock for microseconds
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt == 19:
                    holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                    raise UserError(
                        f"{folder} is being trained by process {holder}; wait or cancel it"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock
