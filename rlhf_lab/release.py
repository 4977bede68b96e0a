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
``# NBVAL_CHECK_OUTPUT``): they keep the line a correct solution prints, with an execution count,
so that ``pytest --nbval-lax`` compares a student's run against it and grades the notebook.

Editing the course: change ``solutions/`` in Jupyter, run it top to bottom, save, then
``python -m rlhf_lab release --clean-solutions`` strips the solutions' other outputs in place
and writes ``notebooks/``. Without the flag only ``notebooks/`` is written.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat

__all__ = ["BEGIN", "END", "STUB", "CHECK_MARK", "is_check_cell", "strip_solutions",
           "clean_notebook", "student_notebook", "release"]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = "raise NotImplementedError  # your code here"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


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
