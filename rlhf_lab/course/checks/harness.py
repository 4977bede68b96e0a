"""The machinery of the visible checks: run cases, compare with the reference, print one line.

Each ``check_<exercise>(fn)`` (one module per notebook in this package) runs a student's
function on a few small cases through :func:`run`, compares it with the reference and tests the
property that matters. It prints one line and returns a bool; it never raises::

    ✓ sft_loss: all 5 checks passed
    ✗ sft_loss: off by one: you scored token t with the logits at position t, ...
"""
from __future__ import annotations

import copy
import inspect
import math
import warnings

import numpy as np
import torch

from rlhf_lab.core.plug import as_loss_and_stats

__all__ = []


class _Fail(Exception):
    """A property failed; the message is for the student. ``specific`` is False for a bare
    "wrong value" (no known mistake recognised): the later cases may then name the mistake.
    ``against_reference`` marks a failure found by comparing with the reference's answer in a
    limit (β → 0, ...): after a bare wrong value it names no cause, so it is not reported then."""

    def __init__(self, message: str, specific: bool = True, against_reference: bool = False,
                 mistake: bool = False):
        super().__init__(message)
        self.specific = specific
        self.against_reference = against_reference
        self.mistake = mistake          # a known mistake recognised in the output (``_expect``)


class _NotWritten(Exception):
    """The student's function raised NotImplementedError."""


def _run(name: str, cases, *fns) -> bool:
    """Run the cases in order and print one line; return success.

    The first failure that names its cause is reported. A bare "wrong value" is kept while the
    later cases run, since one of them may recognise the mistake (a small example often cannot
    tell a sum from a mean; a bigger one can). A cause is only named once it is established: a
    recognised mistake, or a property of the student's own outputs (shift invariance, padding,
    gradients, finiteness); a later comparison with the reference alone does not replace the
    bare wrong value."""
    for fn in fns:
        if not callable(fn):
            print(f"✗ {name}: expected a function, got {type(fn).__name__}")
            return False
    first_vague = None
    try:
        for case in cases:
            try:
                case()
            except _Fail as failure:
                if not failure.specific:
                    first_vague = first_vague or failure
                elif first_vague is None or failure.mistake:
                    raise
                elif not failure.against_reference:      # established, but the value came first
                    raise _Fail(f"{first_vague}; also, {failure}") from None
        if first_vague is not None:
            raise first_vague
    except _NotWritten:
        message = "not implemented yet (replace `raise NotImplementedError` with your code)"
    except _Fail as failure:
        message = str(failure)
    except Exception as error:      # a bug in a check must not look like the student's fault
        message = f"the check itself failed ({type(error).__name__}: {error}); please report it"
    else:
        print(f"✓ {name}: all {len(cases)} checks passed")
        return True
    print(f"✗ {name}: {message}")
    return False


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a.isnan(), b.isnan())) and \
            bool((a[~a.isnan()] == b[~b.isnan()]).all())
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    return True


def _call(fn, *args, **kwargs):
    """Call the student's function on copies of the arguments; turn trouble into a message."""
    copies = copy.deepcopy((args, kwargs))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*copies[0], **copies[1])
    except NotImplementedError:
        raise _NotWritten from None
    except Exception as error:
        raise _Fail(f"your function raised {type(error).__name__}: {error}") from None
    names = list(inspect.signature(fn).parameters) if _has_signature(fn) else []
    for i, (before, after) in enumerate(zip(args, copies[0])):
        if not _same(before, after):
            name = names[i] if i < len(names) else f"argument {i + 1}"
            raise _Fail(f"your function changed its argument `{name}` in place; work on a copy "
                        f"(e.g. `x = x.clone()`, or avoid in-place ops such as `+=` and `[...] =`)")
    return out


def _has_signature(fn) -> bool:
    try:
        inspect.signature(fn)
        return True
    except (TypeError, ValueError):
        return False


def _fmt(x, digits: int = 4) -> str:
    """A short readable rendering of a number or a small tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().double().tolist()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v, digits) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if math.isfinite(x) else str(x)
    return str(x)


def _tensor(out, what: str, shape=None) -> torch.Tensor:
    """Validate a returned tensor: type, dtype, shape, NaN."""
    if not isinstance(out, torch.Tensor):
        raise _Fail(f"{what} should be a torch tensor, got {type(out).__name__}")
    if not out.is_floating_point():
        raise _Fail(f"{what} should be a floating-point tensor, got dtype {out.dtype}")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise _Fail(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.isnan().any():
        raise _Fail(f"{what} contains NaN: {_fmt(out)}")
    return out


def _loss(out, what: str = "your loss") -> torch.Tensor:
    """A loss function may return ``loss`` or ``(loss, stats)``; the loss must be a scalar."""
    loss, _ = as_loss_and_stats(out)
    loss = _tensor(loss, what)
    if loss.dim() != 0:
        raise _Fail(f"{what} has shape {tuple(loss.shape)}; a loss is a single number (0-dim "
                    f"tensor): average over the tokens or pairs")
    return loss


def _close(got, want, atol=1e-5, rtol=1e-4) -> bool:
    got = torch.as_tensor(got, dtype=torch.float64)
    want = torch.as_tensor(want, dtype=torch.float64)
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=atol, rtol=rtol,
                                                           equal_nan=False))


def _diff(got, want) -> str:
    """'expected A, got B' for small values; for big tensors, the entry that differs most."""
    got_t = torch.as_tensor(got, dtype=torch.float64)
    want_t = torch.as_tensor(want, dtype=torch.float64)
    if want_t.numel() <= 8 or got_t.shape != want_t.shape:
        return f"expected {_fmt(want)}, got {_fmt(got)}"
    gap = (got_t - want_t).abs().nan_to_num(math.inf)
    where = tuple(int(i) for i in np.unravel_index(int(gap.argmax()), tuple(gap.shape)))
    return (f"at index {where}: expected {_fmt(want_t[where].item())}, got "
            f"{_fmt(got_t[where].item())}")


def _expect(got, want, example: str, wrong=(), atol=1e-5, rtol=1e-4) -> None:
    """Fail unless ``got`` matches ``want``; name a known mistake if ``got`` matches one."""
    if _close(got, want, atol, rtol):
        return
    for candidate, message in wrong:
        if _close(got, candidate, atol, rtol):
            raise _Fail(f"{message} ({example}: {_diff(got, want)})", mistake=True)
    raise _Fail(f"wrong value {example}: {_diff(got, want)}", specific=False)


def _needs_grad(result: torch.Tensor, inputs: torch.Tensor, what: str) -> torch.Tensor:
    """The gradient of ``result.sum()`` with respect to ``inputs``; fail if it cannot flow."""
    if not result.requires_grad:
        raise _Fail(f"{what} is cut off from the graph (no gradient reaches it): avoid .item(), "
                    f".detach(), numpy and python floats inside the function")
    grad, = torch.autograd.grad(result.sum(), inputs, allow_unused=True)
    if grad is None:
        raise _Fail(f"{what} does not depend on its input: no gradient reaches it")
    return grad


def _call_live(fn, *args):
    """Call without copying (the gradient must reach the caller's tensors)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)
    except NotImplementedError:
        raise _NotWritten from None
    except Exception as error:
        raise _Fail(f"your function raised {type(error).__name__}: {error}") from None


_LOG3 = torch.tensor([0.0, math.log(3)], dtype=torch.float64)
