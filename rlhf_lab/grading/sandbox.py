"""A student's functions, run in a separate, resource-limited process.

:class:`StudentProcess` has the same ``call`` / ``grad`` methods as
:class:`~rlhf_lab.grading.student.LocalStudent`, and raises the same
:class:`~rlhf_lab.grading.student.StudentError`; but the student's code runs in a child process
(``child.py``) and only data comes back: the answer is read with
``torch.load(weights_only=True)``, so whatever the student's code does — monkeypatch torch,
redefine helpers, exit, loop forever, eat memory — it does so in its own process, and the process
that judges (the hidden tests) never runs a line of it.

Lifecycle. The children of a student serve all the tests of a session:

1. The submission is read (:mod:`.loader`) and each exercise cell scanned (:mod:`.scan`); a
   forbidden cell is not run and its functions raise ``StudentError("forbidden", why)``.
2. Each notebook gets its own child, as it would get its own Jupyter kernel (so monkeypatching
   in one notebook cannot spoil another). The child runs the preamble and the notebook's
   exercise cells one by one, reporting each. A cell that raises or has a syntax error loses
   its own functions ("missing", with the reason), even those it defined before failing. A
   cell that never finishes (infinite loop at the top level) or ends the process (``os._exit``,
   a crash) is skipped: the child is restarted without it.
3. Each call waits at most ``timeout`` seconds; then the child is killed and restarted, and the
   call raises ``StudentError("timeout")``. A child that dies raises ``StudentError("crash")``
   and is restarted. A function that timed out (or crashed twice) fails at once afterwards. An
   allocation beyond ``memory_mb`` raises ``StudentError("memory")``. After ``budget`` seconds
   of calls in all, every call raises ``StudentError("timeout")``.

Children are forked from a fork server (``zygote.py``) that this object starts fresh (never a
fork of the judge) and that imports torch once, so restarting a child costs milliseconds. With
``sandbox=True`` (what ``grade`` uses) the fork server and every child run in one bubblewrap
sandbox of their own (``bwrap.py``): no network, their own PID namespace, a read-only view of the
Python installation only, a private tmpfs. :meth:`StudentProcess.close` kills it all.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from . import bwrap, wire
from .exercises import EXERCISES
from .loader import Submission, read_module, read_submission
from .student import StudentError
from .zygote import CHILD, ForkServer

__all__ = ["StudentProcess", "default_deny", "sandbox_available", "CHILD"]

_PACKAGE = Path(__file__).resolve().parent.parent            # rlhf_lab/
_REPO = _PACKAGE.parent


def default_deny() -> list[str]:
    """Folders a student process may never read: the package (reference solutions), and the
    repository's tests (hidden tests) and solutions."""
    return [str(_PACKAGE), str(_REPO / "tests"), str(_REPO / "solutions")]


@functools.lru_cache(maxsize=1)
def sandbox_available() -> bool:
    """Whether the bubblewrap sandbox works here (checked once per process)."""
    try:
        bwrap.check()
    except bwrap.SandboxUnavailable:
        return False
    return True


class _Child:
    """One running student process: its pipes and how to stop it."""

    def __init__(self, to_child: int, from_child: int, pid: int, server: ForkServer):
        self.to_child, self.from_child, self.pid, self.server = to_child, from_child, pid, server

    @classmethod
    def start(cls, config: dict, server: ForkServer, n: int) -> list["_Child"]:
        """Start ``n`` student processes with the same config."""
        pipes = [(os.pipe(), os.pipe()) for _ in range(n)]       # ((r, w) to, (r, w) from)
        theirs = [(to[0], back[1]) for to, back in pipes]
        try:
            return [cls(to[1], back[0], pid, server) for (to, back), pid in
                    zip(pipes, server.fork(config, theirs))]
        except BaseException:
            for to, back in pipes:
                os.close(to[1])
                os.close(back[0])
            raise
        finally:
            for fd in (fd for pair in theirs for fd in pair):
                os.close(fd)

    def send(self, message) -> None:
        wire.write_frame(self.to_child, message)

    def receive(self, deadline: float):
        return wire.read_frame(self.from_child, deadline)

    def stop(self, kill: bool = True) -> None:
        """Close the pipes (an idle child then exits by itself); with ``kill``, also kill it
        (a child that may be busy: timed out, or stuck)."""
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        if kill:
            self.server.kill(self.pid)


# --------------------------------------------------------------------------- the student object
class StudentProcess:
    """A student's exercise functions in a child process; see the module docstring.

    ``source``: a notebook, a folder of notebooks, or a list of notebooks (the exercise cells
    are run); or ``functions=path.py``: a plain Python module of functions. ``timeout``: seconds
    per call (and per cell at load time); ``memory_mb``: the child's address-space limit;
    ``budget``: seconds of calls in all (None: no limit); ``deny``: extra folders the child may
    not read (the grader's outputs, other submissions). ``sandbox``: run in bubblewrap (None:
    where it works). ``static_scan=False`` runs even the cells the static scan
    refuses (only to show that the sandbox holds by itself)."""

    def __init__(self, source=None, *, functions=None, timeout: float = 10.0,
                 memory_mb: int = 4096, budget: float | None = None, deny=(),
                 sandbox: bool | None = None, static_scan: bool = True, cpu_seconds: int = 600):
        if (source is None) == (functions is None):
            raise ValueError("give either source (notebooks) or functions (a .py file)")
        if timeout <= 0 or memory_mb < 512:
            raise ValueError("timeout must be > 0 and memory_mb >= 512")
        self.submission: Submission = (read_module(functions) if functions is not None
                                       else read_submission(source, static_scan=static_scan))
        self.timeout, self.memory_mb, self.budget = float(timeout), int(memory_mb), budget
        self.sandbox = sandbox_available() if sandbox is None else bool(sandbox)
        self.spent = 0.0                                    # seconds of calls so far
        self.restarts = 0
        self.cell_errors: dict[str, tuple[str, str]] = {}   # cell key -> (kind, message)
        self.struck: dict[str, tuple[str, str]] = {}        # function -> why it fails at once
        self._crashes: dict[str, int] = {}
        self._tmp = tempfile.mkdtemp(prefix="rlhf_lab_student_")
        os.chmod(self._tmp, 0o700)
        cwd = bwrap.WORKDIR if self.sandbox else self._tmp
        deny = default_deny() + [str(Path(d).resolve()) for d in deny] + \
            [str(Path(p).resolve()) for p in (_as_list(source) if source else [functions])]
        self._config = {
            "memory_mb": self.memory_mb, "cpu_seconds": int(cpu_seconds),
            "cwd": cwd, "log": os.path.join(cwd, "child.log"), "deny": deny,
            "allow_read": [str(Path(torch.__file__).parent.parent)],
        }
        self._server = ForkServer(self.sandbox, hide=deny + [self._tmp])
        for cell in self.submission.cells:
            if cell.forbidden:
                self.cell_errors[cell.key] = ("forbidden", cell.forbidden)
        self._children: dict[str, _Child] = {}              # namespace -> its process
        self._names: dict[str, list[str]] = {}              # namespace -> functions defined
        namespaces = list(dict.fromkeys(c.namespace for c in self.submission.cells))
        self._launch(namespaces)
        for namespace in namespaces:
            if not self._await_load(namespace):
                self._start(namespace)

    # ---------------------------------------------------------------- loading
    def _launch(self, namespaces: list[str]) -> None:
        """Start one process per notebook and send each its cells (they load in parallel)."""
        if not namespaces:
            return
        for namespace, child in zip(namespaces, _Child.start(self._config, self._server,
                                                             len(namespaces))):
            self._children[namespace] = child
            cells = [(c.key, c.namespace, c.filename, c.source) for c in self.submission.cells
                     if c.namespace == namespace and c.key not in self.cell_errors]
            try:
                child.send(("load", cells))
            except OSError:
                pass                                        # seen as a closed pipe below

    def _await_load(self, namespace: str) -> bool:
        """Read a notebook process's report of its cells; True once it is ready. A cell that
        hangs or ends the process is recorded in ``cell_errors`` (then False)."""
        child = self._children[namespace]
        current, deadline = None, time.monotonic() + max(60.0, self.timeout)
        try:
            while True:
                message = child.receive(deadline)
                if message[0] == "cell":
                    current, deadline = message[1], time.monotonic() + self.timeout
                elif message[0] == "cell_done":
                    if message[2] is not None:
                        self.cell_errors[message[1]] = (str(message[2]), str(message[3]))
                    current = None
                elif message[0] == "ready":
                    self._names[namespace] = [str(n) for n in message[1].get(namespace, ())]
                    return True
        except (wire.WireError, OSError, AttributeError, IndexError, TypeError) as error:
            self._stop(namespace)
            if current is None:
                raise RuntimeError(f"the student process failed to start: {error}") from None
            timed_out = isinstance(error, wire.WireError) and error.timed_out
            self.cell_errors[current] = (
                ("timeout", f"running the cell took more than {self.timeout:g} s (an "
                            f"infinite loop at the top level?)") if timed_out else
                ("crash", "running the cell ended the process (exit, os._exit, or a crash)"))
            return False

    def _start(self, namespace: str) -> None:
        """(Re)start the process of one notebook, skipping every cell that hangs or ends it."""
        for _ in range(sum(c.namespace == namespace for c in self.submission.cells) + 2):
            self._launch([namespace])
            if self._await_load(namespace):
                return
        raise RuntimeError("the student process could not load the submission")

    def _stop(self, namespace: str, kill: bool = True) -> None:
        child = self._children.pop(namespace, None)
        if child is not None:
            child.stop(kill)

    # ---------------------------------------------------------------- status
    def _where(self, name: str):
        """(namespace, None) of the cell whose function ``name`` is used, or (None, error)."""
        if name in self.struck:
            return None, self.struck[name]
        cells = self.submission.defining(name)
        for cell in cells:
            if cell.key not in self.cell_errors and name in self._names.get(cell.namespace, ()):
                return cell.namespace, None
        if not cells:                                         # defined some other way
            for namespace, names in self._names.items():
                if name in names:
                    return namespace, None
        for cell in cells:
            if cell.key in self.cell_errors:
                kind, message = self.cell_errors[cell.key]
                if kind in ("syntax", "exception"):
                    return None, ("missing", f"{name} could not be defined: in {cell.filename}, "
                                             f"{message}")
                if kind == "forbidden":
                    return None, ("forbidden", f"{name} was not run: {message}")
                return None, (kind, f"{name} could not be defined: {message}")
        notebook = {e.name: e.notebook for e in EXERCISES}.get(name, "its notebook")
        unreadable = [f"{file}: {why}" for file, why in self.submission.errors.items()]
        if unreadable:
            return None, ("missing", f"no function named {name} was found; "
                                     f"{'; '.join(unreadable)}")
        return None, ("missing", f"no function named {name} was found in the exercise cells of "
                                 f"{notebook}")

    def status(self, name: str):
        """None if ``name`` is loaded and callable, else ``(kind, message)``."""
        return self._where(name)[1]

    # ---------------------------------------------------------------- calls
    def _request(self, name: str, message: tuple):
        namespace, problem = self._where(name)
        if problem is not None:
            raise StudentError(*problem)
        if self.budget is not None and self.spent >= self.budget:
            raise StudentError("timeout", f"the submission used up its time budget of "
                                          f"{self.budget:g} s")
        if namespace not in self._children:
            self.restarts += 1
            self._start(namespace)
        child = self._children[namespace]
        start = time.monotonic()
        limit = self.timeout if self.budget is None else min(self.timeout,
                                                             self.budget - self.spent)
        try:
            child.send((message[0], namespace, name) + message[1:])
            answer = child.receive(start + limit)
        except (wire.WireError, OSError) as error:
            timed_out = isinstance(error, wire.WireError) and error.timed_out
            self.spent += time.monotonic() - start
            self._stop(namespace)
            if timed_out:
                self.struck[name] = ("timeout", f"{name} did not return within {limit:g} s "
                                                f"(an infinite loop?)")
                raise StudentError(*self.struck[name]) from None
            if isinstance(error, wire.WireError) and not error.closed:
                raise StudentError("bad_output", f"the result of {name} could not be read: "
                                                 f"{error}") from None
            self._crashes[name] = self._crashes.get(name, 0) + 1
            problem = ("crash", f"the process running {name} died (os._exit, exit, a crash, or "
                                f"the memory limit of {self.memory_mb} MB)")
            if self._crashes[name] >= 2:
                self.struck[name] = problem
            raise StudentError(*problem) from None
        self.spent += time.monotonic() - start
        try:
            if answer[0] == "ok":
                return wire.unpack(answer[1], deadline=time.monotonic() + self.timeout)
            kind, text = str(answer[1]), str(answer[2])
        except Exception as error:                           # noqa: BLE001 - a forged answer
            self._stop(namespace)                            # its pipe may be out of step
            raise StudentError("bad_output", f"the result of {name} could not be read: "
                                             f"{error}") from None
        raise StudentError(kind, text)

    def call(self, name: str, *args, **kwargs):
        """Run ``name(*args, **kwargs)`` in the student process; return its plain result."""
        return self._request(name, ("call", wire.pack(args), wire.pack(kwargs)))

    def grad(self, name: str, args: tuple, wrt: tuple[int, ...], kwargs: dict | None = None):
        """As :meth:`LocalStudent.grad`: ``(result, grads)``, computed in the student process."""
        args = tuple(args)
        for i in wrt:
            if not (isinstance(args[i], torch.Tensor) and args[i].is_floating_point()):
                raise ValueError(f"argument {i} must be a float tensor to take a gradient")
        result = self._request(name, ("grad", wire.pack(args), tuple(int(i) for i in wrt),
                                      wire.pack(kwargs or {})))
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], tuple)):
            raise StudentError("bad_output", f"the gradient of {name} could not be read")
        return result

    def close(self) -> None:
        """Stop every process of this student (the sandbox with them) and remove its folder."""
        for namespace in list(getattr(self, "_children", {})):
            self._stop(namespace, kill=False)
        if getattr(self, "_server", None) is not None:
            self._server.close()
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:                                    # noqa: BLE001 - at shutdown
            pass


def _as_list(source) -> list:
    return [source] if isinstance(source, (str, Path)) else list(source)
