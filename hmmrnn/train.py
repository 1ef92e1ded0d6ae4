"""Training: fit an HMMRNN to an HMM's sequences by minimising the Sinkhorn divergence.

One function, `train`, serves the CLI, the TUI's background process and sweeps. A run folder is
self-describing: `config.json` (all it needs to be reproduced), `metrics.jsonl` (one line per epoch,
flushed as it goes so other processes can follow), `run.json` (status), `checkpoint.pt` (resume) and
the best weights in `models/` under the study's file name. Randomness is derived from
(seed, learning-rate index, epoch), so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hmmrnn import resources
from hmmrnn.cancel import CancelToken
from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.device import resolve_device, torch_generator
from hmmrnn.errors import JobError
from hmmrnn.io import atomic_torch_save, atomic_write_json, safe_torch_load
from hmmrnn.rnn import HMMRNN
from hmmrnn.runstate import identity, run_lock
from hmmrnn.tree import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    EVOLUTION_DIR,
    METRICS_NAME,
    MODELS_DIR,
    RUN_NAME,
    cpu_state,
    is_running,
    read_run_info,
    save_model,
)


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must see (diverged loss, bad resume)."""


@dataclass
class EpochRecord:
    """One line of metrics.jsonl."""

    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    floor: float
    seconds: float
    best_val: float


@dataclass
class TrainResult:
    """What a run ended with."""

    folder: Path
    status: str  # finished | cancelled | diverged
    best_val: float
    best_lr: float | None
    epochs_done: int
    floor: float
    model_file: Path | None
    message: str = ""


@dataclass
class SplitData:
    """One-hot flattened targets (N, L*K) for train / validation / test, on the training device."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


# --- data and initialisation ---------------------------------------------------------------------


def make_data(config: ExperimentConfig, device: torch.device) -> SplitData:
    """Sample num_seq sequences from the config's HMM and split them in thirds."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xDA7A]))
    sample = config.build_hmm().sample(config.num_seq, config.seq_len, rng)
    flat = sample.one_hot(config.outputs).reshape(config.num_seq, -1)
    third = config.num_seq // 3
    cuts = (third, 2 * third)
    parts = np.split(flat, cuts)
    return SplitData(*(torch.from_numpy(p).to(device) for p in parts))


def init_model(
    config: ExperimentConfig, device: torch.device, folder: Path | None = None
) -> HMMRNN:
    """PyTorch's default uniform(-1/sqrt(H), 1/sqrt(H)) initialisation, drawn from the run's seed.

    A relative pretrained_model_path is read relative to the run folder, so a tree of staged runs
    can be moved or cloned as a whole.
    """
    model = HMMRNN(
        config.input_size, config.hidden_size, config.outputs, tau=config.tau,
        rnn_bias=config.rnn_bias, fc_bias=config.fc_bias,
    )  # fmt: skip
    gen = torch_generator(config.seed)
    bound = 1.0 / math.sqrt(config.hidden_size)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
        model.w_hh.copy_(_recurrent_init(config, model.w_hh, gen))
    if config.pretrained_model_path:
        path = Path(config.pretrained_model_path).expanduser()
        if not path.is_absolute() and folder is not None:
            path = folder / path
        _load_pretrained(model, path)
    return model.to(device)


def _recurrent_init(config: ExperimentConfig, default: torch.Tensor, gen) -> torch.Tensor:
    """W_hh at initialisation. The default uniform init contracts (spectral radius ~0.58), so noise
    is forgotten within a few steps and training can sit long on an i.i.d.-output plateau; an
    identity or orthogonal start keeps memory from the first epoch (`init`, scaled by init_gain)."""
    h = default.shape[0]
    if config.init == "identity":
        return config.init_gain * torch.eye(h) + 0.1 * default
    if config.init == "orthogonal":
        q, r = torch.linalg.qr(torch.randn((h, h), generator=gen))
        return config.init_gain * q * torch.sign(torch.diagonal(r))
    return config.init_gain * default


def _load_pretrained(model: HMMRNN, path: Path) -> None:
    from hmmrnn.tree import build_model

    pre = build_model(path)
    if pre.state_dict().keys() != model.state_dict().keys() or any(
        a.shape != b.shape
        for a, b in zip(pre.state_dict().values(), model.state_dict().values(), strict=True)
    ):
        raise ConfigError(f"pretrained_model_path {path}: sizes differ from the config")
    model.load_state_dict(pre.state_dict())


def epoch_generator(
    config: ExperimentConfig, lr_index: int, epoch: int, device, stream: int = 0
) -> torch.Generator:
    """Fresh noise every epoch, reproducible from (seed, lr index, epoch, stream) alone."""
    seed = np.random.SeedSequence([config.seed, lr_index, epoch, stream]).generate_state(1)[0]
    return torch_generator(int(seed), device)


def make_loss(config: ExperimentConfig):
    """The study's Sinkhorn divergence, plus an optional coarse-scale term.

    At blur 0.2 the divergence between long one-hot sequences is close to exact optimal transport,
    which barely rewards a rare symbol emitted at random positions (the Two preset's 1% middle
    output is dropped). A second term at a large blur (aux_blur, weight aux_weight) behaves like a
    comparison of per-step symbol frequencies and raises the share of such symbols, at some cost
    to the temporal structure (measured on Two: middle output 0.1% -> 0.4% at weight 40, with the
    0-2 switching rate 2.4x too high). Paired with a finer main blur it does pay off where
    volatility collapses otherwise: the shipped Fully model's last stage (blur 0.7 plus weight 1 at
    aux_blur 2.0) brought its distance ratio from 1.056 to 1.029. Weight 0 is the study's loss.
    """
    from hmmrnn.loss import CostWorkspace, SinkhornLoss

    method = "annealed" if config.loss == "sinkhorn" else "pot"
    # float32 is the clouds' own precision: None lets the loss take an exact bfloat16 GEMM where
    # the CPU has bfloat16 units (the same numbers, see hmmrnn.sinkhorn_cost)
    precision = config.cost_precision
    cost_dtype = None if precision == "float32" else getattr(torch, precision)
    # Outputs and targets are one-hot (straight-through samples): the unit box is known, and the
    # epoch's summed loss is checked instead of every batch's inputs, so a step never syncs.
    kw = dict(
        scaling=config.scaling,
        method=method,
        cost_dtype=cost_dtype,
        unit_box=True,
        check_finite=False,
        compiled=config.compile,
        workspace=CostWorkspace(),  # one cost matrix kept, not one per term
    )
    main = SinkhornLoss(blur=config.blur, **kw)
    if not config.aux_weight:
        return main
    aux = SinkhornLoss(blur=config.aux_blur, **kw)

    def combined(x, y, target_key=None):
        return main(x, y, target_key=target_key) + config.aux_weight * aux(
            x, y, target_key=target_key
        )

    return combined


def check_compile(config: ExperimentConfig, device: torch.device) -> None:
    """compile=True on the CPU needs a C++ compiler for Inductor: say so before the run starts,
    rather than fail inside the first batch."""
    import shutil

    if not config.compile or device.type != "cpu":
        return
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ConfigError(
            "compile is true, but torch.compile needs a C++ compiler (g++ or clang++) to run on "
            "the CPU and none is on PATH; install one or set compile false"
        )


def loss_floor(config: ExperimentConfig, data: SplitData, loss_fn) -> float:
    """Divergence between validation targets and an independent HMM sample: the best reachable."""
    n = min(config.batch_size, data.val.shape[0])
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xF100]))
    other = config.build_hmm().sample(n, config.seq_len, rng).one_hot(config.outputs)
    other_t = torch.from_numpy(other.reshape(n, -1)).to(data.val.device)
    with torch.no_grad():
        return float(loss_fn(other_t, data.val[:n]))


def gpu_usage(device: torch.device) -> dict:
    """Peak memory this process allocated on a CUDA device (MB) and the device's utilisation
    (%, when the driver tells), for the workbench to show beside the ETA; {} on the CPU."""
    if device.type != "cuda":
        return {}
    out = {"gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
    try:
        out["gpu_utilization"] = float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - needs pynvml; the memory alone is still worth showing
        pass
    return out


# --- the loop --------------------------------------------------------------------------------------


class Trainer:
    """State of one run; `run()` trains every learning rate, resuming where a checkpoint left off."""

    def __init__(
        self,
        config: ExperimentConfig,
        folder: Path,
        device: torch.device,
        cancel: CancelToken | None,
        on_epoch: Callable[[EpochRecord], None] | None,
        on_batch: Callable[[int, int], None] | None,
    ) -> None:
        self.config = config
        self.folder = folder
        self.device = device
        self.cancel = cancel or CancelToken()
        self.on_epoch = on_epoch
        self.on_batch = on_batch
        self.data = make_data(config, device)
        self._batches: dict[int, tuple[torch.Tensor, list]] = {}
        self.loss_fn = make_loss(config)
        self.floor = loss_floor(config, self.data, self.loss_fn)
        self.best_val = math.inf
        self.best_lr: float | None = None
        self.best_state: dict | None = None
        self.epochs_done = 0
        self.started = time.time()

    # -- bookkeeping ---------------------------------------------------------------------------

    def write_status(self, status: str, message: str = "", model_file: Path | None = None) -> None:
        info = {
            "status": status,
            **identity(),  # pid, host and process start: who "running" refers to
            "device": str(self.device),
            "started": self.started,
            "updated": time.time(),
            "epochs_done": self.epochs_done,
            "total_epochs": self.config.epochs * len(self.config.learning_rates),
            "best_val": None if math.isinf(self.best_val) else self.best_val,
            "best_lr": self.best_lr,
            "floor": self.floor,
            "message": message,
        }
        if model_file is not None:
            info["model_file"] = str(model_file.relative_to(self.folder))
        info.update(gpu_usage(self.device))
        atomic_write_json(self.folder / RUN_NAME, info)

    def log_epoch(self, record: EpochRecord) -> None:
        with open(self.folder / METRICS_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.on_epoch:
            self.on_epoch(record)

    def save_checkpoint(self, lr_index: int, epoch: int, model, optimizer) -> None:
        atomic_torch_save(
            self.folder / CHECKPOINT_NAME,
            {
                "lr_index": lr_index,
                "epoch": epoch,
                "epochs_done": self.epochs_done,
                "model": cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "best_val": self.best_val,
                "best_lr": self.best_lr if self.best_lr is not None else -1.0,
                "best_state": self.best_state or {},
                "started": self.started,
            },
        )

    def save_evolution(self, model, lr_index: int, epoch: int) -> None:
        every = self.config.checkpoint_every
        if not every or epoch % every:
            return
        evo = self.folder / MODELS_DIR / EVOLUTION_DIR
        if len(self.config.learning_rates) > 1:
            evo = evo / f"lr_{self.config.learning_rates[lr_index]:g}"
        atomic_torch_save(evo / f"model_epoch_{epoch}.pth", cpu_state(model))

    def save_best(self) -> Path | None:
        """Write the best weights under the study's name (which carries the loss). A resumed run
        whose best improved would otherwise leave the earlier best beside it, and the folder would
        hold two models; the older file goes once the new one is safely written."""
        from hmmrnn.tree import model_candidates

        if self.best_state is None:
            return None
        target = save_model(
            self.folder, self.best_state, self.config, self.best_lr or 0.0, self.best_val
        )
        for path in model_candidates(self.folder):
            if path.resolve() != target.resolve():
                path.unlink(missing_ok=True)
        return target

    def _give_up(self, exc: OSError) -> None:
        """A write failed (disk full, read-only folder): say so; what was written stays valid."""
        where = exc.filename or self.folder
        message = f"cannot write {where}: {exc.strerror or exc}"
        try:
            self.write_status("failed", message)
        except OSError:
            pass
        raise JobError(
            f"{message}; the last complete checkpoint and log are kept (hmmrnn resume "
            f"{self.folder} continues once there is room)"
        ) from exc

    # -- one epoch ------------------------------------------------------------------------------

    def batches(self, data: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """The batches of a split, the same tensor objects every epoch: the loss recognises its
        cached targets by identity, without reading them back from the device."""
        cached = self._batches.get(id(data))  # the entry holds data, so its id stays its own
        if cached is None:
            bs = self.config.batch_size
            views = [(i, data[s : s + bs]) for i, s in enumerate(range(0, data.shape[0], bs))]
            cached = self._batches[id(data)] = (data, views)
        return cached[1]

    def forward_outputs(self, model: HMMRNN, n: int, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        noise = model.sample_noise(n, cfg.seq_len, cfg.noise_std, gen)
        h0 = model.initial_state(n, cfg.h0, gen)
        return model(noise, h0, gen).outputs.reshape(n, -1)

    def train_epoch(self, model, optimizer, lr_index: int, epoch: int) -> float | None:
        """Mean training loss, or None when cancelled mid-epoch."""
        gen = epoch_generator(self.config, lr_index, epoch, self.device)
        # the losses stay on the device and are read once per epoch: no host sync per batch
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        n_batches = math.ceil(self.data.train.shape[0] / self.config.batch_size)
        for i, target in self.batches(self.data.train):
            x = self.forward_outputs(model, target.shape[0], gen)
            loss = self._loss(x, target, ("train", i), epoch, i)
            if self.config.weight_decay:
                loss = loss + self.config.weight_decay * sum(p.norm() for p in model.parameters())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            optimizer.step()
            total += loss.detach().double() * target.shape[0]
            count += target.shape[0]
            if self.on_batch:
                self.on_batch(i + 1, n_batches)
            if self.cancel.cancelled:
                return None
        value = float(total) / count
        if not math.isfinite(value):
            raise TrainingError(
                f"diverged at epoch {epoch}: the training loss became {value} (try a smaller "
                "learning rate or grad_clip); the best weights of the good epochs are kept"
            )
        return value

    @torch.no_grad()
    def validate(self, model, lr_index: int, epoch: int) -> float:
        gen = epoch_generator(self.config, lr_index, epoch, self.device, stream=1)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for i, target in self.batches(self.data.val):
            x = self.forward_outputs(model, target.shape[0], gen)
            total += self._loss(x, target, ("val", i), epoch, i).double() * target.shape[0]
            count += target.shape[0]
        value = float(total) / count
        if not math.isfinite(value):
            raise TrainingError(f"diverged at epoch {epoch}: validation loss {value}")
        return value

    def _loss(self, x, target, key, epoch: int, batch: int):
        """The loss. The Sinkhorn loss skips its finiteness check here (the epoch's sum is checked);
        the POT reference still checks, and there a non-finite input means the network diverged."""
        try:
            return self.loss_fn(x, target, target_key=key)
        except ValueError as exc:
            if torch.isfinite(x).all():
                raise
            raise TrainingError(
                f"diverged at epoch {epoch}, batch {batch + 1}: the network's outputs became "
                "NaN or infinite (try a smaller learning rate or grad_clip); the best weights "
                "of the good epochs are kept"
            ) from exc

    # -- learning rates -------------------------------------------------------------------------

    def run_lr(self, lr_index: int, start_epoch: int, resume_state: dict | None) -> bool:
        """Train one learning rate from start_epoch; False when cancelled."""
        cfg = self.config
        lr = cfg.learning_rates[lr_index]
        model = init_model(cfg, self.device, self.folder)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(cfg.betas))
        if resume_state is not None:
            model.load_state_dict(resume_state["model"])
            optimizer.load_state_dict(resume_state["optimizer"])
        elif start_epoch == 1:
            self.save_evolution(model, lr_index, 0)
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.time()
            train_loss = self.train_epoch(model, optimizer, lr_index, epoch)
            if train_loss is None:
                return False
            val_loss = self.validate(model, lr_index, epoch)
            if val_loss < self.best_val:
                self.best_val, self.best_lr = val_loss, lr
                self.best_state = cpu_state(model)  # a real copy, not a live reference
            self.epochs_done += 1
            self.save_evolution(model, lr_index, epoch)
            record = EpochRecord(
                epoch, lr, train_loss, val_loss, self.floor, time.time() - t0, self.best_val
            )
            # the log line first: a kill before the checkpoint only repeats this epoch on resume
            # (which drops log lines past the checkpoint), never loses its record
            self.log_epoch(record)
            self.save_checkpoint(lr_index, epoch, model, optimizer)
            self.write_status("running")
            if self.cancel.cancelled:
                return epoch == cfg.epochs and lr_index == len(cfg.learning_rates) - 1
        return True

    def run(self, start: tuple[int, int] = (0, 1), resume_state: dict | None = None) -> TrainResult:
        self.write_status("running")
        status, message = "finished", ""
        try:
            for lr_index in range(start[0], len(self.config.learning_rates)):
                first = start[1] if lr_index == start[0] else 1
                state = resume_state if lr_index == start[0] else None
                if not self.run_lr(lr_index, first, state):
                    status, message = "cancelled", "cancelled by the user; resume to continue"
                    break
        except TrainingError as exc:
            status, message = "diverged", str(exc)
        except OSError as exc:
            self._give_up(exc)
        try:
            model_file = self.save_best()
            self.write_status(status, message, model_file)
        except OSError as exc:
            self._give_up(exc)
        return TrainResult(
            self.folder, status, self.best_val, self.best_lr, self.epochs_done, self.floor,
            model_file, message,
        )  # fmt: skip


# --- entry points -----------------------------------------------------------------------------------


def train(
    config: ExperimentConfig,
    folder: str | Path,
    *,
    device: str | torch.device = "auto",
    cancel: CancelToken | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a fresh run into `folder` (which must be empty or absent unless overwrite).

    Everything is checked before the folder is touched: the config, the device, the memory it
    needs, and that no other process trains there (the folder's lock is held throughout).
    """
    folder = Path(folder)
    dev = resolve_device(device)
    resources.require(resources.training_bytes(config), "this training run", device=dev)
    check_compile(config, dev)
    try:
        with run_lock(folder):
            if not overwrite and any((folder / n).exists() for n in (RUN_NAME, METRICS_NAME)):
                raise ConfigError(
                    f"{folder} already holds a run; resume it or choose another --out"
                )
            if overwrite:
                _clear_run(folder)
            config.save(folder / CONFIG_NAME)
            trainer = Trainer(config, folder, dev, cancel, on_epoch, on_batch)
            return trainer.run()
    except OSError as exc:
        raise JobError(f"cannot write into {folder}: {exc.strerror or exc}") from exc


def _clear_run(folder: Path) -> None:
    """What an earlier run left: its log, status, checkpoint, evaluation and every weights file,
    so that nothing of it can be mistaken for the new run's."""
    import shutil

    from hmmrnn.tree import EVALUATION_NAME, model_candidates

    for name in (METRICS_NAME, CHECKPOINT_NAME, RUN_NAME, EVALUATION_NAME):
        (folder / name).unlink(missing_ok=True)
    for path in model_candidates(folder):
        path.unlink(missing_ok=True)
    shutil.rmtree(folder / MODELS_DIR / EVOLUTION_DIR, ignore_errors=True)


def resume(
    folder: str | Path,
    *,
    device: str | torch.device = "auto",
    cancel: CancelToken | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Continue a cancelled or interrupted run from its last completed epoch."""
    folder = Path(folder)
    config = check_resumable(folder)
    dev = resolve_device(device)
    resources.require(resources.training_bytes(config), "resuming this run", device=dev)
    check_compile(config, dev)
    try:
        with run_lock(folder):
            return _resume(folder, config, dev, cancel, on_epoch, on_batch)
    except OSError as exc:
        raise JobError(f"cannot write into {folder}: {exc.strerror or exc}") from exc


def check_resumable(folder: Path) -> ExperimentConfig:
    """The run's config if it can be resumed; a ConfigError saying why not otherwise.

    Called before a resume is launched in another process too, so that the refusal reaches the
    user at once instead of only the detached process's log.
    """
    config = ExperimentConfig.load(folder / CONFIG_NAME)
    info = read_run_info(folder)
    if info.get("status") == "finished":  # terminal, even while its process is still exiting
        raise ConfigError(f"{folder}: the run already finished; nothing to resume")
    if info.get("status") == "diverged":
        raise ConfigError(
            f"{folder}: the run diverged ({info.get('message', '')}); resuming would diverge "
            "again at the same point: train anew with a smaller learning rate or grad_clip"
        )
    if is_running(folder):
        raise ConfigError(f"{folder}: already being trained by process {info.get('pid')}")
    return config


def _resume(folder, config, dev, cancel, on_epoch, on_batch) -> TrainResult:
    trainer = Trainer(config, folder, dev, cancel, on_epoch, on_batch)
    ckpt_path = folder / CHECKPOINT_NAME
    if not ckpt_path.exists():
        _truncate_metrics(folder, 0)
        return trainer.run()
    ckpt = safe_torch_load(ckpt_path)
    trainer.epochs_done = int(ckpt["epochs_done"])
    trainer.best_val = float(ckpt["best_val"])
    trainer.best_lr = None if ckpt["best_lr"] < 0 else float(ckpt["best_lr"])
    trainer.best_state = ckpt["best_state"] or None
    trainer.started = float(ckpt.get("started", time.time()))
    _truncate_metrics(folder, trainer.epochs_done)
    lr_index, epoch = int(ckpt["lr_index"]), int(ckpt["epoch"])
    if epoch >= config.epochs:
        return trainer.run((lr_index + 1, 1), None)
    return trainer.run((lr_index, epoch + 1), ckpt)


def _truncate_metrics(folder: Path, lines: int) -> None:
    """Drop log lines of epochs after the checkpoint, so a resumed log has no duplicates."""
    path = folder / METRICS_NAME
    if not path.exists():
        return
    kept = path.read_bytes().decode("utf-8", errors="replace").splitlines()[:lines]
    from hmmrnn.io import atomic_write_text

    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(folder: str | Path) -> list[dict]:
    """Epoch records written so far; a partial last line (a run writing right now) is skipped."""
    from hmmrnn.tree import read_metrics_records

    return read_metrics_records(Path(folder))
