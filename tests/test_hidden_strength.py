"""The hidden tests are right and strong: they pass on every correct solution and catch every
wrong answer of the bank.

* every hidden test passes on the package's reference functions;
* every hidden test passes on the solution notebooks' exercise functions and on a set of
  correct but differently written solutions (tests/mutants/honest_variants.py), so the tests are
  not stricter than the spec;
* every wrong answer in tests/mutants/*_mutants.py fails at least one hidden test of its exercise;
* every exercise of the registry has several hidden tests;
* an edge-case failure's feedback line names the case in words and shows no test code.

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
import torch

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


def _reference_unless_nan(name: str):
    """The reference, except that it raises as soon as an input holds NaN (a student's own
    check gone wrong): the feedback must still say which case was tried."""
    def fn(*args, **kwargs):
        if any(isinstance(a, torch.Tensor) and a.is_floating_point() and bool(a.isnan().any())
               for a in args):
            raise RuntimeError("found NaN in an input")
        return REFERENCES[name](*args, **kwargs)
    return fn


# hidden test -> (a wrong answer it must catch, words its feedback line must hold)
EDGE_FEEDBACK = {
    "test_value_loss__padding_holding_nan_and_inf":
        ("ppo_mutants.value_loss__masks_after_squaring", "padded positions holding NaN"),
    "test_gae__padding_holding_nan_and_inf":
        ("ppo_mutants.gae__cleanrl_style", "padded positions holding NaN"),
    "test_shaped_rewards__padding_holding_nan_and_inf":
        (_reference_unless_nan("shaped_rewards"), "padded positions holding NaN"),
    "test_ppo_clip_loss__log_probs_near_minus_200_and_1000":
        ("ppo_mutants.ppo_clip_loss__ratio_of_probabilities", "log-probabilities near -200"),
    "test_aggregate_ensemble__unknown_how_raises":
        ("overopt_mutants.aggregate_ensemble__dict_lookup_key_error", "how='max'"),
    "test_group_advantages__eps_is_used":
        ("beyond_mutants.group_advantages__ignores_eps", "eps = 0.5"),
    "test_ppo_ptx_loss__float64_stays_float64":
        ("beyond_mutants.ppo_ptx_loss__float32_and_mask_product", "float64"),
    "test_ppo_ptx_loss__all_padding_row_and_batch_of_one":
        ("beyond_mutants.ppo_ptx_loss__mean_of_row_means", "all padding"),
    "test_plackett_luce_loss__padding_holding_nan_and_inf":
        ("bradley_terry_mutants.plackett_luce_loss__multiplies_by_the_mask",
         "padded positions holding NaN"),
    "test_importance_estimates__tiny_beta_and_huge_rewards":
        ("closed_form_mutants.importance_estimates__kl_nan_at_zero_weights", "at β = 1e-3"),
    "test_response_logprob__padding_holding_nan_and_inf":
        ("logprob_mutants.response_logprob__multiplies_by_the_mask", "logits hold NaN"),
}


@pytest.mark.parametrize("test_name", list(EDGE_FEEDBACK))
def test_edge_case_feedback_names_the_case_without_test_code(test_name):
    from rlhf_lab.grading.exercises import by_name
    from rlhf_lab.grading.gradebook import ExerciseResult, StudentResult, feedback_markdown
    from rlhf_lab.grading.judge import feedback_message

    wrong, words = EDGE_FEEDBACK[test_name]
    exercise = _exercise_of(test_name, "test_")
    if isinstance(wrong, str):
        wrong = dict(_functions("*_mutants.py"))[wrong]
    test = next(t for t in TESTS[exercise] if t.__name__ == test_name)
    with pytest.raises(Exception) as caught:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test(LocalStudent({exercise: wrong}))
    message = feedback_message(caught.value)
    result = StudentResult("alice", submitted={by_name(exercise).notebook},
                           exercises={exercise: ExerciseResult(failed=1, message=message)})
    line = next(x for x in feedback_markdown(result).splitlines() if f"**{exercise}**" in x)
    assert words in line, line
    for code in ("def ", "student.", "assert ", "Traceback", "_helpers", test_name, "poison(",
                 "expect(", "check_grad(", "requires_grad_", ".backward()"):
        assert code not in line, (code, line)
    source = [x.strip() for x in inspect.getsource(test).splitlines() if len(x.strip()) > 12]
    assert not [x for x in source if x in line], line


if __name__ == "__main__":                  # a report: python tests/test_hidden_strength.py
    for name, fn in _functions("*_mutants.py"):
        caught = _failures(_exercise_of(name.split(".", 1)[1]), fn)
        print(f"{'caught' if caught else 'ALIVE '} {name}: {len(caught)} tests"
              + (f"  first: {caught[0][:160]}" if caught else ""))
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
