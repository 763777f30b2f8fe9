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
cache, whose own ``namespace`` still applies.

Values are pickled like Django's own backends do, but signed: HMAC-SHA256 with a key
derived from ``SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` still verify), checked before
anything is unpickled (:mod:`cachehub.contrib.signing`); without a ``SECRET_KEY`` the
backend refuses to start. ``OPTIONS["VALUE_FORMAT"] = "cache-codec"`` stores values
through the cachehub cache's codec instead (no pickle at all). Plain ints are stored
unsigned (for an atomic ``incr``) unless ``OPTIONS["SIGN_INTS"] = True``. Django's ``MAX_ENTRIES``
and ``CULL_FREQUENCY`` options are accepted and ignored (with one warning): size
limits are provider settings. Gaps are listed in docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from django.conf import settings  # type: ignore[import-untyped]
from django.core.cache.backends.base import (  # type: ignore[import-untyped]
    DEFAULT_TIMEOUT,
    BaseCache,
)
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from ..api import MAX_TIME_SPAN, MISSING, Entry
from ..api import BaseCache as CacheHubBase
from ..errors import CacheValueError, ConfigError, CorruptEntryError, StorageNotEnabledError
from . import resolve_cache
from .signing import (
    Add,
    SignedValues,
    apeek,
    aread,
    aread_many,
    as_type_error,
    incr,
    peek,
    read,
    read_many,
)

__all__ = ["CacheHubCache"]

_log = logging.getLogger("cachehub.contrib.django")

IGNORED_OPTIONS: Final = ("MAX_ENTRIES", "CULL_FREQUENCY")
"""Django's documented OPTIONS for its local backends; size limits are provider settings
here, so they are accepted and ignored (one warning per option per process)."""
ADAPTER_OPTIONS: Final = ("VALUE_FORMAT", "SIGN_INTS")
"""OPTIONS read by the adapter itself; lower-case keys are the inline cache entry."""
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_ignored(option: str) -> None:
    with _warned_lock:
        if option in _warned:
            return
        _warned.add(option)
    _log.warning(
        "Django cache OPTIONS[%r] is ignored by %s: size limits are settings of the "
        "cachehub provider (e.g. maxsize of the memory provider).",
        option,
        "cachehub.contrib.django.CacheHubCache",
    )


def _split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(adapter options, inline cache entry) of a Django ``OPTIONS`` mapping."""
    adapter: dict[str, Any] = {}
    entry: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise ConfigError(
                f"Django cache OPTIONS keys must be strings, got {type(key).__name__}.",
                hint="use option names such as 'MAX_ENTRIES' or cache entry keys such as 'class'.",
            )
        if key in IGNORED_OPTIONS:
            _warn_ignored(key)
        elif key in ADAPTER_OPTIONS:
            adapter[key] = value
        elif key.isupper():
            known = ", ".join((*ADAPTER_OPTIONS, *IGNORED_OPTIONS))
            raise ConfigError(
                f"Django cache OPTIONS[{key!r}] is not an option of CacheHubCache.",
                hint=f"the options it knows are {known}; lower-case keys form an inline "
                "cachehub cache entry (e.g. 'class', 'custom').",
            )
        else:
            entry[key] = value
    return adapter, entry


def _django_secret() -> tuple[Any, Any]:
    """``(SECRET_KEY, SECRET_KEY_FALLBACKS)``; None for a missing or empty secret."""
    try:
        secret = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty SECRET_KEY
        secret = None
    return secret or None, getattr(settings, "SECRET_KEY_FALLBACKS", None)


_DJANGO_SESSION_KEYS = ("django.contrib.sessions.cached_db", "django.contrib.sessions.cache")
"""Key prefixes of Django's stock cached_db and cache session engines (fixed by Django).
The longer first: ``cache`` is a prefix of ``cached_db``, and matched first it hashed a
cached_db id as ``d_db<id>`` under the cache engine's prefix."""
SESSION_ENGINE_PREFIX: Final = "cachehub.contrib.django_session:"
"""Key prefix of :mod:`cachehub.contrib.django_session` (before the hashed session id)."""
_SESSION_KEYS = (*_DJANGO_SESSION_KEYS, SESSION_ENGINE_PREFIX)
"""Key prefixes of every Django session engine over this backend."""


class CacheHubCache(BaseCache):  # type: ignore[misc]
    """Django ``BaseCache`` implementation delegating to a cachehub cache."""

    def __init__(self, location: str, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        adapter, options = _split_options(params.get("OPTIONS") or {})
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
        secret, fallbacks = _django_secret()
        self.values = SignedValues(
            self.cachehub,
            secret,
            fallbacks,
            purpose="cachehub.contrib.django cache values",
            adapter="Django cache backend CacheHubCache",
            setting="set Django's SECRET_KEY setting",
            value_format=adapter.get("VALUE_FORMAT", "signed-pickle"),
            sign_ints=adapter.get("SIGN_INTS", False),
            setting_sign_ints='OPTIONS["SIGN_INTS"]',
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
        if timeout > MAX_TIME_SPAN.total_seconds():
            # Django's own backends keep such an entry (LocMemCache even for inf); beyond
            # cachehub's longest time span it is kept forever rather than refused.
            return True, None
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
            return not self._present(key, k)
        with self.values.storing():
            stored = self.values.dumps(k, value)
            return Add(self.cachehub, k, stored, seconds, self._readable(key, k)).run()

    def _value(self, key: Any, k: str, stored: Any) -> Any:
        """The value of ``stored`` (read under ``k`` for the caller's ``key``), or MISSING.

        A session engine's entry must hold the session dict: Django's engines return
        whatever the cache gives, and fail on anything else (AttributeError on every
        request of that session). Such an entry (written by another client, which the
        cache-codec format cannot tell apart) is a miss, so Django starts a new session
        (``cached_db`` reads the database), as it does for a missing one.
        """
        value = self.values.loads(k, stored)
        if (
            value is not MISSING
            and not isinstance(value, dict)
            and isinstance(key, str)
            and key.startswith(_SESSION_KEYS)
        ):
            _log.warning(
                "cache '%s': a Django session entry holds a %s, not the session dict; "
                "treated as a miss.",
                self.cachehub.name,
                type(value).__name__,
            )
            return MISSING
        return value

    def _readable(self, key: Any, k: str) -> Callable[[Any], bool]:
        """Whether a raw entry under ``k`` is a value :meth:`get` returns (for add)."""
        return lambda stored: self._value(key, k, stored) is not MISSING

    def _present(self, key: Any, k: str) -> bool:
        """Whether :meth:`get` would return a value for ``key`` (stored under ``k``), read
        without counting a hit or sliding an idle expiry.

        Not ``exists``: an entry this adapter cannot read (signed with a secret since
        rotated out, another writer's bytes, bytes the cache cannot decode) exists in the
        cache, but ``get`` answers a miss for it, and so must ``has_key``, ``in``, ``add``
        and ``touch``.
        """
        return self._readable_entry(key, k, peek(self.cachehub, k))

    async def _apresent(self, key: Any, k: str) -> bool:
        """:meth:`_present` on the cache's async shell."""
        return self._readable_entry(key, k, await apeek(self.cachehub, k))

    def _readable_entry(self, key: Any, k: str, entry: Entry | None) -> bool:
        """The judgement both :meth:`_present` forms make of what ``peek`` read."""
        return entry is not None and self._value(key, k, entry.value) is not MISSING

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """The cached value, or ``default``."""
        k = self._key(key, version)
        value = self._value(key, k, read(self.cachehub, k))
        return default if value is MISSING else value

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """Store ``value``; a timeout <= 0 deletes the key instead."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        if store:
            with self.values.storing():
                self.cachehub.put(k, self.values.dumps(k, value), time_span=seconds)
        else:
            self.cachehub.delete(k)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """Give an existing key a new timeout; True when it existed. An entry :meth:`get`
        cannot read is absent: False, and it keeps its timeout (a 0 timeout removes it)."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        present = self._present(key, k)
        if not store:
            return self.cachehub.delete(k) and present
        return present and self.cachehub.touch(k, time_span=seconds)

    def delete(self, key: Any, version: Any = None) -> bool:
        """Remove the key; True when it existed."""
        return self.cachehub.delete(self._key(key, version))

    def has_key(self, key: Any, version: Any = None) -> bool:
        """Whether :meth:`get` would find a value (without counting a hit)."""
        return self._present(key, self._key(key, version))

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """``{key: value}`` for the keys that exist, fetched in one batch."""
        made = {self._key(key, version): key for key in keys}
        found = read_many(self.cachehub, made)
        out = {}
        for k, stored in found.items():
            value = self._value(made[k], k, stored)
            if value is not MISSING:
                out[made[k]] = value
        return out

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """Store every item with one timeout; returns the keys that failed (always [])."""
        items = {self._key(key, version): value for key, value in data.items()}
        store, seconds = self._lifetime(timeout)
        if store:
            with self.values.storing():
                self.cachehub.put_many(self.values.dumps_many(items.items()), time_span=seconds)
        else:
            self.cachehub.delete_many(items)
        return []

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """Remove every key."""
        self.cachehub.delete_many([self._key(key, version) for key in keys])

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """Atomically add ``delta`` to an existing integer; ValueError when the key is absent,
        TypeError when its value is not an integer.

        The existence check and the increment are two calls: a key deleted in between
        is recreated holding ``delta`` (Django's own non-memcached backends share this).
        With ``SIGN_INTS`` the value is signed, so the count is a read-modify-write under
        a lock on the key instead (:meth:`SignedValues.count`).
        """
        k = self._key(key, version)
        if self.values.sign_ints:
            return self._counted(key, self.values.count(k, delta, create=False))
        if not self._present(key, k):
            raise _not_found(key)
        return incr(self.cachehub, k, delta)

    @staticmethod
    def _counted(key: Any, counted: int | None) -> int:
        if counted is None:
            raise _not_found(key)
        return counted

    def decr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """Atomically subtract ``delta`` from an existing integer."""
        return self.incr(key, -delta, version=version)

    def clear(self) -> None:
        """Remove every entry of the cachehub cache's namespace."""
        self.cachehub.clear()

    # ------------------------------------------------------------------ Django's async API
    # Native: the cachehub cache's async shell (cache.aio()), not Django's default of the
    # sync method in a thread. The key and value rules above are shared (no I/O).
    # aget_or_set is Django's own, built on aget/aadd, so it takes this path too.

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        """:meth:`add`, awaited on the native async path."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        if not store:
            return not await self._apresent(key, k)
        with self.values.storing():
            stored = self.values.dumps(k, value)
            return await Add(self.cachehub, k, stored, seconds, self._readable(key, k)).run_async()

    async def aget(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """:meth:`get`, awaited on the native async path."""
        k = self._key(key, version)
        value = self._value(key, k, await aread(self.cachehub, k))
        return default if value is MISSING else value

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """:meth:`set`, awaited on the native async path."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        if store:
            with self.values.storing():
                await self.cachehub.aio().put(k, self.values.dumps(k, value), time_span=seconds)
        else:
            await self.cachehub.aio().delete(k)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """:meth:`touch`, awaited on the native async path."""
        k = self._key(key, version)
        store, seconds = self._lifetime(timeout)
        present = await self._apresent(key, k)
        if not store:
            return await self.cachehub.aio().delete(k) and present
        return present and await self.cachehub.aio().touch(k, time_span=seconds)

    async def adelete(self, key: Any, version: Any = None) -> bool:
        """:meth:`delete`, awaited on the native async path."""
        return await self.cachehub.aio().delete(self._key(key, version))

    async def ahas_key(self, key: Any, version: Any = None) -> bool:
        """:meth:`has_key`, awaited on the native async path."""
        return await self._apresent(key, self._key(key, version))

    async def aget_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """:meth:`get_many`, awaited on the native async path (one batch)."""
        made = {self._key(key, version): key for key in keys}
        found = await aread_many(self.cachehub, made)
        out = {}
        for k, stored in found.items():
            value = self._value(made[k], k, stored)
            if value is not MISSING:
                out[made[k]] = value
        return out

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """:meth:`set_many`, awaited on the native async path (one batch)."""
        items = {self._key(key, version): value for key, value in data.items()}
        store, seconds = self._lifetime(timeout)
        shell = self.cachehub.aio()
        if store:
            with self.values.storing():
                await shell.put_many(self.values.dumps_many(items.items()), time_span=seconds)
        else:
            await shell.delete_many(items)
        return []

    async def adelete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """:meth:`delete_many`, awaited on the native async path (one batch)."""
        await self.cachehub.aio().delete_many([self._key(key, version) for key in keys])

    async def aincr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """:meth:`incr`, awaited on the native async path."""
        k = self._key(key, version)
        if self.values.sign_ints:  # the locked read-modify-write, in a worker thread
            counted = await asyncio.to_thread(self.values.count, k, delta, create=False)
            return self._counted(key, counted)
        if not await self._apresent(key, k):
            raise _not_found(key)
        try:
            return await self.cachehub.aio().incr(k, delta)
        except CorruptEntryError:  # damaged since the check: as a key deleted meanwhile
            return await asyncio.to_thread(incr, self.cachehub, k, delta)
        except CacheValueError as exc:
            raise as_type_error(exc) from None

    async def adecr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """:meth:`decr`, awaited on the native async path."""
        return await self.aincr(key, -delta, version=version)

    async def aclear(self) -> None:
        """:meth:`clear`, awaited on the native async path."""
        await self.cachehub.aio().clear()

    def close(self, **kwargs: Any) -> None:
        """Called by Django after every request: providers keep their pools, so no-op."""


def _not_found(key: Any) -> CacheValueError:
    """Django's error for ``incr``/``decr`` of a key :meth:`CacheHubCache.get` misses."""
    return CacheValueError(
        f"Key '{key}' not found.",
        hint="incr()/decr() need an existing key: set(key, 0) or add(key, 0) first.",
    )
