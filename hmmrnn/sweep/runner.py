"""Running a sweep: plan it, or train every job not finished yet on the chosen engine."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hmmrnn.cancel import CancelToken
from hmmrnn.sweep.layout import job_state
from hmmrnn.sweep.local import cpu_count, default_workers, execute_job, gpu_ids, run_local
from hmmrnn.sweep.ray_engine import import_ray, run_ray
from hmmrnn.sweep.report import JobOutcome, SweepReport
from hmmrnn.sweep.spec import SpecError, SweepJob

EventFn = Callable[[str, JobOutcome], None]


def thread_limit() -> int | None:
    """The thread count the caller's OMP_NUM_THREADS asks for (None when unset or not a count)."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) >= 1 else None


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
    gpus_per_job: float | None = None,
    max_retries: int = 2,
) -> SweepReport:
    """Train every job not finished yet; never raises for one job's failure.

    Finished models are skipped, interrupted ones resumed from their checkpoints, invalid configs
    fail without running. Ray only: `gpus_per_job` (fractions share a GPU) and `max_retries` of
    a job whose worker or node died (the retry resumes from the checkpoint). `workers` jobs run at once (default: one per GPU, else one per 4 cores);
    each gets cores // workers threads, at most OMP_NUM_THREADS where the caller set it.
    Cancelling stops launching and asks the running jobs to stop after their current batch; their
    folders stay resumable.
    """
    if engine not in ("local", "ray"):
        raise SpecError(f"unknown engine {engine!r}; choose local or ray")
    if workers is not None and workers < 1:
        raise SpecError(f"jobs must be >= 1, got {workers}")
    if gpus_per_job is not None and not 0 < gpus_per_job:
        raise SpecError(f"gpus per job must be > 0, got {gpus_per_job}")
    if max_retries < 0:
        raise SpecError(f"retries must be >= 0, got {max_retries}")
    if engine == "ray":
        import_ray()  # fail before anything is written
    root = Path(root).expanduser()
    cancel = cancel or CancelToken()
    on_event = on_event or (lambda kind, out: None)
    gpus = gpu_ids(device) if engine == "local" else []
    n_workers = workers or (default_workers(gpus) if engine == "local" else len(jobs) or 1)
    # threads per job: share this machine's cores (a remote Ray cluster's are its own business);
    # an OMP_NUM_THREADS the caller set caps them (the children's environment would override it)
    share = engine == "local" or (workers is not None and not address)
    threads = max(1, cpu_count() // n_workers) if share else 1
    if share:
        threads = min(threads, thread_limit() or threads)
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
            run_local(todo, root, report, gpus, n_workers, threads, device, cancel, on_event)
        else:
            run_ray(todo, root, report, n_workers, threads, device, address, cancel, on_event,
                    gpus_per_job=gpus_per_job, max_retries=max_retries)  # fmt: skip
    finally:
        report.finished = time.time()
        report.save()
    return report
