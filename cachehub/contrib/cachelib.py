"""A cachelib ``BaseCache`` on any cachehub cache; also a Flask-Caching ``CACHE_TYPE``.

::

    from cachehub.contrib.cachelib import CacheHubCachelib
    cache = CacheHubCachelib("main", default_timeout=300)

Flask-Caching takes the class by import path and passes ``CACHE_OPTIONS`` (or
``CACHE_ARGS``) to it, together with ``CACHE_DEFAULT_TIMEOUT``::

    app.config["CACHE_TYPE"] = "cachehub.contrib.cachelib.CacheHubCachelib"
    app.config["CACHE_OPTIONS"] = {"cache": "main"}

cachelib's timeout rules apply: ``None`` means ``default_timeout``, ``0`` never expires,
a negative timeout stores nothing (the key is removed). Values go through the cachehub
cache's codec, not cachelib's serializer (so ``CACHE_SERIALIZER`` does not apply).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from cachelib import BaseCache as CachelibBase

from . import CacheSpec, resolve_cache

__all__ = ["CacheHubCachelib"]


class CacheHubCachelib(CachelibBase):
    """cachelib cache delegating to a cachehub cache.

    ``cache`` is a cache object, a configured cache name, or an inline cache entry
    (built under ``name``).
    """

    def __init__(
        self,
        cache: CacheSpec,
        default_timeout: int | dt.timedelta = 300,
        ignore_delete_many_errors: bool = True,
        *,
        name: str = "cachelib",
    ) -> None:
        super().__init__(default_timeout, ignore_delete_many_errors)
        self.cache = resolve_cache(cache, name=name, where="CacheHubCachelib")

    def _lifetime(self, timeout: int | dt.timedelta | None) -> tuple[bool, int | None]:
        """(store?, seconds or None for forever) for a cachelib ``timeout``."""
        seconds = self._normalize_timeout(timeout)
        if seconds < 0:
            return False, None
        return True, seconds or None

    def get(self, key: str) -> Any:
        """The value, or None when absent."""
        return self.cache.get(key)

    def get_many(self, *keys: str) -> list[Any]:
        """Values in key order, None where absent; one batch."""
        found = self.cache.get_many(keys)
        return [found.get(key) for key in keys]

    def set(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        """Store ``value``; True on success."""
        store, seconds = self._lifetime(timeout)
        if store:
            self.cache.put(key, value, time_span=seconds)
        else:
            self.cache.delete(key)
        return True

    def add(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        """Store only if absent (atomically); True when stored."""
        store, seconds = self._lifetime(timeout)
        if not store:
            return not self.cache.exists(key)
        return self.cache.add(key, value, time_span=seconds)

    def set_many(
        self, mapping: Mapping[str, Any], timeout: int | dt.timedelta | None = None
    ) -> list[Any]:
        """Store every item in one batch; returns the keys stored."""
        store, seconds = self._lifetime(timeout)
        if store:
            self.cache.put_many(mapping, time_span=seconds)
        else:
            self.cache.delete_many(mapping)
        return list(mapping)

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        return self.cache.delete(key)

    def delete_many(self, *keys: str) -> list[Any]:
        """Remove ``keys`` in one batch; all are absent afterwards, so all count as deleted."""
        self.cache.delete_many(keys)
        return list(keys)

    def has(self, key: str) -> bool:
        """Whether ``key`` exists (without reading its value)."""
        return self.cache.exists(key)

    def clear(self) -> bool:
        """Remove every entry of the cachehub cache's namespace."""
        self.cache.clear()
        return True

    def inc(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta``; a missing key starts at 0."""
        return self.cache.incr(key, delta)

    def dec(self, key: str, delta: int = 1) -> int:
        """Atomically subtract ``delta``; a missing key starts at 0."""
        return self.cache.decr(key, delta)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.cache.exists(key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.cache!r}>"
