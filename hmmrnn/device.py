"""Device selection: CUDA when present, CPU otherwise, with one code path for both."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from hmmrnn.errors import UserError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' picks CUDA when available; an unavailable CUDA request is a clear error."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on the device where the random numbers are drawn."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


def analysis_threads() -> int:
    """Intra-op CPU threads an analysis runs on: HMMRNN_ANALYSIS_THREADS, else 1.

    Analyses are loops of many small tensor ops (hundreds x tens), which gain little from
    intra-op threads on an idle machine and lose badly on a shared one, where every op's OpenMP
    region waits for busy cores. Measured on 2 cores with other work running (Three h50):
    residency 7.9 s on 2 threads against 0.6 s on 1, ablation 6.3 s against 2.2 s, the
    fixed-point search 23.9 s against 1.8 s. Training keeps torch's default.
    """
    raw = os.environ.get("HMMRNN_ANALYSIS_THREADS", "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        raise UserError(
            f"HMMRNN_ANALYSIS_THREADS must be a whole number >= 1, got {raw!r}"
        ) from None
    if value < 1:
        raise UserError(f"HMMRNN_ANALYSIS_THREADS must be >= 1, got {value}")
    return value


_THREADS_LOCK = threading.Lock()
_THREADS_USERS = 0
_THREADS_SAVED = 0


@contextmanager
def limited_threads(device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block on analysis_threads() intra-op threads (CPU only; CUDA work is untouched).

    The thread count is process-wide, so overlapping users (TUI workers) share one saved value and
    the last one out restores it.
    """
    global _THREADS_USERS, _THREADS_SAVED
    if torch.device(device).type != "cpu":
        yield
        return
    wanted = analysis_threads()
    with _THREADS_LOCK:
        if _THREADS_USERS == 0:
            _THREADS_SAVED = torch.get_num_threads()
            torch.set_num_threads(wanted)
        _THREADS_USERS += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS -= 1
            if _THREADS_USERS == 0:
                torch.set_num_threads(_THREADS_SAVED)
