"""Benchmark of the grader: grade N copies of solutions/, with the OS sandbox and without it.

    python benchmarks/bench_grade.py                    # 30 copies, sandbox on, then off
    python benchmarks/bench_grade.py --copies 10 --jobs 1 --sandbox on

Budget (issues #6 and #25): 30 copies in <= 2 minutes on 2 CPU cores, with the sandbox on. The
hidden tests train no model; the cost is one torch import per judge and one per student (each
student's fork server is a fresh interpreter, in its own bubblewrap sandbox when it is on), plus
the tests' calls, plus one forked process per notebook per student.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlhf_lab.grading.grade import MAX_POINTS, grade  # noqa: E402


def measure(copies: int = 30, jobs: int | None = None, sandbox: bool = True) -> dict:
    """Grade ``copies`` copies of solutions/ in a temporary folder (in the bubblewrap sandbox
    or not); return the figures of the table."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench_grade_") as tmp:
        subs = Path(tmp) / "submissions"
        subs.mkdir()
        for i in range(copies):
            shutil.copytree(ROOT / "solutions", subs / f"student_{i:02d}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        results = grade(subs, Path(tmp) / "grades", jobs=jobs, sandbox=sandbox,
                        log=lambda *_: None)
        seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (usage.ru_utime + usage.ru_stime         # judges, fork servers, student processes
               - before.ru_utime - before.ru_stime)
        if sandbox:              # processes in a bwrap sandbox are not reaped up to this process:
            cpu = float("nan")   # their CPU time cannot be counted here
        rows = list(csv.DictReader(open(Path(tmp) / "grades" / "gradebook.csv")))
    full = sum(r.total == max(x.total for x in results.values()) for r in results.values())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"copies": copies, "jobs": jobs, "sandbox": sandbox, "cores": cores, "load": load,
            "seconds": seconds,
            "cpu": cpu, "rows": len(rows), "same_total": full, "points": rows[0]["total"],
            "max_points": MAX_POINTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--sandbox", choices=("both", "on", "off"), default="both",
                        help="grade in the bubblewrap sandbox, without it, or both (default)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures (sandbox on) to "
                        "PATH as JSON (benchmarks/report.py --grade-json PATH reads them)")
    args = parser.parse_args()
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.sandbox]
    runs = [measure(args.copies, args.jobs, sandbox) for sandbox in modes]
    if args.json:
        Path(args.json).write_text(json.dumps(runs[0], indent=1) + "\n")
    print(f"| sandbox | submissions | jobs | cores | load | wall (s) | CPU (s) | "
          f"CPU s / submission | rows | same total | points (of {MAX_POINTS}) | budget |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for m in runs:
        budget = "ok" if m["seconds"] <= 120 * m["copies"] / 30 else "OVER"
        print(f"| {'on' if m['sandbox'] else 'off'} | {m['copies']} | {m['jobs'] or 'auto'} | "
              f"{m['cores']} | {m['load']:.1f} | {m['seconds']:.1f} | {m['cpu']:.1f} | "
              f"{m['cpu'] / m['copies']:.2f} | {m['rows']} | {m['same_total']} | {m['points']} | "
              f"{budget} (<= 120 s for 30) |")
    print("CPU counts every process of the grading (judges, fork servers, student processes); "
          "with the sandbox on it is not measured (nan): the processes inside a bwrap sandbox "
          "are not reaped up to the benchmark, so their time would be missing. On an idle "
          "machine the wall time is about CPU / cores. The load column is the 1-minute load "
          "average at the end: other work on the machine stretches the wall time.")


if __name__ == "__main__":
    main()
