"""Read a submission: which code the grader runs, from which notebook, defining which functions.

A notebook's **exercise cells** (code cells tagged ``exercise``) are what the grader runs, after a
fixed preamble (``import math; import numpy as np; import torch; import torch.nn.functional as
F``); the setup cell and the training cells are never run. IPython magics (``%matplotlib``,
``!ls``) are removed line by line; a cell magic (``%%bash``) makes its cell fail cleanly.
If a student lost a cell's tag, an untagged cell that defines an exercise's function still
counts: only that function's ``def`` is taken from it.

This module reads files and parses code; it never runs student code.
"""
from __future__ import annotations

import ast
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .exercises import EXERCISES, NOTEBOOKS
from .scan import scan

__all__ = ["NotebookError", "Cell", "Submission", "read_notebook", "strip_magics",
           "defined_names", "notebook_cells", "read_submission", "read_module", "MAX_BYTES"]

MAX_BYTES = 64 * 2**20                                  # a notebook larger than this is refused
EXERCISE_NAMES = frozenset(e.name for e in EXERCISES)
_RUNNABLE_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")


class NotebookError(Exception):
    """A notebook cannot be read (not JSON, not a notebook, too large); the message says why."""


@dataclass(frozen=True)
class Cell:
    """Code the grader runs in a student process."""
    key: str                     # unique in a submission: "<notebook file>#<cell index>"
    namespace: str               # cells of one notebook share a namespace, as in Jupyter
    filename: str                # shown in error messages, e.g. "01_sft.ipynb, cell 4"
    source: str                  # the code, magics removed
    names: tuple[str, ...]       # the functions it defines at top level (found statically)
    forbidden: str | None = None  # why the cell is not run (static scan), or None


@dataclass
class Submission:
    """What one student handed in: runnable cells, and notes on anything unreadable."""
    cells: list[Cell] = field(default_factory=list)
    notebooks: dict[str, str | None] = field(default_factory=dict)   # file -> course notebook
    errors: dict[str, str] = field(default_factory=dict)             # file -> why unreadable

    def defining(self, name: str) -> list[Cell]:
        """The cells that define function ``name``, those of its own notebook first."""
        home = {e.name: e.notebook for e in EXERCISES}.get(name)
        cells = [c for c in self.cells if name in c.names]
        return sorted(cells, key=lambda c: self.notebooks.get(c.namespace) != home)


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, refusing a symbolic link (even as the last part of the path), a
    FIFO or device (which could block the grader), and anything over :data:`MAX_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if path.is_symlink():
            raise NotebookError(f"{path.name} is a symbolic link; hand in the notebook itself, "
                                f"not a link to it") from None
        raise NotebookError(f"{path.name} cannot be read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotebookError(f"{path.name} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise NotebookError(f"{path.name} is larger than {MAX_BYTES // 2**20} MB")
        return f.read(MAX_BYTES + 1)


def read_notebook(path) -> dict:
    """The JSON of a notebook file, checked to have the shape of an nbformat-4 notebook."""
    path = Path(path)
    try:
        nb = json.loads(_read_regular_file(path).decode("utf-8"))
    except NotebookError:
        raise
    except UnicodeDecodeError:
        raise NotebookError(f"{path.name} is not a text file (not UTF-8)") from None
    except json.JSONDecodeError as error:
        raise NotebookError(f"{path.name} is not valid JSON (line {error.lineno}: {error.msg}); "
                            f"was it saved by Jupyter?") from None
    except (OSError, RecursionError) as error:
        raise NotebookError(f"{path.name} cannot be read: {error}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path.name} is JSON but not a Jupyter notebook (no list of cells)")
    return nb


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def strip_magics(source: str) -> str:
    """``source`` with each IPython magic or shell line (``%...``, ``!...``) turned into
    ``pass`` at the same indentation, so line numbers and blocks stay valid. A cell magic on
    the first line is dropped when it only times or captures (``%%time``); any other cell
    magic (``%%bash``) makes the cell a syntax error with a clear message."""
    lines = source.split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].split()[0]
        if magic not in _RUNNABLE_CELL_MAGICS:
            return f"raise SyntaxError('the cell magic {magic} is not Python; the grader does " \
                   f"not run it')"
        lines[0] = ""
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            out.append(line[:len(line) - len(stripped)] + "pass")
        else:
            out.append(line)
    return "\n".join(out)


def defined_names(source: str) -> tuple[str, ...]:
    """Names of the functions (and plain assignments) at the top level of ``source``; on a
    syntax error, a line-based guess (``def name(`` at the start of a line)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):      # deep nesting too
        return tuple(dict.fromkeys(re.findall(r"^(?:async\s+)?def\s+(\w+)", source, re.M)))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return tuple(dict.fromkeys(names))


def _tags(cell: dict) -> list:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return tags if isinstance(tags, list) else []


def _untagged_definitions(source: str, wanted: set[str]) -> str | None:
    """The ``def`` blocks of ``wanted`` functions in an untagged cell (nothing else of it)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):      # deep nesting too
        return None
    parts = [ast.get_source_segment(source, node) for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name in wanted
             and not node.decorator_list]
    return "\n\n".join(p for p in parts if p) or None


def notebook_cells(nb: dict, file_name: str, static_scan: bool = True) -> list[Cell]:
    """The cells the grader runs from one notebook (see the module docstring);
    ``static_scan=False`` leaves every cell runnable (to test the run-time guards alone)."""
    scan_ = scan if static_scan else (lambda source: None)
    cells, found = [], set()
    code = [(i, c) for i, c in enumerate(nb["cells"])
            if isinstance(c, dict) and c.get("cell_type") == "code"]
    for index, cell in code:
        if "exercise" not in _tags(cell):
            continue
        source = strip_magics(_text(cell.get("source")))
        names = defined_names(source)
        found.update(names)
        cells.append(Cell(f"{file_name}#{index}", file_name, f"{file_name}, cell {index}",
                          source, names, scan_(source)))
    for index, cell in code:
        if "exercise" in _tags(cell):
            continue
        source = strip_magics(_text(cell.get("source")))
        wanted = (EXERCISE_NAMES - found) & set(defined_names(source))
        extract = _untagged_definitions(source, wanted) if wanted else None
        if extract:
            names = defined_names(extract)
            found.update(names)
            cells.append(Cell(f"{file_name}#{index}", file_name,
                              f"{file_name}, cell {index} (not tagged 'exercise')", extract,
                              names, scan_(extract)))
    return cells


def _course_notebook(file_name: str, cells: list[Cell]) -> str | None:
    """Which course notebook a submitted file is: by its name, else by the exercise functions
    it defines (the notebook with most of them)."""
    if file_name in NOTEBOOKS:
        return file_name
    stem = file_name[:2]
    by_prefix = [n for n in NOTEBOOKS if stem.isdigit() and n.startswith(stem)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    votes: dict[str, int] = {}
    for cell in cells:
        for name in cell.names:
            for e in EXERCISES:
                if e.name == name:
                    votes[e.notebook] = votes.get(e.notebook, 0) + 1
    return max(votes, key=votes.get) if votes else None


def read_submission(paths, static_scan: bool = True) -> Submission:
    """Read every notebook in ``paths`` (files, or folders whose ``*.ipynb`` are read). An
    unreadable notebook (a symbolic link included) is noted in ``errors``; it never stops the
    others."""
    files: list[Path] = []
    for path in [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]:
        if path.is_dir() and not path.is_symlink():
            files += sorted(p for p in path.glob("*.ipynb") if not p.name.startswith("."))
        else:
            files.append(path)
    submission = Submission()
    for path in files:
        try:
            cells = notebook_cells(read_notebook(path), path.name, static_scan)
        except NotebookError as error:
            submission.errors[path.name] = str(error)
            submission.notebooks[path.name] = _course_notebook(path.name, [])
            continue
        submission.cells += cells
        submission.notebooks[path.name] = _course_notebook(path.name, cells)
    return submission


def read_module(path) -> Submission:
    """A plain Python file of functions (e.g. a mutant of the solutions) as one cell."""
    path = Path(path)
    source = path.read_text()
    return Submission(cells=[Cell(f"{path.name}#0", path.name, path.name, source,
                                  defined_names(source), None)],
                      notebooks={path.name: None})
