"""The program that runs inside a student process: it runs the exercise cells and answers calls.

It is started by :mod:`rlhf_lab.grading.zygote` as ``python -I child.py MODE ...`` (``-I``:
no user site, no ``PYTHONPATH``, not even the script's folder on ``sys.path``), a fresh
interpreter, usually inside a bubblewrap sandbox (``bwrap.py``) where only this file and the two
helper files it needs (``wire.py``, ``student.py``, loaded by file path) are visible of the
course; so ``rlhf_lab``, which holds the reference solutions, is not importable here.

``python -I child.py zygote SOCKET_FD`` is a fork server: it imports torch once (seconds), then forks a fresh
  student process for each request that arrives on the socket (milliseconds). Each request
  carries the config and the two pipe ends (``SCM_RIGHTS``); the answer is the child's pid.
  A child exits by itself when its pipes close; the zygote reaps it later. A busy child (a
  time-out) is killed and reaped by the zygote on request: being their parent, it never kills a
  pid that was reaped and reused. It exits, killing what is left, when the socket closes.

A student process, before it runs any student code:

0. asks the kernel to kill it when its fork server dies (``PR_SET_PDEATHSIG``);
1. sets resource limits: address space (``memory_mb``), CPU seconds, file size (1 MiB: it can
   write no file of any size that matters), no core dumps;
2. runs in its own empty temporary folder, stdout and stderr sent to a log file there;
3. installs an import blocker for ``rlhf_lab`` and an audit hook (:func:`install_guard`) that
   refuses to open files for writing, to read or list the grader's folders (hidden tests,
   package, solutions, outputs, submissions), and refuses processes, sockets and ``ctypes``.
   An audit hook cannot be removed once installed.

Then it serves frames (see ``wire.py``): ``("load", cells)`` runs the fixed preamble and each
exercise cell in the namespace of its notebook, reporting ``("cell", key)`` before and
``("cell_done", key, kind, message)`` after each cell, then ``("ready", {namespace: [names]})``;
``("call", namespace, name, args, kwargs)`` and ``("grad", namespace, name, args, wrt, kwargs)``
answer ``("ok", value)`` or ``("error", kind, message)``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import socket
import struct
import sys

PREAMBLE = ("import math\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\n")
BLOCKED_PACKAGES = ("rlhf_lab",)
_HERE = os.path.dirname(os.path.abspath(__file__))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_BLOCKED_EVENTS = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
    "os.killpg", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
    "os.link", "os.symlink", "os.truncate", "os.chdir", "os.putenv", "os.unsetenv",
    "os.startfile", "os.utime", "pty.spawn", "webbrowser.open", "urllib.Request",
    "_posixsubprocess.fork_exec", "resource.setrlimit", "resource.prlimit", "sys.settrace",
    "sys.setprofile",
}
_BLOCKED_PREFIXES = ("socket.", "ctypes.", "subprocess.", "shutil.", "ftplib.", "smtplib.",
                     "http.", "os.set")


def _load_by_path(name: str, filename: str):
    """Import a helper file of this folder under a private name (not as part of rlhf_lab)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(_HERE, filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def warm_up():
    """Import what student code and the answers need, and run each once, so that later lazy
    imports are few (they still work: they only read from the Python installation)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np  # noqa: F401
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    wire = _load_by_path("_grading_wire", "wire.py")
    api = _load_by_path("_grading_student", "student.py")
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = (F.log_softmax(x, -1).logsumexp(-1) + torch.sigmoid(x).sum(-1)).mean()
    torch.autograd.grad(loss, [x])
    wire.decode(wire.encode(wire.pack((x.detach(), np.zeros(2), {"a": 1.0}, [None]))))
    return wire, api


def set_limits(memory_mb: int, cpu_seconds: int) -> None:
    """Address space, CPU time, file size and core-dump limits of this process."""
    def lower(which, value):
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))
        except (ValueError, OSError):                   # e.g. RLIMIT_AS on macOS
            pass

    lower(resource.RLIMIT_AS, memory_mb * 2**20)
    lower(resource.RLIMIT_CPU, cpu_seconds)
    lower(resource.RLIMIT_FSIZE, 2**20)
    lower(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a too-large write fails, not the process


class _BlockPackages:
    """Meta-path finder: ``import rlhf_lab`` fails (the package holds the reference answers)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED_PACKAGES:
            raise ImportError(f"{fullname} cannot be imported while grading: the package holds "
                              f"the reference solutions")
        return None


def _roots(paths) -> tuple[str, ...]:
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)


def install_guard(deny: list[str], allow_read: list[str]) -> None:
    """Install the import blocker and the audit hook described in the module docstring.
    ``deny``: folders never read nor listed; ``allow_read``: the only folders that may be read
    (the Python installation: stdlib, site-packages, and /proc, /sys, /dev)."""
    deny_roots = _roots(deny)
    allow_roots = _roots(list(allow_read) + [p for p in sys.path if p] +
                         [sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev"])
    realpath, fsdecode, join = os.path.realpath, os.fsdecode, os.path.join

    def readable(path) -> bool:
        if path is None or isinstance(path, int):
            return True                                 # an already open descriptor
        full = join(realpath(fsdecode(path)), "")
        if full.startswith(deny_roots):
            return False
        return full.startswith(allow_roots)

    def hook(event, args):
        if event == "open":
            path, _, flags = args
            if (flags or 0) & _WRITE_FLAGS and not isinstance(path, int) or not readable(path):
                raise PermissionError(f"grading: a submission may not open {path!r}")
        elif event in ("os.listdir", "os.scandir", "glob.glob"):
            if args and not readable(args[0] if args[0] is not None else "."):
                raise PermissionError(f"grading: a submission may not list {args[0]!r}")
        elif event == "import":
            if str(args[0]).split(".")[0] in BLOCKED_PACKAGES:
                raise ImportError(f"{args[0]} cannot be imported while grading")
        elif event in _BLOCKED_EVENTS or event.startswith(_BLOCKED_PREFIXES):
            raise PermissionError(f"grading: a submission may not use {event}")

    sys.meta_path.insert(0, _BlockPackages())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED_PACKAGES:
            del sys.modules[name]
    sys.addaudithook(hook)


# --------------------------------------------------------------------------- the student process
def _error_kind(error, name: str, memory_mb: int):
    """(kind, message) of a StudentError, with memory failures given their own kind."""
    text = error.message
    if "can't allocate memory" in text or "MemoryError" in text or "out of memory" in text:
        return "memory", (f"{name} ran out of memory (the limit is {memory_mb} MB): is a tensor "
                          f"much larger than it needs to be?")
    return error.kind, text


def _run_cell(source: str, filename: str, namespace: dict):
    """Run one cell; return (kind, message) of its failure, or (None, None)."""
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as error:
        return "syntax", f"SyntaxError on line {error.lineno}: {error.msg}"
    except Exception as error:                          # noqa: BLE001 (e.g. ValueError: NUL)
        return "syntax", f"{type(error).__name__}: {error}"
    try:
        exec(code, namespace)                           # noqa: S102 - this is the point
    except MemoryError:
        return "memory", "the cell ran out of memory when it was run"
    except SystemExit:
        return "exception", "the cell calls exit() when it is run"
    except BaseException as error:                      # noqa: BLE001
        return "exception", f"running the cell raised {type(error).__name__}: {str(error)[:300]}"
    return None, None


def _functions(namespace: dict) -> dict:
    import types
    return {k: v for k, v in namespace.items()
            if callable(v) and not k.startswith("_")
            and not isinstance(v, (type, types.ModuleType))}


def die_with_parent(parent: int) -> None:
    """Be killed (SIGKILL) when the process that forked this one dies; exit now if it has."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def serve(config: dict, fd_in: int, fd_out: int, wire, api, parent: int | None = None) -> None:
    """The student process's loop (never returns)."""
    if parent is not None:
        die_with_parent(parent)
    memory_mb = int(config["memory_mb"])
    set_limits(memory_mb, int(config["cpu_seconds"]))
    log = os.open(config["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(config["cwd"])
    install_guard(config["deny"], config.get("allow_read", []))
    namespaces: dict[str, dict] = {}
    students: dict[str, object] = {}

    def send(message):
        wire.write_frame(fd_out, message)

    while True:
        try:
            request = wire.read_frame(fd_in)
        except wire.WireError:
            os._exit(0)
        op = request[0]
        if op == "exit":
            os._exit(0)
        if op == "load":
            for key, namespace_name, filename, source in request[1]:
                send(("cell", key))
                namespace = namespaces.get(namespace_name)
                if namespace is None:
                    namespace = namespaces[namespace_name] = {"__name__": "__main__"}
                    exec(compile(PREAMBLE, "<preamble>", "exec"), namespace)  # noqa: S102
                kind, message = _run_cell(source, filename, namespace)
                send(("cell_done", key, kind, message))
            students = {ns: api.LocalStudent(_functions(namespace))
                        for ns, namespace in namespaces.items()}
            send(("ready", {ns: sorted(s.functions) for ns, s in students.items()}))
            continue
        namespace_name, name = request[1], request[2]
        try:
            student = students[namespace_name]
            if op == "call":
                args, kwargs = wire.unpack(request[3]), wire.unpack(request[4])
                value = student.call(name, *args, **kwargs)
            else:
                args, wrt, kwargs = wire.unpack(request[3]), request[4], wire.unpack(request[5])
                value = student.grad(name, args, tuple(wrt), kwargs)
            answer = ("ok", wire.pack(value))
        except api.StudentError as error:
            answer = ("error",) + _error_kind(error, name, memory_mb)
        except MemoryError:
            answer = ("error", "memory", f"{name} ran out of memory (limit {memory_mb} MB)")
        except SystemExit:
            answer = ("error", "exception", f"{name} calls exit()")
        except BaseException as error:                  # noqa: BLE001
            answer = ("error", "bad_output", f"{name}: {type(error).__name__}: "
                                             f"{str(error)[:300]}")
        try:
            send(answer)
        except Exception as error:                      # noqa: BLE001 - e.g. unpicklable
            send(("error", "bad_output", f"the result of {name} could not be sent back "
                                         f"({type(error).__name__})"))


# --------------------------------------------------------------------------- the fork server
def _recv_request(sock: socket.socket):
    """One request: 4-byte length + JSON, with up to two file descriptors attached."""
    data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 2)
    if not data:
        return None, []
    (size,) = struct.unpack(">I", data[:4])
    while len(data) < 4 + size:
        more = sock.recv(1 << 16)
        if not more:
            return None, fds
        data += more
    return json.loads(data[4:4 + size]), fds


def zygote_main(sock_fd: int) -> None:
    wire, api = warm_up()
    sock = socket.socket(fileno=sock_fd)
    children: set[int] = set()
    while True:
        request, fds = _recv_request(sock)
        if request is None:
            break
        for pid in list(children):                      # reap those that ended by themselves
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
            except ChildProcessError:
                children.discard(pid)
        if request["op"] == "fork":
            me = os.getpid()
            pid = os.fork()
            if pid == 0:                                # the student process
                try:
                    sock.close()
                    serve(request["config"], fds[0], fds[1], wire, api, parent=me)
                finally:
                    os._exit(1)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            sock.sendall(struct.pack(">q", pid))
        elif request["op"] == "kill":
            pid = int(request["pid"])
            if pid in children:
                children.discard(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
            sock.sendall(struct.pack(">q", pid))
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


if __name__ == "__main__":
    if sys.argv[1:2] != ["zygote"]:
        sys.exit("usage: python -I child.py zygote SOCKET_FD")
    zygote_main(int(sys.argv[2]))
