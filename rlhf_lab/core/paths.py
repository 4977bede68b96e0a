"""The one place that knows where a checkout keeps things.

The package lives in ``<repo>/rlhf_lab``; the course's folders sit beside it. Code that needs
the solutions, the notebooks, the hidden tests or the data asks here rather than counting
``.parent`` from its own file.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["PACKAGE", "REPO", "SOLUTIONS", "NOTEBOOKS", "TESTS", "HIDDEN_TESTS", "DATA"]

PACKAGE = Path(__file__).resolve().parents[1]     # <repo>/rlhf_lab
REPO = PACKAGE.parent
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = REPO / "notebooks"
TESTS = REPO / "tests"
HIDDEN_TESTS = TESTS / "hidden"
DATA = REPO / "data"
