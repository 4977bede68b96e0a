"""The package's layers stack strictly: no module imports from a layer above its own, and the
import graph has no circle. The graph is built from the source (the AST), so a late import
inside a function counts as much as one at the top of the file."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rlhf_lab"

# lowest first; a module may import from its own layer and any layer before it
LAYERS = [
    ("core", "world"),
    ("datasets",),
    ("equations",),
    ("lm",),
    ("stages",),
    ("pipeline",),
    ("studies",),
    ("course", "grading"),
    ("__main__",),
]


def layer_of(module: str) -> int:
    """``module`` is dotted below the package ("stages.ppo"); its layer is its first part's."""
    head = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"rlhf_lab.{module} belongs to no layer: add it to LAYERS")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, tree: ast.AST, package_dir: Path = PACKAGE) -> set[str]:
    """The rlhf_lab modules that ``path`` imports, dotted below the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name[len("rlhf_lab."):] for a in node.names if a.name.startswith("rlhf_lab.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "rlhf_lab" or node.module.startswith("rlhf_lab.")):
                mod = node.module[len("rlhf_lab"):].lstrip(".")
            else:
                continue
            for a in node.names:            # `from rlhf_lab.lm import models` imports lm.models
                sub = f"{mod}.{a.name}" if mod else a.name
                target = package_dir / sub.replace(".", "/")
                out.add(sub if target.with_suffix(".py").exists() or target.is_dir() else mod)
    return {m for m in out if m}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    graph = {}
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        if name:
            graph[name] = imported(path, name, ast.parse(path.read_text()), package)
    return graph


def upward_imports(graph) -> list[str]:
    return [f"rlhf_lab.{a} (layer {layer_of(a)}) imports rlhf_lab.{b} (layer {layer_of(b)})"
            for a, deps in graph.items() for b in sorted(deps) if layer_of(b) > layer_of(a)]


def circles(graph) -> list[list[str]]:
    """Every import circle, found by depth-first search (one path per circle's entry)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == "open":
                found.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_import_goes_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_no_import_circle():
    graph = {a: {b for b in deps if b != a and not a.startswith(b + ".")} for a, deps in
             import_graph().items()}
    assert circles(graph) == []


def test_checks_and_grading_never_import_the_stages():
    """DESIGN §2: checks and grading compare against the equations, not against a training loop."""
    bad = [f"{a} -> {b}" for a, deps in import_graph().items()
           if a.startswith(("course.checks", "grading")) for b in deps
           if b.split(".")[0] in ("stages", "pipeline", "studies")]
    assert bad == []


def test_an_upward_import_is_caught(tmp_path):
    """The checker itself can fail: a fake package whose equation imports a stage."""
    (tmp_path / "equations").mkdir()
    (tmp_path / "stages").mkdir()
    (tmp_path / "equations" / "bad.py").write_text("from rlhf_lab.stages.ppo import train_ppo\n")
    (tmp_path / "stages" / "ppo.py").write_text("from rlhf_lab.equations import bad\n")
    graph = import_graph(tmp_path)
    assert graph == {"equations.bad": {"stages.ppo"}, "stages.ppo": {"equations.bad"}}
    assert upward_imports(graph) == ["rlhf_lab.equations.bad (layer 2) imports rlhf_lab.stages.ppo (layer 4)"]
    assert circles(graph) == [["equations.bad", "stages.ppo", "equations.bad"]]


@pytest.mark.parametrize("limit", [400])
def test_no_module_over_the_line_limit(limit):
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > limit}
    assert long == {}


def test_no_long_function_in_stages_and_equations():
    long = []
    for room in ("stages", "equations"):
        for path in (PACKAGE / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > 60:
                        long.append(f"{module_name(path)}.{node.name}: {n} lines")
    assert long == []
