"""The models shipped in TrainedModels/ load, match their configs and still emulate their HMMs."""

import json
from pathlib import Path

import pytest
import torch

from hmmrnn import api
from hmmrnn.evaluate import evaluate_model
from hmmrnn.tree import discover, load_model

ROOT = Path(__file__).resolve().parent.parent / "TrainedModels"
EXPECTED = {
    "Two/hidden_50/input_10/seed_0": (2, 50, 10),
    "Three/hidden_50/input_10/seed_0": (3, 50, 10),
    "Four/hidden_50/input_10/seed_0": (4, 50, 10),
    "Five/hidden_50/input_10/seed_0": (5, 50, 10),
    "Fully_Connected/Seed 0": (3, 50, 10),
    "Cyclic/Seed 2": (4, 50, 10),
    "ReverseEngineeredModel": (2, 150, 100),
}


# Which shipped models also switch like their HMM (ANALYSES.md: the dynamics bar). The others
# chatter (2-state models, Fully); TrainedModels/README.md says so.
MEETS_DYNAMICS_BAR = {
    "Three/hidden_50/input_10/seed_0",
    "Four/hidden_50/input_10/seed_0",
    "Five/hidden_50/input_10/seed_0",
    "Cyclic/Seed 2",
}


def shipped():
    return {e.rel: e for e in discover(ROOT)}


def test_every_expected_model_is_shipped_and_ok():
    entries = shipped()
    assert set(EXPECTED) <= set(entries), sorted(set(EXPECTED) - set(entries))
    for rel, entry in entries.items():
        assert entry.status == "ok", (rel, entry.reason)
        assert not entry.warnings, (rel, entry.warnings)
    # nothing a finished run leaves behind only for resuming (lock files, checkpoints)
    leftovers = [p for p in ROOT.rglob("*") if p.name in (".lock", "checkpoint.pt")]
    assert not leftovers, leftovers


def test_total_size_under_20_mb():
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert size < 20 * 2**20, size


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_model_matches_config_and_emulates_its_hmm(rel):
    states, hidden, inputs = EXPECTED[rel]
    loaded = load_model(ROOT / rel, device="cpu")
    cfg = loaded.config
    assert (cfg.states, cfg.hidden_size, cfg.input_size) == (states, hidden, inputs)
    m = loaded.model
    assert (m.hidden_size, m.input_size, m.output_size) == (hidden, inputs, cfg.outputs)
    run = api.saved_evaluation(ROOT / rel)
    saved = run.result
    assert run.version == api.analysis("evaluation").version  # made by the current algorithm
    assert saved.num_sequences == 5000 and saved.seq_len == cfg.seq_len
    assert saved.passes_bar()[0], saved.passes_bar()[1]
    assert saved.passes_dynamics_bar()[0] == (rel in MEETS_DYNAMICS_BAR), (
        rel,
        saved.passes_dynamics_bar()[1],
    )
    # a fresh, smaller re-evaluation with a looser bound catches a broken or replaced file
    fresh = evaluate_model(m, cfg.build_hmm(), num_sequences=600, seq_len=cfg.seq_len, seed=11)
    ok, reasons = fresh.passes_bar(max_ratio=1.15, max_abs=0.15, max_sq=0.0225, max_vol_rel=0.3)
    assert ok, reasons
    # long driven runs (what the analyses simulate) stay bounded
    run = m.generate(8, 1500, generator=torch.Generator().manual_seed(0))
    norms = run.hidden.norm(dim=-1).mean(dim=0)
    assert torch.isfinite(norms).all() and norms[-1] < 1.5 * norms[cfg.seq_len - 1]


def test_reference_model_has_evolution_checkpoints():
    entry = shipped()["ReverseEngineeredModel"]
    epochs = [n for n, _ in entry.evolution]
    assert epochs[0] == 0 and len(epochs) >= 20
    manifest = json.loads((ROOT / "ReverseEngineeredModel" / "shipped.json").read_text())
    assert manifest["distance_ratio"] <= 1.05
