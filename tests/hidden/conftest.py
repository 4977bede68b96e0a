"""Hidden tests: options and the ``student`` fixture (see rlhf_lab/grading/judge.py).

    pytest tests/hidden                                   # grade solutions/ (must all pass)
    pytest tests/hidden --notebooks notebooks             # the unsolved stubs (must all fail)
    pytest tests/hidden --notebooks submissions/alice     # one student
    pytest tests/hidden --functions mutant.py             # functions from a .py file

Every test takes the session fixture ``student``: a StudentProcess that runs the exercise cells
in a separate, resource-limited process. Test functions only call ``student.call`` and
``student.grad``, so they also work when called directly with a LocalStudent.
"""
from rlhf_lab.grading.judge import (  # noqa: F401 - pytest finds hooks and fixtures by name
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_runtest_makereport,
    student,
)
