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
