"""Pure-Python work over many small items, shared with worker processes on the other cores.

Listing a sweep checks every folder's config, weights and curves: about 1 ms of Python each,
which threads cannot share (the GIL). Worker processes can. They are plain interpreters started
with `sys.executable`, handed their share as a pickle on stdin and answering on stdout (a
print in the worker goes to its stderr), while the caller does its own share. Not multiprocessing: its fork start method is unsafe
in a process with threads (the TUI lists from a worker thread), and its spawn and forkserver
methods re-run the caller's main script in every child (a user's unguarded script would run
twice). Whatever stops a worker (no interpreter, a crash, garbage on stdout) leaves its share
to the caller: the pool is a speed-up, never a requirement.
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

WORKERS_ENV = "HMMRNN_LIST_WORKERS"  # at most this many processes in all, the caller's included


def worker_count(items: int, min_items: int, per_worker: int) -> int:
    """How many processes `items` are worth, the caller's included: one below `min_items`,
    else one per `per_worker` items up to the cores this process may use (and at most
    $HMMRNN_LIST_WORKERS)."""
    if items < min_items:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    cap = os.environ.get(WORKERS_ENV, "").strip()
    if cap.isdigit():
        cores = min(cores, max(1, int(cap)))
    return max(1, min(cores, items // max(1, per_worker)))


def map_in_processes(
    fn: Callable[[Any], Any], items: Sequence[Any], processes: int, head_start: int = 0
) -> list:
    """`[fn(x) for x in items]`, in order, shared by `processes` processes (this one included).
    `fn` must be a module-level function, items and results picklable. The caller takes
    `head_start` items more than its share: what it gets through while a worker starts."""
    if processes < 2 or getattr(sys, "frozen", False):  # a frozen app's executable is the app
        return [fn(x) for x in items]
    ends = _bounds(len(items), processes, head_start)
    shares = [list(items[a:b]) for a, b in zip(ends[:-1], ends[1:], strict=True)]
    started: list[subprocess.Popen | None] = []
    try:  # an error or Ctrl-C anywhere below leaves no worker behind
        jobs = [_job(fn, share) if share else None for share in shares[1:]]
        started = [_start() if job is not None else None for job in jobs]
        for proc, job in zip(started, jobs, strict=True):  # all boot while the jobs are sent
            _send(proc, job)
        out = [fn(x) for x in shares[0]]
        for proc, share in zip(started, shares[1:], strict=True):
            done = _collect(proc, len(share)) if share else []
            out += done if done is not None else [fn(x) for x in share]
    finally:
        for proc in started:
            if proc is not None:
                _reap(proc)
    return out


def _bounds(n: int, processes: int, head_start: int) -> list[int]:
    """Where each process's run of items ends: the caller's first, `head_start` longer."""
    first = min(n, -(-(n + (processes - 1) * head_start) // processes))
    rest = n - first
    return [0, first] + [first + rest * (i + 1) // (processes - 1) for i in range(processes - 1)]


# What a worker's answer starts with: anything a computation prints lands elsewhere, and
# nothing but an answer can be taken for one.
_MAGIC = b"hmmrnn-pool-1\n"


def _job(fn: Callable[[Any], Any], share: list) -> bytes | None:
    try:
        return pickle.dumps(
            (sys.path, fn.__module__, fn.__qualname__, share), pickle.HIGHEST_PROTOCOL
        )
    except (pickle.PicklingError, AttributeError, TypeError):
        return None


def _start() -> subprocess.Popen | None:
    """A worker interpreter. `-P`: the folder it runs in (a model tree, say, that holds a
    `pickle.py`) is not put before the standard library; this package is found where this
    process found it, then the worker takes this process's own module path."""
    here = str(Path(__file__).resolve().parents[1])
    code = f"import sys; sys.path.insert(0, {here!r}); from hmmrnn.process_pool import _serve; "
    try:
        return subprocess.Popen(
            [sys.executable, "-P", "-c", code + "sys.exit(_serve())"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, ValueError, TypeError):
        return None


def _send(proc: subprocess.Popen | None, job: bytes | None) -> None:
    if proc is None or job is None:
        return
    try:
        proc.stdin.write(job)
        proc.stdin.close()
    except OSError:  # the worker died; _collect finds no answer and the caller does its share
        pass


def _collect(proc: subprocess.Popen | None, expected: int) -> list | None:
    if proc is None:
        return None
    try:
        data = proc.stdout.read()
        if proc.wait() != 0 or not data.startswith(_MAGIC):
            return None
        result = pickle.loads(memoryview(data)[len(_MAGIC) :])
    except Exception:  # noqa: BLE001 - any unreadable answer is no answer
        return None
    return result if isinstance(result, list) and len(result) == expected else None


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            try:
                pipe.close()
            except OSError:
                pass


def _serve() -> int:
    """The worker: its job from stdin, its answer on what was stdout (fd 1 then points to
    stderr, so that a print in the computation, Python's or a C library's, cannot mix in)."""
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    path, module, name, share = pickle.loads(sys.stdin.buffer.read())
    sys.path[:] = [*dict.fromkeys([*path, *sys.path])]
    fn = getattr(importlib.import_module(module), name)
    result = pickle.dumps([fn(x) for x in share], pickle.HIGHEST_PROTOCOL)
    answer.write(_MAGIC + result)
    answer.close()
    return 0
