"""Hostile submissions against the operating-system sandbox (issue #25).

The class below is graded with the static scan switched OFF (``grade(static_scan=False)``), so
every attack actually runs and only the run-time guards stand in its way: the audit hook, and
the bubblewrap sandbox that holds where the hook is blind (native code: torch's file API,
``os.pidfd_open``, writes to inherited file descriptors). Each attack that succeeded would show
as points (its exercise returns the right answer only if the attack worked), as a changed file
(checksums of the checkout, of the other submissions and of the hidden tests before and after),
or as a process left behind. Honest students in the same class must keep full marks.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhf_lab.grading.exercises import EXERCISES
from rlhf_lab.grading.gradebook import MAX_POINTS
from grading_support import (HIDDEN, ROOT, SOLUTIONS, TAG, grader_env, needs_bwrap, needs_hidden,
                             sandbox_processes)


# --------------------------------------------------------------------------- the attacks
def _attacks(tmp: Path) -> dict:
    """name -> (exercise whose cell is changed, code put before the cell, a line put at the top
    of the function: the exercise is right only if the attack worked)."""
    out, hidden, subs = tmp / "grades", tmp / "hidden", tmp / "submissions"
    honest_nb = subs / "honest_a" / "01_sft.ipynb"
    guard = "if not BREACHED: raise RuntimeError('the attack failed')"
    write_targets = [ROOT / f"HACKED_{TAG}.pt", hidden / "test_00_logprob.py", honest_nb,
                     out / "gradebook.csv", tmp / "HACKED.pt",
                     Path(torch.__file__).parent / f"HACKED_{TAG}.pt"]
    read_targets = [SOLUTIONS / "04_ppo.ipynb", hidden / "test_04_ppo.py", honest_nb,
                    tmp / "secret.pt"]
    late_targets = [out / "gradebook.csv", ROOT / f"HACKED_late_{TAG}.pt", tmp / "HACKED_late.pt"]
    forged = "".join(json.dumps(row) + "\n" for row in (
        [{"student": "forger", "event": "collected", "tests": [f"t_{e.name}" for e in EXERCISES]}]
        + [{"student": "forger", "event": "test", "test": f"t_{e.name}", "exercise": e.name,
            "outcome": "passed"} for e in EXERCISES] + [{"student": "forger", "event": "done"}]))
    return {
        "string_lookup": ("bt_probability", (
            "BREACHED = False\ntry:\n"
            f"    BREACHED = bool(getattr(np, '__builtins__')['open']({str(hidden / 'conftest.py')!r}).read())\n"
            "except Exception:\n    pass\n"), guard),
        "torch_write": ("ppo_clip_loss", (
            "WROTE = []\n"
            f"for p in {[str(p) for p in write_targets]!r}:\n"
            "    try:\n        torch.save(torch.zeros(1), p)\n        WROTE.append(p)\n"
            "    except Exception:\n        pass\nBREACHED = bool(WROTE)\n"), guard),
        "torch_read": ("kl_k1", (
            "GOT = []\n"
            f"for p in {[str(p) for p in read_targets]!r}:\n"
            "    try:\n        torch.from_file(p, shared=False, size=8, dtype=torch.uint8)\n"
            "        GOT.append(p)\n    except Exception:\n        pass\n"
            "    try:\n        torch.load(p, weights_only=True)\n        GOT.append(p)\n"
            "    except Exception:\n        pass\nBREACHED = bool(GOT)\n"), guard),
        "signal_judge": ("gae", (
            "import os, signal\nHITS = []\n"
            "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
            "    try:\n        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
            "    except Exception:\n        continue\n"
            "    if b'--grade-manifest' in cmd or b'HOSTILE_GRADER' in cmd:\n"
            "        try:\n            fd = os.pidfd_open(int(pid))\n"
            "            signal.pidfd_send_signal(fd, signal.SIGKILL)\n"
            "            HITS.append(pid)\n        except Exception:\n            pass\n"
            "BREACHED = bool(HITS)\n"), guard),
        "forge_results": ("shaped_rewards", (
            f"import os\nLINES = {forged!r}.encode()\n"
            "for fd in range(0, 256):\n    try:\n        os.write(fd, LINES)\n"
            "    except Exception:\n        pass\nBREACHED = False\n"), guard),
        "outlive": ("value_loss", (
            "import os, signal, threading, time\n"
            "def _haunt():\n    while True:\n        time.sleep(0.2)\n"
            f"        for p in {[str(p) for p in late_targets]!r}:\n"
            "            try:\n                torch.save(torch.zeros(1), p)\n"
            "            except Exception:\n                pass\n"
            "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
            "    try:\n        signal.signal(s, signal.SIG_IGN)\n    except Exception:\n        pass\n"
            "try:\n    os.setsid()\nexcept Exception:\n    pass\n"
            "os._exit = lambda *a: time.sleep(10 ** 6)\n"
            "threading.Thread(target=_haunt, daemon=True).start()\nBREACHED = False\n"), guard),
        "memo_bomb": ("kl_best_of_n", "BREACHED = True\n", (
            "import os, pickle, struct, time; x = ('l', [])\n"
            "    for _ in range(64): x = ('t', [x, x])\n"
            "    payload = pickle.dumps(('ok', x), protocol=5)\n"
            "    frame = struct.pack('>Q', len(payload)) + payload\n"
            "    for fd in range(3, 64):\n"
            "        try:\n"
            "            if os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'): os.write(fd, frame)\n"
            "        except Exception: pass\n"
            "    time.sleep(1000)")),
        "memory_30gb": ("fit_bon", (
            "HOG = torch.empty(30 * 2 ** 30, dtype=torch.uint8)\nHOG.fill_(1)\nBREACHED = True\n"),
            ""),
        "loop_at_import": ("dpo_loss", "while True:\n    pass\n", ""),
        "exit_at_import": ("group_advantages", "import os\nos._exit(0)\n", ""),
        "deep_nesting": ("aggregate_ensemble", "NEST = " + "-" * 100000 + "1\n", ""),
        "kills_own_server": ("ppo_ptx_loss", (
            "import os, signal\n"
            "signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)\n"), ""),
    }


def _edit(folder: Path, name: str, prefix: str, first_line: str) -> None:
    """Keep only ``name``'s notebook in ``folder``; put ``prefix`` before its cell and
    ``first_line`` at the top of the function."""
    notebook = next(e.notebook for e in EXERCISES if e.name == name)
    for path in folder.glob("*.ipynb"):
        if path.name != notebook:
            path.unlink()
    path = folder / notebook
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if "exercise" in cell["metadata"].get("tags", []) and f"def {name}(" in source:
            head, rest = source.split(f"def {name}(", 1)
            signature, body = rest.split(":\n", 1)
            inserted = f"    {first_line}\n" if first_line else ""
            cell["source"] = prefix + head + f"def {name}(" + signature + ":\n" + inserted + body
            path.write_text(json.dumps(nb))
            return
    raise AssertionError(f"no exercise cell defines {name}")


def _fingerprint(trees, folders=()) -> dict[str, str]:
    """sha256 of every file under ``trees`` (caches left out), and the names in ``folders``
    (a new file there shows; their contents are too large to hash, e.g. torch's)."""
    out = {}
    for root in map(Path, trees):
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    for folder in map(Path, folders):
        out[f"{folder}/"] = "\n".join(sorted(p.name for p in folder.iterdir()))
    return out


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    subs = tmp / "submissions"
    subs.mkdir()
    shutil.copytree(HIDDEN, tmp / "hidden", ignore=shutil.ignore_patterns("__pycache__"))
    torch.save(torch.arange(3), tmp / "secret.pt")
    for honest in ("honest_a", "honest_b"):
        shutil.copytree(SOLUTIONS, subs / honest)
    attacks = _attacks(tmp)
    for name, (exercise, prefix, first_line) in attacks.items():
        shutil.copytree(SOLUTIONS, subs / name)
        _edit(subs / name, exercise, prefix, first_line)
    (subs / "symlinked").mkdir()
    (subs / "symlinked" / "01_sft.ipynb").symlink_to(SOLUTIONS / "01_sft.ipynb")
    (subs / "linked_folder").symlink_to(SOLUTIONS, target_is_directory=True)
    (subs / "linked.ipynb").symlink_to(SOLUTIONS / "02_reward_model.ipynb")
    trees = [ROOT / "solutions", ROOT / "tests", ROOT / "rlhf_lab", ROOT / "notebooks",
             tmp / "hidden", subs / "honest_a", subs / "honest_b", tmp / "secret.pt"]
    folders = [ROOT, Path(torch.__file__).parent]
    before, processes = _fingerprint(trees, folders), sandbox_processes()
    code = ("import sys; from rlhf_lab.grading.grade import grade; "
            "grade(sys.argv[1], sys.argv[2], hidden=sys.argv[3], timeout=2, jobs=2, "
            "static_scan=False)  # HOSTILE_GRADER")
    start = time.monotonic()
    (tmp / "tmpdir").mkdir()                             # the grader's temporary folders
    proc = subprocess.run([sys.executable, "-c", code, str(subs), str(tmp / "grades"),
                           str(tmp / "hidden")], cwd=tmp, env=dict(grader_env(), TMPDIR=str(tmp / "tmpdir")),
                          capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    time.sleep(2.0)                          # time for anything left behind to act
    rows = {}
    if (tmp / "grades" / "gradebook.csv").exists():
        rows = {r["student"]: r for r in csv.DictReader(open(tmp / "grades" / "gradebook.csv"))}
    yield {"proc": proc, "rows": rows, "tmp": tmp, "attacks": attacks, "seconds": seconds,
           "changed": _changed(before, _fingerprint(trees, folders)),
           "left": sandbox_processes() - processes}
    for path in ROOT.glob(f"HACKED*{TAG}*"):              # only if an attack got through
        path.unlink()
    for path in Path(torch.__file__).parent.glob(f"HACKED_{TAG}.pt"):
        path.unlink()


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _points(row) -> dict[str, int]:
    return {e.name: int(row[e.name]) for e in EXERCISES}


@pytest.mark.slow
@needs_bwrap
@needs_hidden
def test_hostile_class_grader_finishes_and_honest_students_get_full_marks(hostile_class):
    proc, rows = hostile_class["proc"], hostile_class["rows"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    for honest in ("honest_a", "honest_b"):
        assert int(rows[honest]["total"]) == MAX_POINTS and rows[honest]["status"] == "ok"
    assert hostile_class["seconds"] < 240, "a judge was held up (the memoised answer?)"


@pytest.mark.slow
@needs_bwrap
@needs_hidden
@pytest.mark.parametrize("name", list(_attacks(Path("/nonexistent"))))
def test_each_attack_fails_and_gains_nothing(hostile_class, name):
    exercise, _, _ = hostile_class["attacks"][name]
    notebook = next(e.notebook for e in EXERCISES if e.name == exercise)
    got = _points(hostile_class["rows"][name])
    want = {e.name: e.points if e.notebook == notebook and e.name != exercise else 0
            for e in EXERCISES}
    if name == "torch_read":                  # kl_k1 and kl_k3 share a cell; only kl_k1 is armed
        want["kl_k3"] = 1
    if name == "kills_own_server":
        # Its function is the reference solution and it harms only its own sandbox. The kernel
        # kills the student process a moment after its fork server (PR_SET_PDEATHSIG), and on a
        # busy machine the hidden tests may already have been answered: it may keep the points
        # its correct code earns, never more, and the rest of its notebook may lose them.
        want[exercise] = next(e.points for e in EXERCISES if e.name == exercise)
        assert all(got[e] <= want[e] for e in got), {e: (got[e], want[e]) for e in got}
        return
    assert got == want, {e: (got[e], want[e]) for e in got if got[e] != want[e]}


@pytest.mark.slow
@needs_bwrap
@needs_hidden
def test_symlinked_submissions_score_nothing(hostile_class):
    rows = hostile_class["rows"]
    for name in ("symlinked", "linked_folder", "linked"):
        assert int(rows[name]["total"]) == 0 and rows[name]["status"].startswith("unreadable")
    text = (hostile_class["tmp"] / "grades" / "feedback" / "symlinked.md").read_text()
    assert "symbolic link" in text


@pytest.mark.slow
@needs_bwrap
@needs_hidden
def test_no_file_outside_the_sandbox_changed_and_no_process_is_left(hostile_class):
    tmp = hostile_class["tmp"]
    assert hostile_class["changed"] == []
    assert not list(ROOT.glob("HACKED*")) and not list(tmp.glob("HACKED*"))
    assert not list(Path(torch.__file__).parent.glob("HACKED*"))
    assert hostile_class["left"] == set()
    grades = sorted(p.relative_to(tmp / "grades").as_posix() for p in (tmp / "grades").rglob("*"))
    assert grades == ["feedback"] + sorted(f"feedback/{s}.md" for s in hostile_class["rows"]) + \
        ["gradebook.csv"]
    assert "HACKED" not in (tmp / "grades" / "gradebook.csv").read_text()
    assert list((tmp / "tmpdir").iterdir()) == [], "temporary folders were left"


@pytest.mark.slow
@needs_bwrap
@needs_hidden
def test_each_attack_failed_for_the_reason_it_should(hostile_class):
    """The feedback shows why each armed exercise failed: the attack ran and did not get
    through (not, say, a time-out that would hide a hung judge)."""
    feedback = hostile_class["tmp"] / "grades" / "feedback"
    reasons = {"string_lookup": "the attack failed", "torch_write": "the attack failed",
               "torch_read": "the attack failed", "signal_judge": "the attack failed",
               "outlive": "the attack failed", "memo_bomb": "could not be read",
               "memory_30gb": "can't allocate memory", "loop_at_import": "infinite loop",
               "exit_at_import": "ended the process", "deep_nesting": "could not be defined"}
    for name, reason in reasons.items():
        exercise = hostile_class["attacks"][name][0]
        line = next(line for line in (feedback / f"{name}.md").read_text().splitlines()
                    if line.startswith(f"- **{exercise}**"))
        assert reason in line, (name, line)
