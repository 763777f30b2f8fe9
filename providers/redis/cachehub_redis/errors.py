"""Translate redis-py exceptions into cachehub's typed errors, without leaking secrets."""

from __future__ import annotations

from collections.abc import Iterable

from redis import exceptions as rx
from redis.sentinel import MasterNotFoundError

from cachehub.errors import (
    CacheBackendError,
    CacheError,
    CachePermissionError,
    CacheUnavailableError,
)
from cachehub.scrub import scrub

__all__ = ["REDIS_ERRORS", "translate"]

REDIS_ERRORS = (rx.RedisError, rx.RedisClusterException)
"""Everything redis-py raises: RedisClusterException ("no node reachable") is not a
RedisError, so ``except rx.RedisError`` alone lets a cluster outage escape untyped."""

_AUTH = (
    rx.AuthenticationError,
    rx.AuthenticationWrongNumberOfArgsError,
    rx.AuthorizationError,
    rx.NoPermissionError,
)
_POOL_WAIT = "No connection available"
"""What redis-py's blocking pools raise (a ConnectionError) after waiting in vain."""
_UNREACHABLE = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ClusterDownError,
    rx.RedisClusterException,
    rx.BusyLoadingError,
    rx.TryAgainError,
    MasterNotFoundError,
)


def translate(
    exc: rx.RedisError | rx.RedisClusterException, endpoint: str, secrets: Iterable[str]
) -> CacheError:
    """The cachehub error for a redis-py exception raised while talking to ``endpoint``."""
    detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, _AUTH):
        return CachePermissionError(
            f"Redis at {endpoint} refused access ({detail}).",
            hint="check the password/username (or the user:password part of the url) and "
            "that the ACL user may run GET, SET, MGET, GETRANGE, EVALSHA, SCAN and UNLINK.",
        )
    if isinstance(exc, rx.MaxConnectionsError) or _POOL_WAIT in str(exc):
        return CacheUnavailableError(
            f"the connection pool for Redis at {endpoint} is exhausted ({detail}).",
            hint="raise 'maxConnections' (or 'socketTimeout', how long a request waits for "
            "a free connection), or reduce the threads or tasks using this cache at once.",
        )
    if isinstance(exc, _UNREACHABLE):
        return CacheUnavailableError(
            f"Redis at {endpoint} is unavailable ({detail}).",
            hint="check url/host/port, that redis-server is running and reachable from "
            "here, and 'socketTimeout'; the cache reconnects by itself once it is back.",
        )
    if isinstance(exc, rx.ReadOnlyError):
        return CacheBackendError(
            f"Redis at {endpoint} is a read-only replica ({detail}).",
            hint="point the cache at the primary, or use Sentinel so it follows failovers.",
        )
    if isinstance(exc, rx.OutOfMemoryError):
        return CacheBackendError(
            f"Redis at {endpoint} is out of memory ({detail}).",
            hint="raise maxmemory or set an eviction policy such as "
            "maxmemory-policy volatile-lru / allkeys-lru.",
        )
    return CacheBackendError(f"Redis at {endpoint} returned an error ({detail}).")
