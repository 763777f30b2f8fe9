"""Translate redis-py exceptions into cachehub's typed errors, without leaking secrets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Final

from redis import exceptions as rx
from redis.sentinel import MasterNotFoundError

from cachehub.provider import (
    CacheBackendError,
    CacheError,
    CachePermissionError,
    CacheUnavailableError,
    ErrorRule,
    scrub,
    translate_error,
)

__all__ = ["REDIS_ERRORS", "TABLE", "translate"]

REDIS_ERRORS = (rx.RedisError, rx.RedisClusterException)
"""Everything redis-py raises: RedisClusterException ("no node reachable") is not a
RedisError, so ``except rx.RedisError`` alone lets a cluster outage escape untyped."""

_POOL_EXHAUSTED: Final = ErrorRule(
    CacheUnavailableError,
    "the connection pool for Redis at {endpoint} is exhausted ({detail}).",
    "raise 'maxConnections' (or 'socketTimeout', how long a request waits for a free "
    "connection), or reduce the threads or tasks using this cache at once.",
    types=(rx.MaxConnectionsError,),
)

TABLE: Final = (
    ErrorRule(
        CachePermissionError,
        "Redis at {endpoint} refused access ({detail}).",
        "check the password/username (or the user:password part of the url) and that the "
        "ACL user may run GET, SET, MGET, GETRANGE, EVALSHA, SCAN and UNLINK.",
        types=(
            rx.AuthenticationError,
            rx.AuthenticationWrongNumberOfArgsError,
            rx.AuthorizationError,
            rx.NoPermissionError,
        ),
    ),
    _POOL_EXHAUSTED,
    # What redis-py's blocking pools raise (a ConnectionError) after waiting in vain.
    replace(_POOL_EXHAUSTED, types=(), text="No connection available"),
    ErrorRule(
        CacheUnavailableError,
        "Redis at {endpoint} is unavailable ({detail}).",
        "check url/host/port, that redis-server is running and reachable from here, and "
        "'socketTimeout'; the cache reconnects by itself once it is back.",
        types=(
            rx.ConnectionError,
            rx.TimeoutError,
            rx.ClusterDownError,
            rx.RedisClusterException,
            rx.BusyLoadingError,
            rx.TryAgainError,
            MasterNotFoundError,
        ),
    ),
    ErrorRule(
        CacheBackendError,
        "Redis at {endpoint} is a read-only replica ({detail}).",
        "point the cache at the primary, or use Sentinel so it follows failovers.",
        types=(rx.ReadOnlyError,),
    ),
    ErrorRule(
        CacheBackendError,
        "Redis at {endpoint} is out of memory ({detail}).",
        "raise maxmemory or set an eviction policy such as "
        "maxmemory-policy volatile-lru / allkeys-lru.",
        types=(rx.OutOfMemoryError,),
    ),
    ErrorRule(CacheBackendError, "Redis at {endpoint} returned an error ({detail})."),
)
"""redis-py's exceptions as cachehub errors, first match wins (a pool that waited in vain
raises a ConnectionError: it is told apart before the other connection errors)."""


def translate(
    exc: rx.RedisError | rx.RedisClusterException, endpoint: str, secrets: Iterable[str]
) -> CacheError:
    """The cachehub error for a redis-py exception raised while talking to ``endpoint``."""
    detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
    return translate_error(TABLE, exc, endpoint=endpoint, detail=detail)
