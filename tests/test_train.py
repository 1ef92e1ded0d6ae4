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


def test_a_low_precision_cost_trains_the_same_model(tmp_path):
    """One-hot outputs make the float16 cost exact: the same losses, epoch by epoch."""
    train(tiny(epochs=3), tmp_path / "a", device="cpu")
    train(tiny(epochs=3, cost_precision="float16"), tmp_path / "b", device="cpu")
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-4)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["cost_precision"] == "float16"


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
    first_best = sorted((tmp_path / "part" / "models").glob("*.pth"))
    assert len(read_metrics(tmp_path / "part")) == 2
    assert json.loads((tmp_path / "part" / "run.json").read_text())["status"] == "cancelled"
    done = resume(tmp_path / "part", device="cpu")
    assert done.status == "finished" and done.epochs_done == 5
    a = [r["val_loss"] for r in read_metrics(tmp_path / "full")]
    b = [r["val_loss"] for r in read_metrics(tmp_path / "part")]
    assert a == pytest.approx(b, rel=1e-5)
    assert full.best_val == pytest.approx(done.best_val, rel=1e-5)
    # the improved best replaced the cancelled run's best: one model in the folder
    weights = sorted((tmp_path / "part" / "models").glob("*.pth"))
    assert len(weights) == 1 and len(first_best) == 1
    assert weights != first_best or part.best_val == done.best_val
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
    assert res.status == "diverged" and "diverged at epoch" in res.message and "nan" in res.message
    assert res.model_file is not None and res.model_file.exists()  # last good best model kept
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "diverged" and "nan" in info["message"]


def test_refuses_to_overwrite(tmp_path):
    train(tiny(epochs=1), tmp_path / "r", device="cpu")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny(epochs=1), tmp_path / "r", device="cpu")


def test_recurrent_init_modes():
    from hmmrnn.train import init_model

    dev = torch.device("cpu")
    eye = init_model(tiny(init="identity", init_gain=0.9), dev).w_hh.detach()
    assert torch.allclose(torch.diagonal(eye), torch.full((12,), 0.9), atol=0.1 / 12**0.5 + 1e-6)
    orth = init_model(tiny(init="orthogonal", init_gain=1.0), dev).w_hh.detach()
    assert torch.allclose(orth @ orth.T, torch.eye(12), atol=1e-5)
    base = init_model(tiny(), dev).w_hh.detach()
    scaled = init_model(tiny(init_gain=2.0), dev).w_hh.detach()
    assert torch.allclose(scaled, 2 * base)
    # the study's configs may carry other init values: they mean the default initialisation
    assert torch.equal(init_model(tiny(init=True), dev).w_hh.detach(), base)


def test_aux_term_changes_loss_and_zero_weight_is_the_study_loss():
    from hmmrnn.train import make_loss

    g = torch.Generator().manual_seed(0)
    x = (
        torch.nn.functional.one_hot(torch.randint(0, 3, (40, 6), generator=g), 3)
        .float()
        .reshape(40, -1)
    )
    y = (
        torch.nn.functional.one_hot(torch.randint(0, 3, (40, 6), generator=g), 3)
        .float()
        .reshape(40, -1)
    )
    plain = float(make_loss(tiny())(x, y))
    with_aux = float(make_loss(tiny(aux_weight=2.0, aux_blur=3.0))(x, y))
    from hmmrnn.loss import sinkhorn_divergence

    assert plain == pytest.approx(float(sinkhorn_divergence(x, y)), rel=1e-6)
    aux = float(sinkhorn_divergence(x, y, blur=3.0))
    assert with_aux == pytest.approx(plain + 2.0 * aux, rel=1e-5)


def test_relative_pretrained_path_and_staged_training(tmp_path):
    first = train(tiny(epochs=2), tmp_path / "stage1", device="cpu")
    rel = str(first.model_file.relative_to(tmp_path / "stage1"))
    cfg = tiny(epochs=1, pretrained_model_path=f"../stage1/{rel}")
    res = train(cfg, tmp_path / "stage2", device="cpu")
    assert res.status == "finished"
    bad = tiny(epochs=1, pretrained_model_path="missing.pth")
    from hmmrnn.io import ModelFileError

    with pytest.raises(ModelFileError, match="not found"):
        train(bad, tmp_path / "stage3", device="cpu")


def test_an_epoch_reads_the_device_once(tmp_path, host_reads, monkeypatch):
    """After the first epoch (which checks each batch's targets once) a training epoch and a
    validation pass each read one number back from the device: their summed loss. (Three: every
    symbol, even the 1% one, occurs at every step of a batch: the targets span the unit box.)
    The loss takes the GPU's log-domain updates and float32 GEMM here: on the CPU, its absorbed
    updates check their range and its exact bfloat16 GEMM its clouds on the host, which costs
    nothing there."""
    import hmmrnn.loss as loss_module
    import hmmrnn.sinkhorn_cost as sinkhorn_cost
    from hmmrnn.train import Trainer, init_model

    monkeypatch.setattr(loss_module, "_absorbed", lambda choice, device, compiled: False)
    monkeypatch.setattr(sinkhorn_cost, "_exact_bfloat16", lambda u, v: None)

    cfg = ExperimentConfig.from_preset(
        "Three",
        **{
            **tiny().to_dict(),
            "states": 3,
            "epochs": 2,
            "aux_weight": 1.0,
            "num_seq": 3000,
            "batch_size": 1000,
        },
    )
    trainer = Trainer(cfg, tmp_path, torch.device("cpu"), None, None, None)
    model = init_model(cfg, trainer.device, tmp_path)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    trainer.train_epoch(model, optimizer, 0, 1)
    trainer.validate(model, 0, 1)
    before = len(host_reads.calls)
    assert before > 0
    loss = trainer.train_epoch(model, optimizer, 0, 2)
    trainer.validate(model, 0, 2)
    reads = host_reads.calls[before:]
    assert len(reads) == 2 and all("train.py" in r for r in reads), reads
    assert math.isfinite(loss)


def test_a_batch_whose_cost_matrix_cannot_fit_is_refused_first(tmp_path, monkeypatch):
    """B 40,000 needs a 6.4 GB cost matrix: with 4 GB free, train says so before any work."""
    from hmmrnn import resources
    from hmmrnn.errors import UserError

    monkeypatch.setattr(resources, "available_memory", lambda: 4 * 2**30)
    cfg = tiny(num_seq=120_000, batch_size=40_000)
    assert resources.training_bytes(cfg) > 40_000**2 * 4
    with pytest.raises(
        UserError, match="needs about .* GB of memory, more than 80% of the 4.0 GB available"
    ):
        train(cfg, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()
    assert resources.training_bytes(tiny(batch_size=100)) < 200 * 2**20


def test_compile_reaches_the_loss_and_needs_a_compiler_on_the_cpu(tmp_path, monkeypatch):
    import shutil

    from hmmrnn.train import make_loss

    assert make_loss(tiny(compile=True)).compiled and not make_loss(tiny()).compiled
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        train(tiny(compile=True), tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_device_auto_trains_on_the_gpu_when_there_is_one(tmp_path):
    """device="auto": CUDA when present (this test then exercises the GPU path), else the CPU."""
    result = train(tiny(epochs=2), tmp_path / "run", device="auto")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert result.status == "finished" and info["device"].startswith(expected)
    assert math.isfinite(result.best_val)
