"""Frozen stage configs: validation helpers and the content hash that keys the artifact cache."""
from __future__ import annotations

import dataclasses
import hashlib
import json

__all__ = ["require", "positive", "non_negative", "in_unit_interval", "config_hash", "config_dict",
           "LATER"]

LATER = {"added_later": True}
"""Field metadata of an option added after a stage's first release: while it holds its default
it is left out of :func:`config_dict`, so the cache keys of runs that do not use it stay the same
(``ptx_coef: float = field(default=0.0, metadata=LATER)``)."""


def require(ok: bool, field: str, message: str) -> None:
    """Raise ``ValueError("<field>: <message>")`` unless ``ok``: every config error names its field."""
    if not ok:
        raise ValueError(f"{field}: {message}")


def positive(cfg, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        require(isinstance(v, (int, float)) and v > 0, f, f"must be > 0, got {v!r}")


def non_negative(cfg, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        require(isinstance(v, (int, float)) and v >= 0, f, f"must be >= 0, got {v!r}")


def in_unit_interval(cfg, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        require(isinstance(v, (int, float)) and 0 <= v <= 1, f, f"must lie in [0, 1], got {v!r}")


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
