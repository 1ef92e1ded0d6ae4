"""Sweeps: train a grid of models as independent jobs, into the study's tree layout.

A grid is a dict whose values are lists of alternatives (every combination is one model), read from
command-line flags or a TOML/JSON spec. Each model gets the folder the study used
(`Three/hidden_150/input_100/seed_0`, `Fully_Connected/Seed 0`), so a sweep's tree opens in every
tool that reads the study's. Each job runs the same `hmmrnn.train.train` / `resume` as `hmmrnn train`.

Why it is resumable: what to do with a model is decided from its folder alone (run.json, checkpoint),
never from the sweep's own bookkeeping, so a sweep that was killed, or a tree trained half by hand,
is finished by running the same sweep again. `sweep.json` in the tree root is a report, not state.

Local jobs are child processes (`python -m hmmrnn.sweep FOLDER`) in their own session: one job that
crashes (out of memory, a segfault) cannot take the others down, terminal Ctrl-C reaches only the
sweep, which forwards one SIGINT to each child so it stops after the current batch, and a child
whose sweep died (SIGKILL) notices its new parent and stops the same way. Ray is imported only for
`engine="ray"`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmmrnn.cancel import CancelToken
from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.hmm import PRESETS, HMMSpecError, get_preset
from hmmrnn.io import atomic_write_json, read_json_file, read_text_file
from hmmrnn.tree import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    METRICS_NAME,
    RUN_NAME,
    is_running,
    pick_model_file,
    read_run_info,
)

SWEEP_NAME = "sweep.json"
LOG_NAME = "train.log"  # the same log a TUI-launched run writes, so the TUI shows its tail
RESULT_MARKER = "HMMRNN-SWEEP-RESULT "
SEED_ONLY_FOLDERS = ("Fully_Connected", "Cyclic")  # the study's `Family/Seed S` layout
LIST_KEYS = ("learning_rates", "betas")  # values that are lists themselves
MATRIX_KEYS = ("custom_transition_matrix", "custom_emission_matrix")
HMM_KEYS = (
    "states", "outputs", "transition_method", "emission_method", "stay_prob", "target_prob",
    *MATRIX_KEYS,
)  # fmt: skip
STALE_SECONDS = 900.0  # a run on another host that has not written for this long is not running


class SpecError(ValueError):
    """A grid that cannot be expanded (unknown key or preset, empty list); names the problem."""


# --- grids ---------------------------------------------------------------------------------------


@dataclass
class SweepJob:
    """One model of a grid: its folder in the tree and its config (None when invalid)."""

    rel: str
    values: dict
    config: ExperimentConfig | None
    error: str = ""


def spec_keys() -> list[str]:
    """Keys a grid may set: every config field (preset and seed included)."""
    return [f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "extra"]


def load_spec(path: str | Path) -> dict:
    """Read a TOML or JSON grid spec (by extension; JSON when in doubt)."""
    path = Path(path)
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(read_text_file(path, SpecError))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path} is not valid TOML: {exc}") from exc
    else:
        data = read_json_file(path, SpecError)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a table/object of keys, got {type(data).__name__}")
    return data


def check_spec(spec: dict) -> None:
    """Structural checks only: bad values are left for each model's config to report."""
    allowed = set(spec_keys())
    grids = spec.get("grid", [{}])
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise SpecError("'grid' must be a non-empty list of tables/objects")
    for where, table in [("top level", spec), *((f"grid {i + 1}", g) for i, g in enumerate(grids))]:
        unknown = sorted(set(table) - allowed - ({"grid"} if table is spec else set()))
        if unknown:
            raise SpecError(
                f"{where}: unknown key(s) {', '.join(unknown)}; keys are config fields: "
                + ", ".join(sorted(allowed))
            )
        for key, value in table.items():
            if key == "grid":
                continue
            if not alternatives(key, value):
                raise SpecError(f"{where}: {key} has an empty list of values")
            if key == "preset":
                for name in alternatives(key, value):
                    if name is not None:
                        _check_preset(name)


def _check_preset(name: Any) -> None:
    if not isinstance(name, str):
        raise SpecError(f"preset must be a name, got {name!r}")
    try:
        get_preset(name)
    except HMMSpecError as exc:
        raise SpecError(str(exc)) from exc


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def alternatives(key: str, value: Any) -> list:
    """The values a grid key takes. A list means alternatives, except for keys whose value is a
    list itself: there a list of lists (learning_rates, betas) or of matrices means alternatives."""
    if key in LIST_KEYS:
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return value
        return [value]
    if key in MATRIX_KEYS:
        return list(value) if _depth(value) >= 3 else [value]
    return list(value) if isinstance(value, list) else [value]


def expand(spec: dict, base: dict | None = None) -> list[SweepJob]:
    """Every model of a grid spec, each with its tree folder.

    `spec`: config keys (a list = alternatives) plus an optional `grid` list of tables, each expanded
    separately with the top-level keys as defaults. `base`: a config dict under everything (the
    CLI's --config). A model whose config is invalid keeps its error instead of raising, so that it
    fails alone.
    """
    check_spec(spec)
    top = {k: v for k, v in spec.items() if k != "grid"}
    first = ("preset", "hidden_size", "input_size")  # the study's order; seeds vary fastest
    order = {k: i for i, k in enumerate([*first, *(k for k in spec_keys() if k not in first)])}
    jobs: list[SweepJob] = []
    for grid in spec.get("grid", [{}]):
        merged = {**top, **grid}
        if base is not None and merged.get("preset") is not None:
            raise SpecError("give either presets or a base config, not both")
        keys = sorted(merged, key=lambda k: (k == "seed", order[k]))
        for combo in itertools.product(*(alternatives(k, merged[k]) for k in keys)):
            jobs.append(_make_job(dict(zip(keys, combo, strict=True)), base))
    return assign_folders(jobs)


def _make_job(values: dict, base: dict | None) -> SweepJob:
    """A job from one combination; an invalid config is kept as the job's error."""
    values = {**(base or {}), **values}
    data = dict(values)
    preset = data.pop("preset", None) if base is None else None
    try:
        if preset:
            config = ExperimentConfig.from_preset(preset, **data)
        else:
            config = ExperimentConfig.from_dict(values)
    except (ConfigError, HMMSpecError, TypeError) as exc:
        return SweepJob("", values, None, error=str(exc))
    return SweepJob("", values, config)


def _effective(job: SweepJob) -> dict:
    """The full key set of a job, also for invalid ones (for naming their would-be folder)."""
    if job.config is not None:
        return job.config.to_dict()
    preset = job.values.get("preset")
    start = ExperimentConfig.from_preset(preset) if preset else ExperimentConfig()
    return {**start.to_dict(), **job.values}


def _same_hmm(job: SweepJob, eff: dict, preset_name: str) -> bool:
    """Whether a config describes its preset's HMM (else it is named as a custom one)."""
    ref = ExperimentConfig.from_preset(preset_name)
    if job.config is None:
        return all(eff.get(k) == getattr(ref, k) for k in HMM_KEYS)
    import numpy as np

    a, b = job.config.build_hmm(), ref.build_hmm()
    return all(
        x.shape == y.shape and np.allclose(x, y)
        for x, y in ((a.transition, b.transition), (a.emission, b.emission))
    )


def _safe(text: str) -> str:
    """One path component: readable, no separators, never '.' or '..'."""
    cleaned = re.sub(r"[^A-Za-z0-9._+= -]", "-", text).strip() or "-"
    return cleaned if cleaned.strip(".") else cleaned.replace(".", "-")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return "+".join(f"{v:g}" for v in value)
    if isinstance(value, str):
        return value
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:8]


def _base_parts(job: SweepJob, eff: dict) -> tuple[str, bool]:
    """(family folder, whether it uses the study's `Seed S` leaf without hidden/input levels)."""
    name = eff.get("preset")
    if isinstance(name, str) and name.lower() in (p.lower() for p in PRESETS):
        preset = get_preset(name)
        if _same_hmm(job, eff, preset.name):
            folder = preset.folder or preset.name
            return folder, folder in SEED_ONLY_FOLDERS
    family = (
        f"Custom_{_fmt(eff.get('states'))}states_{_fmt(eff.get('transition_method'))}"
        f"_{_fmt(eff.get('emission_method'))}"
    )
    if eff.get("outputs") != 3:
        family += f"_{_fmt(eff.get('outputs'))}outputs"
    return _safe(family), False


def _seed_leaf(eff: dict, seed_only: bool) -> str:
    return f"Seed {_fmt(eff.get('seed'))}" if seed_only else f"seed_{_fmt(eff.get('seed'))}"


def assign_folders(jobs: list[SweepJob]) -> list[SweepJob]:
    """Study folders; where models would share one, the keys they differ in name them apart.

    hidden/input sizes become `hidden_H/input_D` levels (as in the study); any other differing key
    is appended to the leaf (`seed_0_epochs3`). Identical models are listed once.
    """
    effs = [_effective(j) for j in jobs]
    bases = []
    for job, eff in zip(jobs, effs, strict=True):
        family, seed_only = _base_parts(job, eff)
        sizes = [] if seed_only else [f"hidden_{_fmt(eff['hidden_size'])}",
                                      f"input_{_fmt(eff['input_size'])}"]  # fmt: skip
        bases.append((family, seed_only, tuple(sizes), _seed_leaf(eff, seed_only)))
    groups: dict[tuple, list[int]] = {}
    for i, b in enumerate(bases):
        groups.setdefault(b, []).append(i)
    seen: dict[str, str] = {}
    out = []
    for i, (job, eff) in enumerate(zip(jobs, effs, strict=True)):
        family, seed_only, sizes, leaf = bases[i]
        members = [effs[j] for j in groups[bases[i]]]
        varied = [k for k in eff if k != "preset" and any(m.get(k) != eff.get(k) for m in members)]
        parts = [family, *sizes]
        for key, label in (("hidden_size", "hidden"), ("input_size", "input")):
            if key in varied:
                varied.remove(key)
                parts.append(f"{label}_{_fmt(eff[key])}")
        leaf += "".join(f"_{key}{_fmt(eff[key])}" for key in varied)
        job.rel = "/".join(_safe(p) for p in [*parts, leaf])
        key = json.dumps(eff, sort_keys=True, default=str)
        if job.rel in seen:
            if seen[job.rel] == key:
                continue  # the same model listed twice
            raise SpecError(f"two different models would share {job.rel}")
        seen[job.rel] = key
        out.append(job)
    return out


# --- job state ----------------------------------------------------------------------------------


def _busy(folder: Path, info: dict) -> bool:
    """Being trained right now: by a live process here, or recently on another host."""
    if info.get("status") != "running":
        return False
    host = info.get("host")
    if host and host != socket.gethostname():
        updated = info.get("updated")
        return isinstance(updated, (int, float)) and time.time() - updated < STALE_SECONDS
    return is_running(folder)


def job_state(folder: str | Path) -> str:
    """absent | finished | running | interrupted | diverged, from the folder's own files."""
    folder = Path(folder)
    info = read_run_info(folder)
    status = info.get("status")
    if status == "finished" and pick_model_file(folder) is not None:
        return "finished"
    if _busy(folder, info):
        return "running"
    if status == "diverged":
        return "diverged"
    if any((folder / n).exists() for n in (RUN_NAME, CHECKPOINT_NAME, METRICS_NAME)):
        return "interrupted"
    return "absent"


def config_conflict(folder: Path, config: ExperimentConfig) -> str:
    """Why the run already in a folder is not this config's ('' when it is)."""
    try:
        stored = ExperimentConfig.load(folder / CONFIG_NAME).to_dict()
    except ConfigError as exc:
        return f"its {CONFIG_NAME} cannot be used ({exc})"
    new = config.to_dict()
    diff = sorted(k for k in set(stored) | set(new) if stored.get(k) != new.get(k))
    return f"it holds a run with a different config ({', '.join(diff)})" if diff else ""


# --- outcomes and the report ------------------------------------------------------------------------


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


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
        out.update({"status": "failed", "message": _one_line(exc)})
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


def _package_root() -> str:
    import hmmrnn

    return str(Path(hmmrnn.__file__).resolve().parent.parent)


def python_child_env() -> dict:
    """Environment for a `python -m hmmrnn...` child: it finds this hmmrnn from any working
    directory and writes its output unbuffered, so logs can be followed live."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
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


def _run_local(todo, root, report, gpus, workers, threads, device, cancel, on_event) -> None:
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
                _finish(child.outcome, child.result(), child.started, root)
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


def _finish(out: JobOutcome, result: dict, started: float, root: Path) -> None:
    out.update(result)
    if out.status != "skipped":
        out.seconds = time.time() - started  # the job's wall time, process start included
    if out.model_file:
        try:
            out.model_file = str(Path(out.model_file).relative_to(root))
        except ValueError:
            pass


def _child_main(argv: Sequence[str]) -> int:
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
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, token), daemon=True).start()
    try:
        config = ExperimentConfig.from_dict(json.loads(sys.stdin.read()))
        outcome = execute_job(
            args.folder, config, device=args.device, threads=args.threads, cancel=token
        )
    except (ConfigError, ValueError) as exc:
        outcome = JobOutcome(str(args.folder), "failed", message=_one_line(exc))
    print(RESULT_MARKER + json.dumps(outcome.to_dict()), flush=True)
    return 0


def _watch_parent(parent: int, token: CancelToken, poll: float = 0.5) -> None:
    """A sweep killed outright cannot forward Ctrl-C: its orphans stop by themselves."""
    while not token.cancelled:
        if os.getppid() != parent:
            print("the sweep process is gone: stopping after the current batch", flush=True)
            token.cancel()
            return
        time.sleep(poll)


# --- the Ray engine ---------------------------------------------------------------------------------


def _ray_job(folder: str, config: dict, device: str, threads: int) -> dict:
    """A Ray task: the same job, in a Ray worker (the tree must be on a shared filesystem)."""
    try:
        return execute_job(
            folder, ExperimentConfig.from_dict(config), device=device, threads=threads
        ).to_dict()
    except KeyboardInterrupt:  # ray.cancel: the worker lives on, so run.json must not say running
        info = read_run_info(Path(folder))
        if info.get("status") == "running" and info.get("pid") == os.getpid():
            info.update(status="cancelled", message="cancelled by the sweep", updated=time.time())
            atomic_write_json(Path(folder) / RUN_NAME, info)
        raise


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise SpecError(
            "the ray engine needs Ray, an optional extra: pip install 'hmmrnn[cluster]' "
            "(or pip install '.[cluster]' in a checkout)"
        ) from exc
    return ray


def _run_ray(todo, root, report, workers, threads, device, address, cancel, on_event) -> None:
    ray = _import_ray()
    import hmmrnn

    if address:
        runtime_env = {"py_modules": [hmmrnn]}  # ship this hmmrnn to the cluster's workers
    else:
        runtime_env = {"env_vars": {"PYTHONPATH": _package_root(), "OMP_NUM_THREADS": str(threads)}}
    started_here = not ray.is_initialized()
    local_only = {} if address else {"include_dashboard": False}
    ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
             ignore_reinit_error=True, **local_only)  # fmt: skip
    try:
        use_gpu = device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
        if device.startswith("cuda") and not use_gpu:
            raise SpecError(f"device {device!r} requested but the Ray cluster has no GPU")
        task = ray.remote(_ray_job).options(
            num_cpus=threads, num_gpus=1 if use_gpu else 0, max_retries=0
        )
        job_device = "cuda" if use_gpu else "cpu"
        _ray_loop(ray, task, todo, root, report, workers, threads, job_device, cancel, on_event)
    finally:
        if started_here:
            ray.shutdown()


def _ray_loop(ray, task, todo, root, report, workers, threads, device, cancel, on_event) -> None:
    pending = deque(todo)
    flight: dict = {}
    try:
        while pending or flight:
            while pending and len(flight) < workers and not cancel.cancelled:
                job, out = pending.popleft()
                (root / job.rel).mkdir(parents=True, exist_ok=True)
                ref = task.remote(str((root / job.rel).resolve()), job.config.to_dict(), device,
                                  threads)  # fmt: skip
                flight[ref] = (out, time.time(), False)
                out.status = "running"
                report.save()
                on_event("start", out)
            if cancel.cancelled:
                for ref, (out, t0, sent) in list(flight.items()):
                    if not sent:
                        ray.cancel(ref)
                        flight[ref] = (out, t0, True)
            ready, _ = ray.wait(list(flight), num_returns=1, timeout=0.2) if flight else ([], [])
            for ref in ready:
                out, t0, _ = flight.pop(ref)
                _finish(out, _ray_result(ray, ref), t0, root.resolve())
                report.save()
                on_event("end", out)
            if cancel.cancelled and not flight:
                break
    finally:
        for ref, (out, _, _) in flight.items():
            ray.cancel(ref)
            out.update({"status": "cancelled", "message": "sweep interrupted"})
        for _, out in pending:
            out.update({"status": "cancelled", "message": "not started"})


def _ray_result(ray, ref) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return {"status": "cancelled", "message": "cancelled by the sweep"}
    except ray.exceptions.RayError as exc:
        return {"status": "failed", "message": _one_line(exc)}


# --- the sweep -------------------------------------------------------------------------------------

EventFn = Callable[[str, JobOutcome], None]


def plan(jobs: Sequence[SweepJob], root: str | Path) -> list[tuple[SweepJob, str]]:
    """(job, state) for every job: what a sweep would do, without doing it."""
    root = Path(root)
    return [(j, "invalid" if j.error else job_state(root / j.rel)) for j in jobs]


def run_sweep(
    jobs: Sequence[SweepJob],
    root: str | Path,
    *,
    engine: str = "local",
    workers: int | None = None,
    device: str = "auto",
    address: str | None = None,
    cancel: CancelToken | None = None,
    on_event: EventFn | None = None,
    spec: dict | None = None,
) -> SweepReport:
    """Train every job not finished yet; never raises for one job's failure.

    Finished models are skipped, interrupted ones resumed from their checkpoints, invalid configs
    fail without running. `workers` jobs run at once (default: one per GPU, else one per 4 cores);
    each gets cores // workers threads. Cancelling stops launching and asks the running jobs to
    stop after their current batch; their folders stay resumable.
    """
    if engine not in ("local", "ray"):
        raise SpecError(f"unknown engine {engine!r}; choose local or ray")
    if workers is not None and workers < 1:
        raise SpecError(f"jobs must be >= 1, got {workers}")
    if engine == "ray":
        _import_ray()  # fail before anything is written
    root = Path(root).expanduser()
    cancel = cancel or CancelToken()
    on_event = on_event or (lambda kind, out: None)
    gpus = gpu_ids(device) if engine == "local" else []
    n_workers = workers or (default_workers(gpus) if engine == "local" else len(jobs) or 1)
    # threads per job: share this machine's cores (a remote Ray cluster's are its own business)
    share = engine == "local" or (workers is not None and not address)
    threads = max(1, cpu_count() // n_workers) if share else 1
    root.mkdir(parents=True, exist_ok=True)
    report = SweepReport(root, [JobOutcome(j.rel) for j in jobs], engine, n_workers, threads,
                         device, spec=spec)  # fmt: skip
    todo = []
    for job, out in zip(jobs, report.outcomes, strict=True):
        if job.error:
            out.update({"status": "failed", "message": job.error})
            continue
        if job_state(root / job.rel) == "finished":
            out.update(execute_job(root / job.rel, job.config, log=lambda _m: None).to_dict())
            out.model_file = out.model_file and str(Path(out.model_file).relative_to(root))
            continue
        todo.append((job, out))
    report.save()
    try:
        if engine == "local":
            _run_local(todo, root, report, gpus, n_workers, threads, device, cancel, on_event)
        else:
            _run_ray(todo, root, report, n_workers, threads, device, address, cancel, on_event)
    finally:
        report.finished = time.time()
        report.save()
    return report


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
