"""A static look at an exercise cell before the grader runs it.

The exercises need nothing beyond tensor math, so a cell that imports the course package (which
holds the reference solutions), reaches for the file system, processes or the interpreter's
internals, is not run and earns nothing, with a message that says why. This is a first line,
for clear feedback; the student process's audit hook (``child.py``) enforces the same at run
time, whatever the spelling.

Honest code is not rejected: ``torch``, ``numpy``, ``math``, ``functools``, ``itertools``,
``collections``, ``typing``, ``dataclasses`` and the like may be imported; comments and
docstrings are never looked at. Attribute lookups by string (``getattr(np, "__builtins__")``)
and the private parts of libraries (``torch._utils``) are refused too: they would walk around
the attribute rules. The scan is not the security boundary (the sandbox of ``bwrap.py`` is).
"""
from __future__ import annotations

import ast
import re

__all__ = ["ALLOWED_IMPORTS", "scan"]

ALLOWED_IMPORTS = frozenset({
    "torch", "numpy", "math", "cmath", "functools", "itertools", "collections", "typing",
    "dataclasses", "operator", "statistics", "random", "warnings", "abc", "enum", "numbers",
    "fractions", "decimal", "heapq", "bisect", "copy", "__future__", "string", "re",
})
FORBIDDEN_NAMES = frozenset({
    "__import__", "eval", "exec", "compile", "open", "globals", "locals", "vars", "breakpoint",
    "input", "exit", "quit", "__builtins__", "__loader__", "__spec__", "os", "sys",
    "get_ipython", "memoryview",
})
FORBIDDEN_ATTRIBUTES = frozenset({
    "os", "sys", "subprocess", "system", "popen", "_exit", "builtins", "importlib", "f_globals",
    "f_locals", "f_back", "gi_frame", "tb_frame", "_getframe", "ctypes", "multiprocessing",
    # attribute lookups by string, or evaluation of strings, in the allowed modules
    "attrgetter", "methodcaller", "get_field", "Formatter", "get_type_hints", "ForwardRef",
})
LIBRARIES = frozenset({"torch", "np", "numpy", "F", "math", "functools", "itertools",
                       "collections"})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__doc__", "__call__", "__len__"})
ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
_DUNDER = re.compile(r"__\w+__")
_REFERENCE = ("it imports rlhf_lab, the course package, which holds the reference solutions: "
              "write the function yourself")


def _top(module: str | None) -> str:
    return (module or "").split(".")[0]


def _forbidden_attribute(attr: str) -> bool:
    dunder = attr.startswith("__") and attr.endswith("__")
    return attr in FORBIDDEN_ATTRIBUTES or attr in FORBIDDEN_NAMES or \
        (dunder and attr not in ALLOWED_DUNDERS) or (attr.startswith("_") and not dunder)


def _root_name(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _string_lookup(node) -> str | None:
    """Why a ``getattr(obj, name)``-style call (or a dunder string) is refused, or None: a
    string attribute lookup walks around every attribute rule below."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in ATTRIBUTE_BUILTINS:
        name = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            return (f"line {node.lineno}: it calls {node.func.id} with a computed attribute "
                    f"name; write the attribute itself (obj.name)")
        if _forbidden_attribute(name.value):
            return (f"line {node.lineno}: it looks up the attribute {name.value!r} by name, "
                    f"which an exercise may not use (no interpreter internals)")
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        for dunder in _DUNDER.findall(node.value):
            if dunder not in ALLOWED_DUNDERS:
                return (f"line {node.lineno}: it names {dunder!r}, an interpreter internal an "
                        f"exercise may not use")
    return None


def scan(source: str) -> str | None:
    """Why the cell must not run (a message for the student's feedback), or None when it may.
    A cell that does not parse is left to run, so that its SyntaxError is reported."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    except (MemoryError, RecursionError):
        return "the cell is nested too deeply for the grader to read it"
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                       ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        why = None if id(node) in docstrings else _string_lookup(node)
        if why:
            return why
        if isinstance(node, ast.Name) and node.id in ATTRIBUTE_BUILTINS and \
                id(node) not in called:
            return (f"line {node.lineno}: it passes {node.id} around, which an exercise may "
                    f"not do (attribute lookups by string)")
        if isinstance(node, ast.ImportFrom) and any(
                a.name in FORBIDDEN_ATTRIBUTES or a.name in FORBIDDEN_NAMES for a in node.names):
            return (f"line {node.lineno}: it imports "
                    f"{', '.join(a.name for a in node.names)}, which an exercise may not use")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and node.level:
                return f"line {node.lineno}: a relative import is not allowed in an exercise"
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module])
            for module in modules:
                if _top(module) == "rlhf_lab":
                    return f"line {node.lineno}: {_REFERENCE}"
                if _top(module) not in ALLOWED_IMPORTS:
                    return (f"line {node.lineno}: it imports {module}, which an exercise may not "
                            f"use (allowed: {', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            return (f"line {node.lineno}: it uses {node.id}, which an exercise may not use "
                    f"(no files, processes, exec or interpreter internals)")
        elif isinstance(node, ast.Name) and node.id == "rlhf_lab":
            return f"line {node.lineno}: {_REFERENCE}"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                base = target
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    base = base.value
                if target is not base and isinstance(base, ast.Name) and base.id in LIBRARIES:
                    return (f"line {node.lineno}: it changes {base.id}, a library the grader "
                            f"uses; an exercise may not monkeypatch libraries")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            dunder = attr.startswith("__") and attr.endswith("__")
            private = attr.startswith("_") and not dunder and _root_name(node) in LIBRARIES
            if attr in FORBIDDEN_ATTRIBUTES or dunder and attr not in ALLOWED_DUNDERS or private:
                return (f"line {node.lineno}: it uses .{attr}, which an exercise may not use "
                        f"(no files, processes, monkeypatching or interpreter internals)")
    return None
