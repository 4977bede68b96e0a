"""Command line: ``python -m rlhf_lab {pipeline,data,release,grade} ...``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pipeline", help="run every stage on the default world; write figures + summary")
    p.add_argument("--out", default="out", help="output folder for figures and summary.md")
    p.add_argument("--results", default=None, metavar="FILE",
                   help="also write the summary, dated and with the machine named, to FILE (RESULTS.md)")
    p.add_argument("--gao-seeds", type=int, default=None, metavar="N",
                   help="PPO seeds per proxy in Gao's PPO study (default: the study's, 3; "
                        "1 is about three times faster and draws no error bands)")
    d = sub.add_parser("data", help="write the world's data sets as JSONL into a folder")
    d.add_argument("--out", default="data", help="folder to write (default: data/)")
    d.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("release", help="write the student notebooks from the solution notebooks")
    r.add_argument("--solutions", default="solutions", help="solution notebooks (default: solutions/)")
    r.add_argument("--out", default="notebooks", help="folder to write (default: notebooks/)")
    r.add_argument("--clean-solutions", action="store_true",
                   help="first strip the solutions' outputs in place (check cells excepted)")
    r.add_argument("--bundle", default=None, metavar="DIR",
                   help="also write a student bundle into DIR (no solutions/, no tests/hidden/)")
    g = sub.add_parser("grade", help="grade submissions with the hidden tests; write a gradebook")
    from rlhf_lab.grading.grade import add_arguments
    add_arguments(g)
    args = parser.parse_args(argv)

    if args.command == "release":                  # no torch needed
        from rlhf_lab.course.release import release
        for path in release(args.solutions, args.out, args.clean_solutions):
            print(f"wrote {path}")
        if args.bundle:
            from pathlib import Path

            from rlhf_lab.course.release import write_bundle
            kit = Path(args.solutions).resolve().parent
            write_bundle(kit, args.bundle, Path(args.out).resolve())
            print(f"wrote the student bundle {args.bundle} (no solutions/, no tests/hidden/)")
        return 0
    if args.command == "grade":                    # the judges import torch themselves
        from rlhf_lab.grading.grade import main as grade_main
        return grade_main(args)

    import torch
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    if args.command == "pipeline":
        import matplotlib
        matplotlib.use("Agg")
        import time

        from rlhf_lab.course.report import run_pipeline
        start = time.perf_counter()
        if args.gao_seeds is not None and args.gao_seeds < 1:
            parser.error(f"--gao-seeds must be >= 1, got {args.gao_seeds}")
        gao = None if args.gao_seeds is None else {"seeds": tuple(range(args.gao_seeds))}
        summary = run_pipeline(args.out, gao=gao)
        print(summary.read_text())
        print(f"wrote {summary} and figures in {summary.parent}/")
        if args.results:
            from rlhf_lab.course.results import write_results
            print(f"wrote {write_results(args.results, summary, time.perf_counter() - start)}")
    elif args.command == "data":
        from rlhf_lab.datasets import write_data
        for name, rows in write_data(args.out, args.seed).items():
            print(f"{args.out}/{name}: {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
