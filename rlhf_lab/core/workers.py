"""Several trainings at once: single-threaded worker processes (the tiny models gain little from a
second thread, a lot from a second process)."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

from rlhf_lab.core.progress import progress

__all__ = ["in_processes"]


def in_processes(fn, calls: list[tuple], jobs: int, desc: str) -> list:
    """``[fn(*args, 1) for args in calls]``, computed ``jobs`` at a time in fresh ``spawn``
    processes (safe from a notebook; ``fn`` must be importable and take the worker's thread count
    as its last argument). Results come back in the order of ``calls``."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(fn, *args, 1) for args in calls]
        for future in progress(as_completed(futures), total=len(futures), desc=f"{desc} ({jobs} at a time)"):
            future.result()
    return [future.result() for future in futures]
