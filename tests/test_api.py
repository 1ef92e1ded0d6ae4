"""The use-case layer: one set of numbers and parameters on every path, typed schemas, versioned
cache keys, and the layering of the front-ends."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import shlex
from pathlib import Path

import pytest
from conftest import study_state, write_study_model

from hmmrnn import api
from hmmrnn.analyses import registry
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.cli import main
from hmmrnn.config import ExperimentConfig
from hmmrnn.errors import ParamError, UserError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def cache(tmp_path):
    c = ResultCache(tmp_path / "cache")
    set_cache(c)
    yield c
    set_cache(None)


@pytest.fixture
def noisy_model(tmp_path):
    """A model whose config asks for input noise 0.5 and a random initial state."""
    cfg = ExperimentConfig.from_dict(
        {"states": 3, "input_size": 4, "hidden_size": 12, "seq_len": 10, "noise_std": 0.5,
         "h0": "random"}
    ).to_dict()  # fmt: skip
    folder = tmp_path / "Three" / "hidden_12" / "input_4" / "seed_0"
    write_study_model(folder, study_state(4, 12, 3, 0), cfg)
    return folder


# --- one set of numbers -----------------------------------------------------------------------------


def test_cli_api_and_export_agree_on_numbers_and_parameters(noisy_model, tmp_path, capsys):
    args = ["--num-sequences", "120", "--device", "cpu"]
    assert main(["evaluate", str(noisy_model), *args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.split("\nsaved")[0])
    saved = json.loads((noisy_model / "evaluation.json").read_text())
    assert printed["params"]["noise_std"] == 0.5 and printed["params"]["h0"] == "random"
    assert printed["params"]["seq_len"] == 10  # the config's, not a default
    assert saved["params"] == printed["params"] and saved["result"] == printed["result"]

    # what the TUI's Metrics pane calls
    run = api.evaluate(api.load(noisy_model, "cpu"), {"num_sequences": 120}, save=False)
    assert api.jsonable(run.params) == printed["params"]
    assert run.result.to_dict() == printed["result"]

    out = tmp_path / "exports"
    assert main(["export", str(noisy_model), "distances", *args, "--format", "png",
                 "--out", str(out)]) == 0  # fmt: skip
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    assert sidecar["params"] == printed["params"] and sidecar["seed"] == 0
    assert sidecar["result_source"] == "file"  # the saved evaluation matched the request
    _, drawn, _ = api.figure_data("distances", noisy_model, params={"num_sequences": 120})
    assert drawn.to_dict() == printed["result"]

    # an explicit value overrides the config everywhere
    assert main(["evaluate", str(noisy_model), *args, "--noise-std", "1", "--no-save"]) == 0
    capsys.readouterr()
    other = api.evaluate(noisy_model, {"num_sequences": 120, "noise_std": 1.0}, save=False)
    assert other.params["noise_std"] == 1.0 and other.result.noise_std == 1.0
    assert other.result.to_dict() != printed["result"]


def test_saved_evaluation_is_not_reused_for_other_parameters(noisy_model):
    api.evaluate(noisy_model, {"num_sequences": 60})
    assert api.evaluation_for(noisy_model, {"num_sequences": 60}).source == "file"
    fresh = api.evaluation_for(noisy_model, {"num_sequences": 80})
    assert fresh.source == "computed" and fresh.params["num_sequences"] == 80


def test_cancelled_evaluation_leaves_the_saved_file_alone(noisy_model):
    from hmmrnn.cancel import Cancelled, CancelToken

    api.evaluate(noisy_model, {"num_sequences": 60})
    before = (noisy_model / "evaluation.json").read_bytes()
    token = CancelToken()

    def cancel_midway(fraction, message=""):
        if fraction > 0.3:
            token.cancel()

    with pytest.raises(Cancelled):
        api.evaluate(noisy_model, {"num_sequences": 90}, progress=cancel_midway, cancel=token)
    assert (noisy_model / "evaluation.json").read_bytes() == before


def test_evaluation_file_names_weights_relative_to_the_folder(noisy_model):
    api.evaluate(noisy_model, {"num_sequences": 40})
    saved = json.loads((noisy_model / "evaluation.json").read_text())
    assert (noisy_model / saved["model"]["file"]).is_file()
    assert saved["version"] == api.analysis("evaluation").version


# --- the schema ---------------------------------------------------------------------------------------


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_every_schema_default_is_its_functions_default():
    for name, spec in api.analyses().items():
        signature = inspect.signature(spec.fn).parameters
        assert spec.schema.params, f"{name} exposes no parameters"
        for p in spec.schema:
            assert p.help, f"{name}.{p.name} has no help text"
            assert _plain(signature[p.name].default) == p.default, f"{name}.{p.name}"
            assert p.check(p.default) == p.default or p.default is None


def test_populations_defer_kick_detection_defaults_to_kick_neurons():
    pops, kick = api.analysis("populations").schema, api.analysis("kick-neurons").schema
    for name in ("steps", "window", "z_threshold"):
        assert pops[name].default is None and name in kick  # None: kick-neurons' own default
    assert pops["seed"].default == kick["seed"].default


def test_cli_and_tui_parse_every_default_text_alike():
    for name, spec in api.analyses().items():
        for p in spec.schema:
            text = p.format(p.default)
            from_cli = spec.schema.parse_flags([p.flag, text])
            from_tui = spec.schema.parse_assignments(f"{p.name}={shlex.quote(text)}")
            assert from_cli == from_tui == {p.name: p.default}, (name, p.name, text)


@pytest.mark.parametrize(
    ("analysis", "param", "text", "value"),
    [
        ("ablation", "kick_units", "30,130,92,56", [30, 130, 92, 56]),
        ("ablation", "kick_units", "[30, 130]", [30, 130]),
        ("ablation", "kick_units", "none", None),
        ("ablation", "mus", "0,0.5 1", [0.0, 0.5, 1.0]),
        ("populations", "kick_units", "1,2;3", [[1, 2], [3]]),
        ("populations", "kick_units", "[[1], [2, 3]]", [[1], [2, 3]]),
        ("kick-neurons", "confirm", "false", False),
        ("kick-neurons", "max_per_group", "none", None),
        ("evaluation", "method", "study", "study"),
        ("noise-sensitivity", "locate_params", '{"steps": 600}', {"steps": 600}),
        ("subspace-residency", "outputs_pair", "0,2", [0, 2]),
        ("pca", "steps", "1e3", 1000),
    ],
)
def test_list_and_typed_values_parse_the_same_in_cli_and_tui(analysis, param, text, value):
    schema = api.analysis(analysis).schema
    flag = schema[param].flag
    assert schema.parse_flags([flag, text]) == {param: value}
    assert schema.parse_flags([f"{flag}={text}"]) == {param: value}
    assert schema.parse_assignments(f"{param}={shlex.quote(text)}") == {param: value}
    assert api.parse_params(analysis, f"{param}={shlex.quote(text)}") == {param: value}


@pytest.mark.parametrize(
    ("analysis", "line", "needle"),
    [
        ("pca", "steps=abc", "--steps: expected an integer, got 'abc'"),
        ("pca", "steps=2.5", "--steps: expected an integer"),
        ("pca", "steps=1", "--steps: must be >= 2"),
        ("pca", "noise_std=-1", "--noise-std: must be >= 0"),
        ("pca", "bogus=1", "unknown parameter --bogus"),
        ("pca", "steps", "expected name=value"),
        ("evaluation", "method=best", "--method: expected one of assignment, study"),
        ("subspace-residency", "outputs_pair=1,2,3", "--outputs-pair: expected exactly 2 items"),
        ("kick-neurons", "confirm=maybe", "--confirm: expected true or false"),
        ("ablation", "mus=0,x", "--mus: expected a list"),
        ("variance-contours", "mass=1.5", "--mass: must be < 1"),
        ("pca", "steps='unclosed", "cannot read the parameters"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_parameter(analysis, line, needle):
    with pytest.raises(ParamError) as info:
        api.parse_params(analysis, line)
    assert needle in str(info.value)


def test_values_from_the_python_api_are_checked_too(noisy_model):
    with pytest.raises(ParamError, match="--steps: must be >= 2"):
        api.analyze(noisy_model, "pca", {"steps": 1})
    run = api.analyze(noisy_model, "pca", {"steps": "120"})  # text, as a form field holds it
    assert run.params["steps"] == 120 and run.params["noise_std"] == 0.5  # config-supplied


def test_unknown_analysis_and_figure_are_user_errors():
    with pytest.raises(UserError, match="unknown analysis 'nope'"):
        api.analysis("nope")
    with pytest.raises(UserError, match="unknown figure"):
        api.export_figure("nope", ".")


# --- the cache ----------------------------------------------------------------------------------------


def test_a_version_bump_recomputes(noisy_model, cache, monkeypatch):
    model = api.load(noisy_model, "cpu")
    first = api.analyze(model, "pca", {"steps": 100})
    assert (
        first.source == "computed" and api.analyze(model, "pca", {"steps": 100}).source == "cache"
    )
    spec = registry.get_spec("pca")
    monkeypatch.setitem(registry._REGISTRY, "pca", dataclasses.replace(spec, version=99))
    bumped = api.analyze(model, "pca", {"steps": 100})
    assert bumped.source == "computed" and bumped.version == 99
    assert api.analyze(model, "pca", {"steps": 100}).source == "cache"


def test_config_supplied_values_are_part_of_the_cache_key(noisy_model, cache):
    model = api.load(noisy_model, "cpu")
    a = api.analyze(model, "pca", {"steps": 100})
    b = api.analyze(model, "pca", {"steps": 100, "noise_std": 1.0})
    assert (a.source, b.source) == ("computed", "computed")
    assert api.analyze(model, "pca", {"steps": 100, "noise_std": 0.5}).source == "cache"


def test_every_result_survives_its_json_file(noisy_model, tmp_path):
    from hmmrnn.analyses.base import AnalysisRun

    run = api.analyze(noisy_model, "fixed-points", {"n_starts": 8, "iters": 20, "pca_steps": 50})
    run.save(tmp_path / "r.json")
    back = AnalysisRun.load(tmp_path / "r.json")
    assert back.result.to_dict() == run.result.to_dict()
    assert back.params == api.jsonable(run.params) and back.model_sha256 == run.model_sha256


# --- layering -----------------------------------------------------------------------------------------


def _imports(path: Path) -> list[str]:
    """Modules a file imports, leaving out `if TYPE_CHECKING:` blocks (annotations only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names if node.module == "hmmrnn"]
    return found


def _files(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


FRONT_END_MAY_IMPORT = ("hmmrnn.api", "hmmrnn.errors", "hmmrnn.cancel")


def _library(module: str) -> bool:
    return module == "hmmrnn" or module.startswith("hmmrnn.")


@pytest.mark.parametrize(
    ("files", "extra"),
    [
        (_files("hmmrnn_tui"), ("hmmrnn.figures.terminal",)),
        (_files("hmmrnn", "cli"), ("hmmrnn.cli",)),
        ([ROOT / "TrainedModels" / "reproduce.py"], ()),
    ],
    ids=["tui", "cli", "reproduce"],
)
def test_front_ends_use_only_the_use_case_layer(files, extra):
    allowed = FRONT_END_MAY_IMPORT + extra
    bad = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in files
        for module in _imports(path)
        if _library(module) and module != "hmmrnn" and not module.startswith(allowed)
    ]
    assert not bad, bad


def test_the_tui_never_imports_the_cli():
    bad = [p for p in _files("hmmrnn_tui") if any(m.startswith("hmmrnn.cli") for m in _imports(p))]
    assert not bad


def test_the_library_imports_no_ui_toolkit():
    library = [p for p in _files("hmmrnn") if "cli" not in p.relative_to(ROOT).parts]
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in library
        for m in _imports(p)
        if m.split(".")[0] in ("textual", "rich", "textual_plotext")
    ]
    assert not bad, bad
    assert library  # the scan saw the library
