"""The pieces of the grader's defences, one at a time (issue #25): the static scan's string
lookups, the wire decoder's budgets, symlinked notebooks, the bubblewrap command line and what a
sandboxed process sees, the refusal without bubblewrap, the warning of ``--no-sandbox``, and a
grader killed outright. ``tests/test_grading_hostile.py`` grades a whole hostile class.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhf_lab.grading import bwrap, wire
from rlhf_lab.grading.exercises import EXERCISES
from rlhf_lab.grading.loader import NotebookError, defined_names, read_notebook, read_submission
from rlhf_lab.grading.sandbox import StudentProcess
from rlhf_lab.grading.scan import scan
from grading_support import (HIDDEN, ROOT, SOLUTIONS, TAG, grader_env, needs_bwrap, needs_hidden,
                             sandbox_processes)


def test_scan_refuses_the_string_lookup_bypass():
    for source in ('x = getattr(np, "__builtins__")["open"]("f").read()',
                   'x = getattr(torch, "_utils")', 'x = getattr(np, "o" + "s")',
                   'x = torch._utils._import_dotted_name("os")', 'x = {}["__builtins__"]',
                   'g = getattr\nx = g(np, "o" + "s")', 'from operator import attrgetter',
                   'import string\nx = string.Formatter().get_field("0.a", (f,), {})',
                   'import typing\nx = typing.get_type_hints(f)', 's = "{0.__globals__}"'):
        assert scan(source), source
    assert scan('ok = hasattr(result, "alpha")') is None
    assert scan('def f(x):\n    """Not __globals__: a docstring."""\n    return x') is None


def test_a_cell_nested_too_deeply_is_refused_not_a_crash():
    source = "x = " + "-" * 100000 + "1\ndef f():\n    return 1\n"
    assert "nested too deeply" in scan(source)
    assert defined_names(source) == ("f",)


def test_wire_refuses_a_memoised_answer_quickly():
    value = ("l", [])
    for _ in range(64):
        value = ("t", [value, value])                 # 2 ** 64 leaves, a kilobyte of pickle
    payload = wire.encode(("ok", value))
    assert len(payload) < 2000
    start = time.monotonic()
    with pytest.raises(ValueError, match="nested"):
        wire.unpack(wire.decode(payload)[1])
    shallow = ("l", [("l", [("l", [1.0] * 1000)] * 1000)] * 1000)       # 10 ** 9 items
    with pytest.raises(ValueError, match="larger"):
        wire.unpack(shallow)
    assert time.monotonic() - start < 5


def test_symlinked_notebooks_are_refused_by_the_loader(tmp_path):
    (tmp_path / "01_sft.ipynb").symlink_to(SOLUTIONS / "01_sft.ipynb")
    with pytest.raises(NotebookError, match="symbolic link"):
        read_notebook(tmp_path / "01_sft.ipynb")
    submission = read_submission(tmp_path)
    assert submission.cells == [] and "symbolic link" in submission.errors["01_sft.ipynb"]
    os.mkfifo(tmp_path / "02_reward_model.ipynb")                  # would block a reader
    assert "not a regular file" in read_submission(tmp_path).errors["02_reward_model.ipynb"]


def test_sandbox_command_shows_only_the_python_installation(monkeypatch):
    monkeypatch.setattr(bwrap.shutil, "which", lambda name: "/usr/bin/bwrap")
    argv = bwrap.command(["python", "-I", "/grader/child.py"], hide=[ROOT / "tests"])
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == "65534"
    shown = [argv[i + 1] for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")]
    assert all(a != "--bind" for a in argv), "nothing may be writable"
    package = ROOT / "rlhf_lab"
    helpers = {str(package / "grading" / name) for name in bwrap.HELPERS}
    for source in shown:
        for secret in (ROOT / "tests", ROOT / "solutions", package):
            inside = Path(source).is_relative_to(secret)
            assert not inside or source in helpers, f"{source} is shown"
            covers = secret.is_relative_to(source)
            assert not covers or str(secret) in argv[argv.index("--tmpfs") + 1:], \
                f"{source} shows {secret} without a tmpfs over it"


def test_grade_refuses_without_bwrap_and_names_the_package(tmp_path):
    (tmp_path / "subs").mkdir()
    shutil.copy(SOLUTIONS / "03_closed_form.ipynb", tmp_path / "subs" / "carol.ipynb")
    env = dict(grader_env(), PATH=str(tmp_path / "no-bin"))
    proc = subprocess.run([sys.executable, "-m", "rlhf_lab", "grade", "subs", "--out", "grades"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "bubblewrap" in proc.stderr and "--no-sandbox" in proc.stderr
    assert not (tmp_path / "grades").exists()


def test_grade_refuses_a_bwrap_that_cannot_make_namespaces(tmp_path):
    """bwrap installed but user namespaces disabled: refused, with bwrap's own words."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    (tmp_path / "subs").mkdir()
    shutil.copy(SOLUTIONS / "03_closed_form.ipynb", tmp_path / "subs" / "carol.ipynb")
    env = dict(grader_env(), PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    proc = subprocess.run([sys.executable, "-m", "rlhf_lab", "grade", "subs", "--out", "grades"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "No permissions to create new namespace" in proc.stderr
    assert "bubblewrap" in proc.stderr and "--no-sandbox" in proc.stderr


@needs_bwrap
def test_student_process_sees_only_its_sandbox(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text(
        "import os, torch\n"
        "def pids():\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "def uid():\n    return os.getuid()\n"
        "def interfaces():\n"
        "    lines = open('/proc/net/dev').read().splitlines()[2:]\n"
        "    return sorted(line.split(':')[0].strip() for line in lines)\n"
        "def read(path):\n"
        "    return torch.from_file(path, shared=False, size=1, dtype=torch.uint8)\n"
        "def write(path):\n    torch.save(torch.zeros(1), path)\n    return True\n")
    before = sandbox_processes()
    target = ROOT / f"HACKED_probe_{TAG}.pt"
    with StudentProcess(functions=module, timeout=20, sandbox=True) as student:
        assert student.call("uid") == 65534
        assert student.call("interfaces") == ["lo"]                  # no network
        assert os.getpid() not in student.call("pids") and max(student.call("pids")) < 100
        assert student.call("read", torch.__file__).numel() == 1     # the installation: yes
        for secret in (SOLUTIONS / "01_sft.ipynb", HIDDEN / "conftest.py", module,
                       ROOT / "rlhf_lab" / "grading" / "grade.py"):
            with pytest.raises(Exception):
                student.call("read", str(secret))
        with pytest.raises(Exception):
            student.call("write", str(target))
        assert student.call("write", "/tmp/mine.pt") is True       # its own tmpfs
    assert not target.exists()
    time.sleep(0.5)
    assert sandbox_processes() - before == set()


@pytest.mark.slow
@needs_hidden
def test_no_sandbox_grades_with_a_loud_warning(tmp_path):
    (tmp_path / "subs").mkdir()
    shutil.copy(SOLUTIONS / "03_closed_form.ipynb", tmp_path / "subs" / "carol.ipynb")
    proc = subprocess.run([sys.executable, "-m", "rlhf_lab", "grade", "subs", "--out", "grades",
                           "--no-sandbox"], cwd=tmp_path, env=grader_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: grading WITHOUT the operating-system sandbox" in proc.stderr
    assert "read the hidden tests" in proc.stderr and "WARNING" not in proc.stdout
    row = next(csv.DictReader(open(tmp_path / "grades" / "gradebook.csv")))
    assert int(row["total"]) == sum(e.points for e in EXERCISES
                                    if e.notebook == "03_closed_form.ipynb")


@pytest.mark.slow
@needs_bwrap
@needs_hidden
def test_a_grader_killed_outright_leaves_no_process(tmp_path):
    """SIGKILL gives the grader no chance to clean up: its judges die with it
    (PR_SET_PDEATHSIG), and the sandboxes with their judge (bwrap --die-with-parent)."""
    subs = tmp_path / "subs"
    for i in range(3):
        shutil.copytree(SOLUTIONS, subs / f"s{i}")
    before, judges = sandbox_processes(), _judges()
    log = tmp_path / "grader.log"
    with open(log, "w") as out:
        grader = subprocess.Popen([sys.executable, "-m", "rlhf_lab", "grade", str(subs), "--out",
                                   str(tmp_path / "grades")], cwd=tmp_path,
                                  env=dict(grader_env(), TMPDIR=str(tmp_path)),   # its leftovers go here
                                  stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not sandbox_processes() - before and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.1)
    assert sandbox_processes() - before, (
        f"no sandbox started; grader exit code {grader.poll()}; {len(before)} sandbox processes "
        f"were running before it ({_cmdlines(before)}); its output:\n{log.read_text()[-3000:]}")
    grader.kill()
    grader.wait()
    time.sleep(2.0)
    assert sandbox_processes() - before == set()
    assert _judges() - judges == set()


def _cmdlines(pids, limit: int = 3) -> list[str]:
    """The command lines of a few of ``pids`` (for a failure message)."""
    out = []
    for pid in sorted(pids)[:limit]:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        except OSError:
            out.append(f"{pid}: gone")
    return out


def _judges() -> set[int]:
    found = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if b"--grade-manifest" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(int(pid))
        except OSError:
            pass
    return found
