"""The pytest side of grading: options, the ``student`` fixture, and the results recorder.

``tests/hidden/conftest.py`` re-exports these hooks, so the hidden tests run as

    pytest tests/hidden                                   # against solutions/ (the default)
    pytest tests/hidden --notebooks submissions/alice     # a student's folder (or one notebook)
    pytest tests/hidden --functions mutant.py             # plain functions in a .py file

In each case the session-scoped fixture ``student`` is one
:class:`~rlhf_lab.grading.sandbox.StudentProcess`, reused by every test. The grader
(:mod:`.grade`) runs the same tests with ``--grade-manifest`` (many students: the fixture is
parametrized over them, one process alive at a time) and ``--grade-results`` (one JSON line per
test outcome, written by this process — the judge — never by a student's process).

Convention: a hidden test's function name is ``test_<exercise>__<what it checks>``; the part
before the double underscore names the exercise (see ``exercises.py``) the test belongs to.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .exercises import EXERCISES
from .sandbox import StudentProcess, prefork_zygote
from .student import StudentError

__all__ = ["pytest_addoption", "pytest_configure", "pytest_generate_tests",
           "pytest_runtest_makereport", "student", "exercise_of", "feedback_message"]

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


def pytest_configure(config):
    """When grading many students, start the fork server now, by forking this process before
    the hidden tests are imported (so their code is not in its memory): it saves a torch
    import per judge."""
    if config.getoption("grade_manifest", default=None):
        prefork_zygote()


def _manifest(config):
    path = config.getoption("grade_manifest", default=None)
    if not path:
        return None
    if not hasattr(config, "_rlhf_manifest"):
        config._rlhf_manifest = json.loads(Path(path).read_text())
    return config._rlhf_manifest


def _record(config, row: dict) -> None:
    path = config.getoption("grade_results", default=None)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


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
                                  deny=settings["deny"])
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
    if functions:
        proc = StudentProcess(functions=functions, timeout=timeout)
    else:
        notebooks = config.getoption("notebooks", default=None) or str(_REPO / "solutions")
        proc = StudentProcess(notebooks, timeout=timeout)
    yield proc
    proc.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not item.config.getoption("grade_results", default=None):
        return
    if report.when != "call" and report.passed:
        return
    if report.when == "teardown":
        return
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("student") if callspec and _manifest(item.config) else None
    message = None
    if report.failed and call.excinfo is not None:
        message = feedback_message(call.excinfo.value)
    test = getattr(item, "originalname", None) or item.name
    _record(item.config, {"student": name, "event": "test", "test": item.name,
                          "exercise": exercise_of(test), "outcome": report.outcome,
                          "when": report.when, "message": message, "pid": os.getpid()})
