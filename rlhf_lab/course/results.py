"""``RESULTS.md``: the pipeline summary with the date, the machine and the time it took.

Timings and even some trained numbers depend on the CPU (its sums round differently), so every
results page says where and when it was measured."""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

__all__ = ["machine", "results_page", "write_results"]


def machine() -> str:
    """The CPU model and core count, e.g. ``"AMD EPYC 7B13, 2 cores"`` (Linux reads cpuinfo)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def results_page(summary: str, seconds: float, when: datetime.datetime | None = None,
                 where: str | None = None) -> str:
    """``summary`` (the pipeline's summary.md) under a header naming the date, machine and time."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    when = when or datetime.datetime.now(datetime.timezone.utc)
    import torch
    header = [
        "# Results of the default pipeline", "",
        f"Measured {when:%Y-%m-%d %H:%M} UTC on {where or machine()} (torch {torch.__version__}), "
        f"in {seconds / 60:.1f} min of wall time (0 s for each stage found in the cache). "
        "Written by `python -m rlhf_lab pipeline --out out --results RESULTS.md`; earlier "
        "measurements and the variants tried are in `docs/lab_notes.md`.", ""]
    body = summary.split("\n", 1)[1] if summary.startswith("# ") else summary
    return "\n".join(header) + "\n" + body.lstrip("\n")


def write_results(path, summary_path, seconds: float) -> Path:
    path = Path(path)
    path.write_text(results_page(Path(summary_path).read_text(), seconds))
    return path
