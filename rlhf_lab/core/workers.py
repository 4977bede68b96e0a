"""Several trainings at once: single-threaded worker processes (the tiny models gain little from a
second thread, a lot from a second process)."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from rlhf_lab.core.progress import follow_workers, report_to

__all__ = ["in_processes"]


def in_processes(fn, calls: list[tuple], jobs: int, desc: str) -> list:
    """``[fn(*args, 1) for args in calls]``, computed ``jobs`` at a time in fresh ``spawn``
    processes (safe from a notebook; ``fn`` must be importable and take the worker's thread count
    as its last argument). Results come back in the order of ``calls``.

    The workers draw no bars of their own: their loops report steps to one bar drawn here
    (``core.progress``)."""
    context = multiprocessing.get_context("spawn")
    steps = context.Queue()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=report_to,
                             initargs=(steps,)) as pool:
        futures = [pool.submit(fn, *args, 1) for args in calls]
        follow_workers(futures, steps, f"{desc} ({jobs} at a time)")
    return [future.result() for future in futures]
