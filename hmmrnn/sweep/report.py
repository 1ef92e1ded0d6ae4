"""The outcome of each sweep job and the sweep's report (`sweep.json` in the tree root)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from hmmrnn.io import atomic_write_json

SWEEP_NAME = "sweep.json"


@dataclass
class JobOutcome:
    """What happened to one model: status done | failed | skipped | cancelled (| pending | running)."""

    rel: str
    status: str = "pending"
    action: str = ""  # train | resume | skip
    message: str = ""
    seconds: float | None = None
    best_val: float | None = None
    epochs_done: int | None = None
    model_file: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def update(self, data: dict) -> None:
        for f in dataclasses.fields(self):
            if f.name != "rel" and f.name in data:
                setattr(self, f.name, data[f.name])


@dataclass
class SweepReport:
    """The sweep's summary, written to `sweep.json` in the tree root as jobs start and end."""

    root: Path
    outcomes: list[JobOutcome]
    engine: str = "local"
    workers: int = 1
    threads: int = 1
    device: str = "auto"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    spec: dict | None = None

    def counts(self) -> dict[str, int]:
        keys = ("done", "failed", "skipped", "cancelled", "running", "pending")
        return {k: sum(o.status == k for o in self.outcomes) for k in keys}

    @property
    def wall_seconds(self) -> float:
        return (self.finished or time.time()) - self.started

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "engine": self.engine,
            "workers": self.workers,
            "threads_per_job": self.threads,
            "device": self.device,
            "started": self.started,
            "updated": time.time(),
            "finished": self.finished,
            "wall_seconds": self.wall_seconds,
            "counts": self.counts(),
            "spec": self.spec,
            "models": [o.to_dict() for o in self.outcomes],
        }

    def save(self) -> None:
        atomic_write_json(self.root / SWEEP_NAME, self.to_dict())


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
