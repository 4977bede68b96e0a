"""The grader: hostile and broken submissions, the hidden tests on solutions/ and notebooks/,
the pieces (scan, loader, wire format, judge messages) and the student bundle.

One grading run (``python -m rlhf_lab grade``, in a subprocess) covers a class of submissions
built from ``solutions/`` by editing one exercise: each must get exactly the points of the honest
copy, minus the exercises it breaks, and the grader must exit normally.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhf_lab.course.release import BEGIN, END, write_bundle
from rlhf_lab.grading import wire
from rlhf_lab.grading.exercises import EXERCISES, by_name
from rlhf_lab.grading.judge import exercise_of, feedback_message
from rlhf_lab.grading.loader import NotebookError, notebook_cells, read_notebook, strip_magics
from rlhf_lab.grading.sandbox import sandbox_available
from rlhf_lab.grading.scan import scan
from rlhf_lab.grading.student import StudentError

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, HIDDEN = ROOT / "solutions", ROOT / "tests" / "hidden"
HAS_HIDDEN = bool(list(HIDDEN.glob("test_*.py")))
TIMEOUT = "2"                                # seconds per call in the grading run below
GET = 'getattr(np, "__builtins__")'          # reaches builtins without a name the scan rejects
# the class below is graded in the OS sandbox where it works (CI installs bubblewrap); its attacks
# are all refused by the static scan or the audit hook already (tests/test_grading_hostile.py
# attacks the sandbox itself)
SANDBOX = [] if sandbox_available() else ["--no-sandbox"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TQDM_DISABLE="1",
                PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


# --------------------------------------------------------------------------- building submissions
def _edit_cell(folder: Path, name: str, transform) -> None:
    """Apply ``transform(source) -> source`` to the exercise cell that defines ``name``."""
    path = folder / by_name(name).notebook
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if "exercise" in cell["metadata"].get("tags", []) and f"def {name}(" in source:
            cell["source"] = transform(source)
            path.write_text(json.dumps(nb))
            return
    raise AssertionError(f"no exercise cell defines {name}")


def _body(name: str, lines: list[str], replace: bool = False):
    """A transform that inserts ``lines`` at the top of ``name``'s solution block (or replaces
    the block)."""
    def transform(source: str) -> str:
        begin = source.index(BEGIN, source.index(f"def {name}("))
        after_begin = source.index("\n", begin) + 1
        block = "".join(f"    {line}\n" for line in lines)
        if replace:
            end_line = source.rindex("\n", 0, source.index(END, begin)) + 1
            return source[:after_begin] + block + source[end_line:]
        return source[:after_begin] + block + source[after_begin:]
    return transform


def _prefix(code: str):
    return lambda source: code + "\n" + source


# name -> (exercises it breaks, how to build it from a copy of solutions/ at `folder`)
def _hostile(tmp: Path) -> dict:
    out, hidden_file = tmp / "grades", str(next(HIDDEN.glob("test_*.py"), HIDDEN / "x.py"))
    targets = [out / "gradebook.csv", out / "feedback" / "honest.md",
               tmp / "submissions" / "honest" / "02_reward_model.ipynb", tmp / "HACKED.txt"]
    write_attempts = "\n".join(
        f'try:\n    np.savetxt({str(p)!r}, np.zeros(1), header="HACKED")\nexcept Exception:\n'
        f'    pass' for p in targets)
    return {
        "syntax_error": (["bt_probability"], lambda f: _edit_cell(
            f, "bt_probability", lambda s: s + "\nthis is not python (\n")),
        "exception_at_import": (["sft_loss"], lambda f: _edit_cell(
            f, "sft_loss", lambda s: s + "\nraise RuntimeError('broken at import')\n")),
        "loop_at_import": (["boltzmann_policy"], lambda f: _edit_cell(
            f, "boltzmann_policy", _prefix("while True:\n    pass"))),
        "loop_in_function": (["gae"], lambda f: _edit_cell(
            f, "gae", _body("gae", ["while True:", "    pass"]))),
        "memory_hog": (["kl_k1"], lambda f: _edit_cell(
            f, "kl_k1", _body("kl_k1", ["hog = torch.empty(2 ** 38)", "hog.fill_(1.0)"]))),
        "missing_function": (["response_logprob"], lambda f: _edit_cell(
            f, "response_logprob", lambda s: s.replace("def response_logprob(",
                                                       "def response_log_prob("))),
        "invalid_json": (["sft_loss"], lambda f: (f / "01_sft.ipynb").write_text(
            (f / "01_sft.ipynb").read_text()[:3000])),
        "monkeypatch_torch": (["kl_optimal"], lambda f: _edit_cell(f, "kl_optimal", lambda s: (
            'setattr(torch, "allclose", lambda *a, **k: True)\n'
            'setattr(torch, "equal", lambda *a, **k: True)\n'
            'setattr(torch.testing, "assert_close", lambda *a, **k: None)\n'
            'setattr(torch.Tensor, "__eq__", lambda self, other: torch.tensor(True))\n'
            'def expect(*args, **kwargs):\n    return None\n\n'
            'def check_grad(*args, **kwargs):\n    return None\n\n'
            + _body("kl_optimal", ["return torch.zeros(logp_ref.shape[:-1])"], True)(s)))),
        "imports_reference": (["optimal_objective"], lambda f: _edit_cell(
            f, "optimal_objective", _body("optimal_objective", [
                "from rlhf_lab.equations.closed_form import optimal_objective as reference",
                "return reference(logp_ref, rewards, beta)"], True))),
        "reference_at_runtime": (["fit_bradley_terry"], lambda f: _edit_cell(
            f, "fit_bradley_terry", _body("fit_bradley_terry", [
                'ref = getattr(torch._utils, "_import_dotted_name")("rlhf_lab.equations.losses")',
                "return ref.fit_bradley_terry(wins, steps, lr)"], True))),
        "writes_gradebook": ([], lambda f: _edit_cell(f, "kl_k3", _prefix(write_attempts))),
        "exit_at_import": (["kl_best_of_n"], lambda f: _edit_cell(f, "kl_best_of_n", _prefix(
            f'getattr({GET}["__import__"]("os"), "_ex" + "it")(0)'))),
        "exit_scanned": (["value_loss"], lambda f: _edit_cell(
            f, "value_loss", _prefix("import os\nos._exit(0)"))),
        "exit_in_function": (["shaped_rewards"], lambda f: _edit_cell(
            f, "shaped_rewards", _body("shaped_rewards", [
                f'getattr({GET}["__import__"]("sys"), "exit")(0)']))),
        "crash_in_function": (["fit_bon"], lambda f: _edit_cell(f, "fit_bon", _body("fit_bon", [
            f'getattr({GET}["__import__"]("os"), "_ex" + "it")(0)']))),
        "reads_hidden_tests": (["ppo_clip_loss"], lambda f: _edit_cell(
            f, "ppo_clip_loss", lambda s: (
                f'try:\n    SECRET = {GET}["open"]({hidden_file!r}).read()\n'
                f'except Exception:\n    SECRET = None\n\n'
                + _body("ppo_clip_loss", ["if SECRET is None:",
                                          "    return torch.zeros(()), {}"])(s)))),
        "lying_tensor": (["aggregate_ensemble"], lambda f: _edit_cell(
            f, "aggregate_ensemble", lambda s: (
                "class Liar(torch.Tensor):\n    def __eq__(self, other):\n        return True\n\n"
                + _body("aggregate_ensemble", [
                    "return torch.zeros(scores.shape[1:]).as_subclass(Liar)"], True)(s)))),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Build the submissions, grade them once with the command line; return what it wrote."""
    tmp = tmp_path_factory.mktemp("grading")
    subs = tmp / "submissions"
    subs.mkdir()
    shutil.copytree(SOLUTIONS, subs / "honest")
    hostile = _hostile(tmp)
    for name, (_, build) in hostile.items():
        shutil.copytree(SOLUTIONS, subs / name)
        build(subs / name)
    shutil.copytree(ROOT / "notebooks", subs / "unsolved")
    shutil.copy(SOLUTIONS / "03_closed_form.ipynb", subs / "carol.ipynb")   # one loose notebook
    (subs / "dave").mkdir()                                                # nothing handed in
    (subs / "dave" / "notes.txt").write_text("I did not finish")
    (subs / "erin.ipynb").write_text('{"cells": "not a list"}')           # JSON, not a notebook
    proc = subprocess.run([sys.executable, "-m", "rlhf_lab", "grade", "submissions", "--out",
                           "grades", "--timeout", TIMEOUT, "--jobs", "2"] + SANDBOX,  # relative
                          cwd=tmp, env=_env(), capture_output=True, text=True, timeout=600)
    rows = {}
    if (tmp / "grades" / "gradebook.csv").exists():
        rows = {r["student"]: r for r in csv.DictReader(open(tmp / "grades" / "gradebook.csv"))}
    return {"proc": proc, "rows": rows, "tmp": tmp, "hostile": hostile}


def _points(row) -> dict[str, int]:
    return {e.name: int(row[e.name]) for e in EXERCISES}


needs_hidden = pytest.mark.skipif(not HAS_HIDDEN, reason="tests/hidden has no tests yet")


@pytest.mark.slow   # grades a whole class of submissions end to end
@needs_hidden
def test_grader_exits_normally_with_a_row_per_submission(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "graded 22 submission(s)" in proc.stdout, proc.stdout
    expected = set(graded["hostile"]) | {"honest", "unsolved", "carol", "dave", "erin"}
    assert set(graded["rows"]) == expected


@pytest.mark.slow   # grades a whole class of submissions end to end
@needs_hidden
def test_honest_copy_earns_every_exercise_that_has_hidden_tests(graded):
    """Every hidden test passes on solutions/ (the feedback counts them per exercise)."""
    honest = _points(graded["rows"]["honest"])
    present = {p.name for p in SOLUTIONS.glob("*.ipynb")}
    tested = {exercise_of(name) for name in _hidden_test_names()}
    feedback = (graded["tmp"] / "grades" / "feedback" / "honest.md").read_text()
    for e in EXERCISES:
        if e.notebook in present and e.name in tested:
            assert honest[e.name] == e.points, f"the solutions lose {e.name}"
            count = sum(exercise_of(name) == e.name for name in _hidden_test_names())
            assert f"**{e.name}** ({e.points}/{e.points}): passed all {count} hidden" in feedback
    assert graded["rows"]["honest"]["status"] == "ok"


@pytest.mark.slow   # grades a whole class of submissions end to end
@needs_hidden
@pytest.mark.parametrize("name", list(_hostile(Path("/nonexistent"))))
def test_hostile_submission_gets_honest_points_and_zero_for_what_it_breaks(graded, name):
    honest = _points(graded["rows"]["honest"])
    broken, _ = graded["hostile"][name]
    got = _points(graded["rows"][name])
    want = {e: 0 if e in broken else p for e, p in honest.items()}
    assert got == want, {e: (got[e], want[e]) for e in got if got[e] != want[e]}
    assert int(graded["rows"][name]["total"]) == sum(want.values())


@pytest.mark.slow   # grades a whole class of submissions end to end
@needs_hidden
def test_broken_and_unsolved_submissions(graded):
    rows = graded["rows"]
    assert int(rows["unsolved"]["total"]) == 0
    assert rows["dave"]["status"] == "no notebooks" and int(rows["dave"]["total"]) == 0
    assert rows["erin"]["status"].startswith("unreadable") and int(rows["erin"]["total"]) == 0
    assert rows["invalid_json"]["status"] == "unreadable: 01_sft.ipynb"
    carol, honest = _points(rows["carol"]), _points(rows["honest"])
    for e in EXERCISES:
        assert carol[e.name] == (honest[e.name] if e.notebook == "03_closed_form.ipynb" else 0)
    feedback = (graded["tmp"] / "grades" / "feedback" / "carol.md").read_text()
    assert "**sft_loss** (0/2): not submitted" in feedback


@pytest.mark.slow   # grades a whole class of submissions end to end
@needs_hidden
def test_nothing_was_written_by_a_submission(graded):
    tmp = graded["tmp"]
    assert not (tmp / "HACKED.txt").exists()
    for path in tmp.rglob("*"):
        if "writes_gradebook" in path.parts:
            continue                                   # its own notebook holds the word
        if path.is_file() and path.suffix in (".csv", ".md", ".ipynb", ".txt"):
            assert "HACKED" not in path.read_text(errors="replace"), path


@pytest.mark.slow   # grades a whole class of submissions end to end
@needs_hidden
def test_feedback_explains_each_failure_without_test_code(graded):
    feedback = graded["tmp"] / "grades" / "feedback"
    expected = {
        "syntax_error": "SyntaxError on line",
        "exception_at_import": "RuntimeError: broken at import",
        "loop_at_import": "infinite loop at the top level",
        "loop_in_function": f"did not return within {TIMEOUT} s",
        "memory_hog": "ran out of memory",
        "missing_function": "no function named response_logprob",
        "invalid_json": "not valid JSON",
        "imports_reference": "imports rlhf_lab",
        "reference_at_runtime": "_import_dotted_name",        # the static scan (was a bypass)
        "exit_at_import": "calls getattr with a computed attribute name",
        "exit_scanned": "imports os",
        "exit_in_function": "looks up the attribute 'exit' by name",
        "crash_in_function": "computed attribute name",
        "unsolved": "not written yet",
        "erin": "not a Jupyter notebook",
    }
    for name, phrase in expected.items():
        text = (feedback / f"{name}.md").read_text()
        assert phrase in text, (name, text)
    for path in feedback.glob("*.md"):
        text = path.read_text()
        assert "def test_" not in text and "student.call" not in text and "Traceback" not in text


@needs_hidden
def test_every_hidden_test_fails_on_the_stubs(tmp_path):
    """The CI check of the unsolved notebooks, run as an instructor would: ``pytest tests/hidden
    --notebooks notebooks`` (that they all pass on solutions/ is checked by the grading run)."""
    path = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(HIDDEN), "-q",
                           "-p", "no:cacheprovider", "--tb=no",
                           "--notebooks", str(ROOT / "notebooks"),
                           "--grade-results", str(path)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert path.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    stubs = [r for r in rows if r["event"] == "test"]
    assert len(stubs) >= len(_hidden_test_names()) and proc.returncode == 1
    assert all(r["outcome"] == "failed" for r in stubs), \
        [r["test"] for r in stubs if r["outcome"] != "failed"]


def _hidden_test_names() -> list[str]:
    return [line.split("(")[0].removeprefix("def ") for path in HIDDEN.glob("test_*.py")
            for line in path.read_text().splitlines() if line.startswith("def test_")]


@needs_hidden
def test_every_hidden_test_names_its_exercise():
    assert all(exercise_of(name) for name in _hidden_test_names()), \
        [name for name in _hidden_test_names() if not exercise_of(name)]


def test_grader_refuses_to_run_without_hidden_tests(tmp_path):
    (tmp_path / "subs").mkdir()
    proc = subprocess.run([sys.executable, "-m", "rlhf_lab", "grade", str(tmp_path / "subs"),
                           "--hidden", str(tmp_path / "nowhere")], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "cannot find the hidden tests" in proc.stderr


# --------------------------------------------------------------------------- the pieces
@pytest.mark.parametrize("source", [
    "def f(x):\n    return torch.sigmoid(x)",
    "import math\nimport numpy as np\nfrom functools import lru_cache\nfrom typing import Tuple\n"
    "import torch.nn.functional as F\ndef f(x):\n    '''Uses rlhf_lab-like words: os, sys.'''\n"
    "    return F.logsigmoid(x).mean(), {'n': len(x)}",
    "class Fit:\n    def __init__(self, a):\n        super().__init__()\n        self.a = a",
    "def f(x):\n    # open(...) in a comment is fine\n    return x.__len__()",
])
def test_scan_accepts_honest_code(source):
    assert scan(source) is None


@pytest.mark.parametrize("source, phrase", [
    ("from rlhf_lab.equations.losses import sft_loss", "reference solutions"),
    ("import rlhf_lab", "reference solutions"),
    ("import importlib", "importlib"),
    ("import os", "import"),
    ("def f():\n    return __import__('os')", "__import__"),
    ("def f():\n    return open('x').read()", "open"),
    ("torch.allclose = lambda *a, **k: True", "monkeypatch"),
    ("x = ().__class__.__bases__", "__bases__"),
    ("def f(x):\n    return np.sys", ".sys"),
    ("exit(0)", "exit"),
])
def test_scan_rejects_forbidden_code(source, phrase):
    assert phrase in scan(source)


def test_loader_strips_magics_and_reads_untagged_definitions(tmp_path):
    assert strip_magics("%matplotlib inline\nx = 1\n    !ls") == "pass\nx = 1\n    pass"
    assert "SyntaxError" in strip_magics("%%bash\nls")
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["exercise"]},
         "source": ["%time\n", "def kl_k1(logp, logp_ref):\n", "    return logp - logp_ref\n"]},
        {"cell_type": "code", "metadata": {},
         "source": "x = train()\ndef gae(r, v, m, g, l):\n    return r, v\n"},
    ]}
    cells = notebook_cells(nb, "04_ppo.ipynb")
    assert [c.names for c in cells] == [("kl_k1",), ("gae",)]
    assert "train()" not in cells[1].source
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(NotebookError, match="not valid JSON"):
        read_notebook(tmp_path / "bad.ipynb")


def test_wire_round_trip_and_refuses_code():
    import pickle
    value = (torch.randn(2, 3), torch.tensor(True), np.arange(3.0), {"a": [1, 2.5, None, "s"]},
             1 + 2j, torch.float32, torch.zeros(0, 2, dtype=torch.int64))
    back = wire.unpack(wire.decode(wire.encode(wire.pack(value))))
    assert torch.equal(back[0], value[0]) and bool(back[1]) and back[3] == value[3]
    assert np.array_equal(back[2], value[2]) and back[4] == 1 + 2j and back[5] is torch.float32
    assert back[6].shape == (0, 2) and isinstance(back, tuple)
    for evil in (pickle.dumps(os.system), pickle.dumps(torch.zeros(2)), pickle.dumps({1, 2})):
        with pytest.raises(Exception):
            wire.unpack(wire.decode(evil))
    with pytest.raises(ValueError):
        wire.unpack(("T", "float32", (3,), b"\x00" * 4))               # size does not match
    with pytest.raises(ValueError):
        wire.unpack(("A", "|O", (1,), b"\x00" * 8))                    # no object arrays


def test_judge_messages_are_feedback_not_code():
    assert exercise_of("test_gae__terminal_no_bootstrap[alice]") == "gae"
    assert exercise_of("test_not_an_exercise__x") is None and exercise_of("test_gae") is None
    assert feedback_message(StudentError("timeout", "gae did not return")) == "gae did not return"
    assert feedback_message(AssertionError("wrong sign\nassert 1 == 2")) == "wrong sign"
    assert "hidden check" in feedback_message(AssertionError("assert x == y\n +  where x = f()"))
    assert feedback_message(RuntimeError("size mismatch\nmore")).endswith(
        "(RuntimeError: size mismatch)")


@pytest.mark.parametrize("sandbox", [False, pytest.param(True, marks=pytest.mark.skipif(
    not sandbox_available(), reason="the bubblewrap sandbox does not work here"))])
def test_student_process_keeps_serving_after_crashes_and_time_outs(tmp_path, sandbox):
    from rlhf_lab.grading.sandbox import StudentProcess
    module = tmp_path / "functions.py"
    module.write_text("import os\nimport torch\n"
                      "def double(x):\n    return 2 * x\n"
                      "def die():\n    os._exit(3)\n"
                      "def spin():\n    while True:\n        pass\n"
                      "def sneaky():\n    return open(__file__).read()\n"
                      "def weird():\n    return object()\n")
    with StudentProcess(functions=module, timeout=1.5, sandbox=sandbox) as student:
        assert torch.equal(student.call("double", torch.ones(2)), torch.full((2,), 2.0))
        for name, kind in (("die", "crash"), ("spin", "timeout"), ("spin", "timeout"),
                           ("sneaky", "exception"), ("weird", "bad_output"),
                           ("nothing", "missing")):
            with pytest.raises(StudentError) as error:
                student.call(name)
            assert error.value.kind == kind, (name, error.value)
        result, grads = student.grad("double", (torch.ones(3),), (0,))
        assert torch.equal(grads[0], torch.full((3,), 2.0))


def test_student_bundle_leaves_out_solutions_and_hidden_tests(tmp_path):
    written = write_bundle(ROOT, tmp_path / "bundle")
    names = {p.name for p in written}
    assert {"README.md", "rlhf_lab", "notebooks", "requirements.txt"} <= names
    files = {p.relative_to(tmp_path / "bundle").as_posix() for p in
             (tmp_path / "bundle").rglob("*")}
    assert not any(f.startswith(("solutions", "tests/hidden", "tests/mutants", ".git"))
                   for f in files)
    assert "tests/test_grading.py" not in files and "tests/test_notebooks.py" not in files
    assert "rlhf_lab/grading/sandbox.py" in files
    assert {"AGENTS.md", "docs/glossary.md"} <= files        # the tutor notice travels with the kit
    assert "docs/grading.md" not in files
    for nb in (tmp_path / "bundle" / "notebooks").glob("*.ipynb"):
        assert BEGIN not in nb.read_text()
    with pytest.raises(ValueError, match="not empty"):
        write_bundle(ROOT, tmp_path / "bundle")


def test_nbval_copy_puts_the_expected_line_under_each_check_cell(tmp_path):
    """`grade --nbval-copy` replaces whatever a student saved under a check cell by the line a
    correct solution prints, so `pytest --nbval-lax` compares the student's run with it."""
    from rlhf_lab.__main__ import main
    from rlhf_lab.course.release import CHECK_MARK
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    nb = json.loads((ROOT / "notebooks" / "01_sft.ipynb").read_text())
    for cell in nb["cells"]:
        if "".join(cell["source"]).startswith(CHECK_MARK):
            cell["outputs"] = [{"output_type": "stream", "name": "stdout",
                                "text": ["✗ sft_loss: wrong, saved by the student\n"]}]
    (subs / "alice" / "my_sft.ipynb").write_text(json.dumps(nb))        # renamed by the student
    (subs / "bob.ipynb").write_text("{broken")
    assert main(["grade", str(subs), "--nbval-copy", str(tmp_path / "nbval")]) == 0
    copy = json.loads((tmp_path / "nbval" / "alice" / "my_sft.ipynb").read_text())
    lines = ["".join(o["text"]) for c in copy["cells"] for o in c.get("outputs", [])]
    assert lines == ["✓ sft_loss: all 5 checks passed\n"]
    assert not (tmp_path / "nbval" / "bob").exists()


def test_a_student_the_judges_did_not_finish_is_a_grader_error_with_zero(tmp_path):
    from rlhf_lab.grading.grade import _collect
    from rlhf_lab.grading.gradebook import feedback_markdown
    folder = tmp_path / "alice"
    shutil.copytree(SOLUTIONS, folder)
    files = sorted(folder.glob("*.ipynb"))
    rows = [{"student": "alice", "event": "collected", "tests": ["t1", "t2"]},
            {"student": "alice", "event": "test", "test": "t1", "exercise": "sft_loss",
             "outcome": "passed"}]
    result = _collect({"alice": files}, rows)["alice"]            # no "done": the judge died
    assert result.status == "grader error" and result.total == 0
    assert "grade it again" in feedback_markdown(result)
    rows.append({"student": "alice", "event": "done"})
    result = _collect({"alice": files}, rows)["alice"]            # t2 never reported
    assert result.status == "grader error" and result.total == 0
    rows.insert(-1, {"student": "alice", "event": "test", "test": "t2", "exercise": "sft_loss",
                     "outcome": "passed"})
    result = _collect({"alice": files}, rows)["alice"]
    assert result.status == "ok" and result.total == by_name("sft_loss").points


def test_results_count_only_collected_test_ids_once_each(tmp_path):
    """A row for a test id the judge did not collect, or a second row for one, is not counted."""
    from rlhf_lab.grading.grade import _collect
    folder = tmp_path / "bob"
    shutil.copytree(SOLUTIONS, folder)
    files = sorted(folder.glob("*.ipynb"))
    row = {"student": "bob", "event": "test", "exercise": "gae"}
    rows = [{"student": "bob", "event": "collected", "tests": ["gae1"]},
            dict(row, test="gae1", outcome="failed", message="wrong"),
            dict(row, test="gae1", outcome="passed"),                  # a repeat: ignored
            dict(row, test="forged", outcome="passed"),                # unknown: ignored
            dict(row, exercise="kl_k1", test="forged2", outcome="passed"),
            {"student": "bob", "event": "done"}]
    result = _collect({"bob": files}, rows)["bob"]
    assert result.status == "ok" and result.total == 0
    assert result.exercises["gae"].failed == 1 and "kl_k1" not in result.exercises
