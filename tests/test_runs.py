"""Detached training runs: following logs, building a config from a form, finding live runs."""

from __future__ import annotations

import json
import os

import pytest

from hmmrnn.runs import FieldError, MetricsFollower, TrainRequest, eta_seconds, find_running


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


def test_request_builds_a_validated_config_from_text(tmp_path):
    req = TrainRequest(preset="Two", hidden_size="8", learning_rate="0.01,0.003",
                       extra="--num-seq 150 --seq-len=12")  # fmt: skip
    cfg = req.build()
    assert (cfg.preset, cfg.states, cfg.hidden_size) == ("Two", 2, 8)
    assert cfg.learning_rates == [0.01, 0.003] and cfg.num_seq == 150 and cfg.seq_len == 12
    assert cfg.input_size == 100  # not given: the preset's / the default
    assert req.default_out(tmp_path).name.startswith("Two_h8_s0_")
    cfg.save(tmp_path / "c.json")
    again = TrainRequest(config=str(tmp_path / "c.json"), seed="3").build()
    assert again.hidden_size == 8 and again.seed == 3


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"hidden_size": "abc"}, "hidden_size"),
        ({"epochs": "0"}, "epochs"),
        ({"learning_rate": "-1"}, "learning_rate"),
        ({"extra": "--no-such-key 3"}, "extra"),
        ({"extra": "--seq-len"}, "extra"),
        ({"extra": "'unclosed"}, "extra"),
        ({"config": "/nonexistent/config.json"}, "config"),
    ],
)
def test_bad_fields_name_the_field(fields, field):
    with pytest.raises(FieldError) as info:
        TrainRequest(**fields).build()
    assert info.value.field == field


def test_launch_refuses_a_folder_with_a_run(tmp_path):
    from hmmrnn.errors import UserError
    from hmmrnn.runs import launch

    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run"):
        launch(TrainRequest().build(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


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
