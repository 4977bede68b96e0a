"""Running the judges of ``grade``, and which of their results to trust.

A judge is ``python -m pytest tests/hidden --grade-manifest M --grade-results-fd N``: it runs
the hidden tests against its students one at a time (each in their own sandbox) and reports
over the write end ``N`` of a pipe that only it holds (never a file a student process could
reach): per student, the test ids it collected, one row per test, and "done". The grader keeps
a judge's rows only if the judge exited cleanly (pytest's exit code 0 or 1) within its time
limit, and of those only the first row of each collected test id (:func:`trusted_rows`).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from .zygote import die_with_parent

__all__ = ["run_judges", "trusted_rows", "MAX_RESULTS_BYTES", "CLEAN_EXITS"]

_REPO = Path(__file__).resolve().parent.parent.parent


MAX_RESULTS_BYTES = 64 * 2**20            # the most a judge may report (far above any real run)
CLEAN_EXITS = (0, 1)                      # pytest: all tests passed / some failed


def _judge_command(hidden: Path, manifest: Path, results_fd: int) -> list[str]:
    return [sys.executable, "-m", "pytest", str(hidden), "-q", "-p", "no:cacheprovider",
            "-p", "no:logging", "--tb=no", "--no-header", "-o", "addopts=", "-W", "ignore",
            "--rootdir", str(hidden),
            "--grade-manifest", str(manifest), "--grade-results-fd", str(results_fd)]


class _Judge:
    """One running judge: its process, deadline, log, and the read end of its results pipe."""

    def __init__(self, proc, deadline: float, fd: int, log_file, name: str):
        self.proc, self.deadline, self.fd, self.log_file, self.name = \
            proc, deadline, fd, log_file, name
        self.data = bytearray()
        self.overflow = False

    def drain(self) -> bool:
        """Read what the judge has written so far; False once the pipe is closed."""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.data += chunk
            if len(self.data) > MAX_RESULTS_BYTES:
                self.overflow = True
                self.data.clear()

    def rows(self) -> list[dict]:
        rows = []
        for line in bytes(self.data).decode("utf-8", "replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def close(self):
        os.close(self.fd)
        self.log_file.close()


def _start_judge(index: int, group: dict, hidden: Path, work: Path, settings: dict,
                 env: dict) -> _Judge:
    manifest = work / f"manifest_{index}.json"
    manifest.write_text(json.dumps({"students": {k: [str(p) for p in v] for k, v in group.items()},
                                    "settings": settings}))
    tmp = work / f"tmp_{index}"                  # the judge's temp folders: removed with `work`
    tmp.mkdir(exist_ok=True)
    read_end, write_end = os.pipe()
    log_file = open(work / f"judge_{index}.log", "wb")
    try:
        proc = subprocess.Popen(_judge_command(hidden, manifest, write_end), cwd=work,
                                env=dict(env, TMPDIR=str(tmp)), stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                pass_fds=[write_end], start_new_session=True,
                                preexec_fn=die_with_parent)
    finally:
        os.close(write_end)
    os.set_blocking(read_end, False)
    limit = 120 + sum(settings["budget"][k] + 30 for k in group)
    return _Judge(proc, time.monotonic() + limit, read_end, log_file, f"judge {index}")


def run_judges(groups: list[dict[str, list[Path]]], hidden: Path, work: Path, settings: dict,
                jobs: int, log) -> list[dict]:
    """Run one judge per group, ``jobs`` at a time. Each reports over a pipe that only it holds
    (never a file a student process could reach); the rows of a judge count only if it exited
    cleanly (pytest's exit code 0 or 1) within its time limit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(_REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    pending = list(enumerate(groups))
    running: list[_Judge] = []
    rows: list[dict] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, group = pending.pop(0)
                running.append(_start_judge(index, group, hidden, work, settings, env))
            select.select([j.fd for j in running], [], [], 0.05)
            for judge in list(running):
                judge.drain()
                if judge.proc.poll() is None and time.monotonic() < judge.deadline:
                    continue
                if judge.proc.poll() is None:
                    log(f"{judge.name} ran past its time limit and was stopped")
                    _kill_group(judge.proc)
                for _ in range(50):                     # the rest, up to the end of the pipe
                    if not judge.drain():
                        break
                    select.select([judge.fd], [], [], 0.1)
                judge.close()
                running.remove(judge)
                code = judge.proc.returncode
                if code in CLEAN_EXITS and not judge.overflow:
                    rows += judge.rows()
                else:
                    log(f"{judge.name} did not exit cleanly (exit code {code}); its results are "
                        f"not used")
    finally:
        for judge in running:
            _kill_group(judge.proc)
            judge.close()
    return rows


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a running judge and its process group (its students' sandboxes die with it:
    ``bwrap --die-with-parent``); reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def trusted_rows(rows: list[dict]) -> tuple[list[dict], set[str]]:
    """The test rows to count, and the students whose results are complete: a test row counts
    only if its test id was collected for that student and is its first row; a student is
    complete when the judge said "done" after a row for every test collected for them."""
    collected: dict[str, set[str]] = {}
    for row in rows:
        if row.get("event") == "collected" and isinstance(row.get("tests"), list):
            collected.setdefault(str(row.get("student")), set()).update(map(str, row["tests"]))
    seen: dict[str, set[str]] = {}
    kept = []
    for row in rows:
        if row.get("event") == "test":
            student, test = str(row.get("student")), str(row.get("test"))
            if test not in collected.get(student, ()) or test in seen.setdefault(student, set()):
                continue                                  # unknown or repeated: not trusted
            seen[student].add(test)
        kept.append(row)
    complete = {str(r.get("student")) for r in kept if r.get("event") == "done"}
    complete = {s for s in complete if collected.get(s) and seen.get(s) == collected[s]}
    return kept, complete
