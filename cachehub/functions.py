"""Module-level cache functions, the Python names of Lucee's cache functions.

Each takes ``cache_name`` (the default cache when None) and delegates to that cache of
the process-wide registry (:func:`cachehub.registry.get_caches`)::

    cachehub.configure({"main": {"class": "memory"}})
    cachehub.put("user:42", {"name": "Ada"}, time_span=300)     # cachePut
    cachehub.get("user:42", cache_name="main")                  # cacheGet
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from .api import BaseCache, CacheMetadata, TimeSpan
from .lock import Lock
from .registry import get_caches

__all__ = [
    "cache",
    "put",
    "get",
    "exists",
    "delete",
    "clear",
    "keys",
    "get_all",
    "count",
    "metadata",
    "add",
    "incr",
    "decr",
    "touch",
    "get_many",
    "put_many",
    "delete_many",
    "get_or_set",
    "lock",
]

T = TypeVar("T")


def cache(cache_name: str | None = None) -> BaseCache:
    """The configured cache ``cache_name``, or the default cache when None."""
    return get_caches().get(cache_name)


def put(
    key: str,
    value: Any,
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    *,
    cache_name: str | None = None,
) -> None:
    """Store ``value`` under ``key`` (Lucee's ``cachePut``)."""
    cache(cache_name).put(key, value, time_span, idle_time, until)


def get(
    key: str,
    default: Any = None,
    *,
    throw_when_not_exist: bool = False,
    cache_name: str | None = None,
) -> Any:
    """The value for ``key``, else ``default`` or :class:`CacheKeyError` (``cacheGet``)."""
    return cache(cache_name).get(key, default, throw_when_not_exist=throw_when_not_exist)


def exists(key: str, *, cache_name: str | None = None) -> bool:
    """Whether ``key`` has a live entry (Lucee's ``cacheIdExists``)."""
    return cache(cache_name).exists(key)


def delete(key: str, *, cache_name: str | None = None) -> bool:
    """Remove ``key``; True when an entry was removed (Lucee's ``cacheDelete``)."""
    return cache(cache_name).delete(key)


def clear(filter: str | None = None, *, cache_name: str | None = None) -> int:
    """Remove entries matching a wildcard ``filter``, all when None (``cacheClear``)."""
    return cache(cache_name).clear(filter)


def keys(filter: str | None = None, *, cache_name: str | None = None) -> Iterator[str]:
    """Stream the keys matching ``filter`` (Lucee's ``cacheGetAllIds``)."""
    return cache(cache_name).keys(filter)


def get_all(filter: str | None = None, *, cache_name: str | None = None) -> dict[str, Any]:
    """``{key: value}`` of the entries matching ``filter`` (Lucee's ``cacheGetAll``)."""
    return cache(cache_name).get_all(filter)


def count(filter: str | None = None, *, cache_name: str | None = None) -> int:
    """Number of live entries matching ``filter`` (Lucee's ``cacheCount``)."""
    return cache(cache_name).count(filter)


def metadata(key: str, *, cache_name: str | None = None) -> CacheMetadata:
    """Hit count, TTL and timestamps of ``key`` (Lucee's ``cacheGetMetadata``)."""
    return cache(cache_name).metadata(key)


def add(
    key: str,
    value: Any,
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    *,
    cache_name: str | None = None,
) -> bool:
    """Store ``value`` only if ``key`` is absent; True when stored (atomic)."""
    return cache(cache_name).add(key, value, time_span, idle_time, until)


def incr(key: str, delta: int = 1, *, cache_name: str | None = None) -> int:
    """Atomically add ``delta`` to an integer entry (missing = 0); the new value."""
    return cache(cache_name).incr(key, delta)


def decr(key: str, delta: int = 1, *, cache_name: str | None = None) -> int:
    """Atomically subtract ``delta`` from an integer entry; the new value."""
    return cache(cache_name).decr(key, delta)


def touch(
    key: str,
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    *,
    cache_name: str | None = None,
) -> bool:
    """Give a live entry a new expiry (none: never expires); True if it exists."""
    return cache(cache_name).touch(key, time_span, idle_time, until)


def get_many(keys: Iterable[str], *, cache_name: str | None = None) -> dict[str, Any]:
    """Values of the live entries among ``keys``, fetched in batches."""
    return cache(cache_name).get_many(keys)


def put_many(
    items: Mapping[str, Any],
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    *,
    cache_name: str | None = None,
) -> None:
    """Store every ``key: value`` of ``items`` with one expiry, in batches."""
    cache(cache_name).put_many(items, time_span, idle_time, until)


def delete_many(keys: Iterable[str], *, cache_name: str | None = None) -> int:
    """Remove ``keys`` (Lucee's ``cacheRemove`` with a list); how many were removed."""
    return cache(cache_name).delete_many(keys)


def get_or_set(
    key: str,
    creator: Callable[[], T],
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    *,
    lock_timeout: float = 30.0,
    cache_name: str | None = None,
) -> T:
    """The cached value, or ``creator()`` computed once and stored (stampede-protected)."""
    return cache(cache_name).get_or_set(
        key, creator, time_span, idle_time, until, lock_timeout=lock_timeout
    )


def lock(
    name: str,
    ttl: TimeSpan = 30.0,
    *,
    timeout: float | None = None,
    poll: float = 0.05,
    cache_name: str | None = None,
) -> Lock:
    """A distributed lock stored in the cache; use as ``with lock("job", timeout=5):``."""
    return cache(cache_name).lock(name, ttl, timeout=timeout, poll=poll)
