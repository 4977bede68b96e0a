"""Run every solution notebook top to bottom and print its time, from an empty cache and warm.

    python benchmarks/bench_notebooks.py [--cache DIR] [--only 04_ppo ...] [--json PATH]

``--json PATH`` also writes the table as JSON (rewritten after every notebook), which
``benchmarks/report.py --notebooks-json PATH`` includes in its table.

Budgets (DESIGN §9): each notebook ≤ 2 min from an empty cache (the β-sweep and
overoptimisation notebooks ≤ 4 min), all seven ≤ 10 min, all seven ≤ 1 min with a warm cache.
The notebooks run in course order in one fresh cache, so "cold" means: what this notebook trains
itself, given what the notebooks before it left in the cache — the path a student takes. Run it
alone on the machine: parallel jobs distort the times.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
BUDGET = {"05_beta_sweep": 240, "06_overoptimisation": 240, "07_beyond_rlhf": 180}


def in_course(notebook: str) -> bool:
    """Whether ``notebook`` is one of the seven that the 600 s / 60 s budgets sum (00-06; 07, the
    beyond-RLHF notebook of issue #8, has its own budget)."""
    return notebook[:2].isdigit() and int(notebook[:2]) <= 6


def totals(rows: list[dict]) -> dict:
    """Cold and warm sums over every notebook run and over the course notebooks among them."""
    course = [r for r in rows if in_course(r["notebook"])]
    return {"total_cold": sum(r["cold"] for r in rows), "total_warm": sum(r["warm"] for r in rows),
            "course_cold": sum(r["cold"] for r in course), "course_warm": sum(r["warm"] for r in course),
            "course_notebooks": len(course)}


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    return time.perf_counter() - start


def write_json(path: str, rows: list[dict]) -> None:
    """The table so far, with the machine it ran on (read by benchmarks/report.py)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU") if os.path.exists("/proc/cpuinfo") else "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    Path(path).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "cores": cores,
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "rows": rows, **totals(rows)}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", help="cache folder (default: a new empty one)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes to run")
    parser.add_argument("--json", metavar="PATH", help="also write the table to PATH as JSON")
    args = parser.parse_args()
    os.environ["RLHF_LAB_CACHE"] = args.cache or tempfile.mkdtemp(prefix="rlhf_lab_bench_nb_")
    os.environ.setdefault("TQDM_DISABLE", "1")
    paths = sorted((ROOT / "solutions").glob("*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(p.stem.startswith(o) for o in args.only)]
    print(f"cache: {os.environ['RLHF_LAB_CACHE']}")
    print(f"{'notebook':<28} {'cold (s)':>9} {'warm (s)':>9} {'budget cold':>12}")
    rows = []
    for path in paths:
        cold = run(path)
        warm = run(path)
        budget = BUDGET.get(path.stem, 120)
        flag = "" if cold <= budget else "  over"
        print(f"{path.stem:<28} {cold:9.1f} {warm:9.1f} {budget:>10} s{flag}", flush=True)
        rows.append({"notebook": path.stem, "cold": cold, "warm": warm, "budget": budget})
        if args.json:
            write_json(args.json, rows)
    t = totals(rows)
    if t["course_notebooks"]:
        flag = "" if t["course_cold"] <= 600 and t["course_warm"] <= 60 else "  over"
        label = f"00-06 ({t['course_notebooks']} run)"
        print(f"{label:<28} {t['course_cold']:9.1f} {t['course_warm']:9.1f} {'600 / 60':>12}{flag}")
    print(f"{'all run':<28} {t['total_cold']:9.1f} {t['total_warm']:9.1f}")


if __name__ == "__main__":
    main()
