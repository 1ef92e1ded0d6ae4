"""python -m benchmarks [--size full|quick|tiny] [--only NAME ...] [--json FILE]

Prints one row per case as it finishes: min/median/max seconds of ours and of the reference, and
the ratio reference / ours; on a machine with CUDA the GPU cases run again on the GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.suite import CASES, SIZES, Row, devices_for, machine, run


def _fmt(spread: dict | None, unit: str = "s") -> str:
    if spread is None:
        return "-"
    return f"{spread['min']:.3g}/{spread['median']:.3g}/{spread['max']:.3g}{unit}"


def print_row(row: Row) -> None:
    s = row.summary()
    ratio = "" if s["ratio"] is None else f"  ratio x{_fmt(s['ratio'], '')}"
    ref = f"  {row.reference_name}: {_fmt(s['reference_s'])}" if row.reference else ""
    print(f"[{row.device}] {row.name}: ours {_fmt(s['ours_s'])}{ref}{ratio}", flush=True)
    extras = [x for x in (row.note, f"goal {row.goal}" if row.goal else "") if x]
    if extras:
        print("      " + "; ".join(extras), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--size", choices=list(SIZES), default="quick")
    parser.add_argument("--only", action="append", choices=list(CASES), metavar="NAME",
                        help=f"a case (repeatable): {', '.join(CASES)}")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the table as JSON to this file")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="all: the CPU, then CUDA when present; cuda: the GPU rows only")  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        devices = devices_for(args.device)
    except ValueError as err:
        parser.error(str(err))
    info = machine()
    print(
        "min/median/max over alternating rounds; " + ", ".join(f"{k} {v}" for k, v in info.items())
    )
    failures: list[dict] = []

    def failed(name: str, device: str, err: BaseException) -> None:
        failures.append({"case": name, "device": device, "error": f"{type(err).__name__}: {err}"})
        print(f"[{device}] {name}: FAILED {failures[-1]['error']}", flush=True)

    rows = run(args.only or list(CASES), args.size, print_row, devices, failed)
    if args.json:
        from hmmrnn import api

        api.save_json(args.json, {"machine": info, "size": args.size,
                                  "rows": [r.summary() for r in rows],
                                  "failed": failures})  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
