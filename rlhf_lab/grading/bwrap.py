"""The operating-system sandbox around a student's processes: bubblewrap (``bwrap``).

The audit hook of ``child.py`` sees only Python-level operations; native code (torch's file
API, ``os.pidfd_open``) walks past it. So each student's fork server, and with it every process
of that student, runs inside its own bubblewrap sandbox, built by :func:`command`:

* ``--unshare-all``: no network (only a loopback of its own), its own PID namespace (it sees and
  can signal only its own processes: not the judge, the grader or another student), its own
  IPC, UTS and user namespaces; ``--uid/--gid 65534``: it runs as ``nobody``, with no
  capability; ``--new-session``: no access to the grader's terminal.
* ``--die-with-parent``, and the PID namespace: when the judge kills the sandbox (or dies),
  every process inside dies with it; nothing outlives the grading.
* The file system it sees is read-only and minimal: the Python installation (stdlib, the
  environment's site-packages: torch, numpy), the system's ``/usr`` and the three helper files
  it runs (``child.py``, ``wire.py``, ``student.py``, under ``/grader``). Not the course
  package, ``tests/``, ``solutions/``, other submissions, the grader's outputs or its results;
  any of those that happens to lie inside the Python installation is hidden under an empty
  tmpfs. Its working folder ``/tmp`` is a private tmpfs of at most :data:`TMPFS_BYTES` (where
  bwrap can cap it: version 0.7 or later).

Where ``bwrap`` is missing (or user namespaces are disabled), :func:`check` raises
:class:`SandboxUnavailable` with what to install; ``grade --no-sandbox`` runs without it.
"""
from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

__all__ = ["PACKAGE", "INNER", "WORKDIR", "TMPFS_BYTES", "HELPERS", "SandboxUnavailable",
           "find_bwrap", "python_roots", "command", "check"]

PACKAGE = "bubblewrap"                  # the Debian / Ubuntu / Fedora package that gives bwrap
INNER = "/grader"                       # where the helper files are seen inside the sandbox
WORKDIR = "/tmp"                        # the private working folder (a tmpfs) inside
TMPFS_BYTES = 64 * 2**20                # the most a student's processes can store in WORKDIR
HELPERS = ("child.py", "wire.py", "student.py")
NOBODY = "65534"
_HERE = Path(__file__).resolve().parent
_SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf")


class SandboxUnavailable(RuntimeError):
    """The OS sandbox cannot be used here; the message says what to install or pass."""


def missing_message(detail: str = "") -> str:
    why = f" ({detail})" if detail else ""
    return (f"the grader runs each student in an operating-system sandbox, bubblewrap, which is "
            f"not usable here{why}: install the package '{PACKAGE}' (Debian / Ubuntu: sudo "
            f"apt-get install -y {PACKAGE}), or grade with --no-sandbox, where a hostile "
            f"submission can read and write whatever the grader's user can (docs/grading.md)")


def find_bwrap() -> str | None:
    """The path of the ``bwrap`` program, or None."""
    return shutil.which("bwrap")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def python_roots() -> list[str]:
    """The folders of the Python installation a student process needs: the prefixes (stdlib,
    the interpreter) and the site-packages, outermost only, as real paths."""
    import numpy
    import torch

    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
                  str(Path(torch.__file__).parent.parent),
                  str(Path(numpy.__file__).parent.parent)]
    candidates += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    real = sorted({os.path.realpath(p) for p in candidates if p and os.path.isdir(p)}, key=len)
    if "/" in real:
        raise SandboxUnavailable(missing_message("the Python installation is the whole file "
                                                 "system; install Python in its own prefix"))
    roots: list[str] = []
    for path in real:
        if not any(_under(path, root) for root in roots):
            roots.append(path)
    return roots


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", path, path]
    return args


@functools.lru_cache(maxsize=4)
def _has_size_option(bwrap: str) -> bool:
    """Whether this bwrap can cap a tmpfs (``--size``, from version 0.7; older ones, e.g. on
    Ubuntu 22.04, run without the cap: each file is still capped at 1 MiB by ``child.py``)."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in text.stdout + text.stderr


def command(argv: list[str], *, hide=(), env: dict | None = None) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in the sandbox described above.

    ``hide``: folders that must stay invisible (the course package, hidden tests, solutions,
    submissions, outputs); any of them inside a folder the sandbox shows gets an empty tmpfs
    over it. ``env``: the whole environment inside (nothing else leaks in)."""
    bwrap = find_bwrap()
    if bwrap is None:
        raise SandboxUnavailable(missing_message(f"no 'bwrap' on PATH={os.environ.get('PATH')}"))
    roots = python_roots()
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
            "--uid", NOBODY, "--gid", NOBODY, "--hostname", "sandbox"]
    # the working tmpfs first, so that an installation inside it (a venv under /tmp) is bound
    # over it rather than hidden by it
    size = ["--size", str(TMPFS_BYTES)] if _has_size_option(bwrap) else []   # bwrap >= 0.7
    args += size + ["--tmpfs", WORKDIR]
    # an installation inside WORKDIR gets a tmpfs of its own at its top folder there, read-only
    # once bound: the student cannot write beside it (say, into a checkout under /tmp)
    tops = sorted({os.path.join(WORKDIR, os.path.relpath(root, WORKDIR).split(os.sep)[0])
                   for root in roots if _under(root, WORKDIR)})
    for top in tops:
        args += ["--tmpfs", top]
    args += _system_binds()
    for root in roots:
        args += ["--ro-bind", root, root]
    for top in tops:
        args += ["--remount-ro", top]
    for secret in sorted({os.path.realpath(p) for p in hide}):
        if os.path.isdir(secret) and any(_under(secret, root) for root in roots + list(_SYSTEM)):
            args += ["--tmpfs", secret]
    for name in HELPERS:
        args += ["--ro-bind", str(_HERE / name), f"{INNER}/{name}"]
    # the sandbox's own root (where bwrap made the mount points) read-only: a student writes
    # in WORKDIR alone, also where the installation lies inside the checkout
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", WORKDIR,
             "--clearenv"]
    for key, value in (env or {}).items():
        args += ["--setenv", key, value]
    return args + ["--"] + list(argv)


def check(timeout: float = 60.0) -> None:
    """Raise :class:`SandboxUnavailable` unless a sandbox starts and runs this Python here."""
    argv = command([sys.executable, "-I", "-c", "import torch"], env={"PATH": "/usr/bin:/bin"})
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxUnavailable(missing_message(f"{type(error).__name__}: {error}")) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise SandboxUnavailable(missing_message(f"bwrap failed: {last}"))
