"""Publication figures: every renderer draws real (small) results headless; exports are valid,
collision-free, confined to their folder, carry a sidecar; output colours are stable."""

from __future__ import annotations

import hashlib
import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from conftest import study_state, write_study_model
from matplotlib.colors import to_rgba

from hmmrnn import api
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.api import export_figure
from hmmrnn.figures import export as export_mod
from hmmrnn.figures.catalog import all_figures, list_figures, model_label
from hmmrnn.figures.export import check_stem, figure_bytes, parse_formats, render_to_files
from hmmrnn.figures.style import output_color
from hmmrnn.io import file_sha256

# Small parameters: every analysis finishes in well under a second on the tiny models.
PARAMS = {
    "pca": {"steps": 300},
    "trajectories": {
        "n_starts": 8,
        "autonomous_steps": 20,
        "n_traj": 3,
        "driven_steps": 40,
        "pca_steps": 300,
    },
    "fixed-points": {"n_starts": 12, "iters": 60, "pca_steps": 300},
    "variance-contours": {"steps": 200, "grid": 30, "noise_stds": [0.5, 1.0, 2.0]},
    "readout-alignment": {"steps": 300},
    "residency": {"n_states": 200, "n_samples": 6, "max_steps": 15, "pca_steps": 300},
    "subspace-residency": {
        "run_steps": 1500,
        "max_states": 120,
        "min_run": 10,
        "n_samples": 6,
        "max_steps": 15,
    },
    "noise-sensitivity": {
        "locate_params": {"steps": 600, "skip_steps": 50, "n_probes": 20, "kick_fraction": 0.5},
        "n_rollouts": 16,
        "pca_steps": 300,
    },
    "populations": {"kick_units": [[0, 1], [2, 3]]},
    "locate": {"steps": 600, "skip_steps": 50, "n_probes": 20, "kick_fraction": 0.5},
    "kick-neurons": {"steps": 2000, "n_runs": 10, "min_events": 3},
    "ablation": {
        "kick_units": [0, 1, 2],
        "top_k": 4,
        "control_k": 3,
        "mus": [0.0, 1.0, 2.0],
        "n_traj": 8,
        "steps": 25,
        "eig_traj": 3,
    },
    "evolution": {"steps": 100, "eig_steps": 10, "persist": 2},
    "evaluation": {"num_sequences": 80},
    "grid-pca": {"steps": 200},
}
FIGURES = all_figures()
TRAINED_FIGURES = {
    "loss-curves",
    "evolution",
    "evolution-noise-units",
}  # need a real training run (metrics, checkpoints)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A random study-format model (switches outputs often), a tiny trained run with per-epoch
    checkpoints, a small evaluated tree, and a private result cache."""
    from hmmrnn.config import ExperimentConfig
    from hmmrnn.train import train

    base = tmp_path_factory.mktemp("figures")
    set_cache(ResultCache(base / "cache"))
    model = base / "models" / "Three" / "hidden_20" / "input_4" / "seed_0"
    write_study_model(model, study_state(4, 20, 3, 0))
    cfg = ExperimentConfig.from_preset(
        "Two",
        hidden_size=10,
        input_size=2,
        num_seq=90,
        seq_len=8,
        batch_size=45,
        epochs=3,
        learning_rates=[0.02, 0.05],
        seed=1,
        checkpoint_every=1,
    )
    run = base / "runs" / "Two" / "hidden_10" / "input_2" / "seed_1"
    train(cfg.replace(learning_rates=[0.02]), run, device="cpu")
    lr_run = base / "runs" / "lrs"
    train(cfg.replace(checkpoint_every=0, epochs=2), lr_run, device="cpu")
    tree = base / "TrainedModels"
    for i, (fam, h, d, s) in enumerate(
        [
            ("Two", 8, 1, 0),
            ("Two", 8, 1, 1),
            ("Two", 12, 2, 0),
            ("Three", 8, 2, 0),
            ("Three", 12, 1, 0),
        ]
    ):
        folder = tree / fam / f"hidden_{h}" / f"input_{d}" / f"seed_{s}"
        c = ExperimentConfig.from_preset(fam, hidden_size=h, input_size=d, seq_len=8).to_dict()
        write_study_model(folder, study_state(d, h, 3, i + 10), c)
        if i < 4:  # the last one has no evaluation.json: it must be listed as skipped
            api.evaluate(folder, {"num_sequences": 40})
    yield {"model": model, "run": run, "lr_run": lr_run, "tree": tree, "base": base}
    set_cache(None)


def source_for(name: str, env) -> Path:
    spec = FIGURES[name]
    if spec.analysis in ("tree", "tree-pca"):
        return env["tree"]
    return env["run"] if name in TRAINED_FIGURES else env["model"]


def result_for(name: str, env):
    """The drawable result of a figure, computed through the same path as an export."""
    spec = FIGURES[name]
    params = PARAMS.get(name, PARAMS.get(spec.analysis))
    _, drawable, _ = api.figure_data(name, source_for(name, env), params=params, device="cpu")
    return drawable


# --- every figure draws -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_renders_to_a_valid_png(name, env):
    result = result_for(name, env)
    fig = FIGURES[name].render(result, width="double")
    assert fig.get_size_inches()[0] == pytest.approx(7.2)
    png = env["base"] / f"{name}.png"
    png.write_bytes(figure_bytes(fig, "png", dpi=100))  # 300 dpi: see the full export test
    image = matplotlib.image.imread(png)
    assert image.shape[1] == round(7.2 * 100) and image.ndim == 3
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank page
    single = FIGURES[name].render(result, width="single")
    assert single.get_size_inches()[0] == pytest.approx(3.5)
    single.canvas.draw()


def test_export_writes_valid_pdf_svg_png_and_a_sidecar(env, tmp_path):
    out = tmp_path / "exports"
    res = export_figure("pca-2d", env["model"], out_dir=out, params=PARAMS["pca"])
    assert [p.suffix for p in res.paths] == [".pdf", ".svg", ".png"]
    pdf, svg, png = (p.read_bytes() for p in res.paths)
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert ET.fromstring(svg).tag.endswith("svg")
    assert matplotlib.image.imread(res.paths[2]).shape[1] == round(7.2 * 300)  # 300 dpi
    meta = json.loads(res.sidecar.read_text())
    model_file = next((env["model"] / "models").glob("*.pth"))
    assert meta["model"]["sha256"] == file_sha256(model_file)
    assert Path(meta["model"]["file"]) == model_file.resolve()
    assert meta["model"]["path"] == str(env["model"].resolve())
    assert meta["figure"] == "pca-2d" and meta["analysis"] == "pca"
    assert meta["params"]["steps"] == 300 and meta["seed"] == 0
    assert {"matplotlib", "numpy", "hmmrnn", "python"} <= set(meta["versions"])
    assert meta["files"] == [p.name for p in res.paths] and meta["created"]
    assert all(p.parent == out for p in [*res.paths, res.sidecar])
    assert res.paths[0].name.startswith("Three-h20-i4-s0_pca-2d_")


def test_tree_figure_sidecar_lists_models_and_skips(env, tmp_path):
    res = export_figure("grid-distances", env["tree"], out_dir=tmp_path, formats="png")
    meta = json.loads(res.sidecar.read_text())
    used = {m["model"] for m in meta["tree"]["models"]}
    assert len(used) == 4 and all(len(m["sha256"]) == 64 for m in meta["tree"]["models"])
    assert meta["tree"]["skipped"] == [
        {"model": "Three/hidden_12/input_1/seed_0", "reason": "no evaluation.json"}
    ]
    assert meta["notes"]
    assert meta["tree"]["protocol"] == "assignment, L 8, N 40"
    assert meta["tree"]["models"][0]["evaluation"] == {
        "method": "assignment", "seq_len": 8, "num_sequences": 40}  # fmt: skip
    assert not any("protocols" in n for n in meta["notes"])


def test_a_tree_evaluated_two_ways_says_so(env, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(env["tree"], tree)
    api.evaluate(tree / "Two/hidden_8/input_1/seed_0", {"num_sequences": 40, "seq_len": 12})
    res = export_figure("grid-distances", tree, out_dir=tmp_path / "x", formats="png")
    meta = json.loads(res.sidecar.read_text())
    assert meta["tree"]["protocol"] == "assignment, L 8–12, N 40"
    assert any("different protocols" in n for n in meta["notes"])
    from hmmrnn.figures.grid import TreeEvaluations

    fig = FIGURES["grid-distances"].render(TreeEvaluations.from_root(tree))
    assert "L 8–12" in fig.get_suptitle()


def test_loss_curves_keep_each_learning_rate(env):
    from hmmrnn.figures.training import LossCurves

    curves = LossCurves.from_folder(env["lr_run"])
    assert curves.learning_rates == [0.02, 0.05]
    fig = FIGURES["loss-curves"].render(curves)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "lr 0.02 validation" in labels and "lr 0.05 train" in labels


# --- names: no collisions, no escapes ---------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_exports_in_a_row_never_collide(env, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "timestamp", lambda: "20260101-000000")
    first = export_figure(
        "explained-variance",
        env["model"],
        out_dir=tmp_path,
        formats="png,pdf",
        params=PARAMS["pca"],
    )
    before = {p: _digest(p) for p in [*first.paths, first.sidecar]}
    second = export_figure(
        "explained-variance",
        env["model"],
        out_dir=tmp_path,
        formats="png,pdf",
        params=PARAMS["pca"],
    )
    assert not set(first.paths) & set(second.paths)
    assert second.paths[0].stem == first.paths[0].stem + "-2"
    assert second.sidecar.stem == second.paths[0].stem
    assert {p: _digest(p) for p in before} == before  # the first export is untouched


def test_concurrent_saves_get_distinct_names(env, tmp_path):
    fig = FIGURES["explained-variance"].render(result_for("explained-variance", env))
    found: list[list[Path]] = []
    errors: list[BaseException] = []

    def save():
        try:
            found.append(render_to_files(fig, "same", tmp_path, ["png"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = sorted(p.name for paths in found for p in paths)
    assert names == ["same-2.png", "same-3.png", "same-4.png", "same.png"]
    assert not list(tmp_path.glob(".export-*"))  # no temporary files left behind


@pytest.mark.parametrize("stem", ["../escape", "a/../../b", "/abs/path", "sub/name", ".hidden", ""])
def test_escaping_or_hidden_names_are_refused(stem, env, tmp_path):
    fig = FIGURES["explained-variance"].render(result_for("explained-variance", env))
    out = tmp_path / "exports"
    with pytest.raises(ValueError, match="refusing"):
        render_to_files(fig, stem, out, ["png"])
    assert not list(tmp_path.rglob("*.png"))


def test_model_names_with_dots_stay_inside_the_export_folder(env, tmp_path):
    odd = tmp_path / ".." / tmp_path.name / "models" / "..weird name..;rm"
    write_study_model(odd, study_state(2, 8, 3, 3))
    label = model_label(Path("x/../../etc/passwd"))
    assert "/" not in label and ".." not in label
    out = tmp_path / "out"
    res = export_figure(
        "explained-variance", odd, out_dir=out, formats="png", params={"steps": 200}
    )
    assert all(p.resolve().parent == out.resolve() for p in [*res.paths, res.sidecar])
    check_stem(res.paths[0].stem, out)


def test_unknown_format_and_figure_are_named():
    with pytest.raises(ValueError, match="'gif'"):
        parse_formats("pdf,gif")
    with pytest.raises(ValueError, match="nope"):
        export_figure("nope", ".", formats="png")


# --- colours, style, threads ------------------------------------------------------------------------


def _colors(artist) -> list[tuple]:
    """Every RGB colour an artist paints with."""
    found = []
    getters = ("get_color", "get_facecolor", "get_edgecolor", "get_markerfacecolor")
    if hasattr(artist, "arrow_patch") and artist.arrow_patch is not None:
        artist = artist.arrow_patch
    for getter in getters:
        if not hasattr(artist, getter):
            continue
        value = getattr(artist, getter)()
        arr = np.atleast_2d(np.asarray(to_rgba_array(value)))
        found += [tuple(np.round(c[:3], 4)) for c in arr]
    return found


def to_rgba_array(value):
    from matplotlib.colors import to_rgba_array as conv

    try:
        return conv(value)
    except (ValueError, TypeError):
        return np.zeros((0, 4))


def test_each_output_has_one_colour_in_every_figure(env):
    k_outputs = 3
    palette = {k: tuple(np.round(to_rgba(output_color(k))[:3], 4)) for k in range(k_outputs)}
    assert len(set(palette.values())) == k_outputs
    checked = []
    for name, spec in FIGURES.items():
        if not spec.colors_outputs:
            continue
        fig = spec.render(result_for(name, env))
        artists = fig.findobj(lambda a: str(a.get_gid() or "").startswith("output-"))
        assert artists, f"{name}: nothing is tagged with an output gid"
        for artist in artists:
            k = int(artist.get_gid().split("-")[1])
            colors = _colors(artist)
            assert palette[k] in colors, f"{name}: output {k} drawn in {colors}"
            others = {palette[j] for j in palette if j != k}
            assert not others & set(colors), f"{name}: output {k} mixes other outputs' colours"
        checked.append(name)
    assert {"pca-2d", "frequencies", "readout-alignment", "group-activity"} <= set(checked)


def test_rendering_leaves_global_rcparams_alone_and_works_in_threads(env):
    before = dict(matplotlib.rcParams)
    results = {n: result_for(n, env) for n in ("explained-variance", "distances")}
    errors: list[BaseException] = []

    def draw(name):
        try:
            fig = FIGURES[name].render(results[name], width="single")
            figure_bytes(fig, "png", dpi=50)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(n,)) for n in results for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    after = dict(matplotlib.rcParams)
    changed = {k for k in before if before[k] != after[k] and k != "backend"}
    assert not changed


def test_supplied_results_are_drawn_without_recomputing(env, tmp_path, monkeypatch):
    loaded = api.load(env["model"], device="cpu")
    pca = api.analyze(loaded, "pca", {"steps": 150, "seed": 4}, use_cache=False)
    monkeypatch.setattr(api, "analyze", lambda *a, **k: pytest.fail("recomputed"))
    res = export_figure("pca-3d", loaded, out_dir=tmp_path, formats="png", run=pca)
    meta = json.loads(res.sidecar.read_text())
    # the sidecar records what the result on screen was computed with
    assert meta["result_source"] == "computed" and meta["params"]["steps"] == 150
    assert meta["seed"] == 4 and meta["version"] == pca.version
    monkeypatch.undo()
    pop = api.analyze(loaded, "populations", PARAMS["populations"])
    res = export_figure("weight-blocks", loaded, out_dir=tmp_path, formats="png", run=pop)
    assert "view computed on top" in json.loads(res.sidecar.read_text())["notes"][0]
    with pytest.raises(api.UserError, match="draws pca"):
        export_figure("pca-2d", loaded, out_dir=tmp_path, formats="png", run=pop)


# --- the CLI ----------------------------------------------------------------------------------------


def test_cli_list_and_export(env, tmp_path, capsys):
    from hmmrnn.cli import main

    assert main(["export", "--list"]) == 0
    assert capsys.readouterr().out.split() == list_figures()
    out = tmp_path / "cli"
    rc = main(
        [
            "export",
            str(env["model"]),
            "explained-variance",
            "--format",
            "png",
            "--out",
            str(out),
            "--steps",
            "200",
        ]
    )
    assert rc == 0
    pngs = list(out.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].with_suffix(".json").is_file()
    assert main(["export", str(env["model"]), "pca-2d", "--format", "gif"]) == 2
    assert main(["export", str(env["model"]), "no-such-figure"]) == 2


def test_view_options_reproduce_the_screen(env, tmp_path):
    loaded = api.load(env["model"], device="cpu")
    pca = api.analyze(loaded, "pca", PARAMS["pca"])
    fixed = api.analyze(loaded, "fixed-points", PARAMS["fixed-points"])
    entry = FIGURES["pca-2d"]
    assert set(entry.options()) == {"pair", "fixed_points"}
    fig = entry.render(pca.result, pair=(0, 2), fixed_points=fixed.result)
    labels = {ax.get_xlabel().split()[0] + "/" + ax.get_ylabel().split()[0] for ax in fig.axes}
    assert labels == {"PC1/PC3"}
    assert any("point" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    res = export_figure("trajectories", loaded, formats="png", out_dir=tmp_path,
                        params=PARAMS["trajectories"],
                        view={"pair": (1, 2), "fixed_points": fixed})  # fmt: skip
    meta = json.loads(res.sidecar.read_text())
    version = api.analysis("fixed-points").version
    assert meta["view"]["pair"] == [1, 2] and meta["view"]["fixed_points"]["version"] == version
    with pytest.raises(api.UserError, match="no view option"):
        entry.render(pca.result, zoom=2)
    with pytest.raises(ValueError, match="PC pair 1-5"):
        entry.render(pca.result, pair=(0, 4))


# --- what a reader of the exported figure needs to see ------------------------------------------


def _rendered(fig):
    fig.canvas.draw()  # lay out first: positions and overlaps are those of the saved file
    return fig.canvas.get_renderer()


def test_grid_points_sit_on_their_ticks_and_titles_do_not_collide(env, tmp_path):
    from hmmrnn.figures.grid import TreeEvaluations

    tree = TreeEvaluations.from_root(env["tree"])
    fig = FIGURES["grid-distances"].render(tree)
    renderer = _rendered(fig)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    for ax in axes:
        ticks = set(ax.get_xticks().tolist())
        for line in ax.lines:
            xs = line.get_xdata()
            if len(xs) and line.get_label().startswith("input size "):
                # Two has d = 1 and 2 at hidden 8 (dodged); every other point is on its tick
                shared = ax.get_title().startswith("Two")
                assert shared or set(np.asarray(xs).tolist()) <= ticks, ax.get_title()
    boxes = [ax.title.get_window_extent(renderer) for ax in axes]
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1 :])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["HMM–HMM", "input size 1", "input size 2"]
    from hmmrnn.figures.grid import _panel_title

    assert "\n" in _panel_title("ReverseEngineeredModel", 2) and "\n" not in _panel_title("Two", 2)


def test_state_space_grid_takes_one_model_per_size_and_names_the_rest(env, tmp_path):
    _, tree, meta = api.figure_data("grid-pca", env["tree"], params={"steps": 150})
    # Two h8 d1 has seeds 0 and 1: only seed 0 is drawn; all five models have weights
    assert sorted(tree.rel) == [
        "Three/hidden_12/input_1/seed_0", "Three/hidden_8/input_2/seed_0",
        "Two/hidden_12/input_2/seed_0", "Two/hidden_8/input_1/seed_0",
    ]  # fmt: skip
    assert tree.points.shape == (4, 150, 2) and tree.outputs.shape == (4, 150)
    assert meta["params"] == {"steps": 150, "seed": 0, "max_models": 48}
    few = api.figure_data("grid-pca", env["tree"], params={"steps": 150, "max_models": 2})[1]
    assert len(few) == 2 and sum("max_models" in s["reason"] for s in few.skipped) == 2
    with pytest.raises(api.ParamError):
        api.figure_data("grid-pca", env["tree"], params={"bogus": 1})


def test_likelihood_panels_are_lettered_and_both_keyed(env):
    fig = FIGURES["likelihood"].render(result_for("likelihood", env))
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"a", "b"} <= texts
    assert all(ax.get_legend() is not None for ax in fig.axes)


def test_trajectory_end_points_stay_visible_over_the_solver_points(env):
    loaded = api.load(env["model"], device="cpu")
    fixed = api.analyze(loaded, "fixed-points", PARAMS["fixed-points"]).result
    fig = FIGURES["trajectories"].render(result_for("trajectories", env), fixed_points=fixed)
    ax_a = fig.axes[0]
    stars = [ln for ln in ax_a.lines if ln.get_marker() == "*"]
    solver = [ln for ln in ax_a.lines if "point" in ln.get_label() and ln.get_marker() != "*"]
    assert (
        stars
        and solver
        and min(s.get_zorder() for s in stars) > max(ln.get_zorder() for ln in solver)
    )
    keyed = {t.get_text() for t in ax_a.get_legend().get_texts()}
    assert {ln.get_label() for ln in solver} <= keyed  # the solver's markers are explained


def test_loss_curve_epochs_are_whole_numbers(env):
    from hmmrnn.figures.training import LossCurves

    fig = FIGURES["loss-curves"].render(LossCurves.from_folder(env["lr_run"]))
    _rendered(fig)
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) and np.allclose(ticks, np.round(ticks))


def test_a_loss_curve_export_does_not_import_torch(tmp_path):
    """The training figures are found without the analysis modules: torch alone takes about
    1.5 s to import, a third of what a `loss-curves` export took."""
    import subprocess
    import sys

    model = Path(__file__).resolve().parents[1] / "TrainedModels" / "Three" / "hidden_50"
    code = (
        "import sys; from hmmrnn.cli import main; "
        f"code = main(['export', {str(model / 'input_10' / 'seed_0')!r}, 'loss-curves', "
        f"'--out', {str(tmp_path)!r}, '--format', 'png']); "
        "print(code, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["0", "False"]
    assert len(list(tmp_path.glob("*.png"))) == 1
