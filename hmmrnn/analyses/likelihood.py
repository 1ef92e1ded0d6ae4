"""Likelihood under the HMM: how probable the RNN's output sequences are for the process it
emulates, next to fresh samples of that process.

The exact per-step log-likelihood log P(o_1..o_L) / L of each sequence comes from the forward
algorithm (`HMM.log_likelihood`, batched, scaled per step). For the HMM's own samples its mean is
the process' entropy rate (plus a start-up term); an RNN that emulates the HMM scores the same, and
the gap (HMM minus RNN, nats per step) measures how far it is, with no matching noise and no
entropic blur. The gap is signed: an RNN that is *too* regular (fewer switches than its HMM)
emits sequences more probable than the process' own, and scores a
negative gap; read it with the conditional curve and the volatility, not as a distance. The conditional term log P(o_t | o_<t) per step shows *where* in a sequence an RNN
departs (e.g. too many switches in its first steps from h = 0). Outputs the HMM cannot emit at
all (probability 0, e.g. a forbidden transition of a custom matrix) are counted apart.

This module is the whole analysis: the function, its parameters (the signature), the result, and
its publication figure and terminal view, registered at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from hmmrnn.analyses.base import Result, check_cancel, no_progress
from hmmrnn.analyses.registry import Analysis, Figure, View, register
from hmmrnn.params import NoiseStd, P, Seed


@dataclass
class LikelihoodResult(Result):
    """Per-step log-likelihoods (nats) under the HMM of fresh HMM samples and of RNN outputs.

    hmm_per_step, rnn_per_step (N,): each sequence's log P / L (-inf when impossible);
    hmm_conditional, rnn_conditional (L,): mean over possible sequences of log P(o_t | o_<t);
    hmm_mean, rnn_mean: means over possible sequences; gap = hmm_mean - rnn_mean and its standard
    error gap_se; rnn_impossible, hmm_impossible: shares of sequences with probability 0.
    long_hmm_ce, long_rnn_ce: the long-run cross-entropy rate -log P_HMM(o_1..T) / T (nats per
    step) of `long_runs` runs of `long_steps` steps of the HMM (its entropy rate) and of the RNN;
    long_ce_excess = long_rnn_ce - long_hmm_ce, free of start-up terms and sequence lengths (nan
    when long_steps is 0). It is not a KL divergence (that would subtract the RNN's own entropy
    rate, which nothing here can compute): like the gap it is negative for an RNN more regular
    than its HMM.
    """

    hmm_per_step: np.ndarray
    rnn_per_step: np.ndarray
    hmm_conditional: np.ndarray
    rnn_conditional: np.ndarray
    hmm_mean: float
    rnn_mean: float
    gap: float
    gap_se: float
    hmm_impossible: float
    rnn_impossible: float
    num_sequences: int = 0
    seq_len: int = 0
    long_hmm_ce: float = float("nan")
    long_rnn_ce: float = float("nan")
    long_ce_excess: float = float("nan")
    long_steps: int = 0


def _scores(hmm, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(per-step log-likelihood per sequence, mean conditional per step, impossible share)."""
    _, scale = hmm.forward(outputs)
    with np.errstate(divide="ignore"):
        logs = np.log(scale)
    possible = np.isfinite(logs).all(axis=1)
    per_step = np.where(possible, logs.sum(axis=1) / outputs.shape[1], -np.inf)
    cond = logs[possible].mean(axis=0) if possible.any() else np.full(outputs.shape[1], np.nan)
    return per_step, cond, float(1.0 - possible.mean())


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return float("nan"), float("nan")
    return float(ok.mean()), float(ok.std(ddof=1) / np.sqrt(ok.size)) if ok.size > 1 else 0.0


def hmm_likelihood(
    model,
    *,
    num_sequences: Annotated[int, P("sequences from the HMM and from the RNN", ge=2)] = 2000,
    seq_len: Annotated[
        int | None, P("steps per sequence (none: 30)", ge=1, config="seq_len")
    ] = None,
    seed: Seed = 0,
    noise_std: NoiseStd = 1.0,
    h0: Annotated[
        Literal["zero", "random"], P("initial hidden state of the RNN", config="h0")
    ] = "zero",
    long_steps: Annotated[
        int, P("steps of the long runs of the cross-entropy rate (0: none)", ge=0)
    ] = 2000,
    long_runs: Annotated[int, P("long runs, from the HMM and from the RNN", ge=1)] = 20,
    hmm: Any = None,
    progress=None,
    cancel=None,
) -> LikelihoodResult:
    """Exact log-likelihood under `hmm` of the RNN's outputs and of fresh HMM samples, and the
    long-run cross-entropy rate of both (the study's long-run cross-entropy)."""
    from hmmrnn.device import torch_generator

    if hmm is None:
        raise ValueError("the likelihood needs the model's HMM (hmm=...)")
    if int(model.output_size) != hmm.num_outputs:
        raise ValueError(
            f"the model has {model.output_size} outputs but the HMM has {hmm.num_outputs}"
        )
    progress = progress or no_progress
    length = 30 if seq_len is None else int(seq_len)
    progress(0.05, "sampling the HMM")
    ref = hmm.sample(int(num_sequences), length, np.random.default_rng(seed)).outputs
    check_cancel(cancel)
    progress(0.2, "generating the RNN's outputs")
    gen = torch_generator(seed, model.device)
    run = model.generate(int(num_sequences), length, noise_std=noise_std, h0=h0, generator=gen)
    rnn = run.symbols.detach().cpu().numpy().astype(np.int64)
    check_cancel(cancel)
    progress(0.5, "forward algorithm")
    hmm_ps, hmm_cond, hmm_imp = _scores(hmm, ref)
    rnn_ps, rnn_cond, rnn_imp = _scores(hmm, rnn)
    (h_mean, h_se), (r_mean, r_se) = _mean_se(hmm_ps), _mean_se(rnn_ps)
    check_cancel(cancel)
    progress(0.7, "long runs")
    long_h, long_r = _long_run_ce(model, hmm, long_steps, long_runs, seed, noise_std, h0)
    progress(1.0, "done")
    return LikelihoodResult(
        hmm_per_step=hmm_ps,
        rnn_per_step=rnn_ps,
        hmm_conditional=hmm_cond,
        rnn_conditional=rnn_cond,
        hmm_mean=h_mean,
        rnn_mean=r_mean,
        gap=h_mean - r_mean,
        gap_se=float(np.hypot(h_se, r_se)),
        hmm_impossible=hmm_imp,
        rnn_impossible=rnn_imp,
        num_sequences=int(num_sequences),
        seq_len=length,
        long_hmm_ce=long_h,
        long_rnn_ce=long_r,
        long_ce_excess=long_r - long_h,
        long_steps=int(long_steps),
    )


def _long_run_ce(model, hmm, steps: int, runs: int, seed: int, noise_std: float, h0: str):
    """(HMM, RNN) cross-entropy rates under the HMM over long runs, pooled over the runs."""
    from hmmrnn.device import torch_generator

    if steps < 1:
        return float("nan"), float("nan")
    ref = hmm.sample(int(runs), int(steps), np.random.default_rng([seed, 1])).outputs
    gen = torch_generator(seed + 7919, model.device)
    run = model.generate(int(runs), int(steps), noise_std=noise_std, h0=h0, generator=gen)
    rnn = run.symbols.detach().cpu().numpy().astype(np.int64)
    rates = []
    for outputs in (ref, rnn):
        _, scale = hmm.forward(outputs)
        with np.errstate(divide="ignore"):
            rates.append(float(-np.log(scale).mean()))  # inf when an output is impossible
    return rates[0], rates[1]


def _summary(r: LikelihoodResult) -> list[tuple[str, str]]:
    return [
        ("log-likelihood / step", f"HMM {r.hmm_mean:.4f} · RNN {r.rnn_mean:.4f} nats"),
        ("gap (HMM - RNN)", f"{r.gap:.4f} ± {r.gap_se:.4f} nats per step"),
        ("impossible sequences", f"HMM {r.hmm_impossible:.1%} · RNN {r.rnn_impossible:.1%}"),
        ("first step", f"HMM {r.hmm_conditional[0]:.3f} · RNN {r.rnn_conditional[0]:.3f}"),
        ("sample", f"{r.num_sequences} x {r.seq_len} steps"),
        (
            "long-run cross-entropy",
            f"HMM {r.long_hmm_ce:.4f} · RNN {r.long_rnn_ce:.4f} nats/step "
            f"(excess {r.long_ce_excess:+.4f}, {r.long_steps} steps)",
        ),
    ]


# --- presentations ---------------------------------------------------------------------------------


def render(result: LikelihoodResult, *, width: str = "double"):
    """Per-step log-likelihood of each sequence (histograms) and along the sequence (curves)."""
    from hmmrnn.figures.style import HMM_COLOR, RNN_COLOR, label_panels, new_figure

    fig = new_figure(width, height=2.4 if width == "double" else 4.2)
    ax_h, ax_t = fig.subplots(1, 2) if width == "double" else fig.subplots(2, 1)
    finite = [v[np.isfinite(v)] for v in (result.hmm_per_step, result.rnn_per_step)]
    both = np.concatenate(finite) if any(f.size for f in finite) else np.zeros(1)
    bins = np.linspace(both.min(), both.max() + 1e-9, 40)
    for values, color, label in zip(finite, (HMM_COLOR, RNN_COLOR), ("HMM", "RNN"), strict=True):
        ax_h.hist(values, bins=bins, histtype="step", color=color, lw=1.2, label=label)
    ax_h.set_xlabel("log-likelihood per step under the HMM (nats)")
    ax_h.set_ylabel("sequences")
    ax_h.legend(loc="upper left")
    t = np.arange(1, len(result.hmm_conditional) + 1)
    ax_t.plot(t, result.hmm_conditional, color=HMM_COLOR, label="HMM")
    ax_t.plot(t, result.rnn_conditional, color=RNN_COLOR, ls="--", label="RNN")
    ax_t.set_xlabel("step")
    ax_t.set_ylabel(r"mean log P$_\mathrm{HMM}$(o$_t$ | o$_{<t}$)")
    title = f"gap HMM − RNN {result.gap:.3f} ± {result.gap_se:.3f} nats/step"
    ax_t.set_title(
        title + (" (the RNN's sequences more probable)" if result.gap < 0 else ""),
        fontsize="medium",
    )
    ax_t.legend(loc="lower right")
    label_panels([ax_h, ax_t])
    return fig


def view(plt, result: LikelihoodResult) -> None:
    """The conditional log-likelihood along the sequence, HMM vs RNN (terminal)."""
    from hmmrnn.figures.terminal import OUTPUT_COLORS, begin

    begin(plt, f"log P(o_t | o_<t): gap {result.gap:.3f} nats/step")
    t = list(range(1, len(result.hmm_conditional) + 1))
    for values, color, marker, label in (
        (result.hmm_conditional, OUTPUT_COLORS[0], "hd", "HMM"),
        (result.rnn_conditional, OUTPUT_COLORS[1], "x", "RNN"),
    ):
        plt.plot(
            t, np.nan_to_num(values, nan=0.0).tolist(), color=color, marker=marker, label=label
        )
    plt.xlabel("step")


register(
    Analysis(
        name="likelihood",
        version=2,  # 2: the long-run cross-entropy rate
        fn=hmm_likelihood,
        result=LikelihoodResult,
        help="exact log-likelihood under the HMM of the RNN's outputs vs fresh HMM samples",
        summary=_summary,
        figures=(
            Figure("likelihood", "log-likelihood per step under the HMM, HMM vs RNN", render),
        ),
        views=(View("along the sequence", view),),
    )
)
