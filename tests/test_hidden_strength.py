"""The hidden tests are right and strong: they pass on every correct solution and catch every
wrong answer of the bank.

* every hidden test passes on the package's reference functions;
* every hidden test passes on the solution notebooks' exercise functions and on a set of
  correct but differently written solutions (tests/mutants/honest_variants.py), so the tests are
  not stricter than the spec;
* every wrong answer in tests/mutants/*_mutants.py fails at least one hidden test of its exercise;
* every exercise of the registry has several hidden tests.

Hidden tests are called directly with a :class:`LocalStudent`: no sandbox, no notebook run.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import warnings
from pathlib import Path

import pytest

from rlhf_lab.equations import beyond_losses, closed_form, losses, overopt_math, rl_losses
from rlhf_lab.grading.exercises import EXERCISES
from rlhf_lab.grading.student import LocalStudent

ROOT = Path(__file__).resolve().parent
HIDDEN, MUTANTS = ROOT / "hidden", ROOT / "mutants"
NAMES = [e.name for e in EXERCISES]
REFERENCES = {name: getattr(module, name) for name in NAMES
              for module in (losses, closed_form, rl_losses, overopt_math, beyond_losses) if hasattr(module, name)}
MIN_TESTS = 4


def _load(path: Path, prefix: str):
    for folder in (str(HIDDEN), str(MUTANTS)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"{prefix}{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exercise_of(name: str, strip: str = "") -> str:
    return name[len(strip):].split("__")[0]


def _hidden_tests() -> dict[str, list]:
    """{exercise: [test functions]} from tests/hidden/test_*.py."""
    tests: dict[str, list] = {}
    for path in sorted(HIDDEN.glob("test_*.py")):
        module = _load(path, "_strength_")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and fn.__module__ == module.__name__:
                tests.setdefault(_exercise_of(name, "test_"), []).append(fn)
    return tests


def _functions(pattern: str) -> list[tuple[str, object]]:
    """(name, fn) of every ``<exercise>__<what>`` function in tests/mutants/<pattern>."""
    out = []
    for path in sorted(MUTANTS.glob(pattern)):
        module = _load(path, "_bank_")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if "__" in name and not name.startswith("_") and fn.__module__ == module.__name__:
                out.append((f"{path.stem}.{name}", fn))
    return out


def _solution_functions() -> dict[str, object]:
    """The exercise functions defined by the solution notebooks' ``exercise`` cells."""
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F
    found = {}
    for path in sorted((ROOT.parent / "solutions").glob("*.ipynb")):
        namespace = {"torch": torch, "F": F, "np": np, "math": math}
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if "exercise" in cell.get("metadata", {}).get("tags", []):
                exec(compile("".join(cell["source"]), str(path), "exec"), namespace)
        found.update({name: namespace[name] for name in NAMES if name in namespace})
    return found


TESTS = _hidden_tests()


def _failures(exercise: str, fn) -> list[str]:
    """Names (and messages) of the hidden tests of ``exercise`` that ``fn`` fails."""
    failed = []
    student = LocalStudent({exercise: fn})
    for test in TESTS.get(exercise, []):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                test(student)
        except Exception as error:                   # noqa: BLE001 - any failure counts
            failed.append(f"{test.__name__}: {type(error).__name__}: {error}")
    return failed


def test_every_exercise_has_hidden_tests():
    counts = {name: len(TESTS.get(name, [])) for name in NAMES}
    missing = {name: n for name, n in counts.items() if n < MIN_TESTS}
    assert not missing, f"exercises with fewer than {MIN_TESTS} hidden tests: {missing}"
    unknown = set(TESTS) - set(NAMES)
    assert not unknown, f"hidden tests named after no exercise: {sorted(unknown)}"


def test_hidden_tests_pass_on_the_references():
    failed = {name: _failures(name, REFERENCES[name]) for name in NAMES}
    failed = {name: f for name, f in failed.items() if f}
    assert not failed, f"hidden tests fail on the reference: {failed}"


def test_hidden_tests_pass_on_the_solution_notebooks():
    solutions = _solution_functions()
    assert solutions, "no exercise function found in solutions/*.ipynb"
    failed = {name: _failures(name, fn) for name, fn in solutions.items()}
    failed = {name: f for name, f in failed.items() if f}
    assert not failed, f"hidden tests fail on the solution notebooks: {failed}"


def test_hidden_tests_pass_on_honest_variants():
    variants = _functions("honest_variants.py")
    assert len(variants) >= 10
    failed = {}
    for name, fn in variants:
        exercise = _exercise_of(name.split(".", 1)[1])
        assert exercise in NAMES, f"{name} is named after no exercise"
        if problems := _failures(exercise, fn):
            failed[name] = problems
    assert not failed, f"correct solutions written differently fail hidden tests: {failed}"


def test_every_mutant_is_caught():
    mutants = _functions("*_mutants.py")
    per_exercise = {name: 0 for name in NAMES}
    survivors = []
    for name, fn in mutants:
        exercise = _exercise_of(name.split(".", 1)[1])
        assert exercise in NAMES, f"{name} is named after no exercise"
        per_exercise[exercise] += 1
        if not _failures(exercise, fn):
            survivors.append(name)
    assert not survivors, f"wrong answers that pass every hidden test: {survivors}"
    few = {name: n for name, n in per_exercise.items() if n < 4}
    assert not few, f"exercises with fewer than 4 wrong answers in the bank: {few}"


if __name__ == "__main__":                  # a report: python tests/test_hidden_strength.py
    for name, fn in _functions("*_mutants.py"):
        caught = _failures(_exercise_of(name.split(".", 1)[1]), fn)
        print(f"{'caught' if caught else 'ALIVE '} {name}: {len(caught)} tests"
              + (f"  first: {caught[0][:160]}" if caught else ""))
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
