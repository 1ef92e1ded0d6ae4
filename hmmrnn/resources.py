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


def device_memory(device) -> int | None:
    """Free bytes on a CUDA device, None for the CPU (whose memory is `available_memory`)."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return None
    import torch

    return int(torch.cuda.mem_get_info(device)[0])


_SIZES_HINT = (
    "use smaller sizes (batch_size bounds the loss, batch_size x seq_len x hidden_size the "
    "activations)"
)


def require(
    needed: float, what: str, limit: int | None = None, device=None, hint: str = _SIZES_HINT
) -> None:
    """UserError when `needed` bytes exceed what is available (with headroom): the free memory
    of `device` when it is a GPU, the system's otherwise. `hint` says what to shrink."""
    gpu = device_memory(device)
    where = "free on the GPU" if gpu is not None else "available now"
    if limit is None:
        limit = gpu if gpu is not None else available_memory()
    if limit is not None and needed > HEADROOM * limit:
        raise UserError(
            f"{what} needs about {human(needed)} of memory, more than {HEADROOM:.0%} of the "
            f"{human(limit)} {where}; {hint}"
        )


def training_bytes(config) -> float:
    """Peak memory of a training run: the data (sampled, then one-hot), the weights with their
    gradients and Adam moments, one batch's activations through time and their gradients (the
    input noise, the input drive, the states, their gradients: BPTT keeps every step), and the
    loss's one B x B cost matrix with its work block. Measured by benchmarks/bench_memory.py
    (B 512..16384, L 30..300): 11-62% above the real peak."""
    k, length, hidden, inputs = (
        config.outputs,
        config.seq_len,
        config.hidden_size,
        config.input_size,
    )
    data = config.num_seq * length * (k * FLOAT * 2 + 16)
    weights = (hidden * inputs + hidden * hidden + k * hidden) * FLOAT * 4
    batch = min(config.batch_size, config.num_seq)
    activations = batch * length * (hidden * 5 + inputs + k * 8) * FLOAT
    from hmmrnn.sinkhorn_blocks import GPU_BLOCK_ELEMENTS  # the largest work block, in entries

    cost = (batch * batch + min(batch * batch, GPU_BLOCK_ELEMENTS)) * FLOAT
    return float(_RUNTIME + data + weights + activations + cost)


_RUNTIME = 128 * 2**20  # what a run adds before its first batch (allocator arenas, lazy modules)


def generation_bytes(model, n: int, length: int) -> float:
    """Memory of generating n sequences of `length` steps (noise, states, logits, outputs)."""
    per_step = model.input_size + model.hidden_size + 3 * model.output_size
    return float(n) * float(length) * per_step * FLOAT
