"""A cachelib ``BaseCache`` on any cachehub cache.

::

    from cachehub.contrib.cachelib import CacheHubCachelib
    cache = CacheHubCachelib("main", default_timeout=300, secret_key=SECRET)

For Flask-Caching use :class:`cachehub.contrib.flask_cache.CacheHubFlaskCache`, which
takes the secret from the app (Flask-Caching calls classes whose import path mentions
"cachelib" without the app).

cachelib's timeout rules apply: ``None`` means ``default_timeout``, ``0`` never expires,
a negative timeout stores nothing (the key is removed). ``key_prefix`` is prepended to
every key, and ``clear()`` removes only the keys under it. Values are pickled, as
cachelib does, but HMAC-signed with a key derived from the secret and verified before
anything is unpickled (:mod:`cachehub.contrib.signing`); without a secret the adapter
refuses to start. ``value_format="cache-codec"`` stores values through the cachehub
cache's codec instead (no pickle at all; ``secret_key`` is not needed then). Plain ints
are stored unsigned (for an atomic ``inc``) unless ``sign_ints=True``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cachelib import BaseCache as CachelibBase
from cachelib.serializers import BaseSerializer, SimpleSerializer

from ..api import MAX_TIME_SPAN, MISSING
from ..errors import CacheValueError, ConfigError
from . import CacheSpec, resolve_cache
from .signing import (
    AdapterKeyError,
    AdapterPickleError,
    AdapterTypeError,
    Add,
    SignedValues,
    incr,
    read,
    read_many,
)

__all__ = ["CacheHubCachelib"]

_log = logging.getLogger("cachehub.contrib.cachelib")

_PURPOSE = "cachehub.contrib.cachelib values"
_DEFAULT_SERIALIZER = SimpleSerializer()
"""cachelib's pickle serializer: the adapter's signed pickle does its job directly."""


class _Serialized:
    """Bytes made by a replaced cachelib ``serializer``, stored inside the signature."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __getstate__(self) -> bytes:
        return self.data

    def __setstate__(self, state: bytes) -> None:
        self.data = state


class CacheHubCachelib(CachelibBase):
    """cachelib cache delegating to a cachehub cache.

    Args:
        cache: a cache object, a configured cache name, or an inline cache entry (built
            under ``name``).
        default_timeout: seconds (or a timedelta) for ``timeout=None``; 0 = never expire.
        key_prefix: prepended to every key; ``clear()`` removes only keys under it.
            It may not contain the wildcards ``*`` and ``?``.
        secret_key: the secret the signing key is derived from (e.g. Flask's
            ``SECRET_KEY``); required unless ``value_format="cache-codec"``.
        secret_key_fallbacks: older secrets whose signatures still verify.
        value_format: ``"signed-pickle"`` (default) or ``"cache-codec"``.
        sign_ints: sign ``int`` values too, so that one written without the secret is a
            miss; ``inc``/``dec`` are then a read-modify-write under a lock on the key
            (see :meth:`SignedValues.count`) instead of the backend's atomic increment.

    Keys are strings (another type raises :class:`~cachehub.contrib.signing.AdapterKeyError`,
    an ``InvalidKeyError`` and a ``TypeError``); ``key_prefix`` + key must be a valid
    cachehub key: not empty, at most 16,384 characters.

    ``serializer`` (cachelib's attribute, set by Flask-Caching's ``CACHE_SERIALIZER``) is
    honoured with signed pickle: its bytes are signed, and its ``loads`` only ever sees
    verified bytes. With ``"cache-codec"`` it is not used (its bytes could not be trusted).

    Raises:
        ConfigError: no secret for signed pickle, or a bad ``key_prefix``.
    """

    serializer: BaseSerializer = _DEFAULT_SERIALIZER

    def __init__(
        self,
        cache: CacheSpec,
        default_timeout: int | dt.timedelta = 300,
        ignore_delete_many_errors: bool = True,
        *,
        name: str = "cachelib",
        key_prefix: str | None = None,
        secret_key: str | bytes | None = None,
        secret_key_fallbacks: Sequence[str | bytes] | None = None,
        value_format: str = "signed-pickle",
        sign_ints: bool = False,
    ) -> None:
        super().__init__(default_timeout, ignore_delete_many_errors)
        prefix = key_prefix or ""
        if not isinstance(prefix, str) or "*" in prefix or "?" in prefix:
            raise ConfigError(
                f"CacheHubCachelib key_prefix must be a string without * or ?, got {prefix!r:.80}.",
                hint="use a plain prefix such as 'myapp:' (CACHE_KEY_PREFIX in Flask-Caching).",
            )
        self.key_prefix = prefix
        self.cache = resolve_cache(cache, name=name, where="CacheHubCachelib")
        self.values = SignedValues(
            self.cache,
            secret_key,
            secret_key_fallbacks,
            purpose=_PURPOSE,
            adapter=type(self).__name__,
            setting="pass secret_key= (with Flask-Caching use CACHE_TYPE "
            "'cachehub.contrib.flask_cache.CacheHubFlaskCache' and set the app's SECRET_KEY)",
            value_format=value_format,
            sign_ints=sign_ints,
        )

    def _k(self, key: str) -> str:
        if not isinstance(key, str):
            # Not a bare TypeError from the concatenation: a cachehub error naming the fix.
            raise AdapterKeyError(
                f"cachelib keys must be str, got {type(key).__name__} {key!r:.60}.",
                hint="convert the key with str() or build a string key such as 'user:42'.",
            )
        return self.key_prefix + key

    def _dumps(self, key: str, value: Any) -> Any:
        serializer = self.serializer
        if (
            serializer is not _DEFAULT_SERIALIZER
            and type(value) is not int  # ints stay native, for inc()
            and self.values.value_format == "signed-pickle"
        ):
            try:
                data = serializer.dumps(value)
            except Exception as exc:  # a user serializer may raise anything
                raise AdapterPickleError(
                    f"the cachelib serializer {type(serializer).__name__} failed on a "
                    f"{type(value).__name__} ({type(exc).__name__}).",
                    hint="store a value that serializer supports, or remove it.",
                ) from exc
            if not isinstance(data, bytes):
                raise AdapterPickleError(
                    f"the cachelib serializer {type(serializer).__name__} could not "
                    f"serialize a {type(value).__name__}.",
                    hint="store a value that serializer supports, or remove it.",
                )
            value = _Serialized(data)
        return self.values.dumps(key, value)

    def _loads(self, key: str, stored: Any) -> Any:
        value = self.values.loads(key, stored)
        if isinstance(value, _Serialized):
            try:
                return self.serializer.loads(value.data)  # verified: this adapter signed it
            except Exception as exc:  # e.g. written under another CACHE_SERIALIZER
                _log.warning(
                    "cache '%s': the cachelib serializer %s could not read an entry "
                    "(%s); treated as a miss.",
                    self.cache.name,
                    type(self.serializer).__name__,
                    type(exc).__name__,
                )
                return None
        return None if value is MISSING else value

    @staticmethod
    def _to_seconds(timeout: int | float | dt.timedelta) -> int:
        """cachelib's conversion to whole seconds, with a typed error for what it cannot
        convert (cachelib raises a bare OverflowError, ValueError or TypeError)."""
        if isinstance(timeout, float) and not math.isfinite(timeout):
            raise CacheValueError(
                f"cachelib timeout must be a finite number of seconds, got {timeout!r}.",
                hint="pass e.g. timeout=300, or 0 for an entry that never expires.",
            )
        try:
            return CachelibBase._to_seconds(timeout)
        except TypeError:
            raise AdapterTypeError(
                "cachelib timeout must be an int of seconds or a timedelta, "
                f"got {type(timeout).__name__}.",
                hint="pass e.g. timeout=300, or 0 for an entry that never expires.",
            ) from None

    def _readable(self, key: str, stored: Any) -> bool:
        """Whether ``stored`` (the raw entry under ``key``) is a value :meth:`get` returns."""
        return self.values.loads(key, stored) is not MISSING

    def _lifetime(self, timeout: int | dt.timedelta | None) -> tuple[bool, int | None]:
        """(store?, seconds or None for forever) for a cachelib ``timeout``."""
        seconds = self._normalize_timeout(timeout)
        if seconds < 0:
            return False, None
        if seconds > MAX_TIME_SPAN.total_seconds():
            return True, None  # cachelib's own backends keep it: beyond 1,000 years, forever
        return True, seconds or None

    def get(self, key: str) -> Any:
        """The value, or None when absent."""
        k = self._k(key)
        return self._loads(k, read(self.cache, k))

    def get_many(self, *keys: str) -> list[Any]:
        """Values in key order, None where absent; one batch."""
        made = [self._k(key) for key in keys]
        found = read_many(self.cache, made)
        return [self._loads(k, found.get(k, MISSING)) for k in made]

    def set(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        """Store ``value``; True on success."""
        k = self._k(key)
        store, seconds = self._lifetime(timeout)
        if store:
            with self.values.storing():
                self.cache.put(k, self._dumps(k, value), time_span=seconds)
        else:
            self.cache.delete(k)
        return True

    def add(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        """Store only if absent (atomically); True when stored."""
        k = self._k(key)
        store, seconds = self._lifetime(timeout)
        if not store:
            return not self.cache.exists(k)
        with self.values.storing():
            stored = self._dumps(k, value)
            return Add(self.cache, k, stored, seconds, lambda raw: self._readable(k, raw)).run()

    def set_many(
        self, mapping: Mapping[str, Any], timeout: int | dt.timedelta | None = None
    ) -> list[Any]:
        """Store every item in one batch; returns the keys stored."""
        store, seconds = self._lifetime(timeout)
        if store:
            items = {self._k(key): value for key, value in mapping.items()}
            stored = {k: self._dumps(k, value) for k, value in items.items()}
            with self.values.storing():
                self.cache.put_many(stored, time_span=seconds)
        else:
            self.cache.delete_many([self._k(key) for key in mapping])
        return list(mapping)

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        return self.cache.delete(self._k(key))

    def delete_many(self, *keys: str) -> list[Any]:
        """Remove ``keys`` in one batch; all are absent afterwards, so all count as deleted."""
        self.cache.delete_many([self._k(key) for key in keys])
        return list(keys)

    def has(self, key: str) -> bool:
        """Whether ``key`` holds a value :meth:`get` returns.

        The entry is read, not just checked for existence: one this adapter reads as a
        miss (signed with a retired secret, another writer's bytes) must not count, since
        Flask-Caching's ``cached(cache_none=True)`` takes ``get() is None and has()`` for
        a cached None and would return None from the view (a 500 on every request).
        """
        k = self._k(key)
        return self._readable(k, read(self.cache, k))

    def clear(self) -> bool:
        """Remove every entry under ``key_prefix`` (all of the cachehub namespace without one)."""
        self.cache.clear(self.key_prefix + "*" if self.key_prefix else None)
        return True

    def inc(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta``; a missing (or damaged) key starts at 0. With
        ``sign_ints``, a read-modify-write under a lock on the key instead."""
        k = self._k(key)
        if self.values.sign_ints:
            counted = self.values.count(k, delta, create=True)
            assert counted is not None  # create: never "not found"
            return counted
        return incr(self.cache, k, delta)

    def dec(self, key: str, delta: int = 1) -> int:
        """Atomically subtract ``delta``; see :meth:`inc`."""
        return self.inc(key, -delta)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.has(key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.cache!r}>"
