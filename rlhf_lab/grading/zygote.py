"""The fork server that starts one student's processes (see ``child.py``).

Importing torch takes seconds; a fork of a process that has already imported it takes
milliseconds. So each :class:`~rlhf_lab.grading.sandbox.StudentProcess` starts one *fork
server*, a fresh interpreter (never a fork of the judge, whose memory holds the hidden tests)
that imports torch once and then forks a process per notebook, and a new one after each crash or
time-out. With ``sandbox=True`` the fork server runs inside a bubblewrap sandbox of its own
(:mod:`.bwrap`), so all the processes of one student share one sandbox and no other student's.

The fork server is started in a process group of its own; :meth:`ForkServer.close` closes its
socket (it then kills its children and exits), and kills the whole group anyway: with the
sandbox, killing ``bwrap`` ends the sandbox's PID namespace, so nothing of the student survives.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import bwrap

__all__ = ["CHILD", "child_env", "die_with_parent", "ForkServer"]

CHILD = Path(__file__).with_name("child.py")


def child_env(tmp: str) -> dict:
    """The whole environment of a student process: no variable of the grader's leaks in."""
    return {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp,
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "LANG": "C.UTF-8"}


def die_with_parent() -> None:
    """(In a child, before exec.) Be killed when the process that started it dies, so that a
    grader killed outright leaves no judge behind (``PR_SET_PDEATHSIG``, Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class ForkServer:
    """The fork server of one student (see the module docstring): started on first use,
    restarted if it dies. ``sandbox``: run it in a bubblewrap sandbox; ``hide``: folders the
    sandbox must not show even if they lie inside the Python installation."""

    def __init__(self, sandbox: bool, hide=()):
        self.sandbox, self.hide = bool(sandbox), list(hide)
        self.lock = threading.Lock()
        self.proc = None
        self.sock = None
        self.tmp = None

    def _start(self):
        self.tmp = tempfile.mkdtemp(prefix="rlhf_lab_forkserver_")
        os.chmod(self.tmp, 0o700)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = str(theirs.fileno())
        if self.sandbox:
            env = child_env(bwrap.WORKDIR)
            argv = bwrap.command([sys.executable, "-I", f"{bwrap.INNER}/child.py", "zygote", fd],
                                 hide=self.hide, env=env)
        else:
            argv = [sys.executable, "-I", str(CHILD), "zygote", fd]
        with open(os.path.join(self.tmp, "zygote.log"), "wb") as log:
            self.proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], cwd=self.tmp,
                                         env=child_env(self.tmp), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=die_with_parent)
        theirs.close()
        mine.settimeout(300)                 # the first answer waits for its torch import
        self.sock = mine

    def log_tail(self) -> str:
        """The last line the fork server wrote (why it failed to start), or ''."""
        try:
            lines = Path(self.tmp, "zygote.log").read_text(errors="replace").strip().splitlines()
        except (OSError, TypeError):
            return ""
        return lines[-1][:300] if lines else ""

    def _send(self, request: dict, fds=()) -> None:
        data = json.dumps(request).encode()
        socket.send_fds(self.sock, [struct.pack(">I", len(data)) + data], list(fds))

    def _answer(self) -> int:
        answer = b""
        while len(answer) < 8:
            chunk = self.sock.recv(8 - len(answer))
            if not chunk:
                raise OSError(f"the fork server closed its socket {self.log_tail()}".strip())
            answer += chunk
        return struct.unpack(">q", answer)[0]

    def fork(self, config: dict, fd_pairs: list) -> list[int]:
        """Fork one student process per pair of pipe ends; return their pids, as the fork
        server sees them (all requests are sent before the answers are read)."""
        with self.lock:
            for attempt in (0, 1):
                if self.proc is None or self.proc.poll() is not None:
                    self._stop_locked()
                    self._start()
                try:
                    for fds in fd_pairs:
                        self._send({"op": "fork", "config": config}, fds)
                    return [self._answer() for _ in fd_pairs]
                except OSError:
                    if attempt:
                        raise
                    self._stop_locked()

    def kill(self, pid: int) -> None:
        """Kill and reap a student process (the fork server is its parent: no pid reuse race)."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self._send({"op": "kill", "pid": pid})
                    self._answer()
                except OSError:
                    pass

    def _stop_locked(self, grace: float = 2.0):
        if self.sock is not None:
            self.sock.close()                # the fork server kills its children and exits
            self.sock = None
        if self.proc is not None:
            end = time.monotonic() + grace
            while time.monotonic() < end and not _exited(self.proc):
                time.sleep(0.01)
            try:                             # the group, while its leader is not yet reaped
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def close(self):
        """Stop the fork server and every process it started; remove its folder."""
        with self.lock:
            self._stop_locked()


def _exited(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` has exited, without reaping it where the system allows (its pid then
    stays reserved for the ``killpg`` that follows)."""
    if not hasattr(os, "waitid"):                       # macOS
        return proc.poll() is not None
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
