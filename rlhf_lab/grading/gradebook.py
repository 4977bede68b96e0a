"""The grader's results and the files it writes from them.

:class:`StudentResult` holds one student's hidden-test outcomes per exercise; an exercise earns
its points only when all its hidden tests passed. :func:`write_outputs` writes the gradebook
(``gradebook.csv``: one row per student, one column per exercise, total, max, status) and one
``feedback/<student>.md`` per student, each atomically (temp file, then rename), so a grader
that dies half-way never leaves a half-written gradebook.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .exercises import EXERCISES, NOTEBOOKS

__all__ = ["MAX_POINTS", "atomic_write", "ExerciseResult", "StudentResult", "gradebook_csv", "feedback_markdown",
           "write_outputs"]

MAX_POINTS = sum(e.points for e in EXERCISES)


@dataclass
class ExerciseResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    message: str | None = None                   # the first failure's message

    @property
    def ok(self) -> bool:
        return self.passed > 0 and self.failed == 0


@dataclass
class StudentResult:
    name: str
    files: list[str] = field(default_factory=list)
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    submitted: set[str] = field(default_factory=set)   # course notebooks handed in

    def points(self, exercise) -> int:
        result = self.exercises.get(exercise.name)
        return exercise.points if result is not None and result.ok and \
            self.status != "grader error" else 0

    @property
    def total(self) -> int:
        return sum(self.points(e) for e in EXERCISES)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def gradebook_csv(results: dict[str, StudentResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student"] + [e.name for e in EXERCISES] + ["total", "max", "status"])
    for name in sorted(results):
        r = results[name]
        writer.writerow([name] + [r.points(e) for e in EXERCISES] + [r.total, MAX_POINTS,
                                                                     r.status])
    return out.getvalue()


def feedback_markdown(result: StudentResult) -> str:
    """One student's feedback: points per exercise, and why each failed one failed."""
    lines = [f"# Feedback: {result.name}", "",
             f"**Total: {result.total} / {MAX_POINTS} points.**", ""]
    if result.files:
        lines += ["Graded notebooks: " + ", ".join(f"`{f}`" for f in result.files), ""]
    if result.notes:
        lines += ["## Problems with the submission", ""] + [f"- {n}" for n in result.notes] + [""]
    for notebook in NOTEBOOKS:
        lines += [f"## {notebook}", ""]
        for e in (e for e in EXERCISES if e.notebook == notebook):
            r = result.exercises.get(e.name)
            earned = result.points(e)
            if notebook not in result.submitted and not (r and r.ok):
                what = "not submitted"
            elif r is None:
                what = "not graded (no hidden tests ran for it)"
            elif r.ok:
                what = f"passed all {r.passed} hidden tests"
            else:
                total = r.passed + r.failed
                what = f"failed {r.failed} of {total} hidden tests. First failure: " + \
                       (r.message or "no message").replace("\n", " ")
            lines.append(f"- **{e.name}** ({earned}/{e.points}): {what}")
        lines.append("")
    return "\n".join(lines)


def write_outputs(results: dict[str, StudentResult], out_dir) -> Path:
    """Write ``gradebook.csv`` and ``feedback/<student>.md`` atomically; return the gradebook."""
    out_dir = Path(out_dir)
    for name, result in results.items():
        atomic_write(out_dir / "feedback" / f"{name}.md", feedback_markdown(result))
    gradebook = out_dir / "gradebook.csv"
    atomic_write(gradebook, gradebook_csv(results))
    return gradebook
