"""Faults a user meets, each on its own: the answer is a clear message, and no run is lost, mixed
up or shown in a state it is not in."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_study_model

from hmmrnn import api
from hmmrnn.analyses.base import AnalysisRun, ResultCache, set_cache
from hmmrnn.cli import main
from hmmrnn.config import ExperimentConfig
from hmmrnn.runstate import is_running, process_start_time, run_lock, run_state
from hmmrnn.train import read_metrics, resume, train

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--hidden-size", "8", "--input-size", "3", "--num-seq", "150", "--seq-len", "8",
        "--batch-size", "50", "--device", "cpu", "--quiet"]  # fmt: skip


def tiny(**over) -> ExperimentConfig:
    base = dict(hidden_size=8, input_size=3, num_seq=150, seq_len=8, batch_size=50, epochs=4,
                learning_rates=[0.02], seed=1)  # fmt: skip
    return ExperimentConfig.from_preset("Two", **{**base, **over})


@pytest.fixture(autouse=True)
def _cache(tmp_path):
    set_cache(ResultCache(tmp_path / "cache"))
    yield
    set_cache(None)


def weights_of(folder: Path) -> dict:
    return api.load(folder, "cpu").model.state_dict()


# --- run state ---------------------------------------------------------------------------------------


def test_a_reused_pid_is_not_a_running_trainer(tmp_path):
    """run.json names a live process, but one started after the run: a pid reused by the OS."""
    train(tiny(epochs=1), tmp_path / "r", device="cpu")
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    (tmp_path / "r" / ".lock").unlink()  # a run from before the lock: the pid is all there is
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        stale = {**info, "status": "running", "pid": sleeper.pid, "started": info["started"] - 60}
        stale.pop("pid_start")  # an older run.json: only the run's start time to go by
        (tmp_path / "r" / "run.json").write_text(json.dumps(stale))
        assert not is_running(tmp_path / "r") and run_state(tmp_path / "r") == "interrupted"
        stale["pid_start"] = process_start_time(sleeper.pid) - 100  # recorded, and different
        (tmp_path / "r" / "run.json").write_text(json.dumps(stale))
        assert not is_running(tmp_path / "r")
        stale["pid_start"] = process_start_time(sleeper.pid)  # the very process: running
        (tmp_path / "r" / "run.json").write_text(json.dumps(stale))
        assert is_running(tmp_path / "r")
        (entry,) = api.discover(tmp_path)
        assert entry.status == "training"
    finally:
        sleeper.kill()
        sleeper.wait()
    (entry,) = api.discover(tmp_path)
    assert entry.status == "ok" and any("interrupted" in w for w in entry.warnings)


def test_the_lock_is_the_ground_truth_where_it_exists(tmp_path):
    out = tmp_path / "r"
    train(tiny(epochs=1), out, device="cpu")
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**info, "status": "running"}))  # this very process
    assert not is_running(out)  # ... but nobody holds the lock: it stopped training
    with run_lock(out):
        assert is_running(out) and run_state(out) == "running"
    assert run_state(out) == "interrupted"


def test_a_killed_run_without_weights_is_resumable_not_broken(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    tiny().save(folder / "config.json")
    (folder / "metrics.jsonl").write_text('{"epoch": 1, "val_loss": 3.0}\n')
    (folder / "run.json").write_text(json.dumps({"status": "running", "pid": 2**22 + 7}))
    (entry,) = api.discover(tmp_path)
    assert entry.status == "interrupted" and "resum" in entry.reason


def test_two_trainings_into_one_folder(tmp_path, capsys):
    out = tmp_path / "r"
    with run_lock(out):  # another trainer holds the folder
        rc = main(["train", "--preset", "Two", *TINY, "--epochs", "1", "--out", str(out)])
        assert rc == 2 and f"being trained by process {os.getpid()}" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()
    with run_lock(out):
        rc = main(["train", "--preset", "Two", *TINY, "--epochs", "1", "--out", str(out),
                   "--overwrite"])  # fmt: skip
        assert rc == 2
    assert not (out / "metrics.jsonl").exists()  # neither started beside the holder


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path):
    out = tmp_path / "r"
    train(tiny(epochs=2), out, device="cpu")
    lower = out / "models" / "2HMM_3Outputs_linear_0.15kData_0.001lr_0.1Loss.pth"
    torch.save(weights_of(out), lower)  # an old file whose name promises a lower loss
    (out / "evaluation.json").write_text("{}")
    res = train(tiny(epochs=1, seed=5), out, device="cpu", overwrite=True)
    assert sorted(p.name for p in (out / "models").glob("*.pth")) == [res.model_file.name]
    assert not (out / "evaluation.json").exists()
    assert api.load(out).model_file == res.model_file
    assert [r["epoch"] for r in read_metrics(out)] == [1]


def test_the_file_run_json_names_is_the_one_used(tmp_path):
    out = tmp_path / "r"
    res = train(tiny(epochs=1), out, device="cpu")
    decoy = out / "models" / "2HMM_3Outputs_linear_0.15kData_0.001lr_0.0Loss.pth"
    torch.save(weights_of(out), decoy)
    assert api.load(out).model_file == res.model_file


# --- interruptions --------------------------------------------------------------------------------------


def test_a_kill_between_log_and_checkpoint_loses_no_epoch(tmp_path, monkeypatch):
    from hmmrnn import train as train_mod

    reference = train(tiny(), tmp_path / "ref", device="cpu")
    real = train_mod.Trainer.save_checkpoint

    def killed_at_epoch_3(self, lr_index, epoch, model, optimizer):
        if epoch == 3:
            raise KeyboardInterrupt  # the process dies after the log line, before the checkpoint
        real(self, lr_index, epoch, model, optimizer)

    monkeypatch.setattr(train_mod.Trainer, "save_checkpoint", killed_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), tmp_path / "r", device="cpu")
    monkeypatch.undo()
    assert run_state(tmp_path / "r") == "interrupted"  # the lock went with the "process"
    res = resume(tmp_path / "r", device="cpu")
    assert res.status == "finished"
    assert [r["epoch"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3, 4]
    for key, value in weights_of(reference.folder).items():
        assert torch.equal(weights_of(tmp_path / "r")[key], value)


def test_kill_9_at_a_random_epoch_then_resume_gives_the_same_weights(tmp_path):
    reference = tmp_path / "ref"
    config = tiny(epochs=40)
    train(config, reference, device="cpu")
    config.save(tmp_path / "c.json")
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hmmrnn.cli", "train", "--config", str(tmp_path / "c.json"),
           "--out", str(out), "--device", "cpu", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = int.from_bytes(os.urandom(1), "big") % 20 + 3  # some epoch in 3..22
    deadline = time.time() + 60
    while len(read_metrics(out)) < target and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_state(out) in ("interrupted", "finished")
    if run_state(out) == "interrupted":
        assert main(["resume", str(out), "--device", "cpu", "--quiet"]) == 0
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, 41))
    for key, value in weights_of(reference).items():
        assert torch.equal(weights_of(out)[key], value), key


def test_a_nan_run_exits_1_keeps_its_best_weights_and_refuses_resume(tmp_path, monkeypatch):
    from hmmrnn.rnn import HMMRNN

    real = HMMRNN.forward
    calls = {"n": 0}

    def poisoned(self, noise, h0=None, generator=None):
        run = real(self, noise, h0, generator)
        calls["n"] += 1
        if calls["n"] > 10:  # part-way: the outputs become NaN (what exploding weights do)
            run.outputs = run.outputs * float("nan")
        return run

    monkeypatch.setattr(HMMRNN, "forward", poisoned)
    out = tmp_path / "r"
    rc = main(["train", "--preset", "Two", *TINY, "--epochs", "20", "--out", str(out)])
    monkeypatch.undo()
    assert rc == 1
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged" and "diverged at epoch" in info["message"]
    assert list((out / "models").glob("*.pth"))  # the good epochs' best weights
    assert main(["resume", str(out), "--device", "cpu", "--quiet"]) == 2


def _full_disk_after(monkeypatch, n_writes: int):
    """Make every atomic write after the first n fail as a full disk does."""
    from hmmrnn import io as io_mod

    real = io_mod._atomic_write
    count = {"n": 0}

    def write(path, fn, mode):
        count["n"] += 1
        if count["n"] > n_writes:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, fn, mode)

    monkeypatch.setattr(io_mod, "_atomic_write", write)


def test_a_full_disk_during_training_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    _full_disk_after(monkeypatch, 8)  # config, status, a few epochs' checkpoints and statuses
    rc = main(["train", "--preset", "Two", *TINY, "--epochs", "6", "--out", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 1 and "No space left on device" in err and "checkpoint" in err
    assert not list(out.rglob("*.tmp"))  # no half-written file that could look valid
    done = len(read_metrics(out))
    assert 1 <= done < 6
    assert main(["resume", str(out), "--device", "cpu", "--quiet"]) == 0  # room again
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, 7))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_real_full_tmpfs(tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(small)],
                      capture_output=True).returncode:  # fmt: skip
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        rc = main(["train", "--preset", "Two", *TINY, "--hidden-size", "64", "--epochs", "50",
                   "--out", str(small / "r")])  # fmt: skip
        assert rc in (1, 2)
        assert "No space left" in capsys.readouterr().err
        assert not list((small / "r").rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_evaluate_into_a_read_only_folder_prints_then_fails(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "m"
    write_study_model(folder)

    def read_only(self, path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(AnalysisRun, "save", read_only)
    rc = main(["evaluate", str(folder), "--num-sequences", "40", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 1 and "distance ratio" in out.out and "cannot write" in out.err
    assert "Traceback" not in out.err


def test_new_checkpoints_are_not_served_a_stale_evolution(tmp_path):
    out = tmp_path / "r"
    train(tiny(epochs=3, checkpoint_every=1), out, device="cpu")
    params = {"steps": 40, "eig_steps": 5, "persist": 1}
    first = api.analyze(out, "evolution", params)
    assert first.result.epochs.tolist() == [0, 1, 2, 3]
    torch.save(weights_of(out), out / "models" / "evolution" / "model_epoch_4.pth")
    again = api.analyze(out, "evolution", params)
    assert again.source == "computed" and again.result.epochs.tolist() == [0, 1, 2, 3, 4]


# --- bad input never half-creates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--hidden-size", "abc"], "hidden_size must be an integer"),
        (["--device", "tpu"], "unknown device"),
        (["--seed", "-1"], "seed must be >= 0"),
        (["--hidden-size", "1000000000"], "needs about"),
        (["--num-seq", "1000000000000"], "needs about"),
    ],
)
def test_bad_training_input_creates_nothing(tmp_path, capsys, flags, needle):
    out = tmp_path / "r"
    rc = main(["train", "--preset", "Two", *TINY, "--epochs", "1", *flags, "--out", str(out)])
    assert rc == 2 and needle in capsys.readouterr().err
    assert not out.exists()


def test_huge_evaluations_are_refused_before_allocating(tmp_path, capsys):
    write_study_model(tmp_path / "m")
    rc = main(["evaluate", str(tmp_path / "m"), "--num-sequences", "100000000000"])
    assert rc == 2 and "needs about" in capsys.readouterr().err


def test_a_negative_seed_is_refused_by_analyses_too(tmp_path):
    write_study_model(tmp_path / "m")
    with pytest.raises(api.ParamError, match="--seed: must be >= 0"):
        api.analyze(tmp_path / "m", "pca", {"seed": -1})


# --- one bad file never hides a tree -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"states": ' + "9" * 5000 + "}", "not usable JSON"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        (b"\xff\xfe\x00junk", "not a UTF-8 text file"),
    ],
    ids=["huge-int", "deep", "binary"],
)
def test_a_hostile_config_is_one_broken_entry(study_tree, content, needle, capsys):
    bad = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0" / "config.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    found = {e.rel: e for e in api.discover(study_tree)}
    assert found["Fully_Connected/Seed 1"].status == "ok"
    assert needle in found["Three/hidden_12/input_4/seed_0"].reason
    assert main(["ls", str(study_tree)]) == 0


def test_a_damaged_metrics_log_never_hides_a_tree(study_tree, capsys):
    folder = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0"
    (folder / "metrics.jsonl").write_bytes(
        b'{"epoch": 1, "val_loss": null}\n{"epoch": 2, "val_loss": [1]}\n'
        b'{"epoch": 3, "val_loss": "low"}\n\xff\xfe garbage\n{"epoch": 4, "val_loss": 2.5}\n'
        + b"[" * 100_000  # nested past the decoder's recursion limit
        + b"\n"
    )
    assert main(["ls", str(study_tree), "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["Three/hidden_12/input_4/seed_0"]["best_val"] == 2.5
    assert main(["info", str(folder)]) == 0


def test_a_junk_evolution_checkpoint_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "r"
    train(tiny(epochs=2, checkpoint_every=1), out, device="cpu")
    (out / "models" / "evolution" / "model_epoch_1.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    rc = main(["analyze", str(out), "evolution", "--steps", "30", "--eig-steps", "5"])
    err = capsys.readouterr().err
    assert rc == 2 and "model_epoch_1.pth" in err and "Traceback" not in err


def test_unreadable_folders_are_listed_as_broken(study_tree, monkeypatch):
    locked = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0"
    real_scandir, real_access = os.scandir, os.access

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root reads mode-000 folders: simulate
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and real_access(p, m))
    found = {e.rel: e for e in api.discover(study_tree)}
    assert found["Three/hidden_12/input_4/seed_0"].status == "broken"
    assert "cannot read the folder" in found["Three/hidden_12/input_4/seed_0"].reason
    assert found["Fully_Connected/Seed 1"].status == "ok"
    with pytest.raises(api.UserError, match="cannot read the folder"):
        api.load(locked)


def test_a_symlink_loop_does_not_trap_discovery(study_tree):
    (study_tree / "Three" / "loop").symlink_to(study_tree, target_is_directory=True)
    found = api.discover(study_tree)
    assert len(found) == 2


def test_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    out = tmp_path / "r"
    train(tiny(epochs=1), out, device="cpu")
    api.evaluate(out, {"num_sequences": 30})
    res = api.export_figure("explained-variance", out, params={"steps": 50}, formats="png",
                            out_dir=tmp_path / "x")  # fmt: skip
    files = [out / "run.json", out / "config.json", out / "evaluation.json",
             out / "checkpoint.pt", *out.glob("models/*.pth"), *res.paths, res.sidecar]  # fmt: skip
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        f.name: oct(expected) for f in files
    }
