"""A dogpile.cache backend on any cachehub cache, with a distributed dogpile mutex.

::

    from dogpile.cache import make_region
    region = make_region().configure(
        "cachehub",
        expiration_time=300,
        arguments={"cache": "main"},   # a cache name, a cache object or a cache entry
    )

Arguments:

* ``cache`` (required): a :class:`~cachehub.api.BaseCache`, the name of a configured
  cache, or an inline cache entry such as ``{"class": "memory"}``;
* ``name``: the cache name for an inline entry (default ``"dogpile"``);
* ``time_span``: seconds after which the backend itself drops entries (default: never;
  dogpile decides staleness from ``expiration_time`` on its own);
* ``lock_timeout``: seconds after which an abandoned dogpile lock frees itself (30);
* ``lock_sleep``: longest poll interval while waiting for the lock (0.05).

Other arguments are ignored, as dogpile backends conventionally do. Values go through
the cachehub cache's codec (no pickle unless the cache is configured for it): without
a region serializer, dogpile's ``CachedValue`` is stored as ``[payload, metadata]``;
an entry in any other form (another client's value), or one the cache cannot decode
(damaged bytes), is a miss, so dogpile regenerates it.
The mutex is ``cache.lock``, so on Redis and DynamoDB only one process regenerates a
key at a time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dogpile.cache.api import (
    NO_VALUE,
    BackendArguments,
    BackendFormatted,
    BackendSetType,
    CacheBackend,
    CachedValue,
    CacheMutex,
    KeyType,
    SerializedReturnType,
)

from ..api import MISSING, BaseCache
from ..errors import CacheValueError, ConfigError
from ..lock import Lock
from . import resolve_cache
from .signing import read, read_many

__all__ = ["CacheHubBackend", "CacheHubMutex"]

_LOCK_NAMESPACE = "dogpile:"


class CacheHubMutex(CacheMutex):
    """A dogpile mutex over :meth:`BaseCache.lock`.

    dogpile shares one mutex object per key between threads; each ``acquire`` takes the
    cache lock under a token of its own, and the mutex remembers which thread took it.
    ``release`` releases the lock the calling thread took, or else the oldest one this
    object holds: dogpile's ``async_creation_runner`` hands the held mutex to a thread
    of its own, which releases it when the value is stored (as with dogpile's memory
    backend, whose mutex is a ``threading.Lock``). ``locked()`` asks the cache, so it
    sees other processes' locks too. Not re-entrant: a second ``acquire`` by the holder
    fails (or, blocking, waits for the ``lock_timeout``).
    """

    def __init__(self, cache: BaseCache, name: str, *, ttl: float, poll: float) -> None:
        self.cache = cache
        self.name = name
        self.ttl = ttl
        self.poll = poll
        self._held: dict[int, Lock] = {}
        self._guard = threading.Lock()

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; block until free when ``wait``, else fail fast."""
        lock = self.cache.lock(self.name, ttl=self.ttl, poll=self.poll)
        if not lock.acquire(blocking=wait):
            return False
        with self._guard:
            self._held[threading.get_ident()] = lock
        return True

    def release(self) -> None:
        """Release the lock this thread took, or else the oldest one this mutex holds
        (handed to another thread, as ``async_creation_runner`` does)."""
        with self._guard:
            lock = self._held.pop(threading.get_ident(), None)
            if lock is None and self._held:
                lock = self._held.pop(next(iter(self._held)))
        if lock is None:
            raise CacheValueError(
                f"dogpile mutex '{self.name}' released, but it does not hold it.",
                hint="release the mutex once per acquire.",
            )
        lock.release_quietly()  # a lock lost to its ttl: the value is regenerated anyway

    def locked(self) -> bool:
        """Whether anyone (any thread or process) holds the lock now."""
        return self.cache.lock(self.name).busy


class CacheHubBackend(CacheBackend):
    """dogpile.cache ``CacheBackend`` storing into a cachehub cache."""

    def __init__(self, arguments: BackendArguments) -> None:
        if "cache" not in arguments:
            raise ConfigError(
                "the dogpile 'cachehub' backend needs a 'cache' argument.",
                hint="configure(..., arguments={'cache': 'main'}) with a configured cache name, "
                "a cache object or an entry such as {'class': 'memory'}.",
            )
        self.cache = resolve_cache(
            arguments["cache"],
            name=str(arguments.get("name", "dogpile")),
            where="dogpile 'cachehub' backend",
        )
        self.time_span: float | None = _seconds(arguments, "time_span", None)
        self.lock_timeout: float = _seconds(arguments, "lock_timeout", 30.0) or 30.0
        self.lock_sleep: float = _seconds(arguments, "lock_sleep", 0.05) or 0.05

    # ------------------------------------------------------------------ values

    @staticmethod
    def _pack(value: BackendSetType) -> Any:
        if isinstance(value, CachedValue):
            return [value.payload, dict(value.metadata)]
        return value

    @staticmethod
    def _unpack(stored: Any) -> BackendFormatted:
        """A ``CachedValue`` as the region reads it without a serializer, or ``NO_VALUE``."""
        if (
            isinstance(stored, (list, tuple))
            and len(stored) == 2
            and isinstance(stored[1], dict)
            and _valid_metadata(stored[1])
        ):
            return CachedValue(stored[0], stored[1])
        # Absent, or not written by a region without serializer (serialized bytes,
        # another client's value): a miss, so dogpile regenerates instead of failing
        # on the value's missing metadata.
        return NO_VALUE

    @staticmethod
    def _unpack_serialized(stored: Any) -> SerializedReturnType:
        """The stored bytes as a region with a serializer reads them, or ``NO_VALUE``.

        Any bytes are returned as they are (dogpile's backend contract: ``get_serialized``
        returns what ``set_serialized`` stored); anything else (a ``CachedValue`` a
        region without serializer wrote, another client's value) is a miss, where the
        region would fail on it.
        """
        return stored if isinstance(stored, bytes) else NO_VALUE

    def get(self, key: KeyType) -> BackendFormatted:
        """The stored ``CachedValue``, or ``NO_VALUE``."""
        return self._unpack(read(self.cache, key))

    def _stored(self, keys: Iterable[KeyType]) -> list[Any]:
        """The raw entries of ``keys`` in order, MISSING where absent; one batch."""
        keys = list(keys)
        found = read_many(self.cache, keys)
        return [found.get(key, MISSING) for key in keys]

    def get_multi(self, keys: Iterable[KeyType]) -> Sequence[BackendFormatted]:
        """Values for ``keys`` in order, ``NO_VALUE`` where absent; one batch."""
        return [self._unpack(stored) for stored in self._stored(keys)]

    def get_serialized(self, key: KeyType) -> SerializedReturnType:
        """The stored serialized bytes (region with a serializer), or ``NO_VALUE``."""
        return self._unpack_serialized(read(self.cache, key))

    def get_serialized_multi(self, keys: Iterable[KeyType]) -> Sequence[SerializedReturnType]:
        """:meth:`get_serialized` for ``keys`` in order; one batch."""
        return [self._unpack_serialized(stored) for stored in self._stored(keys)]

    def set(self, key: KeyType, value: BackendSetType) -> None:
        """Store ``value`` (with the backend ``time_span``, if configured)."""
        self.cache.put(key, self._pack(value), time_span=self.time_span)

    def set_multi(self, mapping: Mapping[KeyType, BackendSetType]) -> None:
        """Store every item in one batch."""
        if mapping:
            packed = {key: self._pack(value) for key, value in mapping.items()}
            self.cache.put_many(packed, time_span=self.time_span)

    def delete(self, key: KeyType) -> None:
        """Remove ``key`` (absent keys are fine)."""
        self.cache.delete(key)

    def delete_multi(self, keys: Iterable[KeyType]) -> None:
        """Remove every key in one batch."""
        self.cache.delete_many(keys)

    # ------------------------------------------------------------------ locking

    def get_mutex(self, key: KeyType) -> CacheMutex:
        """A distributed mutex for regenerating ``key``."""
        return CacheHubMutex(
            self.cache, _LOCK_NAMESPACE + key, ttl=self.lock_timeout, poll=self.lock_sleep
        )

    def has_lock_timeout(self) -> bool:
        """True: an abandoned lock frees itself after ``lock_timeout`` seconds."""
        return True


def _valid_metadata(metadata: dict[Any, Any]) -> bool:
    """Whether ``metadata`` has what dogpile's region reads from every value: the format
    version ``v`` (an int) and the creation time ``ct`` (a finite number of seconds).
    Without them the region fails with a KeyError or TypeError instead of regenerating."""
    version, created = metadata.get("v"), metadata.get("ct")
    if type(version) is not int or isinstance(created, bool):
        return False
    if not isinstance(created, (int, float)):
        return False
    try:  # an int beyond a float's range (10**400) raised OverflowError here
        return math.isfinite(created)
    except OverflowError:
        return False


def _seconds(arguments: BackendArguments, name: str, default: float | None) -> float | None:
    value = arguments.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(
            f"dogpile 'cachehub' backend argument {name}={value!r} must be a positive "
            "number of seconds.",
            hint=f"pass e.g. {name}=30, or leave it out for the default.",
        )
    return float(value)
