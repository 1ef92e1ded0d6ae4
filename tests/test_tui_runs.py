"""The TUI's run handling without a screen: following logs, command lines, finding live runs."""

from __future__ import annotations

import json
import os
import sys

from hmmrnn_tui.runs import MetricsFollower, TrainRequest, eta_seconds, find_running


def test_follower_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    follower = MetricsFollower(path)
    assert follower.poll() == []  # no file yet
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert [r["epoch"] for r in follower.poll()] == [1, 2]
    assert follower.poll() == []  # nothing new: the partial line waits for its newline
    with open(path, "a") as fh:
        fh.write('ch": 3}\nnot json\n{"epoch": 4}\n')
    assert [r["epoch"] for r in follower.poll()] == [3, 4]
    assert [r["epoch"] for r in follower.records] == [1, 2, 3, 4]
    path.write_text('{"epoch": 1}\n')  # a resumed run truncated its log
    assert [r["epoch"] for r in follower.poll()] == [1]
    assert [r["epoch"] for r in follower.records] == [1]


def test_command_line_uses_preset_or_config_and_passes_flags(tmp_path):
    req = TrainRequest(preset="Two", hidden_size="8", learning_rate="0.01", extra="--num-seq 150")
    cmd = req.command(tmp_path / "out")
    assert cmd[:4] == [sys.executable, "-m", "hmmrnn.cli", "train"]
    assert cmd[cmd.index("--preset") + 1] == "Two" and "--config" not in cmd
    assert cmd[cmd.index("--hidden-size") + 1] == "8"
    assert cmd[cmd.index("--learning-rates") + 1] == "0.01"
    assert "--input-size" not in cmd and cmd[-2:] == ["--num-seq", "150"]
    cfg = TrainRequest(config=str(tmp_path / "c.json")).command(tmp_path / "out")
    assert "--preset" not in cfg
    assert cfg[cfg.index("--config") + 1] == str(tmp_path / "c.json")
    assert req.default_out(tmp_path).name.startswith("Two_h8_s0_")


def _run(folder, **info):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(info))


def test_find_running_keeps_live_running_runs_only(tmp_path):
    _run(tmp_path / "runs" / "live", status="running", pid=os.getpid())
    _run(tmp_path / "runs" / "done", status="finished", pid=os.getpid())
    _run(tmp_path / "tree" / "a" / "dead", status="running", pid=2**22 + 12345)
    _run(tmp_path / "tree" / "b" / "live2", status="running", pid=os.getpid())
    found = find_running([tmp_path / "tree", tmp_path / "runs", tmp_path / "missing"])
    assert [h.folder.name for h in found] == ["live", "live2"]
    assert all(h.pid == os.getpid() and h.alive() for h in found)


def test_eta_from_the_runs_own_clock():
    info = {"epochs_done": 10, "total_epochs": 40, "started": 100.0, "updated": 120.0}
    assert eta_seconds(info) == 60.0
    assert eta_seconds({**info, "epochs_done": 0}) is None
    assert eta_seconds({}) is None
