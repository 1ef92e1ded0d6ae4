"""`hmmrnn analyze`: parameters, exit codes, --json, --list, cache and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal

import pytest
from conftest import study_state, write_study_model

import hmmrnn.cli
from hmmrnn.analyses import registry
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.cli import main

FAST = ["--steps", "200"]


@pytest.fixture(autouse=True)
def only_analyze(monkeypatch, tmp_path):
    """Build the CLI with this command alone (other commands are tested on their own) and a
    private result cache."""
    monkeypatch.setattr(hmmrnn.cli, "COMMAND_MODULES", ("analyze_cmd",))
    cache = ResultCache(tmp_path / "cache")
    set_cache(cache)
    yield cache
    set_cache(None)


@pytest.fixture
def model(tmp_path):
    write_study_model(tmp_path / "m", study_state(4, 16, 3, 0))
    return str(tmp_path / "m")


def test_list_shows_every_registered_analysis(capsys):
    assert main(["analyze", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(registry.all_specs())
    assert listed["fixed-points"]["defaults"]["n_starts"] == 256
    assert main(["analyze", "--list"]) == 0
    assert "variance-contours" in capsys.readouterr().out


def test_json_output_and_flags_in_any_position(model, capsys):
    assert main(["analyze", model, "pca", "--steps", "200", "--n-components=2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["components"]) == 2 and len(data["projections"]) == 200
    assert main(["analyze", "--json", model, "readout-alignment", "--steps", "200"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["angle_deg"]) == 3


def test_summary_table(model, capsys):
    assert main(["analyze", model, "variance-contours", "--noise_stds", "0.5,1", *FAST]) == 0
    out = capsys.readouterr().out
    assert "std 0.5" in out and "std 1" in out


def test_cache_is_used_unless_disabled(model, only_analyze, capsys):
    args = ["analyze", model, "pca", *FAST, "--json"]
    assert main(args) == 0 and main(args) == 0
    assert only_analyze.hits == 1
    assert main([*args, "--no-cache"]) == 0
    assert only_analyze.hits == 1
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["pca", "--stepz", "3"], "--stepz"),
        (["pca", "--steps", "abc"], "expected an integer"),
        (["pca", "--steps", "-1"], "steps"),  # ValueError from the analysis itself
        (["pca", "--steps"], "needs a value"),
        (["nope"], "unknown analysis"),
        (["pca", "--device", "tpu"], "device"),
    ],
)
def test_bad_input_exits_2_with_a_message(model, capsys, argv, needle):
    assert main(["analyze", model, *argv]) == 2
    assert needle in capsys.readouterr().err


def test_unknown_parameter_lists_valid_ones(model, capsys):
    assert main(["analyze", model, "readout-alignment", "--bogus", "1"]) == 2
    err = capsys.readouterr().err
    assert "--bogus" in err and "--noise-std" in err


def test_bad_model_path_exits_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing"), "pca"]) == 2
    assert "missing" in capsys.readouterr().err


def test_ctrl_c_cancels_with_130(model, monkeypatch, capsys):
    real = registry.run_analysis

    def interrupted(name, loaded, params, *, progress, cancel, use_cache):
        def progress_then_sigint(fraction, message=""):
            progress(fraction, message)
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, handled by sigint_cancels

        return real(
            name, loaded, params, progress=progress_then_sigint, cancel=cancel, use_cache=use_cache
        )

    monkeypatch.setattr(registry, "run_analysis", interrupted)
    assert main(["analyze", model, "fixed-points", "--iters", "50", "--pca-steps", "50"]) == 130
    err = capsys.readouterr().err
    assert "stopping after the current batch" in err and "cancelled" in err


def test_own_flags_are_not_abbreviated(model, capsys):
    assert main(["analyze", model, "pca", "--st", "200"]) == 2  # neither --steps nor a flag of ours
    assert "--st" in capsys.readouterr().err


def test_help_after_the_analysis_lists_its_parameters(model, capsys):
    assert main(["analyze", model, "ablation", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--kick-units", "--mus", "--noise-std", "--seed"):
        assert flag in out
    assert "list of int" in out and "60 at hidden 150" in out and "--direction" in out


def test_list_parameters_parse_like_the_tui(model, capsys):
    assert main(["analyze", model, "variance-contours", "--noise-stds", "0.5 2", *FAST]) == 0
    assert "std 2" in capsys.readouterr().out
