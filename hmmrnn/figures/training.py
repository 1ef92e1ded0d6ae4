"""Training figure: train and validation loss per epoch for every learning rate tried."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from hmmrnn.analyses.base import Result
from hmmrnn.errors import UserError
from hmmrnn.figures.style import HMM_COLOR, new_figure, renderer, sequential


@dataclass
class LossCurves(Result):
    """metrics.jsonl as arrays, one entry per logged epoch (epochs restart for each lr).

    floor is the HMM-vs-HMM loss: the value a perfect emulator would reach.
    """

    epoch: np.ndarray
    lr: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    floor: np.ndarray
    best_val: np.ndarray
    folder: str = ""

    @classmethod
    def from_records(cls, records: list[dict], folder: str = "") -> LossCurves:
        def col(key: str, default: float = np.nan) -> np.ndarray:
            return np.array([_num(r.get(key, default)) for r in records], dtype=np.float64)

        return cls(
            epoch=col("epoch").astype(np.int64) if records else np.zeros(0, np.int64),
            lr=col("lr"),
            train_loss=col("train_loss"),
            val_loss=col("val_loss"),
            floor=col("floor"),
            best_val=col("best_val"),
            folder=str(folder),
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> LossCurves:
        """A run folder's metrics.jsonl, or the research code's training_results.json (UserError
        when there is neither to draw)."""
        from hmmrnn.tree import training_curves

        records = [r for r in training_curves(Path(folder)) if "epoch" in r]
        if not records:
            raise UserError(
                f"{folder}: no training log to draw (metrics.jsonl or training_results.json)"
            )
        return cls.from_records(records, folder=str(folder))

    @property
    def learning_rates(self) -> list[float]:
        """Learning rates in the order they were trained."""
        _, first = np.unique(self.lr, return_index=True)
        return [float(self.lr[i]) for i in sorted(first)]


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@renderer
def render_loss_curves(result: LossCurves, *, width: str = "double"):
    """Validation (solid) and training (dashed) loss per lr; dotted: the HMM-vs-HMM floor."""
    fig = new_figure(width, aspect=0.45 if width == "double" else 0.8)
    ax = fig.add_subplot()
    lrs = result.learning_rates
    colors = sequential(len(lrs), "viridis", 0.0, 0.8)
    for lr, color in zip(lrs, colors, strict=True):
        sel = result.lr == lr
        ep = result.epoch[sel]
        ax.plot(ep, result.val_loss[sel], color=color, label=f"lr {lr:g} validation")
        ax.plot(ep, result.train_loss[sel], color=color, ls="--", lw=0.8, label=f"lr {lr:g} train")
        val = result.val_loss[sel]
        if np.isfinite(val).any():
            i = int(np.nanargmin(val))
            ax.plot(ep[i], val[i], marker="o", ms=3.5, color=color, ls="none")
    floor = result.floor[np.isfinite(result.floor)]
    if floor.size:
        ax.axhline(float(np.median(floor)), color=HMM_COLOR, ls=":", lw=0.9, label="HMM floor")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Sinkhorn loss")
    losses = np.concatenate([result.train_loss, result.val_loss, floor])
    losses = losses[np.isfinite(losses)]
    if losses.size and losses.min() > 0 and losses.max() / losses.min() > 20:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    # "best" keeps the legend off the curves, wherever a run's curves happen to lie
    ax.legend(ncols=2 if len(lrs) > 1 and width == "double" else 1, loc="best")
    ax.set_title("training loss (dots: best validation)")
    return fig
