"""docs/coverage.md maps the lecture to notebook cells, package modules and tests; this keeps it true.

It reads the table and the files it names (no notebook runs, no training): every notebook cell id
and heading, module, name and test in the table must exist, and every lecture section and
conceptual question must keep its row. Each check returns a list of problems, so that one failure
names everything that drifted at once."""
import ast
import json
import re
from functools import cache

from rlhf_lab.core.paths import REPO

COVERAGE = REPO / "docs" / "coverage.md"

# The lecture's headings in order (week12_rlhf_lecture.txt), under the ids the table uses. Its
# "Conceptual questions" section is the five rows Q1-Q5.
LECTURE_SECTIONS = {
    "§1": "Purpose of this lecture",
    "§2": "The three-stage RLHF pipeline",
    "§2.1": "Stage 1: Supervised fine-tuning",
    "§2.2": "Stage 2: Reward modeling",
    "§2.2.1": "Pairwise comparisons over absolute scores",
    "§2.2.2": "The Bradley-Terry preference model",
    "§2.2.3": "Reward model architecture",
    "§2.3": "Stage 3: Policy optimization with PPO",
    "§2.3.1": "The KL-regularized RLHF objective",
    "§2.3.2": "KL-regularized objective: the closed-form solution",
    "§2.3.3": "PPO in the RLHF context",
    "§3": "Limitations of vanilla RLHF",
    "§3.1": "Overoptimization and Goodhart's Law",
    "§3.2": "Distributional mismatch in preference data",
    "§3.3": "The alignment tax",
    "§4": "Variants and extensions",
    "§5": "Key takeaways",
    "§7": "Looking ahead",
    "§8": "Further reading",
}
QUESTIONS = ("Q1", "Q2", "Q3", "Q4", "Q5")

PART = re.compile(r"\*\*(§[\d.]+|Q\d)\*\*")
CODE = re.compile(r"`([^`]+)`")
NOTEBOOK_REF = re.compile(r'`(solutions/[^`#]+\.ipynb)#([^`]+)`(?:\s*"([^"]+)")?')
NOTEBOOK_CELL = re.compile(r"solutions/[^#]+\.ipynb#[\w-]+")
MODULE_REF = re.compile(r"(rlhf_lab/[\w/]+\.py)(?:::(\w+))?")
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+(?:::\w+)?)")
NONE = "—"                                      # a column with nothing to name


def rows(text: str) -> list[list[str]]:
    """The table's body rows, each as its five stripped cells (part, notebook, modules, tests, gap)."""
    body = [line for line in text.splitlines()
            if line.startswith("|") and not re.match(r"\|\s*(part\s*\||-)", line)]   # not the header
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in body]


def shape_problems(table: list[list[str]]) -> list[str]:
    """Five cells a row, a part id, at least one notebook cell, and nothing unparsed in the code
    columns (a typo there would otherwise be skipped silently); modules and tests may be —."""
    problems = []
    for row in table:
        if len(row) != 5:
            problems.append(f"row {row[0][:40]!r}: {len(row)} cells, not 5")
            continue
        part, notebook, modules, tests, _ = row
        if not PART.match(part):
            problems.append(f"row {part[:40]!r}: no **§n** or **Qn** id")
        for column, pattern, may_be_empty in ((notebook, NOTEBOOK_CELL, False),
                                              (modules, MODULE_REF, True), (tests, TEST_REF, True)):
            if column == NONE and may_be_empty:
                continue
            bad = [c for c in CODE.findall(column) if not pattern.fullmatch(c)]
            if bad or not CODE.findall(column):
                problems.append(f"row {part[:40]!r}: cannot read {bad or column!r}")
    return problems


@cache
def _notebook(path: str) -> dict:
    return json.loads((REPO / path).read_text())


def _headings(cell: dict) -> list[str]:
    if cell["cell_type"] != "markdown":
        return []
    return [line.lstrip("#").strip() for line in "".join(cell["source"]).splitlines()
            if line.startswith("#")]


def notebook_problems(table: list[list[str]]) -> list[str]:
    """Each `solutions/...ipynb#id` exists, holds a cell with that id, and has the quoted heading."""
    problems = []
    for row in table:
        for path, cell_id, heading in NOTEBOOK_REF.findall(row[1]):
            if not (REPO / path).is_file():
                problems.append(f"{path}: no such notebook")
                continue
            cells = {c.get("id"): c for c in _notebook(path)["cells"]}
            if cell_id not in cells:
                problems.append(f"{path}#{cell_id}: no cell with that id")
            elif heading and heading not in _headings(cells[cell_id]):
                problems.append(f"{path}#{cell_id}: heading {heading!r} not in {_headings(cells[cell_id])}")
    return problems


@cache
def _tree(path: str) -> ast.Module:
    return ast.parse((REPO / path).read_text())


def _defined(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """Names bound at the top of a module or class body: functions, classes, assignments."""
    names = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _has(path: str, dotted: str) -> bool:
    """Whether `A` or `A::b` (a method of class A) is defined in the file at `path`."""
    body = _tree(path).body
    *outer, name = dotted.split("::")
    for cls in outer:
        node = _defined(body).get(cls)
        if not isinstance(node, ast.ClassDef):
            return False
        body = node.body
    return name in _defined(body)


def _reference_problems(table, column: int, pattern, missing_file: str, missing_name: str) -> list[str]:
    """Each `path::name` that ``pattern`` finds in ``column``: the file exists, and defines the
    name when one is given."""
    problems = []
    for row in table:
        for path, name in pattern.findall(row[column]):
            if not (REPO / path).is_file():
                problems.append(f"{path}: {missing_file}")
            elif name and not _has(path, name):
                problems.append(f"{path}::{name}: {missing_name}")
    return problems


def module_problems(table: list[list[str]]) -> list[str]:
    """Each `rlhf_lab/...py` exists, and defines the `::name` given with it."""
    return _reference_problems(table, 2, MODULE_REF, "no such module", "not defined there")


def named_test_problems(table: list[list[str]]) -> list[str]:
    """Each `tests/...py::name` exists and defines that test (by name, without parameters)."""
    return _reference_problems(table, 3, TEST_REF, "no such test file", "no such test")


def section_problems(table: list[list[str]]) -> list[str]:
    """Every lecture section has a row, each question exactly one, and no row has an unknown id."""
    parts = [m.group(1) for row in table if (m := PART.match(row[0]))]
    problems = [f"{s} ({LECTURE_SECTIONS[s]}): no row" for s in LECTURE_SECTIONS if s not in parts]
    problems += [f"{q}: {parts.count(q)} rows, not 1" for q in QUESTIONS if parts.count(q) != 1]
    problems += [f"{p}: not a lecture section or question" for p in set(parts)
                 if p not in LECTURE_SECTIONS and p not in QUESTIONS]
    return problems


TABLE = rows(COVERAGE.read_text())


def test_every_row_reads_as_part_notebook_modules_tests_gap():
    assert TABLE, "docs/coverage.md has no table rows"
    assert shape_problems(TABLE) == []


def test_every_notebook_cell_and_heading_exists():
    assert notebook_problems(TABLE) == []


def test_every_module_and_name_exists():
    assert module_problems(TABLE) == []


def test_every_named_test_exists():
    assert named_test_problems(TABLE) == []


def test_every_lecture_section_and_question_has_its_row():
    assert section_problems(TABLE) == []


def test_the_checks_catch_a_stale_row():
    """One made-up row with a stale reference in each column, and the lecture missing its rows."""
    stale = rows('| **§9** x | `solutions/01_sft.ipynb#nope` "1. The loss"<br>'
                 '`solutions/01_sft.ipynb#c02` "2. Not the heading" | '
                 "`rlhf_lab/nowhere.py`<br>`rlhf_lab/equations/losses.py::no_such_loss` | "
                 "`tests/equations/test_losses.py::test_nothing`<br>`tests/missing.py::test_x` | |")
    assert shape_problems(stale) == []
    found = notebook_problems(stale)
    assert found[0] == "solutions/01_sft.ipynb#nope: no cell with that id"
    assert found[1].startswith("solutions/01_sft.ipynb#c02: heading '2. Not the heading' not in")
    assert module_problems(stale) == ["rlhf_lab/nowhere.py: no such module",
                                      "rlhf_lab/equations/losses.py::no_such_loss: not defined there"]
    assert named_test_problems(stale) == ["tests/equations/test_losses.py::test_nothing: no such test",
                                          "tests/missing.py: no such test file"]
    sections = section_problems(stale)
    assert "§9: not a lecture section or question" in sections
    assert "Q1: 0 rows, not 1" in sections and "§1 (Purpose of this lecture): no row" in sections
    assert shape_problems(rows("| **Q1** x | no cell | `rlhf_lab/world.py` | `tests/test_world.py` | |")) == [
        "row '**Q1** x': cannot read 'no cell'", "row '**Q1** x': cannot read ['tests/test_world.py']"]
    assert shape_problems(rows("| oops | `solutions/01_sft.ipynb#c02` | — | — | |")) == [
        "row 'oops': no **§n** or **Qn** id"]
