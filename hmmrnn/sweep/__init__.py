"""Sweeps: train a grid of models as independent jobs, into the study's tree layout.

A grid is a dict whose values are lists of alternatives (every combination is one model), read from
command-line flags or a TOML/JSON spec. Each model gets the folder the study used
(`Three/hidden_150/input_100/seed_0`, `Fully_Connected/Seed 0`), so a sweep's tree opens in every
tool that reads the study's. Each job runs the same `hmmrnn.train.train` / `resume` as `hmmrnn train`.

Why it is resumable: what to do with a model is decided from its folder alone (run.json, checkpoint),
never from the sweep's own bookkeeping, so a sweep that was killed, or a tree trained half by hand,
is finished by running the same sweep again. `sweep.json` in the tree root is a report, not state.

The package is split by what it holds: `spec` (grids and their expansion), `layout` (tree folders
and folder state), `local` (one child process per job, and the job itself), `ray_engine`, `report`
(outcomes and sweep.json) and `runner` (plan and run).
"""

from hmmrnn.sweep.layout import job_state
from hmmrnn.sweep.local import (
    default_workers,
    execute_job,
    gpu_ids,
    python_child_env,
)
from hmmrnn.sweep.report import SWEEP_NAME, JobOutcome, SweepReport
from hmmrnn.sweep.runner import plan, run_sweep
from hmmrnn.sweep.spec import (
    LIST_KEYS,
    MATRIX_KEYS,
    SpecError,
    SweepJob,
    alternatives,
    expand,
    load_spec,
)

__all__ = [
    "LIST_KEYS",
    "MATRIX_KEYS",
    "SWEEP_NAME",
    "JobOutcome",
    "SpecError",
    "SweepJob",
    "SweepReport",
    "alternatives",
    "default_workers",
    "execute_job",
    "expand",
    "gpu_ids",
    "job_state",
    "load_spec",
    "plan",
    "python_child_env",
    "run_sweep",
]
