"""What the sandbox tests share (``test_grading_sandbox.py``, ``test_grading_hostile.py``): the
kit's folders, the skip marks, the environment of a grader started as a subprocess, and a census
of sandboxed processes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlhf_lab.grading.sandbox import sandbox_available

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, HIDDEN = ROOT / "solutions", ROOT / "tests" / "hidden"
TAG = f"{os.getpid()}"
"""Marks the files an attack would leave behind, so that two test runs never mix them up."""
needs_bwrap = pytest.mark.skipif(
    not sandbox_available(),
    reason="the bubblewrap sandbox does not work here (not installed, or no user namespaces): "
           "apt-get install -y bubblewrap; .ci/run installs it")
needs_hidden = pytest.mark.skipif(not list(HIDDEN.glob("test_*.py")), reason="no hidden tests")


def grader_env() -> dict:
    """The environment of a grader run as a subprocess from the checkout."""
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TQDM_DISABLE="1",
                PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


def sandbox_processes() -> set[int]:
    """Pids of every process running a student's code or a sandbox."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"child.py" in cmd or cmd.startswith(b"bwrap") or b"/bwrap\x00" in cmd:
                found.add(int(entry))
    return found
