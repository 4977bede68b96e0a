"""The one interface hidden tests use to reach a student's functions.

A hidden test never calls student code directly: it asks a ``student`` object, which is either

* :class:`LocalStudent` — plain Python functions in this process (used to test the hidden tests
  themselves against a bank of wrong answers, and for quick experiments), or
* ``sandbox.StudentProcess`` — the functions defined by a notebook's exercise cells, executed
  in a separate, resource-limited process; arguments and results travel as data, so the judging
  process never runs student code.

Both have the same two methods, and both raise :class:`StudentError` for anything that is not a
normal return (missing function, NotImplementedError, another exception, time-out, crash, a
result that is not plain data). Results are "plain data": torch tensors (detached, CPU), numpy
arrays, Python scalars, None, str, and tuples / lists / dicts of those; a dataclass or an object
with ``alpha`` / ``beta`` attributes comes back as a dict of its numeric fields.
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import torch

__all__ = ["StudentError", "LocalStudent", "to_plain"]


class StudentError(Exception):
    """The student's function did not return normally.

    ``kind`` is one of "missing", "not_implemented", "exception", "timeout", "memory", "crash",
    "bad_output"; the message is fit for the student's feedback (no hidden-test code)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"[{kind}] {message}")
        self.kind = kind
        self.message = message


def to_plain(value, depth: int = 0):
    """``value`` as plain data (see the module docstring); raise StudentError otherwise."""
    if depth > 8:
        raise StudentError("bad_output", "the result is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise StudentError("bad_output", "returned a numpy array of Python objects")
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, numbers.Number):
        return complex(value) if isinstance(value, complex) else (
            int(value) if isinstance(value, numbers.Integral) else float(value))
    if isinstance(value, (tuple, list)):
        out = [to_plain(v, depth + 1) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    if isinstance(value, dict):
        return {str(k): to_plain(v, depth + 1) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value)
                if isinstance(getattr(value, f.name), (numbers.Number, str, type(None)))}
    if hasattr(value, "alpha") and hasattr(value, "beta"):
        return {"alpha": to_plain(value.alpha, depth + 1), "beta": to_plain(value.beta, depth + 1)}
    raise StudentError("bad_output", f"returned a {type(value).__name__}, which is not a tensor, "
                                     f"array, number or tuple of those")


def _loss_of(out):
    loss = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(loss, torch.Tensor):
        raise StudentError("bad_output", f"returned a {type(loss).__name__}, not a tensor, so no "
                                         f"gradient can flow through it")
    if not loss.requires_grad:
        raise StudentError("bad_output", "the result does not depend on the inputs through "
                                         "autograd (detached, or computed with numpy / .item())")
    return loss if loss.dim() == 0 else loss.sum()


class LocalStudent:
    """Student functions given as a dict ``{name: callable}``, run in this process."""

    def __init__(self, functions: dict):
        self.functions = dict(functions)

    def _fn(self, name):
        fn = self.functions.get(name)
        if fn is None:
            raise StudentError("missing", f"no function named {name} was defined")
        return fn

    def call(self, name: str, *args, **kwargs):
        """Run ``name(*args, **kwargs)`` on copies of the arguments; return plain data."""
        fn = self._fn(name)
        args, kwargs = _copied(args), _copied(kwargs)
        try:
            out = fn(*args, **kwargs)
        except NotImplementedError:
            raise StudentError("not_implemented", f"{name} is not written yet "
                                                  f"(it raises NotImplementedError)") from None
        except StudentError:
            raise
        except Exception as error:            # noqa: BLE001 - any failure is the student's
            raise StudentError("exception", f"{name} raised {type(error).__name__}: "
                                            f"{str(error)[:300]}") from None
        return to_plain(out)

    def grad(self, name: str, args: tuple, wrt: tuple[int, ...], kwargs: dict | None = None):
        """Gradient of the student's loss with respect to ``args[i]`` for i in ``wrt``.

        The loss is the result (its first element if it is a tuple), summed if not a scalar.
        Returns ``(result, grads)``: the plain result and a tuple of tensors (None where the
        loss does not depend on that argument)."""
        fn = self._fn(name)
        args, kwargs = list(_copied(tuple(args))), _copied(kwargs or {})
        for i in wrt:
            if not (isinstance(args[i], torch.Tensor) and args[i].is_floating_point()):
                raise ValueError(f"argument {i} must be a float tensor to take a gradient")
            args[i] = args[i].detach().clone().requires_grad_(True)
        try:
            out = fn(*args, **kwargs)
            loss = _loss_of(out)
            grads = torch.autograd.grad(loss, [args[i] for i in wrt], allow_unused=True)
        except NotImplementedError:
            raise StudentError("not_implemented", f"{name} is not written yet") from None
        except StudentError:
            raise
        except Exception as error:            # noqa: BLE001
            raise StudentError("exception", f"{name} raised {type(error).__name__} when "
                                            f"differentiated: {str(error)[:300]}") from None
        return to_plain(out), tuple(None if g is None else g.detach().clone() for g in grads)


def _copied(value):
    """Deep copies of tensors/arrays so that a function that writes into its inputs cannot
    change the test's copies."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return value
