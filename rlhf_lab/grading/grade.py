"""``python -m rlhf_lab grade SUBMISSIONS_DIR``: grade every submission, write a gradebook.

A submission is a subfolder of ``SUBMISSIONS_DIR`` (the student is the folder's name; its
``*.ipynb`` are read) or a single ``.ipynb`` (the student is the file's stem; which course
notebook it is comes from its name or from the exercise functions it defines).

How it works:

1. The hidden tests (``tests/hidden``) are found next to the package, or given with
   ``--hidden``; without them the grader refuses to run.
2. Unless ``sandbox=False`` (``--no-sandbox``, which warns loudly), it checks that the
   bubblewrap sandbox works here (``bwrap.py``), and refuses to run otherwise, naming the
   package to install.
3. The students are split over ``jobs`` judge processes (``judges.py``), each ``python -m pytest
   tests/hidden --grade-manifest ... --grade-results-fd ...``. A judge runs the hidden tests
   against one student at a time (:class:`~.sandbox.StudentProcess`: all the student's processes
   in one sandbox of their own); student code never runs in a judge. Each judge reports over a
   pipe that only it holds.
4. When every judge has exited, the results it sent are turned into points, if it exited
   cleanly, counting one row per test id it collected: an exercise earns its points
   (``exercises.py``) only if all its hidden tests pass. A student that a judge left unfinished
   is graded again once, alone; a student still without complete results gets the status
   "grader error" and zero.
5. The outputs are written last, each atomically (temp file, then rename): ``gradebook.csv``
   (one row per student, one column per exercise, total, max, status) and
   ``feedback/<student>.md`` (per exercise: passed, or the first failure's message — never the
   tests' code); then a summary line is printed.

A broken submission never stops the grader: it is a row with zero for what it breaks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import bwrap
from .gradebook import MAX_POINTS, ExerciseResult, StudentResult, atomic_write, write_outputs
from .judges import run_judges, trusted_rows

__all__ = ["GradingError", "StudentResult", "find_hidden_tests", "discover", "grade",
           "write_outputs", "prepare_nbval", "main"]

_REPO = Path(__file__).resolve().parent.parent.parent


class GradingError(Exception):
    """The grader cannot run at all (no hidden tests, no submissions folder)."""


# --------------------------------------------------------------------------- inputs
def find_hidden_tests(hidden=None) -> Path:
    """The folder of hidden tests: ``hidden``, or ``tests/hidden`` next to the package."""
    folder = Path(hidden) if hidden else _REPO / "tests" / "hidden"
    if not (folder / "conftest.py").is_file() or not list(folder.glob("test_*.py")):
        raise GradingError(f"cannot find the hidden tests (conftest.py and test_*.py) in "
                           f"{folder}; grade from a full checkout of the course, or pass --hidden")
    return folder.resolve()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "student"


def discover(submissions_dir, skip=()) -> dict[str, list[Path]]:
    """``{student: [notebook files]}``; a folder without notebooks maps to an empty list."""
    root = Path(submissions_dir).resolve()
    if not root.is_dir():
        raise GradingError(f"{root} is not a folder of submissions")
    skip = {Path(s).resolve() for s in skip}
    students: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith((".", "_")) or entry.resolve() in skip:
            continue
        if entry.is_symlink():             # refused when read: a link may point at the kit
            files, name = [entry], entry.stem if entry.suffix == ".ipynb" else entry.name
        elif entry.is_dir():
            files = sorted(p for p in entry.glob("*.ipynb") if not p.name.startswith("."))
            name = entry.name
        elif entry.suffix == ".ipynb":
            files, name = [entry], entry.stem
        else:
            continue
        key, n = _safe(name), 2
        while key in students:
            key, n = f"{_safe(name)}_{n}", n + 1
        students[key] = files
    return students


# --------------------------------------------------------------------------- results
def _collect(students: dict[str, list[Path]], rows: list[dict]) -> dict[str, StudentResult]:
    from .loader import read_submission

    results = {name: StudentResult(name, [p.name for p in files])
               for name, files in students.items()}
    rows, done = trusted_rows(rows)
    for row in rows:
        result = results.get(row.get("student"))
        if result is None:
            continue
        if row["event"] == "student_error":
            result.status = "grader error"
            result.notes.append(f"the grader could not run this submission: {row['message']}")
        elif row["event"] == "test" and row.get("exercise"):
            ex = result.exercises.setdefault(row["exercise"], ExerciseResult())
            if row["outcome"] == "passed":
                ex.passed += 1
            elif row["outcome"] == "skipped":
                ex.skipped += 1
            else:
                ex.failed += 1
                ex.message = ex.message or row.get("message") or "a hidden test failed"
    for name, result in results.items():
        if not students[name]:
            result.status = "no notebooks"
            result.notes.append("no notebook (*.ipynb) was found in this submission")
            continue
        if name not in done and result.status != "grader error":
            result.status = "grader error"
            result.notes.append("the grader did not finish this submission (a judge process "
                                "failed); grade it again")
        try:
            submission = read_submission(students[name])
        except Exception as error:                      # noqa: BLE001 - one student, not all
            result.status = "grader error"
            result.notes.append(f"the grader could not read this submission: "
                                f"{type(error).__name__}")
            continue
        result.submitted = {course for course in submission.notebooks.values() if course}
        for file, why in submission.errors.items():
            result.notes.append(why)
        if submission.errors and result.status == "ok":
            result.status = "unreadable: " + " ".join(sorted(submission.errors))
    return results


# --------------------------------------------------------------------------- the command
NO_SANDBOX_WARNING = (
    "WARNING: grading WITHOUT the operating-system sandbox (--no-sandbox). Student code runs as "
    "your user, guarded only by a static scan and a Python audit hook, which native code (torch's "
    "file API, os.pidfd_open) walks around: a hostile submission can read the hidden tests and "
    "solutions, write files your user can write (other submissions, the gradebook), signal your "
    "processes and keep a process running after grading. Use this only for trusted code "
    "(docs/grading.md, section 3).")


def _check_sandbox(sandbox: bool, log) -> None:
    if not sandbox:
        log(NO_SANDBOX_WARNING)
        return
    try:
        bwrap.check()
    except bwrap.SandboxUnavailable as error:
        raise GradingError(str(error)) from None


def grade(submissions_dir, out_dir="grades", *, timeout: float = 10.0, jobs: int | None = None,
          memory_mb: int = 4096, notebook_seconds: float = 60.0, hidden=None,
          sandbox: bool = True, static_scan: bool = True,
          log=print) -> dict[str, StudentResult]:
    """Grade every submission of ``submissions_dir``; write the outputs into ``out_dir``;
    return the results by student. Raises GradingError only when grading cannot start (no
    hidden tests, no submissions, or ``sandbox`` asked and bubblewrap unusable).
    ``static_scan=False`` runs even the cells the static scan refuses: only for showing that
    the sandbox holds by itself."""
    start = time.monotonic()
    hidden = find_hidden_tests(hidden)
    _check_sandbox(sandbox, log)
    out_dir = Path(out_dir).resolve()
    students = discover(submissions_dir, skip=[out_dir])
    if jobs is None:
        jobs = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else (os.cpu_count() or 1)))
    work = Path(tempfile.mkdtemp(prefix="rlhf_lab_grade_"))
    os.chmod(work, 0o700)
    try:
        settings = {"timeout": float(timeout), "memory_mb": int(memory_mb),
                    "sandbox": bool(sandbox), "static_scan": bool(static_scan),
                    "budget": {k: notebook_seconds * max(1, len(v)) for k, v in students.items()},
                    "deny": [str(Path(submissions_dir).resolve()), str(out_dir), str(work),
                             str(hidden)]}
        gradable = {k: v for k, v in students.items() if v}
        groups = [dict(list(gradable.items())[i::jobs]) for i in range(min(jobs, len(gradable)))]
        rows = run_judges(groups, hidden, work, settings, jobs, log) if gradable else []
        finished = trusted_rows(rows)[1]
        retry = [k for k in gradable if k not in finished]
        if retry:
            log(f"re-running {len(retry)} submission(s) that a judge left unfinished")
            rows = [r for r in rows if r.get("student") not in retry]
            rows += run_judges([{k: gradable[k]} for k in retry], hidden, work, settings,
                                jobs, log)
        results = _collect(students, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gradebook = write_outputs(results, out_dir)
    totals = [r.total for r in results.values()]
    problems = sum(r.status != "ok" for r in results.values())
    mean = sum(totals) / len(totals) if totals else 0.0
    log(f"graded {len(results)} submission(s) in {time.monotonic() - start:.1f} s: mean "
        f"{mean:.1f} / {MAX_POINTS}, {len(results) - problems} ok, {problems} with problems; "
        f"wrote {gradebook} and {gradebook.parent / 'feedback'}/")
    return results


# --------------------------------------------------------------------------- nbval copies
_CHECK_CALL = re.compile(r"checks\.(check_\w+)\(")


def _check_cells(nb: dict) -> list[dict]:
    from rlhf_lab.course.release import CHECK_MARK
    return [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"
            and "".join(c.get("source") or "").split("\n", 1)[0].strip() == CHECK_MARK]


def prepare_nbval(submissions_dir, out_dir, reference_dir=None, log=print) -> list[Path]:
    """Write a copy of every submitted notebook into ``out_dir/<student>/`` in which each check
    cell (``# NBVAL_CHECK_OUTPUT``) holds the line a correct solution prints, taken from the
    released notebooks (``reference_dir``, default ``notebooks/``). ``pytest --nbval-lax`` then
    compares a student's run with the expected line, not with whatever the student saved.
    Unreadable notebooks are skipped with a message. Returns the written paths."""
    from rlhf_lab.course.release import expected_outputs

    from .loader import NotebookError, _course_notebook, notebook_cells, read_notebook

    reference_dir = Path(reference_dir) if reference_dir else _REPO / "notebooks"
    written = []
    for student, files in discover(submissions_dir, skip=[out_dir]).items():
        for path in files:
            try:
                nb = read_notebook(path)
                course = _course_notebook(path.name, notebook_cells(nb, path.name))
                reference = read_notebook(reference_dir / course) if course else None
            except NotebookError as error:
                log(f"skipped {student}/{path.name}: {error}")
                continue
            if reference is None:
                log(f"skipped {student}/{path.name}: not a notebook of the course")
                continue
            expected = _check_cells(reference)
            by_check = {m.group(1): c for c in expected
                        for m in [_CHECK_CALL.search("".join(c["source"]))] if m}
            for i, cell in enumerate(_check_cells(nb)):
                m = _CHECK_CALL.search("".join(cell.get("source") or ""))
                ref = by_check.get(m.group(1)) if m else None
                ref = ref or (expected[i] if i < len(expected) else None)
                if ref is not None:
                    cell["outputs"] = expected_outputs(ref.get("outputs", []))
                    cell["execution_count"] = None
            target = Path(out_dir) / student / path.name
            atomic_write(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            written.append(target)
    return written


def add_arguments(parser) -> None:
    """The ``grade`` subcommand's options (used by ``rlhf_lab/__main__.py``)."""
    parser.add_argument("submissions", help="folder with one subfolder or notebook per student")
    parser.add_argument("--out", default="grades", help="output folder (default: grades/)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds one call of a student function may take (default 10)")
    parser.add_argument("--notebook-seconds", type=float, default=60.0,
                        help="time budget of a student's calls, per notebook (default 60)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="students graded in parallel (default: the CPU count, at most 4)")
    parser.add_argument("--memory-mb", type=int, default=4096,
                        help="address-space limit of a student process (default 4096)")
    parser.add_argument("--hidden", default=None,
                        help="folder of the hidden tests (default: tests/hidden of the checkout)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code without the bubblewrap sandbox (trusted code "
                             "only: see docs/grading.md)")
    parser.add_argument("--nbval-copy", default=None, metavar="DIR",
                        help="instead of grading, write copies of the submissions into DIR whose "
                             "check cells hold the expected lines, for pytest --nbval-lax DIR/...")


def main(args) -> int:
    """Run the command from parsed arguments; 0 unless grading could not start. SIGTERM stops
    the grading as Ctrl-C does: judges and sandboxes killed, temporary folders removed."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.nbval_copy:
        try:
            written = prepare_nbval(args.submissions, args.nbval_copy)
        except GradingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {len(written)} notebook(s) into {args.nbval_copy}/ with the expected check "
              f"lines; run: python -m pytest --nbval-lax -p no:cacheprovider "
              f"{args.nbval_copy}/<student>/")
        return 0
    try:
        grade(args.submissions, args.out, timeout=args.timeout, jobs=args.jobs,
              memory_mb=args.memory_mb, notebook_seconds=args.notebook_seconds,
              hidden=args.hidden, sandbox=not args.no_sandbox,
              log=lambda line: print(line, file=sys.stderr if line.startswith("WARNING") else
                                     sys.stdout, flush=True))
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
