"""A content-addressed cache of trained artifacts, written atomically.

Each artifact lives in ``<cache>/<stage>-<key>/`` where ``key`` hashes the stage config and the
keys of its inputs, so a changed config (or a changed upstream stage) can never reuse a stale
result. An artifact is first written to a temporary folder next to its final place and renamed
when complete; an interrupted run leaves at most a ``.tmp-*`` folder, never a half-written
artifact, and the next run starts that stage again.

The cache root is ``$RLHF_LAB_CACHE`` if set, else ``~/.cache/rlhf_lab``.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["cache_root", "artifact_folder", "is_cached", "cached", "read_json", "write_json"]

COMPLETE = "COMPLETE"


def cache_root() -> Path:
    return Path(os.environ.get("RLHF_LAB_CACHE", Path.home() / ".cache" / "rlhf_lab"))


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=float))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def artifact_folder(stage: str, key: str, root: Path | None = None) -> Path:
    """Where the artifact ``stage-key`` lives (complete or not)."""
    return (Path(root) if root is not None else cache_root()) / f"{stage}-{key}"


def is_cached(stage: str, key: str, root: Path | None = None) -> bool:
    """Whether the artifact ``stage-key`` is complete, i.e. :func:`cached` would only load it."""
    return (artifact_folder(stage, key, root) / COMPLETE).exists()


def cached(stage: str, key: str, train, save, load, root: Path | None = None):
    """Return ``load(folder)`` of the artifact ``stage-key``, training it first if it is missing.

    ``train()`` returns the object to store; ``save(obj, folder)`` writes it into an empty folder.
    """
    final = artifact_folder(stage, key, root)
    root = final.parent
    if not is_cached(stage, key, root):
        root.mkdir(parents=True, exist_ok=True)
        obj = train()
        tmp = root / f".tmp-{stage}-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            save(obj, tmp)
            (tmp / COMPLETE).write_text("ok\n")
            if final.exists():                       # an incomplete leftover: replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if (final / COMPLETE).exists():          # another process finished it meanwhile
                return load(final)
            raise
    return load(final)
