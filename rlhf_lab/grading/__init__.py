"""Grading: the exercise registry, the sandboxed student process, hidden tests and the gradebook.

Grading stands apart from the rest of the package: it imports the math to compare against, never
a stage, the pipeline or the plots (DESIGN §2).
"""
