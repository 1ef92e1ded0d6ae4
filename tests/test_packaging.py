"""The package as users install it: a wheel holding every module and the shipped models, whose
commands work from an empty folder, plus the command's conventions (version, -m, completion)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, cwd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "-w", str(out), str(ROOT)], cwd=out)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = out.glob("hmmrnn-*.whl")
    return path


def test_the_wheel_holds_every_module_and_the_shipped_models(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("hmmrnn", "hmmrnn_tui"):
        for source in (ROOT / package).rglob("*.py"):
            assert str(source.relative_to(ROOT)) in names, source
    for data in ("hmmrnn/py.typed", "hmmrnn/figures/hmmrnn.mplstyle", "hmmrnn_tui/app.tcss"):
        assert data in names
    shipped = {n for n in names if n.startswith("hmmrnn_models/")}
    for source in (ROOT / "TrainedModels").rglob("*"):
        if source.is_file() and "__pycache__" not in source.parts:
            assert f"hmmrnn_models/{source.relative_to(ROOT / 'TrainedModels')}" in shipped, source
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text and "Classifier: Typing :: Typed" in text


@pytest.mark.slow
def test_an_installed_wheel_finds_its_models_from_an_empty_folder(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    # the venv borrows this interpreter's torch & co.; hmmrnn itself comes from the wheel
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    installed = run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                     "--no-index", str(wheel)], cwd=tmp_path)  # fmt: skip
    if installed.returncode and "no such option: --python" in installed.stderr:
        pytest.skip("this pip cannot install into another interpreter")
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([str(py), "-c", "import hmmrnn; print(hmmrnn.__file__)"], cwd=empty, env=env)
    assert str(env_dir) in where.stdout, where.stdout + where.stderr
    listed = run([str(env_dir / "bin" / "hmmrnn"), "ls"], cwd=empty, env=env)
    assert listed.returncode == 0, listed.stderr
    assert (
        "ReverseEngineeredModel" in listed.stdout
        and "Two/hidden_50/input_10/seed_0" in listed.stdout
    )
    assert "shipped models" in listed.stderr
    path = run([str(env_dir / "bin" / "hmmrnn"), "models", "path"], cwd=empty, env=env)
    assert str(env_dir) in path.stdout and (Path(path.stdout.strip()) / "Two").is_dir()
    version = run([str(py), "-m", "hmmrnn", "--version"], cwd=empty, env=env)
    assert version.stdout.startswith("hmmrnn ")


def test_version_and_module_entry_points(tmp_path):
    import hmmrnn

    out = run([sys.executable, "-m", "hmmrnn", "--version"], cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == f"hmmrnn {hmmrnn.__version__}"
    tui = run([sys.executable, "-m", "hmmrnn_tui", "--help"], cwd=ROOT)
    assert tui.returncode == 0 and "hmmrnn-tui" in tui.stdout


def test_every_config_flag_has_help_default_and_choices(capsys):
    from hmmrnn.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, needle in (
        ("--hidden-size", "hidden units H (default 150)"),
        ("--h0", "one of zero, random"),
        ("--transition-method", "one of target_prob, stay_prob, fully, custom"),
    ):
        assert flag in text and needle in text, flag  # fmt: skip
    assert "VALUE VALUE" not in text


def test_pipes_get_whole_values(study_tree):
    deep = study_tree / "Three" / "hidden_12" / "input_4" / ("a_rather_long_folder_name_" * 3)
    from conftest import write_study_model

    write_study_model(deep)
    out = run([sys.executable, "-m", "hmmrnn.cli", "ls", str(study_tree)], cwd=ROOT,
              env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0 and str(deep.relative_to(study_tree)) in out.stdout
    assert "…" not in out.stdout


def test_bash_completion_offers_commands_analyses_and_their_flags(tmp_path):
    from hmmrnn.cli import build_parser
    from hmmrnn.cli.completion_cmd import script

    path = tmp_path / "c.sh"
    path.write_text(script(build_parser()))

    def complete(*words: str) -> list[str]:
        cmd = (f"source {path}; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
               "_hmmrnn_complete; printf '%s\\n' \"${COMPREPLY[@]}\"")  # fmt: skip
        return run(["bash", "-c", cmd], cwd=tmp_path).stdout.split()

    assert "analyze" in complete("hmmrnn", "an")
    assert complete("hmmrnn", "analyze", "m", "fixed") == ["fixed-points"]
    assert complete("hmmrnn", "analyze", "m", "ablation", "--kick") == ["--kick-units"]
    assert complete("hmmrnn", "export", "m", "distances", "--num-s") == ["--num-sequences"]
    assert set(complete("hmmrnn", "train", "--preset", "T")) == {"Two", "Three"}


def test_the_readme_screenshot_is_the_current_snapshot():
    shot = ROOT / "docs" / "screenshot.svg"
    snapshot = (
        ROOT
        / "tests"
        / "__snapshots__"
        / "test_tui_snapshots"
        / "test_pane[models-120x36-dark].svg"
    )
    assert shot.read_bytes() == snapshot.read_bytes()  # refresh docs/ after a snapshot update


def test_re_exports_are_byte_identical(tmp_path, monkeypatch):
    from conftest import write_study_model

    from hmmrnn import api
    from hmmrnn.analyses.base import ResultCache, set_cache

    set_cache(ResultCache(tmp_path / "cache"))
    try:
        write_study_model(tmp_path / "m")
        monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        first = api.export_figure("explained-variance", tmp_path / "m", params={"steps": 60},
                                  out_dir=tmp_path / "a")  # fmt: skip
        second = api.export_figure("explained-variance", tmp_path / "m", params={"steps": 60},
                                   out_dir=tmp_path / "b")  # fmt: skip
    finally:
        set_cache(None)
    for a, b in zip(first.paths, second.paths, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.suffix
    pdf = first.paths[0].read_bytes()
    assert b"/Creator (hmmrnn " in pdf and b"explained-variance" in pdf and b"D:20231114" in pdf
