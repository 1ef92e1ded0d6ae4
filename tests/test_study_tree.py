"""A tree written exactly as the research code writes it loads, generates and evaluates as-is.

The files below follow ANALYSES.md section 2: `json.dump(config, indent=4)` of each preset class's
flat dict (biased as a list, init as a bool, integer weight_decay, mixed int/float custom
matrices, keys missing from some classes), folders without config.json, a flat .pth, a biased
model, training_results.json loss curves, several .pth in one models/ folder, numeric evolution
checkpoint names up to 1000, and the figs/ and summary.json files that sit beside them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hmmrnn import api
from hmmrnn.analyses.base import ResultCache, set_cache
from hmmrnn.cli import main
from hmmrnn.hmm import CYCLIC_EMISSION, CYCLIC_TRANSITION

H, D = 8, 3  # small sizes: the research code's layout, not its sizes

BASE = {  # the research code's DefaultConfig keys, in its order
    "states": 3, "outputs": 3, "stay_prob": 0.95, "target_prob": 0.05,
    "transition_method": "target_prob", "emission_method": "linear",
    "custom_transition_matrix": None, "custom_emission_matrix": None, "num_seq": 30000,
    "seq_len": 30, "input_size": D, "hidden_size": H, "num_layers": 1, "biased": [False, False],
    "batch_size": 4096, "epochs": 500, "learning_rates": [0.001], "tau": 1, "grad_clip": 0.9,
    "init": False, "weight_decay": 0, "pretrained_model_path": None,
}  # fmt: skip
CLASSES = {
    "Two": {"states": 2, "seq_len": 100},
    "Three": {"states": 3},
    "Four": {"states": 4},
    "Five": {"states": 5, "seq_len": 40},
    "Fully_Connected": {"states": 3, "transition_method": "fully", "emission_method": "triangular",
                        "epochs": 1000, "grad_clip": 0.3},
    "Cyclic": {"states": 4, "seq_len": 40, "grad_clip": 0.3,  # says target_prob, carries matrices
               "custom_transition_matrix": [[0.95, 0.025, 0, 0.025], [0.025, 0.95, 0.025, 0],
                                            [0, 0.025, 0.95, 0.025], [0.025, 0, 0.025, 0.95]],
               "custom_emission_matrix": [[0.9, 0.1, 0], [0.1, 0.9, 0], [0, 0.1, 0.9],
                                          [0, 0.9, 0.1]]},
}  # fmt: skip
# Keys some preset classes never set, so their json.dump lacks them.
MISSING = {"Four": ("weight_decay",), "Five": ("pretrained_model_path", "init")}


def weights(seed: int, biased: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {
        "rnn.weight_ih_l0": torch.randn(H, D, generator=g) * 0.5,
        "rnn.weight_hh_l0": torch.randn(H, H, generator=g) * 0.25,
        "fc.weight": torch.randn(3, H, generator=g),
    }
    if biased:
        state |= {"rnn.bias_ih_l0": torch.randn(H, generator=g) * 0.1,
                  "rnn.bias_hh_l0": torch.randn(H, generator=g) * 0.1,
                  "fc.bias": torch.randn(3, generator=g) * 0.1}  # fmt: skip
    return state


def name(states: int, emission: str, loss: float) -> str:
    return f"{states}HMM_3Outputs_{emission}_30kData_0.001lr_{loss:.1f}Loss.pth"


def write_folder(folder: Path, cls: str, seed: int, *, config=True, **changes) -> Path:
    cfg = {**BASE, **CLASSES[cls], **changes}
    for key in MISSING.get(cls, ()):
        cfg.pop(key)
    (folder / "models").mkdir(parents=True)
    (folder / "figs").mkdir()
    (folder / "figs" / "loss.pdf").write_bytes(b"%PDF-1.4 figure")
    if config:
        with open(folder / "config.json", "w") as fh:
            json.dump(cfg, fh, indent=4)
    biased = any(cfg["biased"]) if isinstance(cfg["biased"], list) else bool(cfg["biased"])
    pth = folder / "models" / name(cfg["states"], cfg["emission_method"], 4.1 + seed)
    torch.save(weights(seed, biased), pth)
    return pth


@pytest.fixture(scope="module")
def research_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study") / "TrainedModels"
    for cls in ("Two", "Three", "Four", "Five"):
        write_folder(root / cls / f"hidden_{H}" / f"input_{D}" / "seed_0", cls, 0)
    for cls in ("Fully_Connected", "Cyclic"):
        write_folder(root / cls / "Seed 0", cls, 1)
    for cls, seed in (("Cyclic", 1), ("Cyclic", 2), ("Fully_Connected", 2)):  # no config.json
        folder = root / cls / f"Seed {seed}"
        write_folder(folder, cls, seed, config=False)
        (folder / "summary.json").write_text(json.dumps({"best_loss": 4.2}))
    flat = root / "ReverseEngineeredModel"
    flat.mkdir()
    torch.save(weights(7), flat / "2HMM_3Outputs_linear_30kData_0.001lr_10.0Loss.pth")
    biased = root / "Two" / f"hidden_{H}" / f"input_{D}" / "seed_1"
    write_folder(biased, "Two", 3, biased=[True, True])
    curves = root / "Three" / f"hidden_{H}" / f"input_{D}" / "seed_0"
    (curves / "training_results.json").write_text(json.dumps(
        {"best_loss": 4.1, "best_lr": 0.001, "training_losses": [9.0, 6.5, 5.0],
         "validation_losses": [8.8, 6.1, 4.9]}, indent=4))  # fmt: skip
    older = curves / "models" / name(3, "linear", 3.9)  # a second, older .pth with a lower loss
    torch.save(weights(11), older)
    os.utime(older, (1.6e9, 1.6e9))
    evo = root / "Four" / f"hidden_{H}" / f"input_{D}" / "seed_0" / "models" / "evolution"
    evo.mkdir()
    for epoch in (1000, 2, 10, 100):
        torch.save(weights(epoch), evo / f"model_epoch_{epoch}.pth")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path):
    set_cache(ResultCache(tmp_path / "cache"))
    yield
    set_cache(None)


def entries(root) -> dict:
    return {e.rel: e for e in api.discover(root)}


def test_every_folder_kind_is_listed_as_usable(research_tree):
    found = entries(research_tree)
    assert len(found) == 11
    assert {rel: e.status for rel, e in found.items() if e.status != "ok"} == {}
    inferred = {rel for rel, e in found.items() if e.config_inferred}
    assert inferred == {"Cyclic/Seed 1", "Cyclic/Seed 2", "Fully_Connected/Seed 2",
                        "ReverseEngineeredModel"}  # fmt: skip
    for rel in inferred:
        assert any("config inferred" in w for w in found[rel].warnings), rel


def test_custom_matrices_win_over_the_method(research_tree):
    found = entries(research_tree)
    for rel in ("Cyclic/Seed 0", "Cyclic/Seed 1"):  # from its config, and inferred
        hmm = found[rel].config.build_hmm()
        np.testing.assert_allclose(hmm.transition, CYCLIC_TRANSITION)
        np.testing.assert_allclose(hmm.emission, CYCLIC_EMISSION)


def test_inferred_configs_take_the_hmm_from_names_and_sizes_from_weights(research_tree):
    found = entries(research_tree)
    flat = found["ReverseEngineeredModel"]
    assert flat.config.preset == "Two" and flat.config.states == 2
    assert flat.model_file.parent.name == "ReverseEngineeredModel"  # no models/ folder
    assert (flat.config.hidden_size, flat.config.input_size) == (H, D)
    fully = found["Fully_Connected/Seed 2"].config
    assert (fully.preset, fully.transition_method, fully.emission_method) == (
        "Fully", "fully", "triangular"
    )  # fmt: skip


def test_study_value_types_are_accepted_and_kept(research_tree):
    folder = research_tree / "Four" / f"hidden_{H}" / f"input_{D}" / "seed_0"
    cfg = entries(research_tree)[f"Four/hidden_{H}/input_{D}/seed_0"].config
    assert cfg.biased == [False, False] and cfg.init is False and cfg.weight_decay == 0.0
    assert json.loads((folder / "config.json").read_text())["biased"] == [False, False]


@pytest.mark.parametrize(
    "rel",
    ["Two/hidden_8/input_3/seed_0", "Cyclic/Seed 2", "ReverseEngineeredModel",
     "Two/hidden_8/input_3/seed_1", "Fully_Connected/Seed 0"],
)  # fmt: skip
def test_each_kind_loads_generates_and_evaluates(research_tree, rel):
    model = api.load(research_tree / rel, device="cpu")
    run = api.evaluate(model, {"num_sequences": 40, "seq_len": 12}, save=False)
    assert run.result.rnn_freq_mean.shape == (3,) and np.isfinite(run.result.distance_ratio)
    assert run.params["seq_len"] == 12


def test_a_biased_model_works_and_bias_free_analyses_say_so(research_tree):
    model = api.load(research_tree / "Two" / f"hidden_{H}" / f"input_{D}" / "seed_1", "cpu")
    assert model.model.has_bias and model.model.b_rec is not None
    assert api.analyze(model, "pca", {"steps": 50}).result.projections.shape == (50, 3)
    with pytest.raises(api.UserError, match="assumes a bias-free network"):
        api.analyze(model, "fixed-points", {"n_starts": 4, "iters": 5})


def test_study_loss_curves_and_the_weights_choice_are_shown(research_tree, capsys):
    rel = f"Three/hidden_{H}/input_{D}/seed_0"
    entry = entries(research_tree)[rel]
    row = api.entry_row(entry)
    assert row["epochs"] == 3 and row["best_val"] == pytest.approx(4.9)
    assert entry.model_file.name == name(3, "linear", 3.9)  # the lowest loss in the name
    note = next(w for w in entry.warnings if "weight files" in w)
    assert "2 weight files" in note and "research code would take the newest" in note
    _, curves, meta = api.figure_data("loss-curves", research_tree / rel)
    assert curves.val_loss.tolist() == [8.8, 6.1, 4.9] and meta["result_source"]
    assert main(["info", str(research_tree / "Cyclic" / "Seed 1")]) == 0
    assert "config inferred" in capsys.readouterr().out


def test_evolution_checkpoints_sort_numerically(research_tree):
    entry = entries(research_tree)[f"Four/hidden_{H}/input_{D}/seed_0"]
    assert [e for e, _ in entry.evolution] == [2, 10, 100, 1000]


def test_ls_lists_the_whole_tree(research_tree, capsys):
    assert main(["ls", str(research_tree), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 11 and all(r["status"] == "ok" for r in rows)
    assert sum(r["config_inferred"] for r in rows) == 4
