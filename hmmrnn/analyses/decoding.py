"""Latent-state decoding: does the RNN's hidden state carry the HMM's latent state?

The HMM's posterior over its latent states given the RNN's own outputs (forward-backward,
`HMM.posteriors`) is what an ideal observer of those outputs believes the hidden state of the
process to be. A linear read-out (ridge regression with an intercept) is fitted from the RNN's
hidden states to that posterior on some sequences and scored on the others: R^2 per latent state
and overall, and how often the read-out's most likely state is the posterior's. A network that
carries the latent state in its activity decodes it well; one that only reproduces output
statistics need not. The chance accuracy is the share of the most common posterior argmax.

This module is the whole analysis (function, parameters, result, figure, terminal view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

from hmmrnn.analyses.base import Result, check_cancel, no_progress
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.params import NoiseStd, P, Seed


@dataclass
class DecodingResult(Result):
    """r2 (M,) held-out R^2 of each state's posterior; r2_total over all of them; accuracy:
    held-out share of steps where argmax read-out == argmax posterior; chance: the largest share
    of one argmax state; mean_posterior (M,); n_train, n_test: steps used."""

    r2: np.ndarray
    r2_total: float
    accuracy: float
    chance: float
    mean_posterior: np.ndarray
    n_train: int
    n_test: int


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights (H+1, M) of y ~ [x, 1] with an L2 penalty on the slopes only."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    penalty = alpha * np.eye(xa.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + penalty, xa.T @ y)


def latent_decoding(
    model,
    *,
    num_sequences: Annotated[int, P("RNN sequences whose states are decoded", ge=4)] = 1000,
    seq_len: Annotated[
        int | None, P("steps per sequence (none: 30)", ge=1, config="seq_len")
    ] = None,
    skip_steps: Annotated[int, P("first steps of each sequence left out", ge=0)] = 5,
    test_fraction: Annotated[float, P("share of sequences held out", gt=0, lt=1)] = 0.3,
    ridge: Annotated[float, P("L2 penalty of the read-out", ge=0)] = 1e-3,
    noise_std: NoiseStd = 1.0,
    seed: Seed = 0,
    hmm: Any = None,
    progress=None,
    cancel=None,
) -> DecodingResult:
    """Fit and score a linear read-out of the HMM posterior from the RNN's hidden states."""
    from hmmrnn.device import torch_generator

    if hmm is None:
        raise ValueError("latent decoding needs the model's HMM (hmm=...)")
    progress = progress or no_progress
    length = 30 if seq_len is None else int(seq_len)
    if skip_steps >= length:
        raise ValueError(f"skip_steps ({skip_steps}) must be below seq_len ({length})")
    progress(0.05, "driven runs")
    gen = torch_generator(seed, model.device)
    run = model.generate(int(num_sequences), length, noise_std=noise_std, generator=gen)
    hidden = run.hidden.detach().double().cpu().numpy()[:, skip_steps:]
    outputs = run.symbols.detach().cpu().numpy().astype(np.int64)
    check_cancel(cancel)
    progress(0.4, "HMM posteriors (forward-backward)")
    post = hmm.posteriors(outputs)[:, skip_steps:]
    n_test = max(1, int(round(test_fraction * num_sequences)))
    order = np.random.default_rng(seed).permutation(int(num_sequences))
    test, train = order[:n_test], order[n_test:]
    if not len(train):
        raise ValueError("no training sequences left; lower test_fraction")
    h = hidden.shape[-1]
    m = post.shape[-1]
    x_tr, y_tr = hidden[train].reshape(-1, h), post[train].reshape(-1, m)
    x_te, y_te = hidden[test].reshape(-1, h), post[test].reshape(-1, m)
    check_cancel(cancel)
    progress(0.7, "fitting the read-out")
    w = _ridge(x_tr, y_tr, float(ridge))
    pred = np.hstack([x_te, np.ones((len(x_te), 1))]) @ w
    resid = ((y_te - pred) ** 2).sum(axis=0)
    total = ((y_te - y_te.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(total > 0, 1.0 - resid / total, np.nan)
        r2_total = float(1.0 - resid.sum() / total.sum()) if total.sum() > 0 else float("nan")
    truth = y_te.argmax(axis=1)
    counts = np.bincount(truth, minlength=m)
    progress(1.0, "done")
    return DecodingResult(
        r2=r2,
        r2_total=r2_total,
        accuracy=float((pred.argmax(axis=1) == truth).mean()),
        chance=float(counts.max() / counts.sum()),
        mean_posterior=post.reshape(-1, m).mean(axis=0),
        n_train=int(len(x_tr)),
        n_test=int(len(x_te)),
    )


def _summary(r: DecodingResult) -> list[tuple[str, str]]:
    rows = [
        ("R^2 (all states)", f"{r.r2_total:.3f}"),
        ("argmax accuracy", f"{r.accuracy:.3f} (chance {r.chance:.3f})"),
    ]
    rows += [(f"state {i}", f"R^2 {v:.3f}, mean posterior {p:.3f}")
             for i, (v, p) in enumerate(zip(r.r2, r.mean_posterior, strict=True))]  # fmt: skip
    rows.append(("steps", f"{r.n_train} fitted, {r.n_test} held out"))
    return rows


def render(result: DecodingResult, *, width: str = "double"):
    """Held-out R^2 per latent state, with the overall R^2 and the argmax accuracy vs chance."""
    from hmmrnn.figures.style import RNN_COLOR, new_figure

    fig = new_figure(width, height=2.2)
    ax = fig.subplots()
    states = np.arange(len(result.r2))
    ax.bar(states, np.nan_to_num(result.r2), color=RNN_COLOR)
    ax.axhline(
        result.r2_total, color="k", lw=0.8, ls="--", label=f"all states {result.r2_total:.2f}"
    )
    ax.set_xticks(states, [f"state {i}" for i in states])
    ax.set_ylim(min(0.0, float(np.nanmin(result.r2)) if np.isfinite(result.r2).any() else 0.0), 1.0)
    ax.set_ylabel("held-out R$^2$")
    ax.set_title(
        f"argmax accuracy {result.accuracy:.2f} (chance {result.chance:.2f})", fontsize="medium"
    )
    ax.legend(loc="lower right")
    return fig


def view(plt, result: DecodingResult) -> None:
    """R^2 per latent state (terminal)."""
    from hmmrnn.figures.terminal import OUTPUT_COLORS, begin

    begin(plt, f"decoding R² {result.r2_total:.2f} · accuracy {result.accuracy:.2f} "
               f"(chance {result.chance:.2f})")  # fmt: skip
    labels = [f"state {i}" for i in range(len(result.r2))]
    plt.bar(labels, np.nan_to_num(result.r2).tolist(), color=OUTPUT_COLORS[0])


register(
    Analysis(
        name="latent-decoding",
        fn=latent_decoding,
        result=DecodingResult,
        help="linear read-out of the HMM's latent-state posterior from the RNN's hidden states",
        summary=_summary,
        figures=(Figure("latent-decoding", "held-out R^2 of the latent-state read-out", render),),
        views=(View("R^2 per state", view),),
    )
)
