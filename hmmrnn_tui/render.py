"""Rich renderables for library data (model details, evaluations, analysis summaries).

Formatting only: every number shown here was computed by an hmmrnn function; this module decides
how it looks in a terminal cell grid. No textual import, so it is testable without an app.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"ok": "green", "broken": "bold red", "training": "yellow", "interrupted": "yellow"}
STATUS_MARK = {"ok": "✓", "broken": "✗", "training": "⟳", "interrupted": "◌"}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def matrix_table(title: str, rows: Sequence[Sequence[float]], spec: str = ".3f") -> Table:
    """A small matrix as a borderless table with row/column indices."""
    rows = [list(r) for r in rows]
    n_cols = len(rows[0]) if rows else 0
    t = Table(title=title, title_justify="left", box=None, pad_edge=False, show_header=True)
    t.add_column("", style="dim", justify="right", no_wrap=True)
    for j in range(n_cols):
        t.add_column(str(j), justify="right", no_wrap=True)
    for i, row in enumerate(rows):
        t.add_row(str(i), *(format(float(v), spec) for v in row))
    return t


def side_by_side(*items: RenderableType, gap: int = 3) -> Columns:
    """Items in a row when the width allows, wrapped below each other when it does not."""
    return Columns(items, padding=(0, gap))


def status_text(status: str, reason: str = "") -> Text:
    text = Text(f"{STATUS_MARK.get(status, '?')} {status}", style=STATUS_STYLE.get(status, ""))
    if reason:
        text.append(f"  {reason}", style="red" if status == "broken" else "dim")
    return text


def model_details(info: dict) -> RenderableType:
    """Config, HMM matrices, training summary and files of one model (from hmmrnn.api.describe)."""
    parts: list[RenderableType] = []
    head = Text(str(info.get("model", "")), style="bold")
    head.append("  ")
    head.append_text(status_text(info.get("status", "ok"), info.get("reason", "")))
    parts.append(head)
    sizes = ("input", "hidden", "outputs", "states")
    if any(info.get(k) is not None for k in sizes):
        parts.append(
            Text(
                f"input {fmt(info.get('input'))} · hidden {fmt(info.get('hidden'))} · "
                f"outputs {fmt(info.get('outputs'))} · HMM {fmt(info.get('states'))} states · "
                f"seed {fmt(info.get('seed'))}"
            )
        )
    parts.append(training_summary(info))
    for w in info.get("warnings") or []:
        parts.append(Text(f"warning: {w}", style="yellow"))
    if info.get("transition") and info.get("emission"):
        parts.append(Text(""))
        parts.append(
            side_by_side(
                matrix_table("HMM transition", info["transition"]),
                matrix_table("emission", info["emission"]),
            )
        )
    config = info.get("config_file") or info.get("config")
    if config:
        parts.append(Text(""))
        parts.append(config_table(config))
    files = info.get("files") or []
    if files:
        parts.append(Text(""))
        parts.append(Text("files", style="bold"))
        shown = files[:12]
        parts.extend(Text(f"  {f}", style="dim") for f in shown)
        if len(files) > len(shown):
            parts.append(Text(f"  … {len(files) - len(shown)} more", style="dim"))
    return Group(*parts)


def training_summary(info: dict) -> Text:
    run = info.get("run") or {}
    best = info.get("best_val")
    if best is None:
        best = run.get("best_val")
    epochs = info.get("epochs") or run.get("epochs_done")
    if best is None and not epochs:
        return Text("training: no log (study model or not trained here)", style="dim")
    text = Text("training: ")
    text.append(f"best loss {fmt(best, '.4f')}", style="bold")
    text.append(f" · {fmt(epochs)} epochs")
    if run.get("total_epochs"):
        text.append(f" of {run['total_epochs']}")
    if info.get("run_time") is not None:
        text.append(f" · {format_seconds(info['run_time'])}")
    if run.get("floor") is not None:
        text.append(f" · floor {fmt(run['floor'], '.4f')}", style="dim")
    if run.get("status"):
        text.append(f" · {run['status']}", style="dim")
    return text


def config_table(config: dict) -> Text:
    """Config as flowing `key value` pairs (empty values skipped): dense, and wraps at any width.

    Keys absent from config.json take the library's defaults (`hmmrnn info --json` lists all).
    """
    text = Text("config.json  ", style="bold")
    for k, v in config.items():
        if v in (None, [], {}, ""):
            continue
        text.append(str(k), style="cyan")
        text.append(f" {_short(v)}   ")
    return text


def _short(value, limit: int = 28) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evaluation_view(run, other=None, other_name: str = "") -> RenderableType:
    """The evaluation table (the rows `hmmrnn evaluate` prints), the output transition matrices
    and the parameters the evaluation was made with; with `other` (a second model's evaluation),
    its RNN column beside this one's, to compare two models."""
    from hmmrnn import api

    result = run.result
    table = Table(title="HMM vs RNN", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("metric")
    table.add_column("HMM (baseline)", justify="right")
    table.add_column("RNN", justify="right")
    rows = api.evaluation_rows(result)
    if other is not None:
        table.add_column(f"vs {other_name}", justify="right", style="magenta")
        theirs = {r[0]: r[2] for r in api.evaluation_rows(other.result)}
        rows = [(*r, theirs.get(r[0], "–")) for r in rows]
    for row in rows:
        table.add_row(*row)
    mats = side_by_side(
        matrix_table("HMM output transitions", result.hmm_transition),
        matrix_table("RNN output transitions", result.rnn_transition),
        matrix_table("squared difference", result.transition_sq_diff, ".4f"),
        gap=2,
    )
    used = ", ".join(f"{k} {v}" for k, v in run.params.items())
    note = Text(f"parameters: {used} ({run.source})", style="dim")
    return Group(table, *verdict(result), Text(""), mats, note)


def verdict(result) -> list[Text]:
    """What the numbers mean against the shipping bars, in words."""
    from hmmrnn import api

    lines = []
    ok, reasons = result.passes_bar()
    lines.append(Text("averages: within the bar" if ok else "averages: " + "; ".join(reasons),
                      style="green" if ok else "bold red"))  # fmt: skip
    if result.hmm_switch_back == result.hmm_switch_back:  # not NaN: a v2 evaluation
        ok, reasons = result.passes_dynamics_bar()
        lines.append(Text("dynamics: within the bar" if ok else "dynamics: " + "; ".join(reasons),
                          style="green" if ok else "bold red"))  # fmt: skip
    else:
        lines.append(Text("dynamics: an older evaluation; ctrl+r re-evaluates", style="yellow"))
    if result.distance_ratio < 1:
        lines.append(Text(
            "ratio < 1: the RNN's sequences sit closer to the HMM's than a second HMM sample; "
            "within sampling noise (about ±0.01 at 5,000 sequences), or a too regular RNN "
            "(compare the volatilities)", style="dim"))  # fmt: skip
    flags = api.evaluation_flags(result) if result.share_ratio.size else []
    if flags:
        lines.append(Text("flags: " + ", ".join(flags), style="yellow"))
    return lines


def summary_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    t = Table(title=title, title_justify="left", box=None, pad_edge=False, show_header=False)
    t.add_column("quantity", style="cyan", no_wrap=True)
    t.add_column("value", overflow="fold")
    for k, v in rows:
        t.add_row(str(k), str(v))
    return t
