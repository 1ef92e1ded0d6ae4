"""Reproduce the models shipped in TrainedModels/ with hmmrnn's own pipeline.

    python TrainedModels/reproduce.py            # train what is missing, evaluate, write README.md
    python TrainedModels/reproduce.py --force    # retrain everything
    python TrainedModels/reproduce.py --only Two # one recipe (by name)
    python TrainedModels/reproduce.py --grid     # the study grid (grid.json) with `hmmrnn sweep`

Each recipe lists one or more stages (a stage fine-tunes the previous stage's best weights, which are
kept in `stages/` inside the model folder so the chain stays reproducible). Every shipped model must
meet the bar of `passes_bar()` of its evaluation on 5,000 fresh sequences of its preset's length; a
recipe that misses it moves on to its next attempt (another seed), and the script fails loudly if
none reaches it.

The study grid (`--grid`, see `build_grid`) is different: one seed, one recipe, every model kept and
listed with its numbers whether it meets the bar or not, as the study's grid was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hmmrnn import api  # noqa: E402

# The CPU recipe: small batches (512) over 7,680 sequences, Adam 3e-3, and a near-identity
# recurrent initialisation that keeps memory from the first epoch (the default uniform init sits
# for hundreds of steps on an i.i.d.-output plateau). The study's GPU recipe is in README.md.
CPU_BASE = dict(
    hidden_size=50,
    input_size=10,
    batch_size=512,
    num_seq=7680,
    epochs=150,
    learning_rates=[0.003],
    init="identity",
    init_gain=0.95,
)


@dataclass
class Recipe:
    name: str
    folder: str
    preset: str
    stages: list[dict] = field(default_factory=lambda: [{}])
    seeds: tuple[int, ...] = (0, 1, 2)
    base: dict = field(default_factory=lambda: dict(CPU_BASE))
    # stage i trains with seed + i * stage_seed_step (fresh data and noise for each fine-tune)
    stage_seed_step: int = 0


# A fine-tune starts from the previous weights: no initialisation of its own.
FINE_TUNE = {"init": None, "init_gain": 1.0}
# Larger batches than CPU_BASE: the matched loss compares a batch with an HMM batch of its size,
# and a larger one resolves the rarer switch patterns that decide the dynamics bar.
WIDE = {"batch_size": 2048, "num_seq": 12288}


RECIPES = [
    Recipe("Two", "Two/hidden_50/input_10/seed_{seed}", "Two"),  # chatters: see README_TAIL
    Recipe("Three", "Three/hidden_50/input_10/seed_{seed}", "Three"),
    Recipe("Four", "Four/hidden_50/input_10/seed_{seed}", "Four"),
    Recipe("Five", "Five/hidden_50/input_10/seed_{seed}", "Five"),
    Recipe(
        "Fully",
        "Fully_Connected/Seed {seed}",
        "Fully",
        stages=[
            {"blur": 1.0, "epochs": 200},
            {
                "blur": 1.0,
                "batch_size": 1024,
                "num_seq": 15360,
                "epochs": 150,
                "learning_rates": [1e-3],
            },
            {
                "blur": 1.0,
                "batch_size": 2048,
                "num_seq": 30720,
                "epochs": 100,
                "learning_rates": [5e-4],
            },
            {
                "blur": 1.0,
                "batch_size": 4096,
                "num_seq": 30720,
                "epochs": 60,
                "learning_rates": [3e-4],
            },
            # blur 1.0 smears single-step blips (cost 1 against epsilon 1), so the RNN kept too many
            # constant sequences and bursts (distance ratio 1.056); a finer main term with a coarse
            # second term that holds volatility up resolves them
            {
                "blur": 0.7,
                "aux_blur": 2.0,
                "aux_weight": 1.0,
                "batch_size": 4096,
                "num_seq": 30720,
                "epochs": 60,
                "learning_rates": [2e-4],
            },
        ],
    ),
    Recipe(
        "Cyclic",
        "Cyclic/Seed {seed}",
        "Cyclic",
        stages=[
            # blur 2 at batch 2048 keeps 400-step runs on the HMM's shares, but flickers (+30%)
            {**WIDE, "blur": 2.0},
            # a finer main term removes the flicker; the blur-2 term holds the long-run shares
            {
                **FINE_TUNE,
                "batch_size": 4096,
                "num_seq": 24576,
                "epochs": 60,
                "learning_rates": [1e-3],
                "blur": 1.0,
                "aux_blur": 2.0,
                "aux_weight": 1.0,
            },
            {
                **FINE_TUNE,
                "batch_size": 4096,
                "num_seq": 24576,
                "epochs": 30,
                "learning_rates": [3e-4],
                "blur": 0.7,
                "aux_blur": 2.0,
                "aux_weight": 1.0,
            },
        ],  # fmt: skip
        stage_seed_step=1,
    ),
    Recipe(
        "Reference",
        "ReverseEngineeredModel",
        "Two",
        stages=[{"hidden_size": 150, "input_size": 100, "checkpoint_every": 5}],
    ),
]


def stage_seed(recipe: Recipe, stage: int, seed: int) -> int:
    return seed + stage * recipe.stage_seed_step


def final_seed(recipe: Recipe, seed: int) -> int:
    """The seed of the shipped weights (their config's): the folder and the README name it."""
    return stage_seed(recipe, len(recipe.stages) - 1, seed)


def folder_of(recipe: Recipe, seed: int) -> str:
    return recipe.folder.format(seed=final_seed(recipe, seed))


def stage_config(recipe: Recipe, stage: int, seed: int, previous: Path | None):
    values = {**recipe.base, **recipe.stages[stage], "seed": stage_seed(recipe, stage, seed)}
    if previous is not None:
        values["pretrained_model_path"] = str(previous)
    return api.config_for(recipe.preset, overrides=values)


def train_recipe(recipe: Recipe, root: Path, seed: int) -> tuple[Path, float]:
    """Train every stage of a recipe; returns (final folder, wall seconds)."""
    final = root / folder_of(recipe, seed)
    if final.exists():
        shutil.rmtree(final)
    start = time.perf_counter()
    previous: Path | None = None
    for stage in range(len(recipe.stages)):
        last = stage == len(recipe.stages) - 1
        folder = final if last else final / "stages" / f"stage_{stage + 1}"
        relative = None if previous is None else Path(_relpath(previous, folder))
        result = api.train(stage_config(recipe, stage, seed, relative), folder, device="auto")
        if result.status != "finished" or result.model_file is None:
            raise RuntimeError(f"{recipe.name} stage {stage + 1}: {result.status} {result.message}")
        api.discard_resume_state(folder)  # resume state is not shipped
        previous = result.model_file
    return final, time.perf_counter() - start


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)


def evaluate_folder(loaded):
    """The shipped evaluation: 5,000 fresh sequences of the preset's length, seed 0, saved as the
    model's evaluation.json (the same analysis `hmmrnn evaluate` runs)."""
    return api.evaluate(loaded, {"num_sequences": 5000, "seed": 0}).result


def long_run_growth(loaded) -> float:
    """Mean hidden-state norm after 2,000 driven steps over the norm at the training length.

    Training only sees seq_len steps from h = 0, so a model can emulate its HMM there and still
    blow up over the long runs that PCA, residency and the other analyses simulate; such a model
    is not shipped.
    """
    return api.analyze(loaded, "long-run", {"steps": 2000, "runs": 50}).result.growth


MAX_GROWTH = 1.5
MANIFEST_NAME = "shipped.json"


def shipped_entry(recipe: Recipe, root: Path) -> dict | None:
    """The manifest of the seed this recipe shipped, if any."""
    for seed in recipe.seeds:
        manifest = root / folder_of(recipe, seed) / MANIFEST_NAME
        if manifest.exists():
            return json.loads(manifest.read_text(encoding="utf-8"))
    return None


def build_recipe(recipe: Recipe, root: Path, force: bool) -> dict:
    entry = None if force else shipped_entry(recipe, root)
    if entry is not None:
        return entry
    for seed in recipe.seeds:
        print(f"[{recipe.name}] training with seed {seed}", flush=True)
        folder, seconds = train_recipe(recipe, root, seed)
        loaded = api.load(folder)
        result = evaluate_folder(loaded)
        ok, reasons = result.passes_bar()
        growth = long_run_growth(loaded)
        if not growth <= MAX_GROWTH:
            ok, reasons = False, [*reasons, f"hidden norm grows x{growth:.3g} over 2000 steps"]
        print(f"[{recipe.name}] {'meets the bar' if ok else 'misses: ' + '; '.join(reasons)}")
        if ok:
            entry = summary_row(recipe, folder, loaded.config, seed, seconds, result)
            entry["long_run_growth"] = round(growth, 3)
            api.save_json(folder / MANIFEST_NAME, entry)
            return entry
        shutil.rmtree(folder)  # a model that misses the bar is not left in the tree
    raise SystemExit(f"{recipe.name}: no seed met the bar; the recipe needs work")


def summary_row(recipe: Recipe, folder: Path, cfg, seed: int, seconds: float, r) -> dict:
    stages = [{**recipe.base, **s} for s in recipe.stages]
    metrics = api.metrics(folder)
    return {
        "name": recipe.name,
        "folder": folder_of(recipe, seed),
        "preset": recipe.preset,
        "seed": final_seed(recipe, seed),
        "hidden": cfg.hidden_size,
        "input": cfg.input_size,
        "seq_len": cfg.seq_len,
        "stages": stages,
        "epochs": sum(s["epochs"] for s in stages),
        "wall_seconds": round(seconds, 1),
        "threads": api.threads(),
        "best_val_loss": round(min(m["val_loss"] for m in metrics), 4),
        "floor": round(metrics[0]["floor"], 4),
        "distance_ratio": round(r.distance_ratio, 4),
        "baseline_distance": round(r.baseline_mean, 4),
        "rnn_distance": round(r.rnn_mean, 4),
        "transition_error": round(r.transition_error, 4),
        "hmm_volatility": round(r.hmm_volatility_mean, 3),
        "rnn_volatility": round(r.rnn_volatility_mean, 3),
        "volatility_rel_error": round(r.volatility_rel_error, 4),
        "hmm_symbol_share": [round(v, 4) for v in r.hmm_symbol_share.tolist()],
        "rnn_symbol_share": [round(v, 4) for v in r.rnn_symbol_share.tolist()],
    }


# --- the study grid -----------------------------------------------------------------------------
# Two, Three, Four, Five x hidden {50, 150} x input {1, 10, 100}, seed 0, on CPU_BASE's recipe (the
# preset's own seq_len), trained by `hmmrnn sweep` from grid.json into the study's layout. The four
# hidden-50, input-10 models are the recipes' shipped ones with this exact config: the sweep finds
# them finished and skips them. Every model is kept, met or missed, and listed in README.md.

GRID_SPEC = HERE / "grid.json"
GRID_COMMAND = (
    "OMP_NUM_THREADS=1 hmmrnn sweep --spec TrainedModels/grid.json --out TrainedModels "
    "--jobs 1 --device cpu"
)


def grid_jobs() -> list:
    """The grid's models (SweepJobs: folder and config), in the sweep's order."""
    return api.expand_sweep(api.sweep_spec(GRID_SPEC))


def sweep_grid(root: Path) -> int:
    """Run GRID_COMMAND (the `hmmrnn sweep` CLI, one job, one thread): trains what is absent,
    resumes what was interrupted, skips what is finished. Returns its exit code."""
    cmd = [sys.executable, "-m", "hmmrnn.cli", "sweep", "--spec", str(GRID_SPEC),
           "--out", str(root), "--jobs", "1", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, check=False).returncode


def build_grid(root: Path) -> None:
    """Train the grid with the sweep, then tidy and evaluate each model the way the shipped ones
    are (evaluate_folder; write_readme adds long_run_growth). A model the sweep could not finish
    is reported and left out; README.md lists it as not trained."""
    code = sweep_grid(root)
    if code != 0:
        print(f"[grid] the sweep exited with {code}; models it did not finish are not listed")
    api.sweep_report_path(root).unlink(missing_ok=True)  # a report, not state: run.json has it
    for job in grid_jobs():
        folder = root / job.rel
        if _run_info(folder).get("status") != "finished":
            print(f"[grid] {job.rel}: not trained")
            continue
        api.discard_resume_state(folder)
        (folder / "train.log").unlink(missing_ok=True)  # metrics.jsonl holds the same epochs
        shutil.rmtree(folder / "models" / "evolution", ignore_errors=True)
        if not _current_evaluation(folder):
            evaluate_folder(api.load(folder))
        ev = api.saved_evaluation(folder).result
        print(f"[grid] {job.rel}: bar {_verdict(ev.passes_bar())}, "
              f"dynamics bar {_verdict(ev.passes_dynamics_bar())}")  # fmt: skip


def _run_info(folder: Path) -> dict:
    path = folder / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _current_evaluation(folder: Path) -> bool:
    """Whether evaluation.json is the shipped one: this algorithm, 5,000 sequences, seed 0."""
    run = api.saved_evaluation(folder)
    return (
        run is not None
        and run.version == api.analysis("evaluation").version
        and (run.params.get("num_sequences"), run.params.get("seed")) == (5000, 0)
    )


def _grid_growth(folder: Path) -> float:
    """long_run_growth of a grid model: the long-run analysis is seeded, so the README recomputes
    it (a fraction of a second per model, cached) rather than keeping a file of its own."""
    return long_run_growth(api.load(folder, device="cpu"))


# short names of passes_bar() / passes_dynamics_bar() reasons, for the table
REASON_WORDS = {
    "distance ratio": "ratio",
    "transition max |diff|": "transitions",
    "transition max squared": "transitions",
    "volatility": "volatility",
    "switch-back": "switch-back",
    "one-step": "one-step runs",
    "long-run": "long-run shares",
}


def _verdict(check: tuple[bool, list[str]]) -> str:
    """'met', or 'missed (what)': the README's bar columns (tests read the first word)."""
    ok, reasons = check
    if ok:
        return "met"
    words = []
    for reason in reasons:
        word = next((w for k, w in REASON_WORDS.items() if reason.startswith(k)), reason)
        if word not in words:
            words.append(word)
    return f"missed ({', '.join(words)})"


def grid_lines(root: Path) -> list[str]:
    """README.md's "Study grid" section: one row per grid model, from its folder's files."""
    if not GRID_SPEC.is_file():
        return []
    rows, total, trained = [], 0.0, 0
    for job in grid_jobs():
        cfg, folder = job.config, root / job.rel
        name = f"{cfg.preset} h{cfg.hidden_size} d{cfg.input_size}"
        run = api.saved_evaluation(folder)
        info = _run_info(folder)
        if run is None or info.get("status") != "finished":
            rows.append(f"| {name} | `{job.rel}` | not trained |" + " |" * 10)
            continue
        ev, seconds, growth = run.result, api.run_time(info, folder) or 0.0, _grid_growth(folder)
        total, trained = total + seconds, trained + 1
        rows.append(
            f"| {name} | `{job.rel}` | {seconds / 60:.1f} min "
            f"| {info['best_val']:.3f} ({info['floor']:.3f}) | {ev.distance_ratio:.3f} "
            f"| {ev.transition_error:.3f} "
            f"| {ev.hmm_volatility_mean:.2f} / {ev.rnn_volatility_mean:.2f} "
            f"| {ev.hmm_switch_back:.3f} / {ev.rnn_switch_back:.3f} "
            f"| {ev.hmm_one_step_share:.3f} / {ev.rnn_one_step_share:.3f} "
            f"| {ev.long_share_error:.3f} | {growth:.2f} "
            f"| {_verdict(ev.passes_bar())} | {_verdict(ev.passes_dynamics_bar())} |"
        )
    head = GRID_HEAD.format(
        command=GRID_COMMAND, trained=trained, count=len(rows), minutes=total / 60
    )
    return [
        "",
        *head.splitlines(),
        "",
        "| model | folder | wall time | best val loss (floor) | distance ratio | transition error "
        "| volatility HMM / RNN | switch straight back HMM / RNN | one-step runs HMM / RNN "
        "| long-run share error | norm growth (2,000 steps) | bar | dynamics bar |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *GRID_TAIL.splitlines(),
    ]


def write_readme(root: Path, rows: list[dict]) -> None:
    lines = [*README_HEAD.splitlines(), TABLE_GAP]
    lines.append(
        "| model | folder | recipe | wall time | best val loss (floor) | distance ratio "
        "| transition error | volatility HMM / RNN |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        recipe = " then ".join(_stage_text(s, i == 0) for i, s in enumerate(r["stages"]))
        lines.append(
            f"| {r['name']} (h{r['hidden']}, d{r['input']}, seed {r['seed']}, L={r['seq_len']}) "
            f"| `{r['folder']}` | {recipe} | {r['wall_seconds'] / 60:.1f} min "
            f"| {r['best_val_loss']:.3f} ({r['floor']:.3f}) | {r['distance_ratio']:.3f} "
            f"| {r['transition_error']:.3f} | {r['hmm_volatility']:.2f} / {r['rnn_volatility']:.2f} |"
        )
    lines += ["", *DYNAMICS_HEAD.splitlines(), ""]
    lines.append(
        "| model | switch straight back HMM / RNN | one-step runs HMM / RNN "
        "| switches/step in the first 10 steps HMM / RNN | long-run share error | dynamics bar |"
    )
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        ev = api.saved_evaluation(root / r["folder"]).result
        ok, _ = ev.passes_dynamics_bar()
        lines.append(
            f"| {r['name']} | {ev.hmm_switch_back:.3f} / {ev.rnn_switch_back:.3f} "
            f"| {ev.hmm_one_step_share:.3f} / {ev.rnn_one_step_share:.3f} "
            f"| {ev.hmm_early_switch_rate:.3f} / {ev.rnn_early_switch_rate:.3f} "
            f"| {ev.long_share_error:.3f} | {'met' if ok else 'missed'} |"
        )
    lines += README_TAIL.splitlines()
    lines += grid_lines(root)
    api.save_text(root / "README.md", "\n".join(lines) + "\n")


def _stage_text(stage: dict, first: bool) -> str:
    """One stage of a recipe; later stages start from the previous weights, so no init."""
    parts = [f"{stage['epochs']} epochs, lr {stage['learning_rates'][0]:g}"]
    own_data = (stage["batch_size"], stage["num_seq"]) != (
        CPU_BASE["batch_size"],
        CPU_BASE["num_seq"],
    )
    if not first or own_data:
        parts.insert(0, f"batch {stage['batch_size']} on {stage['num_seq']:,} sequences")
    if first and stage.get("init") == "identity":
        parts.append(f"identity init x{stage['init_gain']:g}")
    if stage.get("blur", 0.2) != 0.2:
        parts.append(f"blur {stage['blur']:g}")
    if stage.get("aux_weight"):
        parts.append(f"+ {stage['aux_weight']:g} x blur {stage['aux_blur']:g} term")
    if stage.get("checkpoint_every"):
        parts.append(f"checkpoints every {stage['checkpoint_every']} epochs")
    return ", ".join(parts)


README_HEAD = """# Shipped models

Trained by hmmrnn's own pipeline with `python TrainedModels/reproduce.py` (the recipes are in that
script), on the 2-core CPU of the development machine. Each folder holds `config.json` (the study's
keys plus ours), the best weights in `models/`, the per-epoch `metrics.jsonl`, `run.json` and the
saved `evaluation.json` (5,000 fresh sequences of the preset's length, one-to-one matching, seed 0).
`ReverseEngineeredModel/` (2 states, hidden 150, input 100) keeps a checkpoint every 5 epochs in
`models/evolution/` for the training-evolution analyses.

Every model of the recipes meets the bar (the study grid at the end lists its misses too): matched
distance HMM-RNN at most 1.05 x the HMM-HMM baseline; output transition matrix within 0.1 of the
HMM's on rows of outputs emitted at least 5% of the time; volatility (output changes per sequence)
within 15% of the HMM's. On top of that, the hidden state of a 2,000-step driven run stays bounded
(mean norm at most 1.5x its value at the training length), since the analyses simulate long runs
that training never sees.

CPU recipe (all models): 7,680 sequences (a third each for training, validation and test), batch
512, Adam (betas 0.9, 0.9) with lr 3e-3, gradient clipping of the preset, the study's Sinkhorn loss
(blur 0.2) unless noted, and a near-identity recurrent initialisation (W_hh = 0.95 I + 0.1 x the
default uniform init) instead of PyTorch's default, which sits on an i.i.d.-output plateau for
hundreds of steps on CPU-sized runs. A recipe tries seeds 0, 1, 2 in turn and ships the first model
that meets the bar; the folder names the seed used.
"""

TABLE_GAP = ""

DYNAMICS_HEAD = """How the models switch (evaluation v2, the same 5,000 sequences): the old bar checks averages,
and passes models that chatter. The dynamics bar asks the share of switches undone at the next step
and the share of one-step runs to be within 0.10 of the HMM's, and the output shares of 400-step
driven runs (after step 100) to be within 0.05 of the HMM's stationary shares. Three, Four, Five
and Cyclic meet it; the 2-state models and Fully chatter (about twice the HMM's one-step runs)."""

README_TAIL = """
Wall times were measured while other jobs shared the 2 cores, so they are upper bounds.

Cyclic is trained in three stages (seeds 0, 1, 2; the folder names the last). The earlier one-stage recipe (batch 512, blur
1.0) met the first bar but drifted in long runs (output shares off by 0.118 after step 100); at 0.2
the RNN drops most of the HMM's 10% emission flips. Batch 2048 at blur 2 keeps 400-step runs on
the HMM's shares (error 0.006) but flickers (volatility +30%); a fine-tune at batch 4096, blur 1.0
plus a blur-2 term of weight 1, cuts that to +15%, and a last one at blur 0.7, lr 3e-4 to +9%
(long-run error 0.015). Tried and dropped: blur 4 at L=100 (flicker, ratio 1.19), the blur-2 term
at weight 3 (volatility +18%), a blur-0.5 stage (long runs blew up, |h| near 17,000 by step 400),
training from a random h0 (it passes only when also evaluated from one; +20% volatility from
h = 0).

Two still chatters. The best found is not shipped: blur 0.5 plus a blur-2 term of weight 2 at
L=50 and batch 2048 from scratch, then a fine-tune at L=30 with that term at weight 4. Evaluated at
L=100 it meets both bars (ratio 0.979, switch-back 0.226 against 0.167, one-step runs 0.271
against 0.225, long-run error 0.033), but at its training length, where every path evaluates it,
its distance ratio is 1.107, and a further stage at L=100 brings the chatter back (switch-back
0.309, one-step runs 0.379). Short training sequences fix the switching, long ones bring the
chatter back, and the rare middle symbol stays missing at both (under 0.1% against 1%).

Fully ends with a fifth stage at blur 0.7 plus a blur-2.0 term of weight 1 (the loss is their sum).
After the four blur-1.0 stages its distance ratio stalls at 1.056 (more stages, lower learning
rates, blur 1.2 and seeds 1-2 gave 1.05-1.08). At blur 1.0 epsilon equals the cost of a one-step
blip, so the loss barely tells a blip from a constant sequence, and the RNN emitted constant
sequences 18% of the time against the HMM's 12%, with switches bunched right after a switch. A
finer blur alone (0.5 or 0.7) loses a third of the volatility; the coarse term keeps it, and the ratio
drops to 1.029 (1.030, 1.043 and 1.048 with evaluation seeds 1-3: the ratio's sampling noise on
5,000 sequences is about +-0.01). Variants of that stage scored the same within that noise (mean
over the four seeds: blur 0.7 1.037, blur 0.6 1.033, 120 epochs 1.034); a weight of 2 on the coarse
term overshoots volatility by 9% (1.058).

Known limit: the study's loss at blur 0.2 is close to exact optimal transport between samples, which
barely rewards a rare symbol emitted at random steps. The 2-state models emit the middle output
(1% in the HMM) about ten times too rarely; their volatility still lies within the bar because the
0-2 switching rate is matched. `evaluation.json` has the per-symbol shares.

GPU recipe (the study's): 30,000 sequences, batch 4096, 500 epochs (1,000 for Fully), Adam lr 1e-3,
default initialisation, e.g.
`hmmrnn train --preset Three --hidden-size 150 --input-size 100 --num-seq 30000 --batch-size 4096`.
"""

GRID_HEAD = """## Study grid

Two, Three, Four, Five x hidden {{50, 150}} x input {{1, 10, 100}}, seed 0 ({trained} of {count}
models trained), in the study's layout (`<Preset>/hidden_<H>/input_<D>/seed_0`), trained by
`hmmrnn sweep` from `grid.json` by `python TrainedModels/reproduce.py --grid`, which runs

    {command}

and evaluates each model as the shipped ones (5,000 sequences of the preset's length, seed 0, in
its `evaluation.json`). The recipe is the CPU one above, one stage, the same for every model: 7,680
sequences, batch 512, lr 3e-3, near-identity init x0.95, blur 0.2, 150 epochs, the preset's seq_len.
The four hidden-50, input-10 models are the shipped ones of the table above (the sweep skips them).
Unlike the recipes, the grid tries one seed and keeps every model: the bar columns say which meet
the bar and the dynamics bar (and which check a model misses); norm growth is the mean hidden-state
norm of a 2,000-step driven run over its value at the training length (the recipes ship at most
1.5). Training took {minutes:.0f} min in all, one job at a time on one (shared) core."""

GRID_TAIL = """22 of the 24 meet the bar. Five h50 d100 misses it on volatility alone (14.19 against 12.22,
+16% against the 15% allowed; the shipped h50 d10 sits at +14.6%), and Two h150 d1 switches too
rarely (5.09 against 6.83, -25%) while its distance ratio (0.983) and transitions are fine. The
dynamics bar is met by 17: every 2-state model misses it, chattering as the shipped Two does (at
every size about twice the HMM's one-step runs, 0.47-0.50 against 0.225, and 2.3-2.6 times its
switches undone at the next step), and Five h150 d10 misses only the long-run shares, by a hair
(error 0.053 against 0.05). These are single seeds: the marginal misses are within what another
seed, or another evaluation seed (distance ratio about +-0.01), can move. The study had input-1
models that did not emulate; with this recipe the input-1 Three, Four and Five models meet both
bars, and only Two h150 d1 misses the first one, on volatility. Two h150 d100 is the reference
model's recipe without its checkpoints, and training on the CPU is deterministic: its weights are
byte-for-byte those of `ReverseEngineeredModel/` (wall times differ with the load on the cores).

The study's own protocol: `hmmrnn reproduce TrainedModels` evaluates every model with the study's
matching at N 5,000, L 100 (saved as `evaluation-study.json` beside each; `hmmrnn export
TrainedModels grid-distances --protocol study` draws them) and sets its published numbers beside
ours in `reproduction.md`. The HMM-HMM baselines agree within 0.01; the RNN distances sit at or
just below the study's ranges; the mechanistic headlines of the reference model partly differ
(the table says which)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if shipped")
    parser.add_argument("--only", action="append", help="recipe name (repeatable)")
    parser.add_argument(
        "--grid", action="store_true",
        help="train and evaluate the study grid (grid.json) with `hmmrnn sweep`; the recipes' "
        "models are only listed",
    )  # fmt: skip
    parser.add_argument("--root", type=Path, default=HERE)
    args = parser.parse_args(argv)
    if args.grid:
        build_grid(args.root)
    rows = []
    for recipe in RECIPES:
        if args.grid or (args.only and recipe.name not in args.only):
            entry = shipped_entry(recipe, args.root)  # listed as shipped, not retrained
            rows += [entry] if entry is not None else []
            continue
        rows.append(build_recipe(recipe, args.root, args.force))
    write_readme(args.root, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
