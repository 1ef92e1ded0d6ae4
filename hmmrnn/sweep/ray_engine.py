"""The Ray engine: the same jobs as Ray tasks, on a local Ray instance or a cluster.

Requirements on a cluster: the output tree on a filesystem every node mounts at the same path
with working file locks (NFSv4, Lustre, BeeGFS, ...), and the same Python environment (torch,
numpy, ...) on every node; this hmmrnn is shipped to the workers (`py_modules`). Each job writes
its output into its folder's train.log, as a local job does. A job whose worker or node dies is
retried (`max_retries`), and the retry resumes from the run's last checkpoint, because what to do
with a folder is always decided from the folder. `gpus_per_job` may be a fraction, so that several
small RNNs share one GPU. Ray is imported only when this engine is used.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from hmmrnn.config import ExperimentConfig
from hmmrnn.io import atomic_write_json
from hmmrnn.sweep.local import execute_job, finish, package_root
from hmmrnn.sweep.report import one_line
from hmmrnn.sweep.spec import SpecError
from hmmrnn.tree import RUN_NAME, read_run_info


def _ray_job(folder: str, config: dict, device: str, threads: int) -> dict:
    """A Ray task: the same job, in a Ray worker, its output appended to the job's train.log."""
    import contextlib

    from hmmrnn.sweep.local import LOG_NAME

    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / LOG_NAME, "a", encoding="utf-8", buffering=1) as log:
        print(f"--- ray job started {time.strftime('%Y-%m-%d %H:%M:%S')} on "
              f"{os.uname().nodename} (pid {os.getpid()}) ---", file=log)  # fmt: skip
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return _run_job(folder, config, device, threads)


def _run_job(folder: str, config: dict, device: str, threads: int) -> dict:
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


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise SpecError(
            "the ray engine needs Ray, an optional extra: pip install 'hmmrnn[cluster]' "
            "(or pip install '.[cluster]' in a checkout)"
        ) from exc
    return ray


def run_ray(
    todo, root, report, workers, threads, device, address, cancel, on_event,
    gpus_per_job: float | None = None, max_retries: int = 2,
) -> None:  # fmt: skip
    ray = import_ray()
    import hmmrnn

    if address:
        runtime_env = {"py_modules": [hmmrnn]}  # ship this hmmrnn to the cluster's workers
    else:
        runtime_env = {"env_vars": {"PYTHONPATH": package_root(), "OMP_NUM_THREADS": str(threads)}}
    started_here = not ray.is_initialized()
    local_only = {} if address else {"include_dashboard": False}
    ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
             ignore_reinit_error=True, **local_only)  # fmt: skip
    try:
        use_gpu = device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
        if device.startswith("cuda") and not use_gpu:
            raise SpecError(f"device {device!r} requested but the Ray cluster has no GPU")
        task = ray.remote(_ray_job).options(
            **task_options(threads, use_gpu, gpus_per_job, max_retries)
        )
        job_device = "cuda" if use_gpu else "cpu"
        _ray_loop(ray, task, todo, root, report, workers, threads, job_device, cancel, on_event)
    finally:
        if started_here:
            ray.shutdown()


def task_options(threads: int, use_gpu: bool, gpus_per_job: float | None, max_retries: int) -> dict:
    """Resources each job claims: its threads, and a GPU or a fraction of one. A fraction is
    declared even when the job computes on the CPU (a shared-GPU schedule, or a test)."""
    gpus = gpus_per_job if gpus_per_job is not None else (1 if use_gpu else 0)
    # a dead worker or node is retried; an exception inside the job is its outcome, never retried
    return {"num_cpus": threads, "num_gpus": gpus, "max_retries": max_retries}


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
                finish(out, _ray_result(ray, ref), t0, root.resolve())
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
        return {"status": "failed", "message": one_line(exc)}
