"""The fork server that starts student processes (see ``child.py``).

Importing torch takes seconds; a fork of a process that has already imported it takes
milliseconds. So each judging process keeps one *zygote*, a fork server started on first use
(or forked from the judge before it reads any hidden test, :func:`prefork_zygote`), and every
:class:`~rlhf_lab.grading.sandbox.StudentProcess` asks it for a fresh child.
"""
from __future__ import annotations

import atexit
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


__all__ = ["CHILD", "child_env", "prefork_zygote", "shutdown_zygote", "ZYGOTE"]

CHILD = Path(__file__).with_name("child.py")


def child_env(tmp: str) -> dict:
    """The whole environment of a student process: no variable of the grader's leaks in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp,
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "LANG": "C.UTF-8"}


class _Zygote:
    """The fork server of this judging process (see ``child.py``): started on first use,
    shared by every StudentProcess, restarted if it dies."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self.sock = None
        self.tmp = None

    def _start(self):
        self.tmp = tempfile.mkdtemp(prefix="rlhf_lab_zygote_")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with open(os.path.join(self.tmp, "zygote.log"), "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(CHILD), "zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], cwd=self.tmp, env=child_env(self.tmp),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        theirs.close()
        mine.settimeout(300)                 # the first answer waits for its torch import
        self.sock = mine

    def start_forked(self) -> bool:
        """Start the fork server by forking *this* process, which has imported torch already
        (saves the seconds of a second torch import). Only safe before anything secret is
        loaded — the judge calls it from ``pytest_configure``, before the hidden tests are
        imported — and while this process has a single thread. Returns False (and does
        nothing) when that cannot be done; the server then starts as a fresh interpreter."""
        with self.lock:
            if self.sock is not None or threading.active_count() > 1 or \
                    not sys.platform.startswith("linux"):
                return False
            from . import child
            self.tmp = tempfile.mkdtemp(prefix="rlhf_lab_zygote_")
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pid = os.fork()
            if pid == 0:                                          # the fork server
                try:
                    mine.close()
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    os.chdir(self.tmp)
                    os.environ.clear()
                    os.environ.update(child_env(self.tmp))
                    child.zygote_main(theirs.detach())
                finally:
                    os._exit(0)
            theirs.close()
            mine.settimeout(300)
            self.sock, self.proc = mine, _Forked(pid)
            return True

    def _send(self, request: dict, fds=()) -> None:
        data = json.dumps(request).encode()
        socket.send_fds(self.sock, [struct.pack(">I", len(data)) + data], list(fds))

    def _answer(self) -> int:
        answer = b""
        while len(answer) < 8:
            chunk = self.sock.recv(8 - len(answer))
            if not chunk:
                raise OSError("the fork server closed its socket")
            answer += chunk
        return struct.unpack(">q", answer)[0]

    def fork(self, config: dict, fd_pairs: list) -> list[int]:
        """Fork one student process per pair of pipe ends; return their pids (all requests
        are sent before the answers are read: one round trip however many)."""
        with self.lock:
            for attempt in (0, 1):
                if self.proc is None or self.proc.poll() is not None:
                    self.close_locked()
                    self._start()
                try:
                    for fds in fd_pairs:
                        self._send({"op": "fork", "config": config}, fds)
                    return [self._answer() for _ in fd_pairs]
                except OSError:
                    if attempt:
                        raise
                    self.close_locked()

    def kill(self, pid: int) -> None:
        """Kill and reap a student process (the zygote is its parent: no pid reuse race)."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self._send({"op": "kill", "pid": pid})
                    self._answer()
                except OSError:
                    pass

    def close_locked(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def close(self):
        with self.lock:
            self.close_locked()


class _Forked:
    """The few ``Popen`` methods the fork server needs, for a process made by ``os.fork``."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return self.returncode

    def kill(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


ZYGOTE = _Zygote()
atexit.register(ZYGOTE.close)


def prefork_zygote() -> bool:
    """Start this process's fork server now, by forking this process (see
    ``_Zygote.start_forked``); True if it did."""
    return ZYGOTE.start_forked()


def shutdown_zygote() -> None:
    """Stop this process's fork server (it restarts on the next StudentProcess)."""
    ZYGOTE.close()

