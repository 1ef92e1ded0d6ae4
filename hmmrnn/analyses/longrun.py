"""Long runs: does the RNN stay an emulator far past the sequence length it was trained on?

Training only sees `seq_len` steps from h = 0, but the state-space and mechanistic analyses
simulate thousands. Over long driven runs this reports how the hidden state's norm grows (its mean
at the last step over its mean at the training length; a model whose state blows up is not fit for
those analyses) and how the output shares after `skip` steps compare with the HMM's stationary
shares (a model can match its HMM for 30 steps and drift off it later).

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
class LongRunResult(Result):
    """mean_norm (steps,) mean |h_t| over runs; growth = mean_norm[-1] / mean_norm at the
    reference step (inf when the runs diverge); rnn_shares, hmm_shares (K,) output shares after
    `skip` steps and the HMM's stationary ones; max_share_error their largest |difference|."""

    mean_norm: np.ndarray
    growth: float
    diverged: bool
    rnn_shares: np.ndarray
    hmm_shares: np.ndarray
    max_share_error: float
    reference_step: int = 30
    skip: int = 100


def long_run(
    model,
    *,
    steps: Annotated[int, P("steps per driven run", ge=2)] = 2000,
    runs: Annotated[int, P("driven runs", ge=1)] = 50,
    reference_step: Annotated[
        int | None, P("step the growth is measured against (none: 30)", ge=1, config="seq_len")
    ] = None,
    skip: Annotated[int, P("first steps left out of the output shares", ge=0)] = 100,
    noise_std: NoiseStd = 1.0,
    seed: Seed = 0,
    hmm: Any = None,
    progress=None,
    cancel=None,
) -> LongRunResult:
    """Hidden-state growth and output shares of long driven runs (see the module docstring)."""
    from hmmrnn.device import torch_generator

    if hmm is None:
        raise ValueError("the long-run check needs the model's HMM (hmm=...)")
    progress = progress or no_progress
    ref = 30 if reference_step is None else int(reference_step)
    if ref > steps or skip >= steps:
        raise ValueError(f"need reference_step <= steps and skip < steps (steps {steps})")
    progress(0.05, "driven runs")
    run = model.generate(int(runs), int(steps), noise_std=noise_std,
                         generator=torch_generator(seed, model.device))  # fmt: skip
    check_cancel(cancel)
    norms = run.hidden.double().norm(dim=-1).mean(dim=0).cpu().numpy()
    finite = bool(np.isfinite(norms).all())
    growth = float(norms[-1] / max(norms[ref - 1], 1e-12)) if finite else float("inf")
    symbols = run.symbols[:, skip:].cpu().numpy().astype(np.int64)
    k = hmm.num_outputs
    shares = np.bincount(symbols.ravel(), minlength=k)[:k] / symbols.size
    target = hmm.output_shares()
    progress(1.0, "done")
    return LongRunResult(
        mean_norm=norms,
        growth=growth,
        diverged=not finite,
        rnn_shares=shares,
        hmm_shares=target,
        max_share_error=float(np.abs(shares - target).max()),
        reference_step=ref,
        skip=int(skip),
    )


def _summary(r: LongRunResult) -> list[tuple[str, str]]:
    return [
        ("hidden norm growth", "diverged" if r.diverged else f"x{r.growth:.3f} "
         f"(step {len(r.mean_norm)} vs step {r.reference_step})"),
        (f"output shares after step {r.skip}", " ".join(f"{v:.3f}" for v in r.rnn_shares)),
        ("HMM stationary shares", " ".join(f"{v:.3f}" for v in r.hmm_shares)),
        ("largest share error", f"{r.max_share_error:.3f}"),
    ]  # fmt: skip


def render(result: LongRunResult, *, width: str = "double"):
    """Mean hidden-state norm over a long run, and the output shares against the HMM's."""
    from hmmrnn.figures.style import HMM_COLOR, RNN_COLOR, new_figure

    fig = new_figure(width, height=2.3 if width == "double" else 4.0)
    ax_n, ax_s = fig.subplots(1, 2) if width == "double" else fig.subplots(2, 1)
    t = np.arange(1, len(result.mean_norm) + 1)
    ax_n.plot(t, result.mean_norm, color=RNN_COLOR)
    ax_n.axvline(result.reference_step, color=HMM_COLOR, ls="--", lw=0.8, label="training length")
    ax_n.set_xlabel("step")
    ax_n.set_ylabel("mean |h|")
    ax_n.set_title(f"growth x{result.growth:.2f}", fontsize="medium")
    ax_n.legend(loc="lower right")
    k = np.arange(len(result.hmm_shares))
    ax_s.bar(k - 0.2, result.hmm_shares, 0.4, color=HMM_COLOR, label="HMM stationary")
    ax_s.bar(k + 0.2, result.rnn_shares, 0.4, color=RNN_COLOR, label=f"RNN after {result.skip}")
    ax_s.set_xticks(k, [f"output {i}" for i in k])
    ax_s.set_ylabel("share of steps")
    ax_s.legend(loc="upper right")
    return fig


def view(plt, result: LongRunResult) -> None:
    """The mean hidden-state norm along the run (terminal)."""
    from hmmrnn.figures.terminal import MAX_LINE_POINTS, OUTPUT_COLORS, begin

    begin(plt, f"mean |h| over {len(result.mean_norm)} steps: growth x{result.growth:.2f}")
    step = max(1, len(result.mean_norm) // MAX_LINE_POINTS)
    t = list(range(1, len(result.mean_norm) + 1, step))
    plt.plot(t, np.nan_to_num(result.mean_norm[::step]).tolist(), color=OUTPUT_COLORS[0])
    plt.vertical_line(result.reference_step, color=OUTPUT_COLORS[2])
    plt.xlabel("step")


register(
    Analysis(
        name="long-run",
        fn=long_run,
        result=LongRunResult,
        help="hidden-state growth and output shares of long driven runs vs the HMM's",
        summary=_summary,
        figures=(Figure("long-run", "hidden-state norm over long runs; output shares", render),),
        views=(View("norm", view),),
    )
)
