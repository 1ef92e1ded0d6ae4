"""Refusing work that cannot fit before allocating it, with the estimate in the message.

A typo such as `hidden_size 1000000000` or `num_seq 1e12` would otherwise allocate until the
machine swaps or the kernel kills the process; estimating first costs nothing and says why.
"""

from __future__ import annotations

import os

from hmmrnn.errors import UserError

FLOAT = 4  # bytes per float32
HEADROOM = 0.8  # use at most this share of the memory the system says is available


def available_memory() -> int | None:
    """Bytes the system can give this process now (MemAvailable), None where it does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PB"


def require(needed: float, what: str, limit: int | None = None) -> None:
    """UserError when `needed` bytes exceed what is available (with headroom)."""
    limit = available_memory() if limit is None else limit
    if limit is not None and needed > HEADROOM * limit:
        raise UserError(
            f"{what} needs about {human(needed)} of memory, but {human(limit)} is available; "
            "use smaller sizes"
        )


def training_bytes(config) -> float:
    """Peak memory of a training run, roughly: the one-hot data, the weights with their gradients
    and Adam moments, one batch's activations through time, and the loss's cost blocks."""
    k, length, hidden, inputs = (
        config.outputs,
        config.seq_len,
        config.hidden_size,
        config.input_size,
    )
    data = config.num_seq * length * k * FLOAT
    weights = (hidden * inputs + hidden * hidden + k * hidden) * FLOAT * 4
    batch = min(config.batch_size, config.num_seq)
    activations = batch * length * (hidden * 3 + inputs + k * 4) * FLOAT
    cost = batch * min(batch, 4096) * FLOAT * 4
    return float(data + weights + activations + cost)


def generation_bytes(model, n: int, length: int) -> float:
    """Memory of generating n sequences of `length` steps (noise, states, logits, outputs)."""
    per_step = model.input_size + model.hidden_size + 3 * model.output_size
    return float(n) * float(length) * per_step * FLOAT
