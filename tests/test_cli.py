"""The `hmmrnn` command: exit codes, messages and the files it writes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hmmrnn.cli import main
from tests.conftest import write_study_model

TINY = ["--hidden-size", "8", "--input-size", "3", "--num-seq", "150", "--seq-len", "8",
        "--batch-size", "50", "--learning-rates", "0.02"]  # fmt: skip


def test_train_with_flags_writes_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--preset", "Two", *TINY, "--epochs", "2", "--out", str(out), "--quiet",
               "--device", "cpu", "--seed", "3"])  # fmt: skip
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden_size"] == 8 and cfg["seed"] == 3 and cfg["learning_rates"] == [0.02]
    assert cfg["states"] == 2 and cfg["preset"] == "Two"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert "best model" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--preset", "Seven"], "unknown preset"),
        (["train", "--hidden-size", "big"], "hidden_size must be an integer"),
        (["train", "--learning-rates", "0.1,x"], "cannot parse"),
        (["train", "--device", "tpu", *TINY, "--epochs", "1"], "unknown device"),
        (["train", "--config", "/nonexistent/config.json"], "cannot read"),
        (["info", "/nonexistent"], "no such file"),
        (["ls", "/nonexistent"], "not a folder"),
    ],
)
def test_bad_input_exits_2_with_message(tmp_path, capsys, argv, message):
    argv = [*argv, "--out", str(tmp_path / "r")] if argv[0] == "train" else argv
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cuda_request_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc = main(["train", *TINY, "--epochs", "1", "--device", "cuda", "--out", str(tmp_path / "r")])
    assert rc == 2 and "CUDA is not available" in capsys.readouterr().err


def test_ls_and_info(study_tree, capsys, monkeypatch):
    from hmmrnn.cli import model_cmds

    bad = study_tree / "Five" / "hidden_50" / "input_10" / "seed_0"
    write_study_model(bad)
    (next((bad / "models").glob("*.pth"))).write_text("garbage")
    assert main(["ls", str(study_tree), "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["Five/hidden_50/input_10/seed_0"]["status"] == "broken"
    assert rows["Fully_Connected/Seed 1"]["status"] == "ok"
    assert rows["Three/hidden_12/input_4/seed_0"]["hidden"] == 12
    assert main(["ls", str(study_tree)]) == 0
    table = capsys.readouterr().out
    assert "broken" in table and "┃" in table  # a few models: a rich table
    monkeypatch.setattr(model_cmds, "LS_TABLE_ROWS", 1)  # many models: aligned columns
    assert main(["ls", str(study_tree)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["model", "status", "M", "hidden", "input", "seed", "best", "val",
                                "epochs", "note"]  # fmt: skip
    listed = {line.split()[0]: line.split()[1] for line in lines[2:]}
    assert listed["Five/hidden_50/input_10/seed_0"] == "broken"
    assert listed["Three/hidden_12/input_4/seed_0"] == "ok"
    assert all(line == line.rstrip() for line in lines)
    assert main(["info", str(study_tree / "Fully_Connected" / "Seed 1"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hidden"] == 12 and len(info["transition"]) == 3
    assert main(["info", str(bad)]) == 2
    assert "broken" in capsys.readouterr().err


def test_ctrl_c_cancels_with_130_then_resume(tmp_path):
    """A real SIGINT stops training after the current batch; `resume` finishes the run."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "hmmrnn.cli", "train", "--preset", "Two", *TINY,
           "--epochs", "400", "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).parent.parent)  # fmt: skip
    log = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "cancelled"
    done = run["epochs_done"]
    assert 2 <= done < 400 and len(log.read_text().splitlines()) == done
    cfg = json.loads((out / "config.json").read_text())
    cfg["epochs"] = done + 1  # finish quickly: one more epoch
    (out / "config.json").write_text(json.dumps(cfg))
    assert main(["resume", str(out), "--quiet", "--device", "cpu"]) == 0
    assert len(log.read_text().splitlines()) == done + 1


def test_evaluate_writes_json_and_validates(study_tree, capsys):
    folder = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0"
    rc = main(["evaluate", str(folder), "--num-sequences", "200", "--device", "cpu", "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.split("\nsaved")[0])
    saved = json.loads((folder / "evaluation.json").read_text())
    assert saved["params"]["num_sequences"] == 200 and saved["params"]["seq_len"] == 10
    assert saved["model"]["file"].startswith("models/") and len(saved["model"]["sha256"]) == 64
    assert printed["result"]["distance_ratio"] == pytest.approx(saved["result"]["distance_ratio"])
    assert printed["params"] == saved["params"]
    assert main(["evaluate", str(folder), "--num-sequences", "1"]) == 2
    assert main(["evaluate"]) == 2
    assert (
        main(["evaluate", "--all", str(study_tree), "--num-sequences", "100", "--device", "cpu"])
        == 0
    )
    assert (study_tree / "Fully_Connected" / "Seed 1" / "evaluation.json").exists()


def test_unknown_config_keys_are_reported(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"states": 2, "lab_note": "x"}))
    out = tmp_path / "run"
    rc = main(["train", "--config", str(cfg), *TINY, "--epochs", "1", "--out", str(out),
               "--quiet", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    assert "lab_note" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["lab_note"] == "x"
