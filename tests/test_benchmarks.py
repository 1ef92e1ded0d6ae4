"""The benchmark entry point runs and writes its table (timings themselves are never asserted)."""

from __future__ import annotations

import json

from benchmarks.__main__ import main
from benchmarks.suite import CASES, SIZES


def test_tiny_benchmarks_write_a_table_with_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(["--size", "tiny", "--only", "sampling", "--only", "matching", "--json", str(out)])
        == 0
    )
    table = json.loads(out.read_text())
    assert table["size"] == "tiny" and table["machine"]["torch"]
    rows = {r["name"].split()[0]: r for r in table["rows"]}
    assert set(rows) == {"HMM", "exact"}
    for row in rows.values():
        spread = row["ratio"]
        assert len(row["ours"]) == SIZES["tiny"]["repeats"] == len(row["reference"])
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    # the fast matching reaches the dense solver's optimum (the note prints both totals)
    ours, dense = rows["exact"]["note"].split(": ")[1].split(" vs ")
    assert abs(float(ours) - float(dense)) < 1e-5
    assert "ratio x" in capsys.readouterr().out


def test_every_case_has_a_size_for_each_mode():
    keys = set(SIZES["full"])
    assert all(set(size) == keys for size in SIZES.values())
    assert {"sampling", "loss", "evaluation", "fixed-points", "paint"} <= set(CASES)


def test_a_failing_case_is_reported_and_the_others_still_run(tmp_path, capsys, monkeypatch):
    def broken(size, device):
        raise RuntimeError("no compiler on this device")

    monkeypatch.setitem(CASES, "matching", broken)
    out = tmp_path / "bench.json"
    argv = ["--size", "tiny", "--only", "matching", "--only", "sampling", "--json", str(out)]
    assert main(argv) == 1
    table = json.loads(out.read_text())
    assert [r["name"].split()[0] for r in table["rows"]] == ["HMM"]
    assert table["failed"] == [
        {"case": "matching", "device": "cpu", "error": "RuntimeError: no compiler on this device"}
    ]
    assert "matching: FAILED RuntimeError" in capsys.readouterr().out


def test_cuda_only_rows_need_a_gpu(monkeypatch, capsys):
    import pytest
    import torch

    from benchmarks.suite import devices_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices_for("all") == ["cpu"] and devices_for("cpu") == ["cpu"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--size", "tiny", "--device", "cuda", "--only", "sampling"])
    assert exit_info.value.code == 2 and "no CUDA device" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices_for("all") == ["cpu", "cuda"] and devices_for("cuda") == ["cuda"]
