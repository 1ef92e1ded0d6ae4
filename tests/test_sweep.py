"""`hmmrnn sweep`: grids land in the study's layout, failures stay alone, killed sweeps finish."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hmmrnn.cli import build_parser, main
from hmmrnn.cli.sweep_cmd import build_spec
from hmmrnn.sweep import expand, job_state, run_sweep
from hmmrnn.train import read_metrics

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden_size=8, input_size=3, num_seq=150, seq_len=8, batch_size=50, epochs=2,
            learning_rates=[0.02])  # fmt: skip


def rels(jobs) -> list[str]:
    return [j.rel for j in jobs]


def spec_from_flags(*argv: str) -> dict:
    return build_spec(build_parser().parse_args(["sweep", *argv]))


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(json.dumps(spec))
    return path


# --- grids and folders (no training) ----------------------------------------------------------------


def test_flag_grid_is_the_product_in_study_folders():
    spec = spec_from_flags("--preset", "Two", "--preset", "Three", "--hidden-size", "50,150",
                           "--input-size", "1,10,100", "--seed", "0,1,2")  # fmt: skip
    jobs = expand(spec)
    expected = {
        f"{p}/hidden_{h}/input_{d}/seed_{s}"
        for p in ("Two", "Three") for h in (50, 150) for d in (1, 10, 100) for s in (0, 1, 2)
    }  # fmt: skip
    assert len(jobs) == 36 and set(rels(jobs)) == expected
    job = next(j for j in jobs if j.rel == "Three/hidden_150/input_10/seed_2")
    cfg = job.config
    assert (cfg.preset, cfg.states, cfg.hidden_size, cfg.input_size, cfg.seed) == (
        "Three", 3, 150, 10, 2,
    )  # fmt: skip


def test_fully_cyclic_custom_and_extra_swept_keys_get_distinct_folders():
    jobs = expand({"preset": ["Fully", "Cyclic"], "seed": [0, 1]})
    assert rels(jobs) == ["Fully_Connected/Seed 0", "Fully_Connected/Seed 1", "Cyclic/Seed 0",
                          "Cyclic/Seed 1"]  # fmt: skip
    assert rels(expand({"preset": "Fully", "hidden_size": [50, 150]})) == [
        "Fully_Connected/hidden_50/Seed 0", "Fully_Connected/hidden_150/Seed 0",
    ]  # fmt: skip
    custom = expand({"states": 4, "transition_method": "fully", "emission_method": "gaussian"})
    assert rels(custom) == ["Custom_4states_fully_gaussian/hidden_150/input_100/seed_0"]
    swept = expand({"preset": "Two", **TINY, "epochs": [2, 3]})
    assert rels(swept) == [
        "Two/hidden_8/input_3/seed_0_epochs2",
        "Two/hidden_8/input_3/seed_0_epochs3",
    ]
    assert [j.config.epochs for j in swept] == [2, 3]
    # a preset whose HMM was changed is not filed under the preset's name
    changed = expand({"preset": "Three", "target_prob": [0.05, 0.2]})
    assert rels(changed)[0].startswith("Three/")
    assert rels(changed)[1].startswith("Custom_3states_target_prob_linear/")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("0.01,0.001", [[0.01, 0.001]]),
        ("0.01;0.01,0.001", [[0.01], [0.01, 0.001]]),
        ("[[0.01],[0.02,0.001]]", [[0.01], [0.02, 0.001]]),
        ("0.05", [[0.05]]),
    ],
)
def test_learning_rate_alternatives(text, expected):
    jobs = expand(spec_from_flags("--preset", "Two", "--learning-rates", text))
    assert [j.config.learning_rates for j in jobs] == expected
    assert len(set(rels(jobs))) == len(expected)


def test_toml_and_json_specs_expand_alike(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text(
        "seed = [0, 1]\nhidden_size = 8\n\n[[grid]]\npreset = ['Two', 'Three']\n"
        "input_size = [1, 3]\n\n[[grid]]\npreset = 'Cyclic'\n"
    )
    js = write_spec(tmp_path / "grid.json", {"seed": [0, 1], "hidden_size": 8, "grid": [
        {"preset": ["Two", "Three"], "input_size": [1, 3]}, {"preset": "Cyclic"}]})  # fmt: skip
    a = expand(spec_from_flags("--spec", str(toml)))
    b = expand(spec_from_flags("--spec", str(js)))
    assert rels(a) == rels(b) and len(a) == 2 * 2 * 2 + 2
    assert "Cyclic/Seed 1" in rels(a) and "Three/hidden_8/input_3/seed_1" in rels(a)
    # a flag replaces the key everywhere in the spec
    c = expand(spec_from_flags("--spec", str(toml), "--seed", "7"))
    assert len(c) == 5 and all(j.config.seed == 7 for j in c)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--preset", "Seven"], "unknown preset"),
        (["--hidden-size", "8,"], "empty value"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--spec", "SPEC_BAD_KEY"], "unknown key(s) hiden_size"),
        (["--spec", "/nonexistent/grid.toml"], "cannot read"),
        (["--preset", "Two", "--config", "CONFIG"], "either --preset or --config"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, extra, message):
    bad = write_spec(tmp_path / "bad.json", {"preset": "Two", "hiden_size": [8]})
    cfg = tmp_path / "config.json"
    cfg.write_text("{}")
    extra = [str(bad) if e == "SPEC_BAD_KEY" else str(cfg) if e == "CONFIG" else e for e in extra]
    assert main(["sweep", *extra, "--out", str(tmp_path / "tree")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tree" / "sweep.json").exists()


def test_ray_engine_without_ray_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["sweep", "--engine", "ray", "--out", str(tmp_path / "tree")]) == 2
    assert "pip install" in capsys.readouterr().err
    assert not (tmp_path / "tree").exists()


def test_job_state_reads_the_folder(tmp_path):
    def folder(name: str, run: dict | None = None, files=()) -> Path:
        f = tmp_path / name
        (f / "models").mkdir(parents=True)
        if run is not None:
            (f / "run.json").write_text(json.dumps(run))
        for n in files:
            (f / n).write_bytes(b"x")
        return f

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert job_state(tmp_path / "nothing") == "absent"
    assert job_state(folder("fin", {"status": "finished"}, ["models/a.pth"])) == "finished"
    assert job_state(folder("fin_noweights", {"status": "finished"})) == "interrupted"
    live = {"status": "running", "pid": os.getpid()}
    assert job_state(folder("live", live)) == "running"
    assert job_state(folder("dead", {"status": "running", "pid": int(dead)})) == "interrupted"
    assert job_state(folder("cancelled", {"status": "cancelled"})) == "interrupted"
    assert job_state(folder("ckpt", None, ["checkpoint.pt"])) == "interrupted"
    assert job_state(folder("div", {"status": "diverged"})) == "diverged"


def test_gpu_slots_follow_cuda_visible_devices(monkeypatch):
    import torch

    from hmmrnn.sweep import default_workers, gpu_ids

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_ids("auto") == ["3", "5"] and default_workers(["3", "5"]) == 2
    assert gpu_ids("cuda:1") == ["5"]
    assert gpu_ids("cpu") == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_ids("cuda") == ["0", "1"]


# --- training (tiny models, seconds each) -----------------------------------------------------------


def test_local_grid_lands_and_bad_configs_fail_alone(tmp_path, capsys):
    spec = write_spec(tmp_path / "grid.json", {**TINY, "seed": [0, 1], "grid": [
        {"preset": ["Two", "Three"]},
        {"preset": "Two", "hidden_size": 0, "seed": 0},
        {"preset": "Four", "emission_method": "triangular", "seed": 0},
    ]})  # fmt: skip
    tree = tmp_path / "tree"
    rc = main(["sweep", "--spec", str(spec), "--out", str(tree), "--jobs", "2",
               "--device", "cpu", "--quiet"])  # fmt: skip
    assert rc == 1
    report = json.loads((tree / "sweep.json").read_text())
    by = {m["rel"]: m for m in report["models"]}
    good = [f"{p}/hidden_8/input_3/seed_{s}" for p in ("Two", "Three") for s in (0, 1)]
    for rel in good:
        folder = tree / rel
        assert by[rel]["status"] == "done" and by[rel]["action"] == "train", by[rel]
        cfg = json.loads((folder / "config.json").read_text())
        assert (cfg["hidden_size"], cfg["input_size"], cfg["seed"]) == (8, 3, int(rel[-1]))
        assert len(list((folder / "models").glob("*.pth"))) == 1
        assert len((folder / "metrics.jsonl").read_text().splitlines()) == 2
    assert report["counts"]["done"] == 4 and report["counts"]["failed"] == 2
    bad = {rel: m["message"] for rel, m in by.items() if m["status"] == "failed"}
    assert "hidden_size must be >= 1" in bad["Two/hidden_0/input_3/seed_0"]
    assert "triangular" in bad["Custom_4states_target_prob_triangular/hidden_8/input_3/seed_0"]
    assert all("Traceback" not in m and "\n" not in m for m in bad.values())
    assert not (tree / "Two/hidden_0").exists()  # an invalid config never gets a folder
    out = capsys.readouterr().out
    assert "done 4" in out and "failed 2" in out


LONG = "Two/hidden_8/input_3/seed_1"  # trains long enough to be caught mid-run


def _catch_mid_run(spec: Path, tree: Path, sig: int, wait_for: str | None = None):
    """Run the sweep CLI with 2 jobs; signal it once LONG has 2 epochs (and wait_for finished)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hmmrnn.cli", "sweep", "--spec", str(spec), "--out", str(tree),
           "--jobs", "2", "--device", "cpu", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = tree / LONG / "metrics.jsonl"
    deadline = time.time() + 90

    def ready() -> bool:
        if not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
            return False
        return wait_for is None or job_state(tree / wait_for) == "finished"

    while not ready():
        assert proc.poll() is None and time.time() < deadline, "the long model never started"
        time.sleep(0.05)
    if sig == signal.SIGINT:  # the TUI finds a sweep's running job as it finds a single run
        from hmmrnn.runs import find_running

        assert (tree / LONG).resolve() in [h.folder for h in find_running([tree])]
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0].decode()
    return proc.returncode, out


def test_ctrl_c_stops_jobs_after_the_batch_and_records_a_crashing_job(tmp_path):
    spec = write_spec(tmp_path / "grid.json", {**TINY, "grid": [
        {"preset": "Three", "seed": 5, "pretrained_model_path": str(tmp_path / "missing.pth")},
        {"preset": "Two", "seed": 1, "epochs": 40},
        {"preset": "Two", "seed": [2, 3]},
    ]})  # fmt: skip
    tree = tmp_path / "tree"
    rc, out = _catch_mid_run(spec, tree, signal.SIGINT, wait_for=None)
    assert rc == 130, out
    long = tree / LONG
    assert json.loads((long / "run.json").read_text())["status"] == "cancelled"
    assert (long / "checkpoint.pt").exists() and job_state(long) == "interrupted"
    models = {m["rel"]: m for m in json.loads((tree / "sweep.json").read_text())["models"]}
    assert models[LONG]["status"] == "cancelled"
    assert models["Two/hidden_8/input_3/seed_3"]["status"] == "cancelled"
    crashed = models["Three/hidden_8/input_3/seed_5"]  # failed inside its job process
    assert crashed["status"] == "failed" and "missing.pth" in crashed["message"]
    assert "Traceback" not in crashed["message"]


def test_killed_sweep_rerun_finishes_the_rest_without_retraining(tmp_path):
    spec = write_spec(tmp_path / "grid.json", {**TINY, "grid": [
        {"preset": "Two", "seed": 0},
        {"preset": "Two", "seed": 1, "epochs": 150},
        {"preset": "Three", "seed": [0, 1]},
    ]})  # fmt: skip
    tree, first = tmp_path / "tree", "Two/hidden_8/input_3/seed_0"
    rc, out = _catch_mid_run(spec, tree, signal.SIGKILL, wait_for=first)
    assert rc == -signal.SIGKILL, out
    files = [p for p in (tree / first).rglob("*") if p.is_file()]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    rc = main(["sweep", "--spec", str(spec), "--out", str(tree), "--jobs", "2", "--device", "cpu",
               "--quiet", "--evaluate", "--eval-sequences", "60"])  # fmt: skip
    assert rc == 0
    models = {m["rel"]: m for m in json.loads((tree / "sweep.json").read_text())["models"]}
    assert models[first]["status"] == "skipped"
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before  # untouched
    assert (models[LONG]["status"], models[LONG]["action"]) == ("done", "resume"), models[LONG]
    for s in (0, 1):  # started or not when the sweep was killed: finished now
        assert models[f"Three/hidden_8/input_3/seed_{s}"]["status"] == "done"
    epochs = [json.loads(x)["epoch"] for x in (tree / LONG / "metrics.jsonl").open()]
    assert epochs == list(range(1, 151))  # resumed: no epoch lost or repeated
    assert "the sweep process is gone" in (tree / LONG / "train.log").read_text()
    for rel in models:
        assert (tree / rel / "evaluation.json").exists(), rel


def test_ray_engine_runs_the_same_grid(tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("Ray is not installed (optional extra: pip install '.[cluster]')")
    spec = {**TINY, "preset": ["Two", "Three"], "seed": [0, 1]}
    report = run_sweep(expand(spec), tmp_path / "tree", engine="ray", workers=2, device="cpu")
    assert report.counts()["done"] == 4, [o.to_dict() for o in report.outcomes]
    for o in report.outcomes:
        assert (tmp_path / "tree" / o.rel / "config.json").exists()
        assert list((tmp_path / "tree" / o.rel / "models").glob("*.pth"))


def test_ray_fractional_gpus_and_a_retried_job(tmp_path):
    """On a local Ray instance with one declared GPU, two jobs claim half a GPU each and run side
    by side (on the CPU: the resource is declared, not used); one job's worker is killed part-way,
    as a lost node would be, and Ray's retry resumes it from its checkpoint."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")
    import threading

    from hmmrnn.sweep.ray_engine import task_options

    assert task_options(1, False, 0.5, 2) == {"num_cpus": 1, "num_gpus": 0.5, "max_retries": 2}
    spec = {**TINY, "preset": ["Two", "Three"], "seed": 0, "epochs": 150}
    jobs = expand(spec)
    tree = tmp_path / "tree"
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # fmt: skip
    try:
        done = {}
        sweep = threading.Thread(target=lambda: done.update(report=run_sweep(
            jobs, tree, engine="ray", workers=2, device="cpu", gpus_per_job=0.5, max_retries=2,
        )))  # fmt: skip
        sweep.start()
        victim = tree / jobs[0].rel
        deadline = time.time() + 120
        while len(read_metrics(victim)) < 3:
            assert time.time() < deadline and sweep.is_alive(), "the job never got going"
            time.sleep(0.05)
        both = [json.loads((tree / j.rel / "run.json").read_text()) for j in jobs]
        assert all(info["status"] == "running" for info in both)  # side by side on one GPU
        os.kill(both[0]["pid"], signal.SIGKILL)  # the worker dies mid-run
        sweep.join(timeout=240)
        report = done["report"]
    finally:
        ray.shutdown()
    assert report.counts()["done"] == 2, [o.to_dict() for o in report.outcomes]
    assert [r["epoch"] for r in read_metrics(victim)] == list(range(1, 151))  # resumed, not redone
    log = (victim / "train.log").read_text()
    assert log.count("ray job started") == 2 and "resume" in log


def test_omp_num_threads_caps_the_threads_of_each_local_job(tmp_path, monkeypatch):
    # the children's environment is set from the sweep's thread count: a caller's
    # OMP_NUM_THREADS=1 must not become cores // jobs there
    import hmmrnn.sweep.runner as runner

    monkeypatch.setattr(runner, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_sweep([], tmp_path / "a", workers=1, device="cpu").threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # a cap, never more than the share
    assert run_sweep([], tmp_path / "b", workers=2, device="cpu").threads == 4
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert run_sweep([], tmp_path / "c", workers=2, device="cpu").threads == 4
    assert json.loads((tmp_path / "a" / "sweep.json").read_text())["threads_per_job"] == 1
