import json
import math

import pytest
import torch

from hmmrnn.cancel import CancelToken
from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.train import read_metrics, resume, train
from hmmrnn.tree import load_model


def tiny(**over) -> ExperimentConfig:
    base = dict(hidden_size=12, input_size=3, num_seq=300, seq_len=12, batch_size=100, epochs=6,
                learning_rates=[0.02], seed=1)  # fmt: skip
    base.update(over)
    return ExperimentConfig.from_preset("Two", **base)


def test_loss_falls_and_files_are_written(tmp_path):
    result = train(tiny(epochs=12), tmp_path / "run", device="cpu")
    assert result.status == "finished" and result.epochs_done == 12
    log = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in log] == list(range(1, 13))
    assert set(log[0]) >= {"epoch", "train_loss", "val_loss", "floor", "lr", "seconds"}
    first, last = log[0]["val_loss"], min(r["val_loss"] for r in log[-4:])
    assert last < 0.9 * first, (first, last)
    assert all(r["floor"] == log[0]["floor"] and r["floor"] < first for r in log)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "finished" and info["best_val"] == pytest.approx(result.best_val)
    loaded = load_model(tmp_path / "run")
    assert loaded.model.hidden_size == 12 and loaded.model_file == result.model_file


def test_best_model_is_a_real_copy(tmp_path):
    """The saved best weights are those of the best epoch, not the final ones."""
    cfg = tiny(epochs=8, checkpoint_every=1, learning_rates=[0.08])
    result = train(cfg, tmp_path / "run", device="cpu")
    log = read_metrics(tmp_path / "run")
    best_epoch = min(log, key=lambda r: r["val_loss"])["epoch"]
    best = torch.load(result.model_file, weights_only=True)
    evo = tmp_path / "run" / "models" / "evolution"
    at_best = torch.load(evo / f"model_epoch_{best_epoch}.pth", weights_only=True)
    for k in best:
        assert torch.equal(best[k], at_best[k])
    assert (evo / "model_epoch_0.pth").exists()
    if best_epoch != 8:
        final = torch.load(evo / "model_epoch_8.pth", weights_only=True)
        assert not all(torch.equal(best[k], final[k]) for k in best)


def test_cancel_then_resume_equals_uninterrupted(tmp_path):
    cfg = tiny(epochs=5)
    full = train(cfg, tmp_path / "full", device="cpu")
    token = CancelToken()

    def stop_at_2(rec):
        if rec.epoch == 2:
            token.cancel()

    part = train(cfg, tmp_path / "part", device="cpu", cancel=token, on_epoch=stop_at_2)
    assert part.status == "cancelled" and part.epochs_done == 2
    assert len(read_metrics(tmp_path / "part")) == 2
    assert json.loads((tmp_path / "part" / "run.json").read_text())["status"] == "cancelled"
    done = resume(tmp_path / "part", device="cpu")
    assert done.status == "finished" and done.epochs_done == 5
    a = [r["val_loss"] for r in read_metrics(tmp_path / "full")]
    b = [r["val_loss"] for r in read_metrics(tmp_path / "part")]
    assert a == pytest.approx(b, rel=1e-5)
    assert full.best_val == pytest.approx(done.best_val, rel=1e-5)
    with pytest.raises(ConfigError, match="already finished"):
        resume(tmp_path / "part", device="cpu")


def test_cancel_stops_mid_epoch(tmp_path):
    token = CancelToken()
    calls = []

    def on_batch(done, total):
        calls.append(done)
        token.cancel()

    res = train(tiny(), tmp_path / "r", device="cpu", cancel=token, on_batch=on_batch)
    assert res.status == "cancelled" and res.epochs_done == 0 and calls == [1]


def test_multiple_learning_rates_keep_the_best(tmp_path):
    res = train(tiny(epochs=3, learning_rates=[1e-5, 0.03]), tmp_path / "r", device="cpu")
    log = read_metrics(tmp_path / "r")
    assert [r["lr"] for r in log] == [1e-5] * 3 + [0.03] * 3
    assert res.best_val == pytest.approx(min(r["val_loss"] for r in log))
    assert res.best_lr == min(log, key=lambda r: r["val_loss"])["lr"]


def test_nan_loss_stops_with_message(tmp_path, monkeypatch):
    from hmmrnn import train as train_mod

    real = train_mod.make_loss

    def poisoned(config):
        loss = real(config)
        calls = {"n": 0}

        def call(x, y, target_key=None):
            calls["n"] += 1
            value = loss(x, y, target_key=target_key)
            return value * math.nan if calls["n"] > 8 else value

        return call

    monkeypatch.setattr(train_mod, "make_loss", poisoned)
    res = train(tiny(), tmp_path / "r", device="cpu")
    assert res.status == "diverged" and "loss became nan" in res.message
    assert res.model_file is not None and res.model_file.exists()  # last good best model kept
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "diverged" and "nan" in info["message"]


def test_refuses_to_overwrite(tmp_path):
    train(tiny(epochs=1), tmp_path / "r", device="cpu")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny(epochs=1), tmp_path / "r", device="cpu")
