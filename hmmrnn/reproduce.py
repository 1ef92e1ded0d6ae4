"""The study's headline numbers against ours, on any model tree: `hmmrnn reproduce`.

Every model of the tree is evaluated at the study's cross-model protocol (ANALYSES.md section 4:
its entropic matching with argmax pairing, N 5,000 sequences of L 100 steps, whatever the preset's
training length) and the run is saved beside it as `evaluation-study.json`, so the tree figures can
draw the same numbers (`protocol=study`). Per HMM family the report then sets the published values
beside ours; on a reference model (the study's `ReverseEngineeredModel`, or one given) it adds the
mechanistic headlines. Each row names its protocol, and says "agrees", "near" or "differs"; a
family the study did not publish gets our numbers and no verdict. The published values are read
off the study's figures, so they carry about 0.01-0.05 of reading error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hmmrnn.analyses.base import ProgressFn, check_cancel, jsonable, no_progress
from hmmrnn.cancel import CancelToken
from hmmrnn.errors import UserError
from hmmrnn.tree_evaluations import STUDY_EVALUATION_NAME, TreeEvaluations, usable

STUDY_PROTOCOL = {"method": "study", "seq_len": 100, "num_sequences": 5000, "seed": 0}
TOLERANCE = 0.1  # how far a distance may sit from a published one and still agree
STUDY_BASELINE = {"Two": 4.55, "Three": 7.29, "Four": 7.51, "Five": 7.52}
STUDY_RNN = {"Two": (4.26, 4.49), "Three": (7.22, 7.28), "Four": (7.49, 7.56), "Five": (7.54, 7.59)}
STUDY_TRANSITION_SQ = 0.01
STUDY_NOISE_TRACE = {"cluster": (31.0, 53.0), "kick": (27.0, 40.0)}  # gamma 1, hidden 150
STUDY_CRITICAL = {"mu 0": (1.5, 5.0), "mu 1.9": (5.0, 12.0)}  # critical pairs per switch
STUDY_RATE = {"first": (0.6, 0.8), "last": (0.05, 0.12)}  # mean 1/dwell over training
STUDY_BIFURCATION = (50, 350)
REFERENCE_NAME = "ReverseEngineeredModel"


@dataclass
class Check:
    """One row of the report: what is compared, on which models, the study's value and ours."""

    check: str
    subject: str
    study: str
    ours: str
    verdict: str  # agrees | near | differs | no study value | not run
    protocol: str
    value: float = math.nan


@dataclass
class ReproductionReport:
    """The report: every check, the per-model numbers behind the distance checks, what was skipped."""

    root: str
    protocol: dict
    checks: list[Check] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Strict JSON (a nan value becomes the string "nan")."""
        return jsonable(
            {
                "root": self.root,
                "protocol": self.protocol,
                "checks": [asdict(c) for c in self.checks],
                "models": self.models,
                "skipped": self.skipped,
            }
        )

    def to_markdown(self) -> str:
        p = self.protocol
        lines = [
            f"# Reproduction report: {self.root}",
            "",
            f"Evaluations: method {p['method']}, N {p['num_sequences']}, L {p['seq_len']}, "
            f"seed {p['seed']} (saved as {STUDY_EVALUATION_NAME} beside each model).",
            "",
            "| check | models | study | ours | verdict | protocol |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.check} | {c.subject} | {c.study} | {c.ours} | {c.verdict} | {c.protocol} |"
            for c in self.checks
        ]
        if self.skipped:
            lines += ["", "Skipped:"] + [f"- {s['model']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines) + "\n"


# --- verdicts -------------------------------------------------------------------------------------


def verdict_value(ours: float, study: float, tol: float = TOLERANCE) -> str:
    if not math.isfinite(ours):
        return "not run"
    return "agrees" if abs(ours - study) <= tol else "differs"


def verdict_range(ours: float, lo: float, hi: float, tol: float = TOLERANCE) -> str:
    """Inside the published range: agrees; within `tol` of it: near; else differs."""
    if not math.isfinite(ours):
        return "not run"
    if lo <= ours <= hi:
        return "agrees"
    return "near" if lo - tol <= ours <= hi + tol else "differs"


def _span(values: np.ndarray, fmt: str = ".3f") -> str:
    lo, hi, mean = float(np.min(values)), float(np.max(values)), float(np.mean(values))
    if len(values) == 1 or lo == hi:
        return format(mean, fmt)
    return f"{mean:{fmt}} ({lo:{fmt}}–{hi:{fmt}})"


# --- the distance checks, per family --------------------------------------------------------------


def family_checks(tree: TreeEvaluations, protocol: str) -> list[Check]:
    """The section-4 checks of every family of an evaluated tree (pure: numbers in, rows out)."""
    checks = []
    group = np.asarray(tree.group)
    for fam in tree.groups:
        rows = group == fam
        n = int(rows.sum())
        base = tree.baseline_mean[rows]
        study = STUDY_BASELINE.get(fam)
        checks.append(
            Check(
                "HMM–HMM distance",
                f"{fam} ({n})",
                f"{study:.2f}" if study is not None else "–",
                _span(base),
                verdict_value(float(base.mean()), study) if study is not None else "no study value",
                protocol,
                float(base.mean()),
            )
        )
        wide = rows & (tree.hidden >= 10) & (tree.input >= 10)
        lo_hi = STUDY_RNN.get(fam)
        if wide.any():
            rnn = tree.rnn_mean[wide]
            verdict = (
                verdict_range(float(rnn.mean()), *lo_hi) if lo_hi is not None else "no study value"
            )
            ours = _span(rnn)
        else:
            verdict, ours, rnn = "not run", "no model with hidden, input ≥ 10", np.array([np.nan])
        checks.append(
            Check(
                "HMM–RNN distance, hidden and input ≥ 10",
                f"{fam} ({int(wide.sum())})",
                f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}" if lo_hi is not None else "–",
                ours,
                verdict,
                protocol,
                float(np.mean(rnn)),
            )
        )
        narrow = rows & (tree.input == 1)
        if narrow.any() and wide.any():
            gap_1 = float(np.mean(tree.rnn_mean[narrow] - tree.baseline_mean[narrow]))
            gap_10 = float(np.mean(tree.rnn_mean[wide] - tree.baseline_mean[wide]))
            checks.append(
                Check(
                    "RNN − HMM distance gap, input 1 vs input ≥ 10",
                    f"{fam} ({int(narrow.sum())} / {int(wide.sum())})",
                    "input 1 slightly worse",
                    f"{gap_1:+.3f} vs {gap_10:+.3f}",
                    "agrees" if abs(gap_1) >= abs(gap_10) else "differs",
                    protocol,
                    gap_1 - gap_10,
                )
            )
        sq = tree.transition_sq_error[rows]
        checks.append(
            Check(
                "max squared transition difference",
                f"{fam} ({n})",
                f"≤ {STUDY_TRANSITION_SQ:g}",
                f"{float(sq.max()):.4f} (worst model)",
                "agrees" if float(sq.max()) <= STUDY_TRANSITION_SQ else "differs",
                protocol,
                float(sq.max()),
            )
        )
    return checks


# --- the mechanistic checks on a reference model ---------------------------------------------------

Analyze = Callable[[str, dict], object]  # (analysis name, params) -> result


def mechanism_checks(analyze: Analyze, subject: str, has_checkpoints: bool) -> list[Check]:
    """The section-5/6 headlines on one model, each through the registry with its defaults."""
    parts = [_autonomous, _noise, _kick, _ablation] + ([_evolution] if has_checkpoints else [])
    checks = []
    for part in parts:
        try:
            found = part(analyze, subject)
        except UserError as exc:  # e.g. a model that never switches: say so, go on
            found = Check(_TITLES[part.__name__], subject, "–", str(exc), "not run", "–")
        checks += found if isinstance(found, list) else [found]
    return checks


_TITLES = {
    "_autonomous": "autonomous runs end on one fixed point",
    "_noise": "noise-response traces",
    "_kick": "a confirmed kick group per switch direction",
    "_ablation": "critical pairs per switch under ablation",
    "_evolution": "training evolution",
}


def _autonomous(analyze: Analyze, subject: str) -> Check:
    r = analyze("fixed-points", {})
    fixed = int(np.sum(r.is_fixed))
    growth = float(r.origin_growth)
    attracts = growth < 1.0
    return Check(
        "without input the dynamics collapse onto one fixed point (h = 0)",
        subject,
        "one fixed point, h = 0",
        f"{fixed} fixed point(s), {len(r.q) - fixed} slow; origin growth {growth:.3f}/step "
        f"({'attracts' if attracts else 'does not attract'})",
        "agrees" if fixed == 1 and attracts else "differs",
        "fixed-points, defaults",
        float(fixed),
    )


def _noise(analyze: Analyze, subject: str) -> list[Check]:
    r = analyze("noise-sensitivity", {})
    gammas = np.asarray(r.gammas, dtype=float)
    g = int(np.argmin(np.abs(gammas - 1.0)))
    out = []
    for p, name in enumerate(r.point_names):
        key = "kick" if "kick" in str(name) else "cluster"
        lo, hi = STUDY_NOISE_TRACE[key]
        value = float(r.trace_mean[p, g])
        out.append(
            Check(
                f"noise-response trace from the {key} point, γ {gammas[g]:g}",
                subject,
                f"{lo:g}–{hi:g} (hidden 150)",
                f"{value:.2f} ± {float(r.trace_mean_se[p, g]):.2f}",
                verdict_range(value, lo, hi, tol=0.0),
                f"noise-sensitivity, {r.repeats} repeats",
                value,
            )
        )
    return out


def _kick(analyze: Analyze, subject: str) -> Check:
    r = analyze("kick-neurons", {})
    seen = np.flatnonzero(r.n_events > 0)
    confirmed = [f"{a}→{b} {r.units(d).tolist()}" for d, (a, b) in enumerate(r.directions)
                 if r.confirmed[d]]  # fmt: skip
    return Check(
        "a confirmed kick group per switch direction",
        subject,
        "one triplet per direction (hand-picked)",
        f"{len(confirmed)} of {len(seen)}: " + ("; ".join(confirmed) or "none"),
        "agrees" if seen.size and len(confirmed) == seen.size else "differs",
        f"kick-neurons, z ≥ {r.z_threshold:g}, vs {r.rate_random.shape[1]} random lesions",
        float(len(confirmed)),
    )


def _ablation(analyze: Analyze, subject: str) -> list[Check]:
    r = analyze("ablation", {})
    mus = np.asarray(r.mus, dtype=float)
    i0, i19 = int(np.argmin(np.abs(mus))), int(np.argmin(np.abs(mus - 1.9)))
    out = []
    for s, name in enumerate(r.set_names):
        a, b = float(r.critical_per_switch[s, i0]), float(r.critical_per_switch[s, i19])
        lo0, hi0 = STUDY_CRITICAL["mu 0"]
        lo1, hi1 = STUDY_CRITICAL["mu 1.9"]
        if name == "control":
            rel = abs(b - a) / max(abs(a), abs(b), 1e-12)
            study, verdict = "does not move", "agrees" if rel <= 0.25 else "differs"
        else:
            study = f"{lo0:g}–{hi0:g} → {lo1:g}–{hi1:g} (rises)"
            verdict = "agrees" if b > a else "differs"
        if not (math.isfinite(a) and math.isfinite(b)):
            verdict = "not run (no switches at one gain)"
        out.append(
            Check(
                f"critical pairs per switch, {name} set, μ {mus[i0]:g} → {mus[i19]:g}",
                subject,
                study,
                f"{a:.2f} → {b:.2f}",
                verdict,
                _ablation_protocol(r),
                b - a,
            )
        )
    return out


def _ablation_protocol(r) -> str:
    if getattr(r, "protocol", "rollouts") == "long":
        return f"ablation, {r.long_runs} x {r.long_steps} full-noise steps per gain"
    return f"ablation, {r.n_traj} x {r.steps} steps, γ {r.gamma:g}"


def _evolution(analyze: Analyze, subject: str) -> list[Check]:
    r = analyze("evolution", {})
    rate = np.asarray(r.dwell_rate, dtype=float)
    ok = np.flatnonzero(np.isfinite(rate))
    out = []
    if ok.size:
        first, last = float(rate[ok[0]]), float(rate[ok[-1]])
        (a, b), (c, d) = STUDY_RATE["first"], STUDY_RATE["last"]
        both = [verdict_range(first, a, b, 0.0), verdict_range(last, c, d, 0.0)]
        out.append(
            Check(
                "transition rate (mean 1/dwell), first → last checkpoint",
                subject,
                f"{a:g}–{b:g} → {c:g}–{d:g}",
                f"{first:.3f} → {last:.3f} (epochs {int(r.epochs[ok[0]])}, {int(r.epochs[ok[-1]])})",
                "agrees" if both == ["agrees", "agrees"] else "differs",
                f"evolution, {r.steps} steps per checkpoint",
                last,
            )
        )
    bif = int(r.bifurcation_epoch)
    lo, hi = STUDY_BIFURCATION
    out.append(
        Check(
            "bifurcation epoch (critical pairs persist)",
            subject,
            f"{lo}–{hi}",
            str(bif) if bif >= 0 else "none",
            verdict_range(float(bif), lo, hi, 0.0) if bif >= 0 else "differs",
            f"evolution, critical on ≥ {r.min_fraction:g} of steps for {r.persist} checkpoints",
            float(bif),
        )
    )
    return out


# --- the whole report -----------------------------------------------------------------------------


def reproduce(
    root: str | Path,
    *,
    num_sequences: int = STUDY_PROTOCOL["num_sequences"],
    seq_len: int = STUDY_PROTOCOL["seq_len"],
    method: str = STUDY_PROTOCOL["method"],
    seed: int = STUDY_PROTOCOL["seed"],
    reference: str | Path | None = None,
    mechanisms: bool = True,
    save: bool = True,
    device: str = "auto",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ReproductionReport:
    """Evaluate every model of `root` at the protocol, then compare the study's numbers with ours.

    `reference`: the model of the mechanistic checks (default: the tree's ReverseEngineeredModel,
    when it has one); `mechanisms=False` leaves them out. A model whose evaluation fails is listed
    as skipped, with the reason; Cancelled propagates.
    """
    from hmmrnn.analyses.evaluation import save_evaluation
    from hmmrnn.analyses.registry import run_analysis
    from hmmrnn.tree import discover, evolution_files, load_model

    progress = progress or no_progress
    root = Path(root).expanduser()
    params = {"num_sequences": num_sequences, "seq_len": seq_len, "method": method, "seed": seed}
    protocol = f"{method}, N {num_sequences}, L {seq_len}"
    target = _reference(root, reference) if mechanisms else None  # a bad path fails first
    entries, skipped = [], []
    for e in discover(root):
        if usable(e):
            entries.append(e)
        else:
            skipped.append({"model": e.rel, "reason": e.reason or e.status})
    if not entries:
        raise UserError(f"{root}: no model to reproduce")
    pairs = []
    for i, entry in enumerate(entries):
        check_cancel(cancel)
        progress(i / (len(entries) + 1), f"evaluating {entry.rel}")
        try:
            loaded = load_model(entry.path, device=device)
            run = run_analysis("evaluation", loaded, params, cancel=cancel)
            if save:
                save_evaluation(run, loaded, STUDY_EVALUATION_NAME)
        except UserError as exc:
            skipped.append({"model": entry.rel, "reason": str(exc)})
            continue
        pairs.append((entry, run.result))
    if not pairs:
        raise UserError(f"{root}: no model could be evaluated ({skipped[0]['reason']})")
    tree = TreeEvaluations.from_results(root, pairs, skipped)
    report = ReproductionReport(str(root), dict(params), family_checks(tree, protocol))
    report.models = _model_rows(tree)
    report.skipped = skipped
    if target is not None:
        progress(len(entries) / (len(entries) + 1), f"mechanisms on {target.name}")
        loaded = load_model(target, device=device)

        def analyze(name: str, values: dict):
            check_cancel(cancel)
            return run_analysis(name, loaded, values, cancel=cancel).result

        has_checkpoints = bool(evolution_files(Path(loaded.folder)))
        label = Path(loaded.folder).name
        report.checks += mechanism_checks(analyze, label, has_checkpoints)
    progress(1.0, "done")
    return report


def _reference(root: Path, reference: str | Path | None) -> Path | None:
    if reference is not None:
        path = Path(reference).expanduser()
        if not path.exists():
            raise UserError(f"reference model {path} does not exist")
        return path
    path = root / REFERENCE_NAME
    return path if path.is_dir() else None


def _model_rows(tree: TreeEvaluations) -> list[dict]:
    keys = ("group", "hidden", "input", "seed", "baseline_mean", "rnn_mean", "transition_sq_error")
    rows = []
    for i, rel in enumerate(tree.rel):
        row = {"model": rel}
        for k in keys:
            v = getattr(tree, k)[i]
            row[k] = v if isinstance(v, str) else v.item()
        rows.append(row)
    return rows
