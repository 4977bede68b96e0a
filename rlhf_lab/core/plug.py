"""Plugging a student's function into a real training loop.

A stage takes its equations as parameters (``loss_fn=sft_loss`` ...). Wrapped with
:func:`pluggable`, a function that is not written yet (it raises ``NotImplementedError``) is
replaced by the reference with a visible warning, so a student stuck on one exercise can still
run the later stages; a wrong function is used as written, so its effect on training shows.
"""
from __future__ import annotations

import warnings

__all__ = ["pluggable", "as_loss_and_stats"]


class FallbackWarning(UserWarning):
    """A student function was not implemented; the reference is used instead."""


def _warn_at(fn, message: str) -> None:
    """Warn with the student's function as the place (their notebook cell), not this module."""
    code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)
    if code is None:
        warnings.warn(message, FallbackWarning, stacklevel=3)
        return
    warnings.warn_explicit(message, FallbackWarning, code.co_filename, code.co_firstlineno,
                           module=getattr(fn, "__module__", None) or "__main__")


def pluggable(fn, reference, name: str):
    """Return a callable that runs ``fn`` and falls back to ``reference`` once ``fn`` raises
    ``NotImplementedError`` (warning once). Its ``fell_back()`` says whether it has: a table may
    call a column "yours" only while it has not."""
    if fn is None or fn is reference:
        return reference
    state = {"use": fn}

    def call(*args, **kwargs):
        try:
            return state["use"](*args, **kwargs)
        except NotImplementedError:
            if state["use"] is reference:
                raise
            _warn_at(fn, f"{name} is not implemented yet: the cells below use the reference "
                         f"solution instead. Write it to see your own version at work.")
            state["use"] = reference
            return reference(*args, **kwargs)

    call.__name__ = getattr(fn, "__name__", name)
    call.__wrapped__ = fn               # so that inspect.getsource (the cache key) sees fn
    call.fell_back = lambda: state["use"] is reference
    return call


def as_loss_and_stats(result) -> tuple:
    """Accept a loss function that returns ``loss`` or ``(loss, stats)``; give ``(loss, stats)``."""
    if isinstance(result, tuple):
        loss, stats = result[0], (result[1] if len(result) > 1 else {})
    else:
        loss, stats = result, {}
    return loss, dict(stats or {})
