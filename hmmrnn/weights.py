"""A weights file's tensors as numpy arrays, without torch, and the check of a state dict.

Listing a tree (`hmmrnn ls`, the TUI's model tree) checks every model's weights: keys, shapes and
finite values. With torch that costs its import (about 2.5 s) and a full unpickle per file: 2,000
folders took 6-10 s. A torch zip archive is a small pickle naming each tensor's storage plus one raw
file per storage, so numpy reads it directly. The unpickler accepts only the globals a file of plain
tensors uses, a subset of what `torch.load(weights_only=True)` accepts; anything else raises
NotPlain and the caller loads the file with torch, whose refusal or error is then the answer.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STATE_KEYS = ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight")
RNN_BIAS_KEYS = ("rnn.bias_ih_l0", "rnn.bias_hh_l0")
FC_BIAS_KEY = "fc.bias"

_STORAGES = {  # torch's typed storage names in a file -> numpy element type (byte order added)
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "b1",
}  # fmt: skip


class NotPlain(Exception):
    """The file is not a zip archive of plain tensors this reader knows; load it with torch."""


@dataclass(frozen=True)
class StateShape:
    """What a state dict holds: sizes and which biases."""

    inputs: int
    hidden: int
    outputs: int
    rnn_bias: bool
    fc_bias: bool


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Storage:
    dtype: str


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    if not isinstance(storage, np.ndarray):
        raise NotPlain("a tensor without a storage")
    size, stride = tuple(size), tuple(stride)
    numel = int(np.prod(size)) if size else 1
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=False))
    # only views inside the storage, each element at most once (anything else: torch decides)
    if (
        len(size) != len(stride)
        or min((offset, *size, *stride), default=0) < 0
        or numel > len(storage) - offset
        or (numel and last >= len(storage))
    ):
        raise NotPlain("a tensor outside its storage")
    if stride == _contiguous(size):  # what torch.save writes for a plain parameter
        return storage[offset : offset + numel].reshape(size)
    strides = tuple(s * storage.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=strides, writeable=False
    )


def _contiguous(size: tuple) -> tuple:
    """Row-major strides, in elements, of a tensor of this size."""
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _rebuild_parameter(data, *_ignored):
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _Storage(code) for name, code in _STORAGES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, read: Callable[[str], bytes], prefix: str, order: str) -> None:
        super().__init__(io.BytesIO(data))
        self.read, self.prefix, self.order = read, prefix, order
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise NotPlain(f"the file names {module}.{name}") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise NotPlain("an unknown persistent id")
        kind, key = pid[1], str(pid[2])
        if not isinstance(kind, _Storage):
            raise NotPlain("an unknown storage type")
        if key not in self.storages:
            raw = self.read(f"{self.prefix}/data/{key}")
            dtype = np.dtype(kind.dtype).newbyteorder(self.order)
            self.storages[key] = np.frombuffer(raw, dtype=dtype)
        return self.storages[key]


def read_plain(path: Path) -> Any:
    """The object a torch zip file of plain tensors holds, its tensors as read-only numpy arrays
    (NotPlain for anything else, e.g. the legacy format or a file that needs code to load)."""
    try:
        small = Path(path).stat().st_size <= _READ_WHOLE
        data = Path(path).read_bytes() if small else None
    except OSError as exc:
        raise NotPlain(str(exc)) from exc
    entries = None if data is None else _stored_entries(data)
    if entries is not None:
        return _unpickle(list(entries), lambda name: _checked(entries, name))
    try:
        archive = zipfile.ZipFile(path if data is None else io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise NotPlain(f"{type(exc).__name__}: {exc}") from exc  # e.g. an undecodable name
    with archive:
        return _unpickle(archive.namelist(), archive.read)


def _unpickle(names: list[str], read: Callable[[str], bytes]) -> Any:
    pickles = [n for n in names if n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise NotPlain("no single data.pkl")
    prefix = pickles[0][: -len("/data.pkl")]
    try:
        order = ">" if bytes(read(f"{prefix}/byteorder")).strip() == b"big" else "<"
    except KeyError:
        order = "<"
    except NotPlain:
        raise
    except Exception as exc:  # a damaged entry: torch says what is wrong with it
        raise NotPlain(f"{type(exc).__name__}: {exc}") from exc
    try:
        return _Unpickler(read(pickles[0]), read, prefix, order).load()
    except NotPlain:
        raise
    except Exception as exc:  # a damaged pickle: torch says what is wrong with it
        raise NotPlain(f"{type(exc).__name__}: {exc}") from exc


# The zip records a torch file is made of (APPNOTE.TXT 4.3.7, 4.3.12, 4.3.16).
_END = struct.Struct("<4s4H2LH")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_ZIP64 = 0xFFFFFFFF
_READ_WHOLE = 64 << 20  # larger files are read member by member by zipfile


def _stored_entries(data: bytes) -> dict[str, tuple[memoryview, int]] | None:
    """Each member's bytes (a view into `data`) and CRC, for an archive of stored members, as
    torch writes them; None for anything else (compressed, encrypted, zip64, a comment that hides
    the end record), which zipfile then reads. Python's zipfile costs ~0.2 ms a file in its
    own bookkeeping, most of a small model's check when a sweep of 2,000 is listed."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - _END.size - 0xFFFF))
    if at < 0 or at + _END.size > len(data):
        return None
    _, _, _, _, count, size, offset, comment = _END.unpack_from(data, at)
    if at + _END.size + comment != len(data) or offset == _ZIP64 or count == 0xFFFF:
        return None
    # torch also writes the zip64 end record, which zipfile believes: it must say the same
    cd_end = at
    if at >= _LOCATOR.size and data[at - _LOCATOR.size : at - _LOCATOR.size + 4] == b"PK\x06\x07":
        _, _, where, _ = _LOCATOR.unpack_from(data, at - _LOCATOR.size)
        if where + _END64.size > at - _LOCATOR.size:
            return None
        sig, _, _, _, _, _, _, count64, size64, offset64 = _END64.unpack_from(data, where)
        if sig != b"PK\x06\x06" or (count64, size64, offset64) != (count, size, offset):
            return None
        cd_end = where
    if offset + size != cd_end:  # data before the archive, or a damaged directory: zipfile's
        return None
    view, entries, pos = memoryview(data), {}, offset
    for _ in range(count):
        if pos + _CENTRAL.size > at:
            return None
        sig, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _, local = (
            _CENTRAL.unpack_from(data, pos)
        )
        if sig != b"PK\x01\x02" or method != 0 or flags & 1 or csize != usize or local == _ZIP64:
            return None
        name = bytes(view[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen])
        pos += _CENTRAL.size + nlen + xlen + clen
        if local + _LOCAL.size > len(data):
            return None
        lsig, *_, lnlen, lxlen = _LOCAL.unpack_from(data, local)
        start = local + _LOCAL.size + lnlen + lxlen
        if lsig != b"PK\x03\x04" or start + csize > offset:
            return None
        try:
            text = name.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError:
            return None
        if text in entries:  # which one counts is the reader's choice: torch decides
            return None
        entries[text] = (view[start : start + csize], crc)
    return entries


def _checked(entries: dict[str, tuple[memoryview, int]], name: str) -> memoryview:
    """A member's bytes after their CRC (KeyError when absent, as zipfile's read)."""
    raw, crc = entries[name]
    if zlib.crc32(raw) != crc:
        raise NotPlain(f"{name}: bad CRC-32 (a damaged file)")
    return raw


# --- checking ------------------------------------------------------------------------------------


def _is_array(value) -> bool:
    torch = sys.modules.get("torch")
    return isinstance(value, np.ndarray) or (torch is not None and isinstance(value, torch.Tensor))


def _finite(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind not in "fc" or bool(np.isfinite(value).all())
    import torch

    return bool(torch.isfinite(value).all())


def check_state(state: dict) -> StateShape:
    """The sizes a state dict describes (torch tensors or numpy arrays), after checking its keys,
    shapes and values (ValueError naming the problem). No module is built, so listing a tree of
    models stays fast."""
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"state dict lacks {', '.join(missing)}")
    w_ih, w_hh, w_out = (state[k] for k in STATE_KEYS)
    for key, w in zip(STATE_KEYS, (w_ih, w_hh, w_out), strict=True):
        if not _is_array(w) or w.ndim != 2:
            raise ValueError(f"{key} must be a 2-D tensor")
        if not _finite(w):
            raise ValueError(f"{key} contains NaN or inf")
    hidden = w_hh.shape[0]
    if tuple(w_hh.shape) != (hidden, hidden) or w_ih.shape[0] != hidden or w_out.shape[1] != hidden:
        raise ValueError(
            "inconsistent shapes: "
            f"weight_ih {tuple(w_ih.shape)}, weight_hh {tuple(w_hh.shape)}, fc {tuple(w_out.shape)}"
        )
    if hidden < 1 or w_ih.shape[1] < 1 or w_out.shape[0] < 2:
        raise ValueError(
            f"sizes too small: input {w_ih.shape[1]}, hidden {hidden}, outputs {w_out.shape[0]}"
        )
    extra = sorted(set(state) - set(STATE_KEYS) - set(RNN_BIAS_KEYS) - {FC_BIAS_KEY})
    if extra:
        raise ValueError(f"unexpected keys in state dict: {', '.join(extra)}")
    for key, size in [*((k, hidden) for k in RNN_BIAS_KEYS), (FC_BIAS_KEY, w_out.shape[0])]:
        if key in state:
            b = state[key]
            if not _is_array(b) or tuple(b.shape) != (size,):
                raise ValueError(f"{key} must be a vector of {size}")
            if not _finite(b):
                raise ValueError(f"{key} contains NaN or inf")
    return StateShape(
        int(w_ih.shape[1]), int(hidden), int(w_out.shape[0]),
        any(k in state for k in RNN_BIAS_KEYS), FC_BIAS_KEY in state,
    )  # fmt: skip
