"""Measure the TUI's responsiveness: time to first paint, and UI stalls while work runs.

    python -m hmmrnn_tui.bench paint TREE [--repeat 5]
    python -m hmmrnn_tui.bench stalls TREE [--seconds 15]

`paint` starts the real entry point N times (headless, so it needs no terminal) and reads the
time from process start to the first screen refresh. `stalls` drives the app headless: it starts a
tiny training run (a separate process) and a fixed-point analysis (a worker thread), then reports
the longest gap of the app's 50 ms timer beyond its period: the longest the UI was unresponsive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def first_paint(tree: Path, repeat: int) -> list[float]:
    env = {**os.environ, "HMMRNN_TUI_HEADLESS": "1"}
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-m", "hmmrnn_tui.app", str(tree), "--first-paint"],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        m = re.search(r"first paint ([0-9.]+) s", out.stdout)
        if m is None:
            raise RuntimeError(f"no timing in output: {out.stdout!r} {out.stderr[-500:]!r}")
        times.append(float(m.group(1)))
    return times


async def _wait(pilot, cond, timeout: float) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if cond():
            return True
        await pilot.pause(0.05)
    return cond()


async def stalls(tree: Path, seconds: float) -> dict:
    from hmmrnn_tui.app import HmmrnnApp

    runs_dir = Path(tempfile.mkdtemp(prefix="hmmrnn-bench-"))
    app = HmmrnnApp(
        tree, runs_dir=runs_dir, device="cpu", poll_interval=0.25,
        analysis_params={"fixed-points": {"iters": 3000, "n_starts": 128}},
    )  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await _wait(pilot, lambda: app.tree_ready, 60)
        await _wait(pilot, lambda: app.current is not None, 10)
        await _wait(pilot, lambda: app.warm, 60)
        app.stalls.reset()
        await pilot.press("4")
        app.pane("training").set_form(
            hidden_size="8", input_size="4", epochs="100000", device="cpu",
            extra="--num-seq 150 --seq-len 8 --batch-size 50",
        )  # fmt: skip
        await pilot.press("ctrl+r", "3", "ctrl+r")
        started = time.perf_counter()
        keys = 0
        while time.perf_counter() - started < seconds:
            await pilot.press("v")
            keys += 1
            await pilot.pause(0.2)
        training = app.pane("training")
        epochs = len(training.records)
        await pilot.press("4", "ctrl+g", "3", "ctrl+g")
        await _wait(pilot, lambda: not training.handle.alive(), 30)
        return {
            "max_stall_ms": round(app.stalls.max_stall * 1000, 1),
            "ticks": app.stalls.ticks,
            "epochs_followed": epochs,
            "keys_pressed": keys,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hmmrnn_tui.bench")
    p.add_argument("what", choices=("paint", "stalls"))
    p.add_argument("tree", type=Path)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args(argv)
    if args.what == "paint":
        times = first_paint(args.tree, args.repeat)
        print(
            f"first paint over {len(times)} starts: median {statistics.median(times):.3f} s, "
            f"max {max(times):.3f} s"
        )
    else:
        print(asyncio.run(stalls(args.tree, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
