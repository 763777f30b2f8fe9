"""A Django cache backend on any cachehub cache.

Name a cache from the process registry (``cachehub.json`` / ``CACHEHUB_CONFIG`` /
:func:`cachehub.configure`) in ``LOCATION``::

    CACHES = {
        "default": {
            "BACKEND": "cachehub.contrib.django.CacheHubCache",
            "LOCATION": "main",
            "TIMEOUT": 300,
            "KEY_PREFIX": "site1",
        }
    }

or give one cache entry inline in ``OPTIONS`` (optionally with a ``name`` for logs and
stats)::

    "OPTIONS": {"name": "django", "class": "memory", "custom": {"maxsize": 50_000}}

Django's timeout rules apply: ``None`` caches forever, ``0`` (or less) does not store
and expires an existing entry, omitted means ``TIMEOUT`` (default 300 s). Keys are made
by Django (``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``) and then stored in the cachehub
cache, whose own ``namespace`` still applies. Values go through the cachehub cache's
codec, not pickle. Gaps are listed in docs/integrations.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import (  # type: ignore[import-untyped]
    DEFAULT_TIMEOUT,
    BaseCache,
)

from ..api import MISSING
from ..api import BaseCache as CacheHubBase
from ..errors import CacheValueError, ConfigError, StorageNotEnabledError
from . import resolve_cache

__all__ = ["CacheHubCache"]

_DJANGO_SESSION_KEYS = ("django.contrib.sessions.cache", "django.contrib.sessions.cached_db")
"""Key prefixes of Django's stock cache and cached_db session engines (fixed by Django)."""


class CacheHubCache(BaseCache):  # type: ignore[misc]
    """Django ``BaseCache`` implementation delegating to a cachehub cache."""

    def __init__(self, location: str, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        name = options.pop("name", "django")
        if location and options:
            raise ConfigError(
                f"Django cache backend {type(self).__name__}: both LOCATION ({location!r}) "
                "and a cache entry in OPTIONS are given.",
                hint="use LOCATION to name a configured cache, or OPTIONS to define one "
                "inline, not both.",
            )
        if not location and not options:
            raise ConfigError(
                f"Django cache backend {type(self).__name__} needs a cache.",
                hint="set LOCATION to the name of a configured cachehub cache, or OPTIONS to "
                "a cache entry such as {'class': 'memory'}.",
            )
        spec: str | Mapping[str, Any] = location or options
        self.cachehub: CacheHubBase = resolve_cache(
            spec, name=str(name), where="Django CACHES entry"
        )

    # ------------------------------------------------------------------ timeouts

    def _lifetime(self, timeout: Any) -> tuple[bool, float | None]:
        """(store?, seconds or None for forever) for a Django ``timeout`` argument."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return True, None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise CacheValueError(
                f"Django cache timeout must be a number of seconds or None, got {timeout!r}.",
                hint="pass e.g. timeout=300, or None to cache forever.",
            )
        if timeout <= 0:
            return False, None
        return True, float(timeout)

    def _key(self, key: Any, version: int | None) -> str:
        if isinstance(key, str) and key.startswith(_DJANGO_SESSION_KEYS):
            # Django's own session engines on this backend: the storage flag applies
            # to them as to cachehub's engine, and the session id is hashed so that no
            # cache key, error or log line carries it (the message shows no key).
            if not self.cachehub.storage:
                raise StorageNotEnabledError(
                    f"Django's session engine is using cache '{self.cachehub.name}', "
                    "which is not enabled for session storage.",
                    hint=f"set `storage: true` on the '{self.cachehub.name}' cache entry, "
                    "or point SESSION_CACHE_ALIAS at a cache that has it.",
                )
            prefix = next(p for p in _DJANGO_SESSION_KEYS if key.startswith(p))
            raw = key[len(prefix) :].encode("utf-8", "surrogatepass")
            key = prefix + hashlib.sha256(raw).hexdigest()
        made: str = self.make_and_validate_key(key, version=version)
        return made

    # ------------------------------------------------------------------ Django API

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        """Store only when absent; True when stored (a 0 timeout stores nothing)."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        if not store:
            return not self.cachehub.exists(k)
        return self.cachehub.add(k, value, time_span=seconds)

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """The cached value, or ``default``."""
        value = self.cachehub.get(self._key(key, version), MISSING)
        return default if value is MISSING else value

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """Store ``value``; a timeout <= 0 deletes the key instead."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        if store:
            self.cachehub.put(k, value, time_span=seconds)
        else:
            self.cachehub.delete(k)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """Give an existing key a new timeout; True when it existed."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        if not store:
            return self.cachehub.delete(k)
        return self.cachehub.touch(k, time_span=seconds)

    def delete(self, key: Any, version: Any = None) -> bool:
        """Remove the key; True when it existed."""
        return self.cachehub.delete(self._key(key, version))

    def has_key(self, key: Any, version: Any = None) -> bool:
        """Whether the key exists (without counting a hit)."""
        return self.cachehub.exists(self._key(key, version))

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """``{key: value}`` for the keys that exist, fetched in one batch."""
        made = {self._key(key, version): key for key in keys}
        found = self.cachehub.get_many(made)
        return {made[k]: value for k, value in found.items()}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """Store every item with one timeout; returns the keys that failed (always [])."""
        items = {self._key(key, version): value for key, value in data.items()}
        store, seconds = self._lifetime(timeout)
        if store:
            self.cachehub.put_many(items, time_span=seconds)
        else:
            self.cachehub.delete_many(items)
        return []

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """Remove every key."""
        self.cachehub.delete_many([self._key(key, version) for key in keys])

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """Atomically add ``delta`` to an existing integer; ValueError when the key is absent.

        The existence check and the increment are two calls: a key deleted in between
        is recreated holding ``delta`` (Django's own non-memcached backends share this).
        """
        k = self._key(key, version)
        if not self.cachehub.exists(k):
            raise CacheValueError(
                f"Key '{key}' not found.",
                hint="incr()/decr() need an existing key: set(key, 0) or add(key, 0) first.",
            )
        return self.cachehub.incr(k, delta)

    def decr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """Atomically subtract ``delta`` from an existing integer."""
        return self.incr(key, -delta, version=version)

    def clear(self) -> None:
        """Remove every entry of the cachehub cache's namespace."""
        self.cachehub.clear()

    def close(self, **kwargs: Any) -> None:
        """Called by Django after every request: providers keep their pools, so no-op."""
