"""The absorbed update's one-pass CPU kernel (``absorbed_kernel.c``), built on first use.

Eager torch takes five passes over each block of the cost matrix for one absorbed update (two
adds, ``exp2``, a row sum, a column sum), and each pass re-reads the block from a cache level
that this project's CPUs feed at 9-10 GB/s per core. The kernel reads each cost entry once and
keeps its exponential in a register: measured on a 2-core Xeon (AVX-512) at B 4096, 0.8 against
1.5 ns per entry, and the loss 2x faster (benchmarks/README.md). It is plain C with no torch
headers, so the system compiler builds it in about 1.5 s; the library is cached per source,
compiler and CPU under ``$XDG_CACHE_HOME/hmmrnn/kernels`` (``~/.cache/hmmrnn/kernels``; a
new build removes those no process has loaded for 30 days), and loaded with ctypes, whose calls
release the GIL, so the block workers run it in parallel.

An update without barycentre (18 of a loss's 20) runs whole in C: each block worker makes one
call (:func:`update`) and takes slab after slab from a shared atomic counter, so no Python, and no
GIL, stands between slabs (2 threads, B 4096: 0.45-0.95 ms less per update, a quarter of a
triangle update).

The barycentres the gradient needs (``z @ points`` over a slab's entries, two dense GEMMs of
B x B x D per loss) are taken at the last temperature, where 95-100% of the entries flush to
zero: :func:`slab` (given ``bary``) sums each row's points over its live entries alone while the
row is in L1 (their indices compacted without branches, the point rows' vectors held in
registers), and leaves rows with more than :data:`SPARSE_SHARE` of their entries live to the
dense GEMM. At B 4096, L 30 on one core those two updates took 65 and 60 ms, now 14 and 10 ms.

The same library holds the evaluation's matchings' passes (float64 log-sum-exps, live-pattern
sweeps, shortest augmenting paths), called through :mod:`hmmrnn.match_passes`.

Where there is no C compiler, the build fails or ``HMMRNN_NATIVE=0`` is set, :func:`kernel`
returns None and the loss keeps the eager passes, which give the same numbers to float32
rounding (``tests/test_sinkhorn_kernel.py``), and the matchings numpy's and scipy's.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hmmrnn.io import atomic_write_bytes, user_cache_dir

SOURCE = Path(__file__).with_name("absorbed_kernel.c")
# -fopenmp-simd vectorises the reductions the source marks, without fast-math (whose
# reassociation would undo the rounding trick of the kernel's exp2); no OpenMP runtime is linked.
# -fno-trapping-math lets GCC turn the exponentials' range selects into blends under AVX2 (no
# trap is ever enabled; no value changes).
_FLAGS = ["-O3", "-std=gnu99", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno",
          "-fno-trapping-math"]  # fmt: skip
# Tried in order: the first that builds is kept (-march=native is missing on some compilers).
_TARGETS = (["-march=native", "-mprefer-vector-width=512"], ["-march=native"], [])
_BUILD_TIMEOUT_S = 60.0


def enabled() -> bool:
    """Whether the kernel may be used: ``HMMRNN_NATIVE=0`` (or ``false``, ``no``) turns it off."""
    return os.environ.get("HMMRNN_NATIVE", "1").strip().lower() not in {"0", "false", "no", "off"}


def cache_dir() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/hmmrnn/kernels`` (``~/.cache/...``)."""
    return user_cache_dir("kernels")


def _compiler() -> str | None:
    """The C compiler: ``$CC`` if set, else the first of cc, gcc, clang on the PATH."""
    named = os.environ.get("CC")
    candidates = [named] if named else ["cc", "gcc", "clang"]
    return next((found for c in candidates if (found := shutil.which(c))), None)


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's feature flags where Linux lists them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def _library_path(compiler: str) -> Path:
    """The cached library's name: a digest of the source, flags, compiler and CPU."""
    try:
        version = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), repr((_FLAGS, _TARGETS)).encode(), compiler.encode(),
                 version.encode(), _cpu_signature().encode()):  # fmt: skip
        digest.update(part)
    return cache_dir() / f"absorbed-{digest.hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> bool:
    """Compile in a scratch folder and write the library to ``target`` atomically, with the
    usual permissions (:func:`hmmrnn.io.atomic_write_bytes`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hmmrnn-kernel-") as scratch:
        built = Path(scratch) / target.name
        for arch in _TARGETS:
            try:
                done = subprocess.run(
                    [compiler, *_FLAGS, *arch, str(SOURCE), "-o", str(built)],
                    capture_output=True,
                    timeout=_BUILD_TIMEOUT_S,
                )
            except (OSError, subprocess.SubprocessError):
                continue
            if done.returncode == 0 and built.exists():
                atomic_write_bytes(target, built.read_bytes())
                return True
    return False


# A cached build that no process has loaded for this long is removed when a new one is built.
STALE_DAYS = 30


def _touch(library: Path) -> None:
    """Mark a cached build as in use (its mtime), so that :func:`_prune` keeps it; a read-only
    cache is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(library)


def _prune(keep: Path) -> None:
    """Remove the cached builds, other than ``keep``, unused for :data:`STALE_DAYS`.

    Each source version, compiler and CPU leaves one library (~30 KB). One still loaded
    somewhere, by another machine sharing this home or an older checkout, is touched on every
    load and stays.
    """
    limit = time.time() - STALE_DAYS * 86400
    for old in keep.parent.glob("absorbed-*.so"):
        with contextlib.suppress(OSError):
            if old != keep and old.stat().st_mtime < limit:
                old.unlink()


@dataclass(frozen=True)
class Kernel:
    """The kernel's entry points: for the loss, each over a float32 cost and over a bfloat16 one,
    one slab, one slab with its barycentre summed over the live entries, and all slabs of an
    update; for the evaluation's matchings (:mod:`hmmrnn.match_passes`), its float64 passes."""

    float32: Callable[..., None]
    bfloat16: Callable[..., None]
    bary_float32: Callable[..., int]
    bary_bfloat16: Callable[..., int]
    update_float32: Callable[..., None]
    update_bfloat16: Callable[..., None]
    match_lse_rows: Callable[..., None]
    match_lse_cols: Callable[..., None]
    match_gibbs: Callable[..., None]
    match_argmax: Callable[..., None]
    match_pattern: Callable[..., int]
    match_sparse_sweep: Callable[..., None]
    match_dense_sweep: Callable[..., None]
    match_row_min: Callable[..., None]
    match_col_min: Callable[..., None]
    match_pairs: Callable[..., int]
    assign_repair: Callable[..., int]


@functools.lru_cache(maxsize=1)
def _load() -> Kernel | None:
    """The kernel, building it if no cached build matches; None if unavailable."""
    if sys.platform == "win32" or not SOURCE.exists():
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    target = _library_path(compiler)
    try:
        if target.exists():
            _touch(target)
        elif _build(compiler, target):
            _prune(target)
        else:
            return None
        library = ctypes.CDLL(str(target))
        entries = library.hmmrnn_absorbed_slab, library.hmmrnn_absorbed_slab_bf16
        barys = library.hmmrnn_absorbed_bary, library.hmmrnn_absorbed_bary_bf16
        updates = library.hmmrnn_absorbed_update, library.hmmrnn_absorbed_update_bf16
        matches = (library.hmmrnn_match_lse_rows, library.hmmrnn_match_lse_cols,
                   library.hmmrnn_match_gibbs, library.hmmrnn_match_argmax)  # fmt: skip
        sparse = (library.hmmrnn_match_pattern, library.hmmrnn_match_sparse_sweep,
                  library.hmmrnn_match_dense_sweep)  # fmt: skip
        exact = (library.hmmrnn_match_row_min, library.hmmrnn_match_col_min,
                 library.hmmrnn_match_pairs, library.hmmrnn_assign_repair)  # fmt: skip
    except (OSError, AttributeError):
        return None
    ptr, size = ctypes.c_void_p, ctypes.c_int64
    common = [ptr, size, size, size, ptr, ptr, ctypes.c_float, ptr, size, ptr, ptr]
    for entry in entries:
        entry.argtypes, entry.restype = common, None
    for entry in barys:
        entry.argtypes, entry.restype = [*common, ptr, size, size, ptr, size, ptr], size
    for entry in updates:
        entry.argtypes = [ptr, size, size, size, size, ctypes.c_int32, ptr, ptr, ctypes.c_float,
                          ptr, ptr, ptr]  # fmt: skip
        entry.restype = None
    double = ctypes.c_double
    head = [ptr, size, size, size]  # cost, its row stride, rows, columns
    tail = [size, ptr]  # slab rows, shared counter
    for entry, middle in zip(matches, (
        [ptr, double, ptr, ptr],  # lse rows: shift, scale, top, sum
        [ptr, double, ptr, ptr, ptr],  # lse cols: shift, scale, tops, sums, peak
        [ptr, ptr, double, ptr, size],  # gibbs: fs, gs, scale, out, out's row stride
        [ptr, ptr],  # argmax: g, best
    ), strict=True):  # fmt: skip
        entry.argtypes, entry.restype = [*head, *middle, *tail], None
    pattern, sweep, dense = sparse
    dense.argtypes, dense.restype = [*head, ptr, ptr, ptr, ptr, *tail], None
    pattern.argtypes, pattern.restype = [*head, *[ptr] * 4, size, *[ptr] * 6], size
    sweep.argtypes, sweep.restype = [ptr, ptr, ptr, size, size, ptr, ptr, ptr, ptr, *tail], None
    row_min, col_min, pairs, repair = exact
    repair.argtypes, repair.restype = [size, *[ptr] * 7, ptr, size, *[ptr] * 6], size
    for entry in (row_min, col_min):
        entry.argtypes, entry.restype = [*head, ptr, ptr, *tail], None
    pairs.argtypes = [*head, ptr, ptr, double, ctypes.c_int32, double, size, ptr, ptr]
    pairs.restype = size
    return Kernel(*entries, *barys, *updates, *matches, *sparse, *exact)


def kernel() -> Kernel | None:
    """The one-pass slab kernel, or None where the eager passes must be used."""
    return _load() if enabled() else None


def usable(cost: Tensor) -> bool:
    """Whether the kernel can run on this cost matrix: float32 or bfloat16, on the CPU, its rows
    contiguous."""
    return (
        cost.dtype in (torch.float32, torch.bfloat16)
        and cost.device.type == "cpu"
        and cost.stride(1) == 1
    )


def slab(
    native: Kernel,
    part: Tensor,
    fs: Tensor,
    gs: Tensor,
    scale: float,
    rows: Tensor,
    cols: Tensor | None,
    z: Tensor | None,
    bary: tuple[Tensor, Tensor, Tensor] | None = None,
) -> int | None:
    """``e = 2 ** (fs_i + gs_j - scale * part_ij)`` over one slab: ``rows`` gets its row sums,
    ``cols`` (if given) its column sums, ``z`` (if given, contiguous) the entries.

    ``bary = (points, out, dense_rows)`` also asks for the barycentre rows ``out = z @ points``
    (not yet divided by the row sums) of the rows with at most :data:`SPARSE_SHARE` of their
    entries live (non-zero), summed over those entries alone. Returns then ``k``, the number of
    other rows: their indices are ``dense_rows[:k]`` and their entries ``z[:k]``, for the
    caller's dense GEMM. ``points`` is :func:`padded_points`, one row per column of ``part``;
    ``out`` contiguous; ``dense_rows`` int64 with a slot per row; ``z`` is required.

    ``fs``, ``gs``, ``rows``, ``cols`` and ``z`` are float32 and contiguous, ``part`` passes
    :func:`usable`; the caller keeps them all alive during the call.
    """
    n, m = part.shape
    packed = part.dtype == torch.bfloat16
    args = (part.data_ptr(), part.stride(0), n, m, fs.data_ptr(), gs.data_ptr(), scale,
            None if z is None else z.data_ptr(), m, rows.data_ptr(),
            None if cols is None else cols.data_ptr())  # fmt: skip
    if bary is None:
        (native.bfloat16 if packed else native.float32)(*args)
        return None
    points, out, dense_rows = bary
    entry = native.bary_bfloat16 if packed else native.bary_float32
    return entry(*args, points.data_ptr(), out.shape[1], points.shape[1], out.data_ptr(),
                 int(m * SPARSE_SHARE), dense_rows.data_ptr())  # fmt: skip


# A barycentre row is summed over its live entries when at most this share of them are live:
# each live entry then costs 1-2x what it does in a dense GEMM (an axpy of one point against the
# GEMM's blocked FMAs), so the sparse sum wins below this share by 2x or more.
SPARSE_SHARE = 1 / 4


def padded_points(points: Tensor) -> Tensor:
    """The (CPU, float32) points as :func:`slab` reads them: rows zero-padded to whole
    vectors of 16, so that the kernel adds each one with whole-vector operations. Padded by
    numpy, on this thread alone (a torch copy this size opens a parallel region, whose spinning
    helpers would slow the block workers)."""
    dim = points.shape[1]
    flat = points.detach().to(torch.float32).numpy()
    return torch.from_numpy(np.pad(flat, ((0, 0), (0, -dim % 16))))


@dataclass(frozen=True)
class Sweep:
    """One update's slabs: the cost (n x m) in slabs of ``step`` rows (for a ``triangle``, a
    symmetric cost read from each slab's diagonal on), the potentials in base-2 units (``fs``
    over rows, ``gs`` over columns, float32, contiguous) and ``scale``, and where the sums go:
    ``rows`` (n) and, if given, ``cols`` (one row of column partials per slab)."""

    cost: Tensor
    step: int
    triangle: bool
    fs: Tensor
    gs: Tensor
    scale: float
    rows: Tensor
    cols: Tensor | None


def update(native: Kernel, sweep: Sweep, counter: ctypes.c_int64) -> None:
    """This thread's share of a whole update without barycentre, slab after slab in C: every
    block worker calls it with the same ``counter`` (0 at first) and takes the next slab until
    none is left, with no Python (and no GIL) between slabs.

    Each slab writes its rows' sums and, if ``sweep.cols`` is given, its row of column sums; for
    a triangle those right of the slab's diagonal block, zeros elsewhere. ``sweep.cost`` passes
    :func:`usable`; the caller keeps every tensor alive during the call.
    """
    cost, cols = sweep.cost, sweep.cols
    n, m = cost.shape
    entry = native.update_bfloat16 if cost.dtype == torch.bfloat16 else native.update_float32
    entry(cost.data_ptr(), cost.stride(0), n, m, sweep.step, int(sweep.triangle),
          sweep.fs.data_ptr(), sweep.gs.data_ptr(), sweep.scale, sweep.rows.data_ptr(),
          None if cols is None else cols.data_ptr(), ctypes.addressof(counter))  # fmt: skip
