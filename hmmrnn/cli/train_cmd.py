"""`hmmrnn train` and `hmmrnn resume`: every config field is a flag named after its JSON key."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmmrnn import api
from hmmrnn.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    console,
    sigint_cancels,
)

if TYPE_CHECKING:
    from hmmrnn.config import ExperimentConfig

_SKIP = {"extra", "seed", "preset"}


def config_flag_names() -> list[str]:
    """Config keys that have a command-line flag (`--hidden-size` for hidden_size)."""
    return [name for name in api.config_keys() if name not in _SKIP]


def add_config_flags(parser: argparse.ArgumentParser, as_list: bool = False) -> None:
    """One flag per config key; values are parsed by `parse_flag_value` so errors name the key."""
    group = parser.add_argument_group("config fields (override the preset or --config)")
    for name in config_flag_names():
        help_text, choices, default = api.config_key_help(name)
        shown = "none" if default is None else json.dumps(default)
        extra = f"; one of {', '.join(map(str, choices))}" if choices else ""
        text = f"{help_text} (default {shown}{extra}{'; a list: a,b' if as_list else ''})"
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"cfg_{name}",
            metavar="VALUE",
            default=None,
            help=text.replace("%", "%%"),
        )


def parse_flag_value(name: str, text: str) -> Any:
    """A config flag's text as a value (shared with the TUI's form: hmmrnn.config.parse_value)."""
    return api.parse_config_value(name, text)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    overrides = {
        name: parse_flag_value(name, value)
        for name in config_flag_names()
        if (value := getattr(args, f"cfg_{name}", None)) is not None
    }
    if args.seed is not None:
        overrides["seed"] = args.seed
    return api.config_for(args.preset, args.config, overrides)


def default_out(config: ExperimentConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = config.preset or f"{config.states}states"
    return (
        Path("runs") / f"{name}_h{config.hidden_size}_i{config.input_size}_s{config.seed}_{stamp}"
    )


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model on a preset or a config file")
    p.add_argument("--preset", help="Two, Three, Four, Five, Fully or Cyclic (default Three)")
    p.add_argument("--config", type=Path, help="a config.json to start from")
    p.add_argument("--out", type=Path, help="run folder (default runs/<preset>_...)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_config_flags(p)
    p.set_defaults(func=run_train)

    r = sub.add_parser("resume", help="continue a cancelled or interrupted run")
    r.add_argument("folder", type=Path)
    r.add_argument("--device", default="auto")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=run_resume)


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.unknown_keys:
        console.print(
            f"[yellow]note:[/] unknown config keys kept as-is: {', '.join(config.unknown_keys)}"
        )
    out = args.out or default_out(config)
    console.print(f"training [bold]{config.preset or 'custom'}[/] into {out}")
    return _drive(lambda **kw: api.train(config, out, overwrite=args.overwrite, **kw), config, args)


def run_resume(args: argparse.Namespace) -> int:
    config = api.load_config(args.folder / "config.json")
    console.print(f"resuming {args.folder}")
    return _drive(lambda **kw: api.resume(args.folder, **kw), config, args)


def _drive(job, config: ExperimentConfig, args: argparse.Namespace) -> int:
    from hmmrnn.cancel import CancelToken
    from hmmrnn.cli.progress import TrainingDisplay

    token = CancelToken()
    total = config.epochs * len(config.learning_rates)
    with sigint_cancels(token), TrainingDisplay(total, quiet=args.quiet) as display:
        result = job(
            device=args.device, cancel=token, on_epoch=display.epoch, on_batch=display.batch
        )
    console.print(
        f"{result.status}: {result.epochs_done} epochs, best validation loss "
        f"{result.best_val:.4f} (floor {result.floor:.4f}), lr {result.best_lr}"
    )
    if result.model_file:
        console.print(f"best model: {result.model_file}")
    if result.status == "cancelled":
        console.print(f"resume with: hmmrnn resume {result.folder}")
        return EXIT_CANCELLED
    if result.status == "diverged":
        console.print(f"[red]{result.message}[/]")
        return EXIT_FAILED
    return EXIT_OK
