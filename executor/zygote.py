"""A fork server for executors: Python, asyncio and the executor imported once, forked per sandbox.

A cold executor spends ~70 ms importing before it can answer; a fork of this process answers in a
few milliseconds. The local backend starts one zygote and asks it for executors:

    request  (one JSON line on a Unix-socket connection): {"config": {...ExecutorConfig},
              "cwd": DIR, "log": FILE, "env": {...}}
    answer   the forked executor's own ready line on that same connection:
              {"ready": true, "pid": ..., "port": ...}

The zygote is single-threaded and runs no event loop, so forking it is safe. Children start their
own session (setsid): they outlive the zygote and its worker, like any sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import msgspec

from . import __main__ as executor_main
from ._server import ExecutorConfig


def _child(conn: socket.socket, listener: socket.socket, request: dict) -> None:
    """In the forked child: become a session leader and run one executor, answering on ``conn``."""
    try:
        listener.close()
        os.setsid()
        _name_process(b"corral-executor")  # ps shows it as what it is, not as the zygote
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(request["cwd"])
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(conn.fileno(), 1)
        os.dup2(log_fd, 2)
        for fd in (null_fd, log_fd):
            os.close(fd)
        conn.close()
        os.environ.clear()
        os.environ.update(request["env"])
        config = msgspec.convert(request["config"], ExecutorConfig)
        asyncio.run(executor_main._serve(config))
        code = 0
    except BaseException:  # noqa: BLE001 — the child must never return into the zygote's loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
    os._exit(code)


def _die_with_parent() -> None:
    """The zygote must not outlive its worker (a restarted worker starts its own). The kernel
    clears this for forked children, so the executors it made live on."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the worker died before the request was in place
        sys.exit(0)


PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def _name_process(name: bytes) -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def serve(path: str) -> None:
    _die_with_parent()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        try:
            request = json.loads(conn.makefile("rb").readline())
        except (ValueError, OSError):
            conn.close()
            continue
        if os.fork() == 0:
            _child(conn, listener, request)
        conn.close()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m executor.zygote SOCKET_PATH")
    try:
        serve(sys.argv[1])
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
