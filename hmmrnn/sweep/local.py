"""The local engine: one child process per job (`python -m hmmrnn.sweep FOLDER`), and the job itself.

A child runs in its own session: one job that crashes (out of memory, a segfault) cannot take the
others down, terminal Ctrl-C reaches only the sweep, which forwards one SIGINT to each child so it
stops after the current batch, and a child whose sweep died (SIGKILL) notices its new parent and
stops the same way. Each job runs the same `hmmrnn.train.train` / `resume` as `hmmrnn train`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hmmrnn.cancel import CancelToken
from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.sweep.layout import config_conflict, job_state
from hmmrnn.sweep.report import JobOutcome, one_line
from hmmrnn.sweep.spec import SweepJob
from hmmrnn.tree import read_run_info

LOG_NAME = "train.log"  # the same log a TUI-launched run writes, so the TUI shows its tail
RESULT_MARKER = "HMMRNN-SWEEP-RESULT "


# --- one job, in whatever process runs it ---------------------------------------------------------


def execute_job(
    folder: str | Path,
    config: ExperimentConfig,
    *,
    device: str = "auto",
    threads: int | None = None,
    cancel: CancelToken | None = None,
    log: Callable[[str], None] = print,
    poll: float = 0.5,
) -> JobOutcome:
    """Train, resume or skip one model, deciding from its folder; errors become the outcome."""
    folder = Path(folder)
    cancel = cancel or CancelToken()
    started = time.time()
    out = JobOutcome(str(folder))
    if threads:
        import torch

        torch.set_num_threads(threads)
    if job_state(folder) == "running":
        log(f"{folder}: being trained by process {read_run_info(folder).get('pid')}; waiting")
        while job_state(folder) == "running":
            if cancel.cancelled:
                out.update({"status": "cancelled", "message": "cancelled while waiting"})
                return out
            time.sleep(poll)
    state = job_state(folder)
    conflict = "" if state == "absent" else config_conflict(folder, config)
    if state == "finished":
        note = f"finished earlier, but {conflict}; delete it to retrain" if conflict else ""
        out.update({"status": "skipped", "action": "skip", "message": note})
        return _with_run_facts(out, folder)
    if conflict:
        out.update({"status": "failed", "message": f"{conflict}; delete the folder to retrain"})
        return out
    if state == "diverged":
        msg = read_run_info(folder).get("message", "")
        out.update({"status": "failed", "message": f"diverged earlier: {msg}; delete it to retry"})
        return out
    out.action = "resume" if state == "interrupted" else "train"
    try:
        result = _train_or_resume(folder, config, out.action, device, cancel, log)
    except Exception as exc:  # noqa: BLE001 - any failure is this job's, reported in one line
        traceback.print_exc()  # the full story goes to the job's log, not to sweep.json
        out.update({"status": "failed", "message": one_line(exc)})
        out.seconds = time.time() - started
        return out
    status = {"finished": "done", "cancelled": "cancelled"}.get(result.status, "failed")
    out.update({"status": status, "message": result.message, "seconds": time.time() - started})
    return _with_run_facts(out, folder)


def _train_or_resume(folder, config, action, device, cancel, log):
    from hmmrnn import train as training

    def on_epoch(rec) -> None:
        log(
            f"epoch {rec.epoch}/{config.epochs} lr {rec.lr:g} train {rec.train_loss:.4f} "
            f"val {rec.val_loss:.4f} best {rec.best_val:.4f}"
        )

    log(f"{action} {folder} on {device}")
    if action == "resume":
        return training.resume(folder, device=device, cancel=cancel, on_epoch=on_epoch)
    return training.train(config, folder, device=device, cancel=cancel, on_epoch=on_epoch)


def _with_run_facts(out: JobOutcome, folder: Path) -> JobOutcome:
    info = read_run_info(folder)
    best = info.get("best_val")
    out.best_val = float(best) if isinstance(best, (int, float)) and math.isfinite(best) else None
    out.epochs_done = info.get("epochs_done")
    model = info.get("model_file")
    out.model_file = str(folder / model) if model else None
    return out


# --- the local engine: one child process per job --------------------------------------------------


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_ids(device: str) -> list[str]:
    """Physical GPU ids the sweep may use (respecting CUDA_VISIBLE_DEVICES); [] means CPU."""
    if device == "cpu":
        return []
    from hmmrnn.device import resolve_device

    resolved = resolve_device(device)  # ValueError for unknown or unavailable devices
    if resolved.type != "cuda":
        return []
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in visible.split(",")] if visible else []
    ids = ids[: torch.cuda.device_count()] or [str(i) for i in range(torch.cuda.device_count())]
    return [ids[resolved.index]] if resolved.index is not None else ids


def default_workers(gpus: Sequence[str]) -> int:
    """One job per GPU; on CPU one job per 4 cores (small RNNs gain little from more threads)."""
    return len(gpus) if gpus else max(1, cpu_count() // 4)


@dataclass
class _Child:
    job: SweepJob
    outcome: JobOutcome
    proc: subprocess.Popen
    log: Path
    offset: int
    started: float
    signalled: bool = False

    def interrupt(self) -> None:
        """SIGINT once: the child stops after its current batch and keeps its checkpoint."""
        if self.signalled or self.proc.poll() is not None:
            return
        self.signalled = True
        try:
            os.kill(self.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def result(self) -> dict:
        """The child's result line, or a failure that says how the process ended."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self.offset)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            text = ""
        lines = text.splitlines()
        for line in reversed(lines):
            if line.startswith(RESULT_MARKER):
                try:
                    return json.loads(line[len(RESULT_MARKER) :])
                except ValueError:
                    break
        code = self.proc.returncode
        if self.signalled:
            return {"status": "cancelled", "message": "stopped before it could report"}
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        return {"status": "failed", "message": f"job process {how}" + (f": {last}" if last else "")}


def package_root() -> str:
    import hmmrnn

    return str(Path(hmmrnn.__file__).resolve().parent.parent)


def python_child_env() -> dict:
    """Environment for a `python -m hmmrnn...` child: it finds this hmmrnn from any working
    directory and writes its output unbuffered, so logs can be followed live."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _child_env(threads: int, gpu: str | None) -> dict:
    env = python_child_env()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _start_child(
    job: SweepJob, out: JobOutcome, root: Path, gpu: str | None, threads: int, device: str
) -> _Child:
    folder = root / job.rel
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / LOG_NAME
    offset = log.stat().st_size if log.exists() else 0
    cmd = [sys.executable, "-m", "hmmrnn.sweep", str(folder), "--device",
           "cuda" if gpu is not None else device, "--threads", str(threads),
           "--parent-pid", str(os.getpid())]  # fmt: skip
    with open(log, "ab") as fh:
        fh.write(f"--- sweep job started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # terminal Ctrl-C reaches the sweep only; it forwards one
            env=_child_env(threads, gpu),
        )
    try:
        proc.stdin.write(json.dumps(job.config.to_dict()).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    return _Child(job, out, proc, log, offset, time.time())


def run_local(todo, root, report, gpus, workers, threads, device, cancel, on_event) -> None:
    pending = deque(todo)
    free = list(range(workers))
    running: dict[int, _Child] = {}
    try:
        while pending or running:
            while pending and free and not cancel.cancelled:
                slot = free.pop(0)
                job, out = pending.popleft()
                gpu = gpus[slot % len(gpus)] if gpus else None
                running[slot] = _start_child(job, out, root, gpu, threads, device)
                out.status = "running"
                report.save()
                on_event("start", out)
            for slot, child in list(running.items()):
                if child.proc.poll() is None:
                    continue
                del running[slot]
                free.append(slot)
                finish(child.outcome, child.result(), child.started, root)
                report.save()
                on_event("end", child.outcome)
            if cancel.cancelled:
                for child in running.values():
                    child.interrupt()
                if not running:
                    break
            time.sleep(0.1)
    finally:
        for child in running.values():  # a second Ctrl-C: do not wait, but still stop them
            child.interrupt()
            child.outcome.update({"status": "cancelled", "message": "sweep interrupted"})
        for _, out in pending:
            out.update({"status": "cancelled", "message": "not started"})


def finish(out: JobOutcome, result: dict, started: float, root: Path) -> None:
    out.update(result)
    if out.status != "skipped":
        out.seconds = time.time() - started  # the job's wall time, process start included
    if out.model_file:
        try:
            out.model_file = str(Path(out.model_file).relative_to(root))
        except ValueError:
            pass


def child_main(argv: Sequence[str]) -> int:
    """Entry point of one local job: config JSON on stdin, a result line on stdout at the end."""
    import argparse

    token = CancelToken()
    signal.signal(signal.SIGINT, lambda *_: token.cancel())
    signal.signal(signal.SIGTERM, lambda *_: token.cancel())
    p = argparse.ArgumentParser(prog="python -m hmmrnn.sweep")
    p.add_argument("folder", type=Path)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--parent-pid", type=int, default=None)
    args = p.parse_args(argv)
    done, lock = threading.Event(), threading.Lock()
    if args.parent_pid:
        watch = (args.parent_pid, token, done, lock, args.folder)
        threading.Thread(target=_watch_parent, args=watch, daemon=True).start()
    try:
        config = ExperimentConfig.from_dict(json.loads(sys.stdin.read()))
        outcome = execute_job(
            args.folder, config, device=args.device, threads=args.threads, cancel=token
        )
    except (ConfigError, ValueError) as exc:
        outcome = JobOutcome(str(args.folder), "failed", message=one_line(exc))
    with lock:  # a finished job's log ends with its result, whatever happens to the sweep now
        done.set()
    print(RESULT_MARKER + json.dumps(outcome.to_dict()), flush=True)
    return 0


def _watch_parent(
    parent: int, token: CancelToken, done: threading.Event, lock, folder: Path, poll: float = 0.1
) -> None:
    """A sweep killed outright cannot forward Ctrl-C: its orphans stop by themselves. A job whose
    training has already ended is left alone: its folder stays exactly as it finished."""
    from hmmrnn.sweep.layout import job_state

    while not token.cancelled and not done.is_set():
        if os.getppid() != parent:
            with lock:
                if not done.is_set() and job_state(folder) not in ("finished", "diverged"):
                    print("the sweep process is gone: stopping after the current batch", flush=True)
                    token.cancel()
            return
        time.sleep(poll)
