"""A rich progress display for training: epochs, live losses and the HMM-vs-HMM floor."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hmmrnn.cli.common import console


class TrainingDisplay:
    """Context manager whose `epoch` and `batch` methods are the trainer's callbacks."""

    def __init__(self, total_epochs: int, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]epoch {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self.task = self.progress.add_task("train", total=total_epochs, losses="")

    def __enter__(self) -> TrainingDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def epoch(self, record) -> None:
        losses = (
            f"train {record.train_loss:.3f}  val {record.val_loss:.3f}  "
            f"floor {record.floor:.3f}  best {record.best_val:.3f}  lr {record.lr:g}"
        )
        self.progress.update(self.task, advance=1, losses=losses)

    def batch(self, done: int, total: int) -> None:  # noqa: ARG002 - epochs drive the bar
        return None


def run_cancellable(name: str, job, *, quiet: bool = False):
    """Run job(progress, cancel) under a transient progress bar with Ctrl-C as cancel.

    Returns the job's result, or None when it was cancelled (the caller exits 130).
    """
    from hmmrnn.cancel import Cancelled, CancelToken
    from hmmrnn.cli.common import console_err, sigint_cancels

    token = CancelToken()
    bar = Progress(
        TextColumn(f"[bold]{name}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% {task.fields[message]}"),
        TimeElapsedColumn(),
        console=console_err,
        transient=True,
        disable=quiet,
    )
    task = bar.add_task(name, total=1.0, message="")

    def on_progress(fraction: float, message: str = "") -> None:
        bar.update(task, completed=fraction, message=message)

    try:
        with bar, sigint_cancels(token):
            return job(on_progress, token)
    except Cancelled:
        console_err.print("[yellow]cancelled[/]")
        return None
