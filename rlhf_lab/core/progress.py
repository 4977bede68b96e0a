"""Progress bars for long loops: ``tqdm.auto`` (a widget in a notebook, text in a terminal), at most
one update a second.

Why the limit: in a notebook each update of a bar is a few messages on the kernel's IOPub
channel. nbval reads that channel only after a cell has finished, and ZeroMQ queues about a
thousand messages per socket and drops the rest. When the kernel's closing "idle" message is among
the dropped ones, nbval fails the cell with "Timeout of 5 seconds exceeded waiting for output"
(here a cell with 4000 bar updates failed, one with 1500 passed; tqdm's default of up to ten
updates a second gets there in a few minutes). One update a second keeps even the longest cell of
the course far below that, and a person watching sees no difference.
"""
from __future__ import annotations

from tqdm.auto import tqdm

__all__ = ["MIN_INTERVAL_S", "progress"]

MIN_INTERVAL_S = 1.0
"""Seconds between two updates of a bar (tqdm's ``mininterval``; its default is 0.1)."""


def progress(iterable, desc: str, **options) -> tqdm:
    """``tqdm(iterable, desc=desc, mininterval=MIN_INTERVAL_S, **options)``."""
    return tqdm(iterable, desc=desc, mininterval=MIN_INTERVAL_S, **options)
