"""The wire format between the judge and a student process: plain data only.

Both sides of a pipe speak in *frames*: an 8-byte big-endian length, then a payload written by
``torch.save``. The judge reads a payload with ``torch.load(weights_only=True)``, which rebuilds
tensors, numbers, strings, None, bools and the containers below, and refuses anything else, so a
student process cannot make the judge run code by sending a crafted object.

Values that ``torch.load(weights_only=True)`` cannot rebuild, or that it would confuse, are packed
first into tagged tuples, which makes the encoding unambiguous::

    tuple  -> ("t", [items])        list    -> ("l", [items])
    dict   -> ("d", [(key, value)]) ndarray -> ("a", tensor)
    complex -> ("c", real, imag)    None, bool, int, float, str, Tensor -> themselves

This file is imported by the judge (``rlhf_lab.grading.wire``) and loaded by file path inside the
student process, which must not import ``rlhf_lab``; so it imports only the standard library,
numpy and torch.
"""
from __future__ import annotations

import io
import os
import select
import struct
import time

import numpy as np
import torch

__all__ = ["WireError", "MAX_FRAME", "pack", "unpack", "encode", "decode", "write_frame",
           "read_frame"]

MAX_FRAME = 256 * 2**20          # the largest frame a reader accepts (256 MiB)
_HEADER = struct.Struct(">Q")


class WireError(Exception):
    """A frame could not be read: the other side closed the pipe, sent too much, sent
    something that is not plain data, or did not answer in time (``timed_out``)."""

    def __init__(self, message: str, timed_out: bool = False, closed: bool = False):
        super().__init__(message)
        self.timed_out = timed_out
        self.closed = closed


def pack(value, depth: int = 0):
    """``value`` (plain data) in the tagged form described in the module docstring."""
    if depth > 16:
        raise ValueError("the value is nested too deeply to be sent")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().as_subclass(torch.Tensor).clone()
    if isinstance(value, np.ndarray):
        return ("a", torch.from_numpy(np.ascontiguousarray(value).copy()))
    if isinstance(value, complex):
        return ("c", value.real, value.imag)
    if isinstance(value, tuple):
        return ("t", [pack(v, depth + 1) for v in value])
    if isinstance(value, list):
        return ("l", [pack(v, depth + 1) for v in value])
    if isinstance(value, dict):
        return ("d", [(pack(k, depth + 1), pack(v, depth + 1)) for k, v in value.items()])
    if isinstance(value, torch.dtype):
        return value
    raise ValueError(f"a {type(value).__name__} cannot be sent to or from a student process")


def unpack(value):
    """The inverse of :func:`pack`."""
    if isinstance(value, tuple):
        tag = value[0] if value else None
        if tag == "t":
            return tuple(unpack(v) for v in value[1])
        if tag == "l":
            return [unpack(v) for v in value[1]]
        if tag == "d":
            return {unpack(k): unpack(v) for k, v in value[1]}
        if tag == "a":
            return value[1].numpy()
        if tag == "c":
            return complex(value[1], value[2])
        raise ValueError(f"unknown tag {tag!r} in a frame")
    return value


def encode(message) -> bytes:
    """The bytes of one frame's payload."""
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def decode(payload: bytes):
    """One frame's payload, read as plain data only (``weights_only=True``)."""
    return torch.load(io.BytesIO(payload), weights_only=True)


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
