"""A warm parent process that forks one fresh pytest per mutant's test run.

Every mutant's tests are a new interpreter, and most of what one spends before its first
test is importing the same third-party libraries (pytest, hypothesis, redis-py, boto3,
moto): about 1.5 s of CPU per run, more than a cheap unit stage's tests take. The server
imports those once, then for each request forks a child that runs ``pytest.main`` on the
request's arguments, with the client's stdin/stdout/stderr, working directory and
environment. Nothing of the tree under test is imported before the fork (checked at
start), so every child imports the mutated file as it is on disk at that moment.

One request at a time, over a Unix socket: the client (:mod:`mutation.stages`) sends its
three standard descriptors and the JSON request, then waits for the exit status. A
client that goes away (cosmic-ray's timeout kills its process group) makes the server
kill the child's own process group at once, servers started by the tests included.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = ["PRELOAD", "request", "serve"]

PRELOAD = (
    "pytest",
    "_pytest.python",
    "hypothesis",
    "hypothesis.strategies",
    "redis",
    "redis.asyncio",
    "boto3",
    "botocore.session",
    "moto",
    "msgpack",
    "cachetools",
    "pluggy",
)
"""Third-party modules imported once, before any fork (a missing one is skipped)."""

_MAX_REQUEST = 1 << 20
_running: list[int] = []
"""The child being served (at most one): what a terminated server takes down with it."""


def _terminate(signum: int, _frame: Any) -> None:
    for pid in _running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    os._exit(128 + signum)


def _inside(module: Any, tree: Path) -> bool:
    path = getattr(module, "__file__", None)
    return isinstance(path, str) and Path(path).resolve().is_relative_to(tree)


def _child(request: dict[str, Any], fds: list[int]) -> int:
    """Run pytest as the request says, in this (forked) process; its exit status."""
    os.setpgid(0, 0)  # a group of its own: killed as a whole, with what the tests start
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    random.seed()  # not the state every sibling inherited
    import pytest  # already imported: a dictionary lookup

    # Preloaded hypothesis cannot have its asserts rewritten: say nothing about it.
    args = ["-W", "ignore::pytest.PytestAssertRewriteWarning", *request["args"]]
    sys.argv = ["pytest", *args]
    return int(pytest.main(args))


def _handle(conn: socket.socket) -> None:
    message, fds, _flags, _addr = socket.recv_fds(conn, _MAX_REQUEST, 3)
    request = json.loads(message)
    if len(fds) != 3 or not isinstance(request.get("args"), list):
        for fd in fds:
            os.close(fd)
        conn.sendall(b"4")
        return
    pid = os.fork()
    if pid == 0:  # the child: never returns into the server's loop
        status = 3
        try:
            conn.close()
            status = _child(request, fds)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # reported like pytest's internal error (status 3)
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)
    _running.append(pid)
    for fd in fds:
        os.close(fd)
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
                return
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(1):  # the client is gone: so is its run
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
    finally:
        _running.remove(pid)


def serve(path: str) -> None:
    """Preload :data:`PRELOAD`, then answer requests on the Unix socket ``path`` forever."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    tree = Path.cwd().resolve()
    own = ("__main__", "__mp_main__", "mutation")  # this server itself, never mutated
    early = sorted(
        name
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] not in own and _inside(module, tree)
    )
    if early:  # a child would run these as they were, not as mutated
        raise SystemExit(f"mutation.forkserver: preloading imported the tree's {early}")
    signal.signal(signal.SIGTERM, _terminate)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                _handle(conn)
            except (OSError, ValueError) as exc:  # a broken client: the next one is served
                print(f"mutation.forkserver: request failed: {exc!r}", file=sys.stderr)


def request(path: str, args: list[str]) -> int | None:
    """Run ``pytest args`` through the server at ``path``; None when it cannot be reached."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    with conn:
        body = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ)})
        socket.send_fds(conn, [body.encode()], [0, 1, 2])
        answer = b""
        while chunk := conn.recv(16):
            answer += chunk
    return int(answer) if answer else None


if __name__ == "__main__":
    serve(sys.argv[1])
