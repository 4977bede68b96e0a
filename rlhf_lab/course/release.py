"""Release the student notebooks: ``solutions/`` (the source) -> ``notebooks/``.

In a solution notebook the code a student must write sits between two marker lines (the
nbgrader convention)::

    def sft_loss(logits, input_ids, response_mask):    <- the signature and the
        '''Mean NLL of the response tokens.'''           docstring are kept
        ### BEGIN SOLUTION
        ...                                            <- the block becomes one line:
        ### END SOLUTION                                  raise NotImplementedError  # your code

Everything else is kept: markdown, the other code, cell ids and tags (``setup``, ``exercise``,
``check``). Outputs are stripped, except those of the **check cells** (first line
``# NBVAL_CHECK_OUTPUT``): in ``solutions/`` they keep the line a correct solution prints, with an
execution count, so that ``pytest --nbval-lax`` compares a run against it. In the student
notebooks the same line reads ``expected when solved: ✓ ...`` with no execution count, so that a
student who has run nothing yet does not read it as a pass of their own; the grader's
``--nbval-copy`` (:func:`rlhf_lab.grading.grade.prepare_nbval`) puts the bare line back
(:func:`expected_outputs`) before nbval compares.

Editing the course: change ``solutions/`` in Jupyter, run it top to bottom, save, then
``python -m rlhf_lab release --clean-solutions`` strips the solutions' other outputs in place
and writes ``notebooks/``. Without the flag only ``notebooks/`` is written.

``python -m rlhf_lab release --bundle DIR`` also writes the **student bundle**: a copy of the kit
that a student can install and run (README, AGENTS.md for AI assistants, requirements, the
package, data, benchmarks, the released notebooks, the public tests, the glossary), without ``solutions/``, ``tests/hidden/`` or any version
control or cache folder. See :func:`write_bundle`.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nbformat

__all__ = ["BEGIN", "END", "STUB", "CHECK_MARK", "EXPECTED", "expected_outputs", "is_check_cell", "strip_solutions",
           "clean_notebook", "student_notebook", "release", "write_bundle", "BUNDLE_ITEMS"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = "raise NotImplementedError  # your code here"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
EXPECTED = "expected when solved: "


def _marked(outputs: list) -> list:
    """The check cell's stream outputs as the student notebook shows them (see the docstring)."""
    out = copy.deepcopy(outputs)
    for o in out:
        text = "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        o["text"] = text if text.startswith(EXPECTED) else EXPECTED + text
    return out


def expected_outputs(outputs: list) -> list:
    """A released check cell's outputs with the ``expected when solved:`` mark taken off: the
    line a correct solution prints, as nbval must compare it."""
    out = copy.deepcopy(outputs)
    for o in out:
        text = "".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
        o["text"] = text[len(EXPECTED):] if text.startswith(EXPECTED) else text
    return out


def is_check_cell(cell) -> bool:
    """A code cell whose first line is ``# NBVAL_CHECK_OUTPUT``: nbval compares its output."""
    return cell.cell_type == "code" and cell.source.split("\n", 1)[0].strip() == CHECK_MARK


def strip_solutions(source: str, where: str = "cell") -> str:
    """``source`` with each BEGIN/END SOLUTION block replaced by :data:`STUB`, indented like the
    BEGIN marker. Raises ValueError (naming ``where`` and the line) on unbalanced markers.

    Example: "def f():\\n    ### BEGIN SOLUTION\\n    return 1\\n    ### END SOLUTION" becomes
    "def f():\\n    raise NotImplementedError  # your code here".
    """
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN} inside another solution block")
            inside = True
            out.append(line[:len(line) - len(line.lstrip())] + STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def clean_notebook(nb: nbformat.NotebookNode, name: str = "notebook",
                   strip_answers: bool = True) -> nbformat.NotebookNode:
    """A copy of ``nb`` with every output stripped except the check cells' (numbered as a run
    from the top would number them); with ``strip_answers`` the solutions are replaced too."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)                 # saved widget state is an output too
    count = 0
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)         # timings written by some front ends
        if cell.cell_type != "code":
            continue
        count += 1
        if strip_answers:
            cell.source = strip_solutions(cell.source, f"{name}, cell {index}")
        if is_check_cell(cell):
            cell.outputs = [o for o in cell.outputs if o.get("output_type") == "stream"]
            cell.execution_count = count if cell.outputs else None
            if strip_answers:                        # the student's copy: marked, not numbered
                cell.outputs, cell.execution_count = _marked(cell.outputs), None
        else:
            cell.outputs = []
            cell.execution_count = None
    return nb


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solution notebook (see the module docstring)."""
    return clean_notebook(nb, name, strip_answers=True)


def release(solutions_dir="solutions", notebooks_dir="notebooks",
            clean_solutions: bool = False) -> list[Path]:
    """Write the student version of every ``*.ipynb`` of ``solutions_dir`` into
    ``notebooks_dir`` (created if needed); return the written paths, sorted.

    ``clean_solutions=True`` first rewrites each solution notebook in place without its outputs
    (check cells excepted), as it should be committed."""
    solutions_dir, notebooks_dir = Path(solutions_dir), Path(notebooks_dir)
    sources = sorted(solutions_dir.glob("*.ipynb"))
    if not sources:
        raise ValueError(f"no notebooks (*.ipynb) found in {solutions_dir}")
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        nb = nbformat.read(source, as_version=4)
        if clean_solutions:
            nb = clean_notebook(nb, source.name, strip_answers=False)
            nbformat.write(nb, source)
        target = notebooks_dir / source.name
        nbformat.write(student_notebook(nb, source.name), target)
        written.append(target)
    return written


# what a student bundle holds (when present in the kit); everything else is left out
BUNDLE_ITEMS = ("README.md", "AGENTS.md", "requirements.txt", "pyproject.toml", "LICENSE", "rlhf_lab",
                "data", "benchmarks", "notebooks", "tests", "docs/glossary.md")
_NEVER = ("solutions", "hidden", "mutants", "submissions", ".git", "__pycache__",
          ".pytest_cache", ".ipynb_checkpoints", "*.egg-info", ".venv", "out", "grades")


def _needs_solutions(path: Path) -> bool:
    """A test or benchmark script that reads ``solutions/`` or the hidden tests cannot run in
    a student bundle (and would tell too much)."""
    if path.suffix != ".py" or not path.name.startswith(("test_", "bench_")):
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    return any(s in text for s in ('"solutions"', "'solutions'", "solutions/", '"hidden"',
                                   "'hidden'", "hidden/", '"mutants"', "'mutants'"))


def write_bundle(kit_dir, bundle_dir, notebooks_dir="notebooks") -> list[Path]:
    """Copy the student's part of the kit at ``kit_dir`` into ``bundle_dir`` (which must not
    exist or be empty); return the top-level paths written.

    The released notebooks are taken from ``notebooks_dir`` (relative to ``kit_dir`` unless
    absolute). Left out everywhere: ``solutions/``, ``tests/hidden/`` (the grading tests),
    ``tests/mutants/``, ``.git`` and caches, and the tests and benchmarks that read ``solutions/``
    or the hidden tests. Raises ValueError if the bundle would be written inside the kit's
    ``solutions/`` or over a non-empty folder."""
    kit_dir, bundle_dir = Path(kit_dir).resolve(), Path(bundle_dir).resolve()
    notebooks_dir = (kit_dir / notebooks_dir).resolve()
    if bundle_dir.exists() and any(bundle_dir.iterdir()):
        raise ValueError(f"{bundle_dir} is not empty: choose a new folder for the bundle")
    if bundle_dir == kit_dir or kit_dir in bundle_dir.parents and \
            bundle_dir.relative_to(kit_dir).parts[0] in BUNDLE_ITEMS + ("solutions",):
        raise ValueError(f"{bundle_dir} is inside a folder of the kit that the bundle copies")
    bundle_dir.mkdir(parents=True, exist_ok=True)
    never = shutil.ignore_patterns(*_NEVER)

    def ignore(folder, names):
        skipped = set(never(folder, names))
        return skipped | {n for n in names
                          if n not in skipped and _needs_solutions(Path(folder, n))}

    written = []
    for item in BUNDLE_ITEMS:
        source = notebooks_dir if item == "notebooks" else kit_dir / item
        target = bundle_dir / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)        # docs/glossary.md
            shutil.copy2(source, target)
        else:
            continue
        written.append(target)
    return written
