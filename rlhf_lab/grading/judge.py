"""The pytest side of grading: options, the ``student`` fixture, and the results recorder.

``tests/hidden/conftest.py`` re-exports these hooks, so the hidden tests run as

    pytest tests/hidden                                   # against solutions/ (the default)
    pytest tests/hidden --notebooks submissions/alice     # a student's folder (or one notebook)
    pytest tests/hidden --functions mutant.py             # plain functions in a .py file

In each case the session-scoped fixture ``student`` is one
:class:`~rlhf_lab.grading.sandbox.StudentProcess`, reused by every test; it runs in the
bubblewrap sandbox where it works (``--no-sandbox``: never). The grader
(:mod:`.grade`) runs the same tests with ``--grade-manifest`` (many students: the fixture is
parametrized over them, one student's sandbox alive at a time) and ``--grade-results-fd`` (the
write end of a pipe that only this process, the judge, holds: one JSON line per collected test,
per test outcome, and per finished student; ``--grade-results FILE`` writes the same to a file).

Convention: a hidden test's function name is ``test_<exercise>__<what it checks>``; the part
before the double underscore names the exercise (see ``exercises.py``) the test belongs to.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .exercises import EXERCISES
from .sandbox import StudentProcess
from .student import StudentError

__all__ = ["pytest_addoption", "pytest_configure", "pytest_generate_tests",
           "pytest_collection_modifyitems", "pytest_runtest_makereport", "student",
           "exercise_of", "feedback_message"]

_NAMES = {e.name for e in EXERCISES}
_REPO = Path(__file__).resolve().parent.parent.parent


def exercise_of(test_name: str) -> str | None:
    """The exercise a hidden test belongs to, from its name (``test_gae__terminal`` -> gae)."""
    base = test_name.split("[", 1)[0]
    if not base.startswith("test_") or "__" not in base:
        return None
    name = base[len("test_"):].split("__", 1)[0]
    return name if name in _NAMES else None


def feedback_message(error: BaseException) -> str:
    """What a student reads about a failed test: the StudentError or assertion message, never
    the test's code or traceback."""
    if isinstance(error, StudentError):
        return error.message
    if isinstance(error, AssertionError):
        text = str(error).strip()
        if not text or text.startswith("assert "):
            return "a hidden check on the result failed"
        return text.split("\nassert ", 1)[0].strip()[:600]
    text = str(error).split("\n", 1)[0][:300]
    return f"your result could not be checked ({type(error).__name__}: {text})"


def pytest_addoption(parser):
    group = parser.getgroup("rlhf_lab", "grading the course's exercises")
    group.addoption("--notebooks", default=None,
                    help="folder of notebooks (or one notebook) whose exercise cells are tested "
                         "(default: solutions/)")
    group.addoption("--functions", default=None,
                    help="a .py file of functions to test instead of notebooks")
    group.addoption("--student-timeout", type=float, default=10.0,
                    help="seconds a student function may run per call (default 10)")
    group.addoption("--grade-manifest", default=None,
                    help="(used by the grade command) JSON file listing the students to grade")
    group.addoption("--grade-results", default=None,
                    help="write one JSON line per test outcome to this file")
    group.addoption("--grade-results-fd", type=int, default=None,
                    help="(used by the grade command) write them to this inherited pipe")
    group.addoption("--no-sandbox", action="store_true", default=False,
                    help="run student code without the bubblewrap sandbox (default: sandboxed "
                         "where bwrap works)")


def pytest_configure(config):
    """Open the results channel: the inherited pipe (line-buffered), or the results file."""
    fd = config.getoption("grade_results_fd", default=None)
    path = config.getoption("grade_results", default=None)
    if fd is not None:
        config._rlhf_results = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
    elif path:
        config._rlhf_results = open(path, "a", encoding="utf-8", buffering=1)


def _manifest(config):
    path = config.getoption("grade_manifest", default=None)
    if not path:
        return None
    if not hasattr(config, "_rlhf_manifest"):
        config._rlhf_manifest = json.loads(Path(path).read_text())
    return config._rlhf_manifest


def _record(config, row: dict) -> None:
    results = getattr(config, "_rlhf_results", None)
    if results is not None:
        results.write(json.dumps(row) + "\n")


def _student_of(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("student") if callspec and _manifest(item.config) else None


def pytest_collection_modifyitems(session, config, items):
    """Report, per student, the test ids collected: the grader counts no other."""
    if getattr(config, "_rlhf_results", None) is None:
        return
    tests: dict = {}
    for item in items:
        tests.setdefault(_student_of(item), []).append(item.nodeid)
    for name, ids in tests.items():
        _record(config, {"student": name, "event": "collected", "tests": ids})


def pytest_generate_tests(metafunc):
    manifest = _manifest(metafunc.config)
    if manifest and "student" in metafunc.fixturenames:
        names = list(manifest["students"])
        metafunc.parametrize("student", names, ids=names, indirect=True, scope="session")


class _Unavailable:
    """Stands for a student whose process could not start: every call fails with the reason."""

    def __init__(self, message: str):
        self.message = message

    def call(self, name, *args, **kwargs):
        raise StudentError("crash", self.message)

    def grad(self, name, args, wrt, kwargs=None):
        raise StudentError("crash", self.message)

    def close(self):
        pass


@pytest.fixture(scope="session")
def student(request):
    """The student under test: a StudentProcess over the notebooks chosen on the command line
    (default: solutions/), shared by every test of the session."""
    config = request.config
    manifest = _manifest(config)
    if manifest:
        name = request.param
        settings = manifest["settings"]
        try:
            proc = StudentProcess(manifest["students"][name], timeout=settings["timeout"],
                                  memory_mb=settings["memory_mb"], budget=settings["budget"][name],
                                  deny=settings["deny"], sandbox=settings["sandbox"],
                                  static_scan=settings.get("static_scan", True))
        except Exception as error:                      # noqa: BLE001 - graded as zero
            _record(config, {"student": name, "event": "student_error",
                             "message": f"{type(error).__name__}: {error}"})
            proc = _Unavailable(f"the grader could not run your submission ({error})")
        yield proc
        proc.close()
        _record(config, {"student": name, "event": "done"})
        return
    timeout = config.getoption("student_timeout", default=10.0)
    functions = config.getoption("functions", default=None)
    sandbox = False if config.getoption("no_sandbox", default=False) else None
    if functions:
        proc = StudentProcess(functions=functions, timeout=timeout, sandbox=sandbox)
    else:
        notebooks = config.getoption("notebooks", default=None) or str(_REPO / "solutions")
        proc = StudentProcess(notebooks, timeout=timeout, sandbox=sandbox)
    yield proc
    proc.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if getattr(item.config, "_rlhf_results", None) is None:
        return
    if report.when != "call" and report.passed:
        return
    if report.when == "teardown":
        return
    name = _student_of(item)
    message = None
    if report.failed and call.excinfo is not None:
        message = feedback_message(call.excinfo.value)
    test = getattr(item, "originalname", None) or item.name
    _record(item.config, {"student": name, "event": "test", "test": item.nodeid,
                          "exercise": exercise_of(test), "outcome": report.outcome,
                          "when": report.when, "message": message, "pid": os.getpid()})
