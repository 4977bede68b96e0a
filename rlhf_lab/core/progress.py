"""Progress bars for long loops: ``tqdm.auto`` (a widget in a notebook, text in a terminal), at most
one update a second; in a worker process, steps reported to the parent's one bar instead.

Why the limit: in a notebook each update of a bar is a few messages on the kernel's IOPub
channel. nbval reads that channel only after a cell has finished, and ZeroMQ queues about a
thousand messages per socket and drops the rest. When the kernel's closing "idle" message is among
the dropped ones, nbval fails the cell with "Timeout of 5 seconds exceeded waiting for output"
(here a cell with 4000 bar updates failed, one with 1500 passed; tqdm's default of up to ten
updates a second gets there in a few minutes). One update a second keeps even the longest cell of
the course far below that, and a person watching sees no difference.

Why workers do not draw: a worker process (``core.workers``) is not the notebook's kernel, so its
tqdm falls back to text on the process's stderr, which Jupyter shows raw in a pink box, lines from
two workers interleaved. A worker's loops therefore send their step counts to a queue
(:func:`report_to`), and the parent draws one bar for all of them (:func:`follow_workers`).
"""
from __future__ import annotations

import queue as queues
import time
from concurrent.futures import FIRST_COMPLETED, wait

from tqdm.auto import tqdm

__all__ = ["MIN_INTERVAL_S", "follow_workers", "progress", "report_to"]

MIN_INTERVAL_S = 1.0
"""Seconds between two updates of a bar (tqdm's ``mininterval``; its default is 0.1)."""

_report_queue = None
"""In a worker process, where its loops send their step counts; None elsewhere."""


def progress(iterable, desc: str, **options):
    """``tqdm(iterable, desc=desc, mininterval=MIN_INTERVAL_S, **options)``; in a worker process
    (after :func:`report_to`), the same iteration with its steps reported to the parent."""
    if _report_queue is not None:
        return _reported(iterable, _report_queue)
    return tqdm(iterable, desc=desc, mininterval=MIN_INTERVAL_S, **options)


def report_to(queue) -> None:
    """Make this process's loops report their steps to ``queue`` rather than draw a bar (the
    initializer of a worker process)."""
    global _report_queue
    _report_queue = queue


def _reported(iterable, queue):
    """Yield from ``iterable``, sending to ``queue`` the number of steps done, at most once a
    second and once more on leaving the loop."""
    unsent, last = 0, time.monotonic()
    try:
        for item in iterable:
            yield item
            unsent += 1
            if time.monotonic() - last >= MIN_INTERVAL_S:
                queue.put(unsent)
                unsent, last = 0, time.monotonic()
    finally:
        if unsent:
            queue.put(unsent)


def _drain(queue, bar, wait_s: float = 0.0) -> None:
    """Add every step count waiting in ``queue`` to ``bar`` (``wait_s``: how long to wait for one)."""
    while True:
        try:
            bar.n += queue.get(timeout=wait_s) if wait_s else queue.get_nowait()
        except queues.Empty:
            return


def follow_workers(futures: list, queue, desc: str, **options) -> int:
    """Draw one bar for the steps that the workers running ``futures`` report to ``queue``, until
    every future is done; return the number of steps. A worker's error is raised as soon as it is
    known. ``options`` go to tqdm.

    The bar counts steps (every worker's loops together; their number is not known in advance)
    and says how many calls are done. It is redrawn once a second even when no step ends, so that
    its clock shows the cell is alive."""
    bar = tqdm(total=None, desc=desc, unit="step", mininterval=MIN_INTERVAL_S,
               bar_format="{desc}: {n_fmt} steps [{elapsed}, {rate_fmt}{postfix}]", **options)
    pending = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, timeout=MIN_INTERVAL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
            _drain(queue, bar)
            bar.set_postfix_str(f"{len(futures) - len(pending)}/{len(futures)} done", refresh=False)
            bar.refresh()
        _drain(queue, bar, wait_s=0.2)  # the last reports may still be on their way
        bar.refresh()
        return bar.n
    finally:
        bar.close()
