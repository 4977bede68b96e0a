"""The course notebooks: solutions/ is the source, notebooks/ is generated from it.

These tests read the notebooks and run only their setup, exercise and check cells (seconds);
running them whole is ``pytest --nbval-lax solutions/`` (minutes: it trains the models). That
run compares each check cell's output with the line stored under it, which is why check cells,
and only they, keep an output in the committed notebooks."""
import ast
import contextlib
import inspect
import io
import time

import nbformat
import pytest

from rlhf_lab.core import progress
from rlhf_lab.core.paths import PACKAGE, REPO
from rlhf_lab.course.release import BEGIN, END, EXPECTED, STUB, expected_outputs, is_check_cell, release, strip_solutions
from rlhf_lab.equations import beyond_losses, closed_form, losses, overopt_math, rl_losses

ROOT = REPO
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENT = ROOT / "notebooks"
ANALYSIS_ONLY = {"05_beta_sweep.ipynb"}      # reads results; no function to write

# every exercise of the course, with the package function it must be able to replace
REFERENCES = {
    "response_logprob": losses.response_logprob,
    "sft_loss": losses.sft_loss,
    "bt_probability": losses.bt_probability,
    "bradley_terry_loss": losses.bradley_terry_loss,
    "plackett_luce_loss": losses.plackett_luce_loss,
    "fit_bradley_terry": losses.fit_bradley_terry,
    "boltzmann_policy": closed_form.boltzmann_policy,
    "optimal_objective": closed_form.optimal_objective,
    "kl_optimal": closed_form.kl_optimal,
    "importance_estimates": closed_form.importance_estimates,
    "kl_k1": rl_losses.kl_k1,
    "kl_k3": rl_losses.kl_k3,
    "shaped_rewards": rl_losses.shaped_rewards,
    "gae": rl_losses.gae,
    "ppo_clip_loss": rl_losses.ppo_clip_loss,
    "value_loss": rl_losses.value_loss,
    "kl_best_of_n": overopt_math.kl_best_of_n,
    "fit_bon": overopt_math.fit_bon,
    "fit_rl": overopt_math.fit_rl,
    "aggregate_ensemble": overopt_math.aggregate_ensemble,
    "dpo_loss": beyond_losses.dpo_loss,
    "group_advantages": beyond_losses.group_advantages,
    "ppo_ptx_loss": beyond_losses.ppo_ptx_loss,
}


def read(path):
    return nbformat.read(path, as_version=4)


def tags(cell):
    return cell.metadata.get("tags", [])


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def is_check(cell):
    return "checks.check_" in cell.source


def ids(paths):
    return [p.stem for p in paths]


def test_there_are_solution_notebooks():
    names = [p.name for p in SOLUTIONS]
    for expected in ("00_world_and_base_model.ipynb", "01_sft.ipynb", "02_reward_model.ipynb",
                     "03_closed_form.ipynb"):
        assert expected in names


def test_student_notebooks_are_in_sync_with_solutions(tmp_path):
    """notebooks/ is exactly what `python -m rlhf_lab release` writes from solutions/."""
    fresh = release(ROOT / "solutions", tmp_path)
    assert sorted(p.name for p in fresh) == sorted(p.name for p in STUDENT.glob("*.ipynb")), \
        "notebooks/ lists other files than solutions/: run `python -m rlhf_lab release`"
    for path in fresh:
        expected, committed = read(path), read(STUDENT / path.name)
        assert len(expected.cells) == len(committed.cells), f"{path.name}: run the release tool"
        for a, b in zip(expected.cells, committed.cells):
            assert (a.cell_type, a.source, tags(a)) == (b.cell_type, b.source, tags(b)), \
                f"{path.name} is out of date: run `python -m rlhf_lab release`"
            if a.cell_type == "code":
                assert (a.outputs, a.execution_count) == (b.outputs, b.execution_count), \
                    f"{path.name}: outputs differ from a fresh release"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_exercise_cells_are_tagged_and_hold_one_function_with_solution_markers(path):
    exercises = 0
    for cell in code_cells(read(path)):
        has_markers = BEGIN in cell.source
        assert has_markers == ("exercise" in tags(cell)), \
            f"{path.name}: a cell with solution markers must be tagged 'exercise' and vice versa"
        if not has_markers:
            continue
        exercises += 1
        tree = ast.parse(cell.source)
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        assert tree.body == functions and all(ast.get_docstring(f) for f in functions), \
            f"{path.name}: an exercise cell holds only functions, each with a docstring"
        assert cell.source.count(BEGIN) == cell.source.count(END) == len(functions)
        begins = [i + 1 for i, line in enumerate(cell.source.split("\n")) if line.strip() == BEGIN]
        for function, begin_line in zip(functions, begins):
            assert function.lineno < begin_line <= function.end_lineno, \
                "each function holds one solution block inside its body"
    assert exercises >= 1 or path.name in ANALYSIS_ONLY


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_each_exercise_is_followed_by_its_check_and_only_checks_are_compared(path):
    cells = code_cells(read(path))
    for i, cell in enumerate(cells):
        assert is_check(cell) == is_check_cell(cell), \
            f"{path.name}: only a check cell carries # NBVAL_CHECK_OUTPUT, on its first line"
        assert "NBVAL_CHECK_OUTPUT" not in cell.source or is_check(cell)
        if "exercise" in tags(cell):
            following = cells[i + 1]
            called = {node.id for node in ast.walk(ast.parse(following.source))
                      if isinstance(node, ast.Name)}
            for function in ast.parse(cell.source).body:
                assert is_check(following) and function.name in called, \
                    f"{path.name}: the exercise {function.name} must be followed by a check " \
                    f"cell calling it"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_setup_cell_first_and_no_pip(path):
    nb = read(path)
    first = code_cells(nb)[0]
    assert tags(first) == ["setup"] and "%matplotlib inline" in first.source
    assert "torch.set_num_threads" in first.source and "manual_seed" in first.source
    for cell in nb.cells:
        assert "!pip" not in cell.source and "%pip" not in cell.source
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.nbformat == 4


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_code_lines_fit_the_editor_without_a_scrollbar(path):
    """#26: a code line over 100 characters scrolled sideways in JupyterLab on a 1280-pixel
    screen (tests/browser/check_layout.py finds such cells in a real browser)."""
    long = [(i, line) for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
            for line in cell.source.split("\n") if len(line) > 100]
    assert long == [], long


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_a_time_to_run_under_the_title_and_a_references_cell(path):
    """#26: how long the notebook takes is said under its title (a budget from
    docs/benchmarks.md); the papers it discusses are linked at the end, then the next notebook."""
    cells = read(path).cells
    title, budget = cells[0].source.split("\n")[:3:2]
    assert title.startswith(f"# {path.name[:2]} · ") and budget.startswith("*Time to run: ")
    references = [c.source for c in cells if c.source.startswith("## References")]
    assert len(references) == 1 and "](https://" in references[0]
    later = SOLUTIONS[SOLUTIONS.index(path) + 1:]
    assert not later or f"]({later[0].name})" in cells[-1].source


@pytest.mark.parametrize("path", SOLUTIONS + sorted(STUDENT.glob("*.ipynb")),
                         ids=[f"{p.parent.name}/{p.stem}" for p in
                              SOLUTIONS + sorted(STUDENT.glob("*.ipynb"))])
def test_committed_notebooks_have_no_outputs_but_the_expected_check_lines(path):
    nb = read(path)
    assert "widgets" not in nb.metadata
    for cell in code_cells(nb):
        if is_check_cell(cell):
            assert len(cell.outputs) == 1
            out = cell.outputs[0]
            assert out.output_type == "stream" and out.name == "stdout"
            if path.parent == STUDENT:           # shown as what to expect, not as a run of theirs
                assert cell.execution_count is None and out.text.startswith(EXPECTED + "✓ ")
            else:
                assert cell.execution_count is not None and out.text.startswith("✓ ")
            assert out.text.count("\n") == 1
        else:
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path} has outputs: run `python -m rlhf_lab release --clean-solutions`"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_exercise_signatures_match_the_package_functions(path):
    """A student's function can replace the package's in the real training loop."""
    for cell in code_cells(read(path)):
        if "exercise" not in tags(cell):
            continue
        for fn in ast.parse(cell.source).body:
            assert fn.name in REFERENCES, f"{fn.name}: no package function to compare it with"
            student = [a.arg for a in fn.args.args][:len(fn.args.args) - len(fn.args.defaults)]
            reference = [p.name for p in inspect.signature(REFERENCES[fn.name]).parameters.values()
                         if p.default is inspect.Parameter.empty]
            assert student == reference, \
                f"{fn.name}{tuple(student)} vs the package's {tuple(reference)}"


def _expected_check_lines(path):
    return [c.outputs[0].text.rstrip("\n") for c in code_cells(read(path)) if is_check_cell(c)]


def test_the_expected_mark_comes_off_for_nbval_and_only_once():
    shown = [{"output_type": "stream", "name": "stdout", "text": [EXPECTED, "✓ f: all 2 checks passed\n"]}]
    assert expected_outputs(shown)[0]["text"] == "✓ f: all 2 checks passed\n"
    bare = [{"output_type": "stream", "name": "stdout", "text": "✓ expected when solved\n"}]
    assert expected_outputs(bare) == bare


def _run_exercises(path):
    """Run the setup, exercise and check cells of a notebook; return the check cells' output."""
    namespace, out = {"__name__": "__notebook__"}, io.StringIO()
    for cell in code_cells(read(path)):
        if tags(cell) and tags(cell)[0] in ("setup", "exercise") or is_check(cell):
            source = "\n".join(line for line in cell.source.split("\n")
                               if not line.startswith("%"))
            with contextlib.redirect_stdout(out if is_check(cell) else io.StringIO()):
                exec(compile(source, f"{path.name}", "exec"), namespace)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_solutions_pass_their_checks_and_print_the_stored_lines(path):
    lines = _run_exercises(path)
    assert lines or path.name in ANALYSIS_ONLY
    assert all(line.startswith("✓ ") and line.endswith("checks passed") for line in lines), lines
    assert lines == _expected_check_lines(path), \
        "a check prints another line than the one stored in the notebook: re-run the solution " \
        "notebook, save it, and run `python -m rlhf_lab release --clean-solutions`"


@pytest.mark.parametrize("path", sorted(STUDENT.glob("*.ipynb")),
                         ids=ids(sorted(STUDENT.glob("*.ipynb"))))
def test_student_stubs_are_reported_as_not_implemented(path):
    lines = _run_exercises(path)
    assert lines or path.name in ANALYSIS_ONLY
    assert all(line.startswith("✗ ") and "not implemented yet" in line for line in lines), lines


def test_strip_solutions_keeps_signature_docstring_and_indentation():
    source = ('def f(x):\n    """Doc."""\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n'
              '    ### END SOLUTION\n')
    assert strip_solutions(source) == f'def f(x):\n    """Doc."""\n    y = 1\n    {STUB}\n'
    with pytest.raises(ValueError, match="never closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="without"):
        strip_solutions("x = 1\n### END SOLUTION")


def test_release_cli_strips_every_output_but_the_check_lines(tmp_path):
    from nbformat.v4 import new_output

    from rlhf_lab.__main__ import main

    nb = read(ROOT / "solutions" / "01_sft.ipynb")
    nb.metadata["widgets"] = {"state": {}}
    for cell in code_cells(nb):
        if not is_check_cell(cell):
            cell.outputs = [new_output("stream", name="stdout", text="a number that varies\n")]
            cell.execution_count = 7
    (tmp_path / "sol").mkdir()
    nbformat.write(nb, tmp_path / "sol" / "01_sft.ipynb")
    assert main(["release", "--solutions", str(tmp_path / "sol"), "--out",
                 str(tmp_path / "nb"), "--clean-solutions"]) == 0
    for path, mark in ((tmp_path / "sol" / "01_sft.ipynb", ""), (tmp_path / "nb" / "01_sft.ipynb", EXPECTED)):
        cleaned = read(path)
        assert "widgets" not in cleaned.metadata
        kept = [c.outputs[0].text for c in code_cells(cleaned) if c.outputs]
        assert kept == [mark + "✓ sft_loss: all 5 checks passed\n"]
    student = read(tmp_path / "nb" / "01_sft.ipynb")
    assert BEGIN not in str(student) and STUB in str(student)
    assert [c.execution_count for c in code_cells(student) if c.outputs] == [None]
    assert BEGIN in read(tmp_path / "sol" / "01_sft.ipynb").cells[4].source


# ----------------------------------------------------------------------------- progress bars


def test_no_module_updates_a_bar_more_than_once_a_second():
    """Every bar goes through rlhf_lab.core.progress (tqdm's own default updates ten times a second)."""
    package = PACKAGE
    direct = [f.name for f in package.rglob("*.py")
              if f.name != "progress.py" and "tqdm" in f.read_text()]
    assert direct == []
    bar = progress.progress(range(3), desc="x", disable=False)
    assert bar.mininterval == progress.MIN_INTERVAL_S == 1.0
    bar.close()


@pytest.mark.slow
def test_a_bar_redraws_at_most_once_a_second():
    """A loop of 3000 steps (1.5 s or more) redraws about once a second (tqdm's default: ten times).
    In a notebook every redraw is a few kernel messages, and a few thousand in one cell make nbval
    lose the kernel's last message and fail the cell ("Timeout of 5 seconds exceeded waiting for
    output"): see rlhf_lab/core/progress.py."""
    out, start = io.StringIO(), time.perf_counter()
    for _ in progress.progress(range(3000), desc="steps", file=out, disable=False):
        time.sleep(0.0005)
    seconds, redraws = time.perf_counter() - start, out.getvalue().count("\r")
    assert 2 <= redraws <= seconds / progress.MIN_INTERVAL_S + 3, (redraws, seconds)


def _notebook_tree(nb) -> ast.Module:
    """Every code cell of a notebook as one module (IPython magics and shell lines dropped)."""
    lines = [line for cell in code_cells(nb) for line in cell.source.splitlines()
             if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def undefined_names_and_attributes(nb) -> list[str]:
    """Names a notebook reads but never binds, and ``module.attr`` reads of an imported rlhf_lab
    module that lacks ``attr``: what a package refactor leaves behind in the notebooks."""
    import builtins
    import importlib
    tree = _notebook_tree(nb)
    bound = set(dir(builtins)) | {"display", "get_ipython"}
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                bound.add(name)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlhf_lab"):
                    parent = importlib.import_module(node.module)
                    value = getattr(parent, alias.name, None)
                    if value is None:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    if inspect.ismodule(value):
                        modules[name] = value
    problems = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            problems.add(f"undefined name {node.id!r}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in modules and not hasattr(modules[node.value.id], node.attr)):
            problems.add(f"{node.value.id}.{node.attr} does not exist")
    return sorted(problems)


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_notebooks_name_only_what_exists(path):
    """Every name a solution notebook reads is bound in it, and every attribute it reads from an
    imported rlhf_lab module exists (a refactor of the package once left ``theory.`` behind)."""
    assert undefined_names_and_attributes(read(path)) == []


def test_the_name_check_finds_a_stale_module_and_a_missing_attribute():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%matplotlib inline\nfrom rlhf_lab.equations import closed_form\n"
                                  "x = theory.enumerable_space(3)\ny = closed_form.no_such_thing\n"
                                  "z = closed_form.boltzmann_policy")])
    assert undefined_names_and_attributes(nb) == ["closed_form.no_such_thing does not exist",
                                                  "undefined name 'theory'"]
