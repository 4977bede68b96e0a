"""The wire format between the judge and a student process: plain data only.

Both sides of a pipe speak in *frames*: an 8-byte big-endian length, then a pickle (protocol 5)
of plain data. The reader unpickles with :class:`_PlainUnpickler`, whose ``find_class`` refuses
every global: only None, bools, ints, floats, strings, bytes, tuples, lists and dicts can come
out, so a student process cannot make the judge run code, whatever bytes it sends.

Tensors, arrays and complex numbers are not such values, so :func:`pack` turns them (and the
containers, which makes the encoding unambiguous) into tagged tuples, and :func:`unpack` turns
them back, checking dtypes and sizes::

    tuple   -> ("t", [items])               list    -> ("l", [items])
    dict    -> ("d", [(key, value)])        complex -> ("c", real, imag)
    Tensor  -> ("T", dtype, shape, bytes)   ndarray -> ("A", dtype, shape, bytes)
    torch.dtype -> ("D", name)              None, bool, int, float, str -> themselves

This file is imported by the judge (``rlhf_lab.grading.wire``) and loaded by file path inside the
student process, which must not import ``rlhf_lab``; so it imports only the standard library,
numpy and torch.
"""
from __future__ import annotations

import io
import math
import os
import pickle
import select
import struct
import time

import numpy as np
import torch

__all__ = ["WireError", "MAX_FRAME", "MAX_NODES", "MAX_DEPTH", "pack", "unpack", "encode", "decode", "write_frame",
           "read_frame"]

MAX_FRAME = 256 * 2**20          # the largest frame a reader accepts (256 MiB)
MAX_NODES = 2**20                # the most items (containers, scalars, arrays) one value holds
MAX_DEPTH = 32                   # the deepest nesting one value may have
_HEADER = struct.Struct(">Q")
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
    torch.complex128, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.bool)}


class WireError(Exception):
    """A frame could not be read: the other side closed the pipe, sent too much, sent
    something that is not plain data, or did not answer in time (``timed_out``)."""

    def __init__(self, message: str, timed_out: bool = False, closed: bool = False):
        super().__init__(message)
        self.timed_out = timed_out
        self.closed = closed


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def pack(value, depth: int = 0):
    """``value`` (plain data) in the tagged form described in the module docstring."""
    if depth > 16:
        raise ValueError("the value is nested too deeply to be sent")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise ValueError(f"a tensor of dtype {dtype} cannot be sent")
        return ("T", dtype, tuple(value.shape), _tensor_bytes(value))
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise ValueError(f"a numpy array of dtype {value.dtype} cannot be sent")
        return ("A", value.dtype.str, tuple(value.shape), np.ascontiguousarray(value).tobytes())
    if isinstance(value, complex):
        return ("c", value.real, value.imag)
    if isinstance(value, tuple):
        return ("t", [pack(v, depth + 1) for v in value])
    if isinstance(value, list):
        return ("l", [pack(v, depth + 1) for v in value])
    if isinstance(value, dict):
        return ("d", [(pack(k, depth + 1), pack(v, depth + 1)) for k, v in value.items()])
    if isinstance(value, torch.dtype):
        return ("D", str(value).removeprefix("torch."))
    raise ValueError(f"a {type(value).__name__} cannot be sent to or from a student process")


def _shape(shape, itemsize: int, data) -> tuple:
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
            and isinstance(data, bytes) and len(shape) <= 32):
        raise ValueError("a malformed array in a frame")
    if math.prod(shape) * itemsize != len(data):
        raise ValueError("an array's size does not match its data")
    return shape


class _Budget:
    """What one :func:`unpack` may still build: a pickle's memo lets a frame of a kilobyte
    refer to the same list twice at each of 60 levels, a tree of 2**60 nodes; so every node,
    every byte of array data and of strings, the depth and the time are counted."""

    def __init__(self, nodes: int, data: int, deadline: float | None):
        self.nodes, self.data, self.deadline = nodes, data, deadline

    def spend(self, depth: int, size: int = 0) -> None:
        self.nodes -= 1
        self.data -= size
        if depth > MAX_DEPTH:
            raise ValueError(f"a value nested more than {MAX_DEPTH} levels deep")
        if self.nodes < 0 or self.data < 0:
            raise ValueError("a value larger than the grader accepts (too many items or bytes)")
        if self.deadline is not None and self.nodes % 4096 == 0 and \
                time.monotonic() > self.deadline:
            raise ValueError("a value that takes too long to read")


def unpack(value, *, max_nodes: int = MAX_NODES, max_bytes: int = MAX_FRAME,
           deadline: float | None = None):
    """The inverse of :func:`pack`; raises ValueError on anything malformed, nested deeper than
    ``MAX_DEPTH``, with more than ``max_nodes`` items or ``max_bytes`` of data, or not read by
    ``deadline`` (a ``time.monotonic()`` value)."""
    return _unpack(value, 0, _Budget(max_nodes, max_bytes, deadline))


def _unpack(value, depth: int, budget: _Budget):
    if isinstance(value, tuple):
        tag = value[0] if value else None
        budget.spend(depth)
        if tag in ("t", "l", "d") and not (len(value) == 2 and isinstance(value[1], list)):
            raise ValueError("a malformed container in a frame")
        if tag == "t":
            return tuple(_unpack(v, depth + 1, budget) for v in value[1])
        if tag == "l":
            return [_unpack(v, depth + 1, budget) for v in value[1]]
        if tag == "d":
            out = {}
            for item in value[1]:
                if not (isinstance(item, tuple) and len(item) == 2):
                    raise ValueError("a malformed dict in a frame")
                out[_unpack(item[0], depth + 1, budget)] = _unpack(item[1], depth + 1, budget)
            return out
        if tag == "T":
            _, name, shape, data = value
            dtype = _DTYPES[name]
            shape = _shape(shape, torch.empty((), dtype=dtype).element_size(), data)
            budget.spend(depth, len(data))
            if not data:
                return torch.empty(shape, dtype=dtype)
            flat = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return flat.view(dtype).reshape(shape)
        if tag == "A":
            _, name, shape, data = value
            dtype = np.dtype(name)
            if dtype.kind not in "biufc":
                raise ValueError("a numpy array of objects in a frame")
            shape = _shape(shape, dtype.itemsize, data)
            budget.spend(depth, len(data))
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if tag == "c":
            return complex(value[1], value[2])
        if tag == "D":
            return _DTYPES[value[1]]
        raise ValueError(f"unknown tag {tag!r} in a frame")
    if value is None or isinstance(value, (bool, int, float)):
        budget.spend(depth)
        return value
    if isinstance(value, str):
        budget.spend(depth, len(value))
        return value
    raise ValueError(f"a {type(value).__name__} in a frame")


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that knows no class and no function: plain containers and scalars only."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def encode(message) -> bytes:
    """The bytes of one frame's payload (``message`` already packed)."""
    return pickle.dumps(message, protocol=5)


def decode(payload: bytes):
    """One frame's payload, read as plain data only (no class, no function)."""
    return _PlainUnpickler(io.BytesIO(payload)).load()


def write_frame(fd: int, message) -> None:
    """Send ``message`` (already packed) as one frame on the file descriptor ``fd``."""
    payload = encode(message)
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise WireError("no answer in time", timed_out=True)
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WireError("the process closed the pipe", closed=True)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None):
    """Read one frame from ``fd`` and decode it; ``deadline`` is a ``time.monotonic()`` value.
    Raises :class:`WireError` on time-out, end of file, an oversized or unreadable frame."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is larger than the limit of {MAX_FRAME}")
    payload = _read_exactly(fd, size, deadline)
    try:
        return decode(payload)
    except Exception as error:              # noqa: BLE001 - anything unreadable is refused
        raise WireError(f"the answer is not plain data ({type(error).__name__})") from None
