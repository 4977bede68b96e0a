"""Shared helpers of the hidden tests: read a student's result, compare, explain.

Hidden tests reach the student only through ``student.call`` / ``student.grad`` (see
:mod:`rlhf_lab.grading.student`); results arrive as plain data. These helpers turn a result into
a float64 tensor, check it, and raise ``AssertionError`` with a message written for the student
(it is shown as feedback, so it describes the case in words and never dumps big tensors).

A correct solution may differ from the reference in ways that do not matter, so the helpers
accept: a bare loss or a ``(loss, stats)`` tuple; tensors, numpy arrays or Python numbers; a fit
as a GaoFit (a dict here) or an ``(alpha, beta)`` pair. What does matter: a float64 input gives a
float64 result (:func:`check_float64`), and padding may hold NaN or ±inf (:func:`poison`).

Edge-case tests run inside ``with case("in plain words"):`` so that whatever fails there (a
wrong value, or the student's function raising) names the case in the feedback.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["as_tensor", "result", "loss_of", "pair", "alpha_beta", "close", "expect", "fmt",
           "check_grad", "rng", "garbage_fill", "case", "poison", "check_float64",
           "raises_value_error"]


def fmt(x, digits: int = 4) -> str:
    """A short rendering of a number or a small tensor (at most 6 entries)."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        x = np.asarray(torch.as_tensor(x).detach().double()).tolist()
    if isinstance(x, list):
        if len(x) > 6:
            return "[" + ", ".join(fmt(v, digits) for v in x[:6]) + ", ...]"
        return "[" + ", ".join(fmt(v, digits) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if math.isfinite(x) else str(x)
    return str(x)


def as_tensor(out, what: str) -> torch.Tensor:
    """A float64 tensor from a tensor, numpy array, number or list of numbers."""
    if isinstance(out, torch.Tensor):
        if out.is_complex():
            raise AssertionError(f"{what} is complex; it should hold real numbers")
        return out.detach().to(torch.float64)
    if isinstance(out, np.ndarray) and out.dtype.kind in "biuf":
        return torch.from_numpy(out.astype(np.float64))
    if isinstance(out, (bool, int, float)):
        return torch.tensor(float(out), dtype=torch.float64)
    if isinstance(out, (list, tuple)):
        try:
            return torch.tensor([float(v) for v in out], dtype=torch.float64)
        except (TypeError, ValueError):
            pass
    raise AssertionError(f"{what} should be a tensor of numbers, got {type(out).__name__}")


def result(out, what: str, shape=None, allow_nan: bool = False) -> torch.Tensor:
    """Check a returned tensor's shape and NaNs; return it as float64."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], torch.Tensor) \
            and not out[1].is_floating_point():
        raise AssertionError(f"{what} is a pair (values, indices): torch.min / torch.max over a "
                             f"dim return both; take .values")
    t = as_tensor(out, what)
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise AssertionError(f"{what} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not allow_nan and bool(torch.isnan(t).any()):
        raise AssertionError(f"{what} contains NaN (often an exp that overflows, a log of 0, "
                             f"or 0/0)")
    return t


def loss_of(out, what: str = "your loss") -> torch.Tensor:
    """The loss of a result that is ``loss`` or ``(loss, stats)``: a single finite number."""
    if isinstance(out, (tuple, list)) and len(out) >= 1:
        out = out[0]
    t = as_tensor(out, what)
    if t.numel() != 1:
        raise AssertionError(f"{what} has shape {tuple(t.shape)}; a loss is one number (a 0-dim "
                             f"tensor): average over the tokens or pairs")
    return t.reshape(())


def pair(out, what: str, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """``(adv, returns)`` of gae, both of ``shape``."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"{what} should return a pair (adv, returns), got "
                             f"{type(out).__name__}")
    return result(out[0], "your adv", shape), result(out[1], "your returns", shape)


def alpha_beta(out, what: str) -> tuple[float, float]:
    """(alpha, beta) of a fit returned as a GaoFit (a dict here), a pair or an array."""
    if isinstance(out, dict) and "alpha" in out and "beta" in out:
        return float(as_tensor(out["alpha"], what)), float(as_tensor(out["beta"], what))
    try:
        t = as_tensor(out, what).reshape(-1)
    except AssertionError:
        t = None
    if t is not None and t.numel() >= 2:
        return float(t[0]), float(t[1])
    raise AssertionError(f"{what} should return a GaoFit or a pair (alpha, beta), got "
                         f"{type(out).__name__}")


def close(got, want, atol: float = 1e-6, rtol: float = 1e-5) -> bool:
    """Same shape and equal within tolerance (inf must match inf; NaN never matches)."""
    got = torch.as_tensor(got, dtype=torch.float64)
    want = torch.as_tensor(want, dtype=torch.float64)
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=atol, rtol=rtol))


def _where(got: torch.Tensor, want: torch.Tensor) -> str:
    digits = 4 if fmt(got) != fmt(want) else 10
    if want.numel() <= 4:
        return f"expected {fmt(want, digits)}, got {fmt(got, digits)}"
    gap = (got - want).abs().nan_to_num(math.inf)
    idx = tuple(int(i) for i in np.unravel_index(int(gap.argmax()), tuple(gap.shape)))
    w, g = want[idx].item(), got[idx].item()
    digits = 4 if fmt(w) != fmt(g) else 10
    return f"at index {idx}: expected {fmt(w, digits)}, got {fmt(g, digits)}"


def expect(got, want, case: str, wrong=(), atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Assert ``got`` ≈ ``want``; if ``got`` matches a known mistake, say which."""
    got = torch.as_tensor(got, dtype=torch.float64)
    want = torch.as_tensor(want, dtype=torch.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{case}: your result has shape {tuple(got.shape)}, expected "
                             f"{tuple(want.shape)}")
    if close(got, want, atol, rtol):
        return
    for candidate, message in wrong:
        if close(got, candidate, atol, rtol):
            raise AssertionError(f"{case}: {message} ({_where(got, want)})")
    raise AssertionError(f"{case}: wrong value ({_where(got, want)})")


def check_grad(student, name: str, args: tuple, wrt: int, want: torch.Tensor, case: str,
               atol: float = 1e-6, rtol: float = 1e-5, kwargs=None) -> torch.Tensor:
    """The student's gradient of its (loss) result with respect to ``args[wrt]`` must be
    ``want``; returns it."""
    _, grads = student.grad(name, args, (wrt,), kwargs)
    grad = grads[0]
    if grad is None:
        raise AssertionError(f"{case}: your result does not depend on this input (no gradient "
                             f"reaches it)")
    grad = grad.to(torch.float64)
    if bool(torch.isnan(grad).any()):
        raise AssertionError(f"{case}: your gradient contains NaN (an exp or log that overflows, "
                             f"or a NaN in a masked position that still reaches the graph)")
    if not close(grad, want, atol, rtol):
        raise AssertionError(f"{case}: your gradient is wrong ({_where(grad, want)})")
    return grad


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def garbage_fill(x: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    """``x`` with ``value`` at the masked positions (a correct solution ignores them)."""
    return torch.where(mask, x, torch.full_like(x, value))


# ---------------------------------------------------------------------------- edge cases

_NAMED_KINDS = ("exception", "bad_output", "timeout")   # StudentError kinds worth a case name


@contextmanager
def case(words: str):
    """Name the case in the feedback of whatever fails inside the block.

    A failed check becomes ``"<words>: <its message>"``; so does the student's function raising,
    returning something that is not data, or running out of time (``StudentError`` of kind
    "exception", "bad_output" or "timeout"). A function that is missing or not written yet keeps
    its own message."""
    try:
        yield
    except AssertionError as error:
        text = str(error)
        raise AssertionError(text if text.startswith(words) else f"{words}: {text}") from None
    except Exception as error:                      # noqa: BLE001 - StudentError, by its kind
        if getattr(error, "kind", None) not in _NAMED_KINDS:
            raise
        raise AssertionError(f"{words}: {error.message}") from None


_JUNK = (math.nan, math.inf, -math.inf)


def poison(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN, +inf and -inf in turn wherever ``keep`` (broadcast to ``x``) is False."""
    turn = torch.arange(x.numel()).reshape(x.shape) % len(_JUNK)
    junk = torch.tensor(_JUNK, dtype=x.dtype)[turn]
    return torch.where(keep, x, junk)


def _first_tensors(out, what: str) -> tuple:
    """The tensors of a result: itself, the loss of ``(loss, stats)``, or all of a tuple of
    tensors (a pair such as ``(adv, returns)``, or notebook 03's five importance estimates)."""
    if isinstance(out, (tuple, list)) and len(out) >= 2 and all(
            isinstance(t, torch.Tensor) for t in out):
        return tuple(out)
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"{what} is a {type(out).__name__}, not a tensor")
    return (out,)


def check_float64(student, name: str, args: tuple, words: str, want=None, kwargs=None,
                  atol: float = 1e-9, rtol: float = 1e-9) -> None:
    """Run ``name`` with its floating tensors in float32, then in float64: each result keeps
    its inputs' dtype, the two agree to float32 precision, and the float64 one equals ``want``
    (a tensor or a tuple of them) to float64 precision."""
    got = {}
    with case(words):
        for dtype in (torch.float32, torch.float64):
            cast = tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point()
                         else a for a in args)
            tensors = _first_tensors(student.call(name, *cast, **(kwargs or {})), "your result")
            for t in tensors:
                if t.dtype != dtype:
                    raise AssertionError(f"{str(dtype)[6:]} inputs gave a {str(t.dtype)[6:]} "
                                         f"result: the result keeps the inputs' dtype (no "
                                         f".float(), no torch.zeros(...) without dtype=)")
            got[dtype] = tensors
        for t32, t64 in zip(got[torch.float32], got[torch.float64]):
            expect(t64, t32.double(), "the float64 and float32 results differ by more than "
                   "float32 rounding", atol=1e-4, rtol=1e-4)
        if want is not None:
            want = want if isinstance(want, tuple) else (want,)
            for t64, w in zip(got[torch.float64], want):
                expect(t64, w, "your float64 result is not exact to float64 precision (part of "
                       "it was computed in float32)", atol=atol, rtol=rtol)


def raises_value_error(student, name: str, args: tuple, words: str, kwargs=None) -> None:
    """``name(*args)`` must raise ValueError (an invalid option is refused, not ignored)."""
    try:
        out = student.call(name, *args, **(kwargs or {}))
    except Exception as error:                      # noqa: BLE001 - StudentError, by its kind
        if getattr(error, "kind", None) != "exception":
            raise
        if "raised ValueError" not in error.message:
            raised = error.message.split(" raised ", 1)[-1].split(":", 1)[0]
            raise AssertionError(f"{words}: your function raised {raised}; an invalid option "
                                 f"raises ValueError, with a message that lists the valid "
                                 f"ones") from None
        return
    raise AssertionError(f"{words}: your function returned a result ({type(out).__name__}) "
                         f"instead of raising ValueError: an invalid option must not be "
                         f"silently accepted")
