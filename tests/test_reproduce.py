"""`hmmrnn reproduce`: the verdicts on planted numbers, and a whole run on a tiny tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import study_state, write_study_model

from hmmrnn import api
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.cli import main
from hmmrnn.config import ExperimentConfig
from hmmrnn.errors import UserError
from hmmrnn.reproduce import (
    family_checks,
    mechanism_checks,
    verdict_range,
    verdict_value,
)
from hmmrnn.tree_evaluations import STUDY_EVALUATION_NAME, TreeEvaluations


def planted_tree(rows: list[tuple]) -> TreeEvaluations:
    """rows of (group, hidden, input, baseline, rnn, transition_sq)."""
    cols = list(zip(*rows, strict=True))
    n = len(rows)
    return TreeEvaluations(
        root="planted",
        rel=[f"{g}/{h}/{d}" for g, h, d, *_ in rows],
        group=list(cols[0]),
        states=np.array([{"Two": 2, "Three": 3}.get(g, 4) for g in cols[0]]),
        hidden=np.array(cols[1]),
        input=np.array(cols[2]),
        seed=np.zeros(n, dtype=int),
        baseline_mean=np.array(cols[3], dtype=float),
        baseline_std=np.ones(n),
        rnn_mean=np.array(cols[4], dtype=float),
        rnn_std=np.ones(n),
        transition_sq_error=np.array(cols[5], dtype=float),
        transition_error=np.sqrt(np.array(cols[5], dtype=float)),
    )


def test_verdicts_follow_the_tolerances():
    assert verdict_value(4.56, 4.55) == "agrees" and verdict_value(4.8, 4.55) == "differs"
    assert verdict_value(float("nan"), 4.55) == "not run"
    assert verdict_range(4.3, 4.26, 4.49) == "agrees"
    assert verdict_range(4.55, 4.26, 4.49) == "near" and verdict_range(5.0, 4.26, 4.49) == "differs"
    assert verdict_range(25.0, 27.0, 40.0, tol=0.0) == "differs"


def test_family_checks_on_planted_numbers():
    tree = planted_tree(
        [
            ("Two", 50, 10, 4.54, 4.30, 0.001),
            ("Two", 150, 100, 4.54, 4.40, 0.002),
            ("Two", 50, 1, 4.54, 4.00, 0.02),  # input 1: a bigger gap, and a bad transition row
            ("Three", 50, 10, 6.50, 7.25, 0.001),  # a baseline far off the study's
            ("Mine", 50, 10, 3.0, 3.1, 0.0),  # a family the study did not publish
        ]
    )
    rows = {(c.check, c.subject.split()[0]): c for c in family_checks(tree, "study, N 5, L 9")}
    two_base = rows[("HMM–HMM distance", "Two")]
    assert two_base.verdict == "agrees" and two_base.value == pytest.approx(4.54)
    two_rnn = rows[("HMM–RNN distance, hidden and input ≥ 10", "Two")]
    assert two_rnn.value == pytest.approx(4.35) and two_rnn.subject == "Two (2)"
    assert two_rnn.verdict == "agrees" and "4.300–4.400" in two_rnn.ours
    gap = rows[("RNN − HMM distance gap, input 1 vs input ≥ 10", "Two")]
    assert gap.verdict == "agrees" and gap.value == pytest.approx(-0.54 - (-0.19))
    assert rows[("max squared transition difference", "Two")].verdict == "differs"
    assert rows[("HMM–HMM distance", "Three")].verdict == "differs"
    assert rows[("HMM–RNN distance, hidden and input ≥ 10", "Three")].verdict == "agrees"
    assert rows[("HMM–HMM distance", "Mine")].verdict == "no study value"
    assert all(c.protocol == "study, N 5, L 9" for c in rows.values())


def test_a_mechanism_that_cannot_run_is_listed_not_raised():
    def analyze(name, params):
        raise UserError(f"{name}: no switches to locate")

    checks = mechanism_checks(analyze, "m", has_checkpoints=True)
    assert len(checks) == 5 and {c.verdict for c in checks} == {"not run"}
    assert "no switches" in checks[1].ours


@pytest.fixture
def tree(tmp_path):
    set_cache(ResultCache(tmp_path / "cache"))
    root = tmp_path / "TrainedModels"
    for i, (fam, h, d) in enumerate([("Two", 12, 10), ("Two", 12, 1), ("Three", 12, 10)]):
        folder = root / fam / f"hidden_{h}" / f"input_{d}" / "seed_0"
        cfg = ExperimentConfig.from_preset(fam, hidden_size=h, input_size=d, seq_len=8)
        write_study_model(folder, study_state(d, h, 3, i), cfg.to_dict())
    (root / "Broken" / "models").mkdir(parents=True)
    yield root
    set_cache(None)


def test_reproduce_saves_the_study_protocol_and_the_grid_draws_it(tree, tmp_path):
    report = api.reproduce(tree, num_sequences=40, seq_len=12, mechanisms=False)
    assert report.protocol == {"num_sequences": 40, "seq_len": 12, "method": "study", "seed": 0}
    assert {m["model"] for m in report.models} == {
        "Two/hidden_12/input_10/seed_0", "Two/hidden_12/input_1/seed_0",
        "Three/hidden_12/input_10/seed_0",
    }  # fmt: skip
    assert [s["model"] for s in report.skipped] == ["Broken"]
    saved = tree / "Two" / "hidden_12" / "input_10" / "seed_0" / STUDY_EVALUATION_NAME
    ev = api.saved_evaluation(saved.parent)
    assert ev is None  # evaluation.json itself is left alone
    again = TreeEvaluations.from_root(tree, STUDY_EVALUATION_NAME)
    assert set(again.seq_len) == {12} and set(again.method) == {"study"}
    checks = {(c.check, c.subject.split()[0]) for c in report.checks}
    assert ("HMM–HMM distance", "Three") in checks
    assert ("RNN − HMM distance gap, input 1 vs input ≥ 10", "Two") in checks
    md = report.to_markdown()
    assert "method study, N 40, L 12" in md and "| HMM–HMM distance | Two (2) | 4.55 |" in md
    out = api.export_figure(
        "grid-distances", tree, params={"protocol": "study"}, out_dir=tmp_path / "x", formats="png"
    )
    sidecar = json.loads(out.sidecar.read_text())
    assert sidecar["params"] == {"protocol": "study"}
    assert sidecar["result_source"] == f"{STUDY_EVALUATION_NAME} files"
    with pytest.raises(UserError, match="no model with a readable evaluation.json"):
        api.export_figure("grid-distances", tree, out_dir=tmp_path / "x", formats="png")


def test_no_save_writes_nothing_beside_the_models(tree):
    api.reproduce(tree, num_sequences=30, seq_len=10, mechanisms=False, save=False)
    assert not list(tree.rglob(STUDY_EVALUATION_NAME))


def test_cli_reproduce_writes_the_report(tree, tmp_path, capsys):
    out = tmp_path / "reports"
    code = main(["reproduce", str(tree), "--num-sequences", "30", "--seq-len", "10",
                 "--no-mechanisms", "--out", str(out), "--json"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocol"]["method"] == "study"
    md, js = sorted(out.glob("reproduction_*.md")), sorted(out.glob("reproduction_*.json"))
    assert len(md) == 1 and len(js) == 1
    assert json.loads(js[0].read_text())["checks"] == printed["checks"]
    assert main(["reproduce", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_mechanism_checks_run_on_a_planted_switching_model(tmp_path):
    from hmmrnn.analyses.registry import run_analysis
    from hmmrnn.tree import load_model
    from tests.test_analyses_neurons import planted_state

    set_cache(ResultCache(tmp_path / "cache"))
    try:
        write_study_model(tmp_path / "planted", planted_state())
        loaded = load_model(tmp_path / "planted")

        def analyze(name, params):
            return run_analysis(name, loaded, params).result

        checks = mechanism_checks(analyze, "planted", has_checkpoints=False)
    finally:
        set_cache(None)
    names = [c.check for c in checks]
    assert names[0].startswith("without input") and len(checks) == 7
    assert sum("noise-response trace" in n for n in names) == 2
    assert sum(n.startswith("critical pairs per switch") for n in names) == 3
    kick = next(c for c in checks if c.check.startswith("a confirmed kick group"))
    assert kick.verdict == "agrees" and kick.ours.startswith("2 of 2")  # the planted kick units
    assert all(c.verdict in {"agrees", "differs", "near"} or c.verdict.startswith("not run")
               for c in checks)  # fmt: skip
