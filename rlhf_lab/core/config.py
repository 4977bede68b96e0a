"""Validation in one dialect (every error a ValueError that names the argument or field), and the
content hash of frozen stage configs that keys the artifact cache."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers

__all__ = ["require", "number", "integer", "positive", "non_negative", "in_unit_interval", "config_hash", "config_dict",
           "LATER"]

LATER = {"added_later": True}
"""Field metadata of an option added after a stage's first release: while it holds its default
it is left out of :func:`config_dict`, so the cache keys of runs that do not use it stay the same
(``ptx_coef: float = field(default=0.0, metadata=LATER)``)."""


def require(ok: bool, name: str, message: str) -> None:
    """Raise ``ValueError("<name> <message>")`` unless ``ok``: every error names its argument or
    config field (``require(x > 0, "beta", "must be > 0, got -1")``)."""
    if not ok:
        raise ValueError(f"{name} {message}")


def number(value, name: str, low: float = -math.inf, high: float = math.inf,
           open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a float if it is a real number in the interval, else a ValueError naming
    ``name``. The one numeric check of the package: configs, equations and studies all use it, so
    they agree (a bool is not a number here; NaN lies in no interval).

    >>> number(0.5, "clip_eps", 0, 1, open_low=True, open_high=True)
    0.5
    """
    ok = not isinstance(value, bool)
    try:
        x = float(value) if ok else math.nan
    except (TypeError, ValueError, RuntimeError):
        ok, x = False, math.nan
    inside = (x > low if open_low else x >= low) and (x < high if open_high else x <= high)
    if not (ok and inside):
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return x


def integer(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``, else a ValueError."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def positive(cfg, *fields: str) -> None:
    """Each of ``cfg``'s ``fields`` is a number > 0."""
    for f in fields:
        number(getattr(cfg, f), f, 0, math.inf, open_low=True)


def non_negative(cfg, *fields: str) -> None:
    """Each of ``cfg``'s ``fields`` is a number >= 0."""
    for f in fields:
        number(getattr(cfg, f), f, 0)


def in_unit_interval(cfg, *fields: str) -> None:
    """Each of ``cfg``'s ``fields`` is a number in [0, 1]."""
    for f in fields:
        number(getattr(cfg, f), f, 0, 1)


def config_dict(cfg) -> dict:
    """The config as a plain dict, with its class name (so two stages never share a key).
    Fields marked :data:`LATER` are left out while they hold their default."""
    out = {"stage": type(cfg).__name__, **dataclasses.asdict(cfg)}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("added_later") and getattr(cfg, f.name) == f.default:
            del out[f.name]
    return out


def config_hash(cfg, *input_keys: str) -> str:
    """A short content hash of a config and the keys of the artifacts it was trained from."""
    payload = json.dumps({"config": config_dict(cfg), "inputs": list(input_keys)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
