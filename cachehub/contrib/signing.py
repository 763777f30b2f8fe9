"""The adapters' default value format: HMAC-signed pickle keyed from the framework secret.

Django, Flask-Caching and cachelib store arbitrary Python objects (model instances,
responses, markup); their own backends pickle them. The adapters do the same, but
signed: a value is pickled by cachehub's :class:`~cachehub.codec.PickleCodec` (format
0x05/0x06: key id, HMAC-SHA256 over the storage key and the body) and the resulting
bytes are what the underlying cachehub cache stores, through its own codec. Reads verify
the signature before anything is unpickled, so bytes that another writer put into
Redis or DynamoDB (a planted pickle, a copy of a value from another key, a value signed
with a foreign key) are a miss, never code that runs.

The HMAC key is never the framework secret itself: it is derived from it with HKDF
(RFC 5869, SHA-256) and a purpose string naming the adapter, so a leaked cache key
reveals nothing of ``SECRET_KEY`` and a signature made for one purpose (Django cache
values) is not valid for another (Flask-Caching values, Django's own signing). Old
secrets (``SECRET_KEY_FALLBACKS``) derive fallback keys that still verify, so a secret
rotation degrades to recomputed values instead of errors.

Plain ``int`` values are stored as they are, so that the backend's atomic ``incr``
works on them. Threat model and settings: docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import pickle
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from ..api import MISSING, BaseCache
from ..codec import FORMAT_SIGNED, FORMAT_SIGNED_ZLIB, PickleCodec
from ..errors import (
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    SerializationError,
    UnknownSigningKeyError,
)

__all__ = [
    "VALUE_FORMATS",
    "AdapterPickleError",
    "AdapterTypeError",
    "SignedValues",
    "Add",
    "as_type_error",
    "derive_key",
    "incr",
]

_log = logging.getLogger("cachehub.contrib")

VALUE_FORMATS: Final = ("signed-pickle", "cache-codec")
"""What an adapter stores: signed pickle (default), or the value itself through the
cache's own codec (the safe codec by default: JSON-like values only, never pickle)."""

_SALT: Final = b"cachehub.contrib HKDF salt v1"
_SIGNED_FORMATS: Final = frozenset(bytes([f]) for f in (FORMAT_SIGNED, FORMAT_SIGNED_ZLIB))


class AdapterPickleError(SerializationError, pickle.PicklingError):
    """A value the adapter cannot pickle; also a :class:`pickle.PickleError`, which is
    what Django's and cachelib's callers catch."""


class AdapterTypeError(CacheValueError, TypeError):
    """``incr``/``decr`` on a value that is not an integer, or a cachelib timeout that is
    neither an int nor a timedelta; also a :class:`TypeError`, as the frameworks raise it."""


def derive_key(secret: str | bytes, purpose: str) -> str:
    """A 64-hex-digit HMAC key for ``purpose``, derived from ``secret`` with HKDF-SHA256.

    One block of HKDF-Expand is enough for 32 bytes. The result is hex so that it is a
    valid ``signingKey`` string for :class:`~cachehub.codec.PickleCodec`.
    """
    ikm = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    prk = hmac.new(_SALT, ikm, hashlib.sha256).digest()
    return hmac.new(prk, purpose.encode("utf-8") + b"\x01", hashlib.sha256).hexdigest()


def _secrets(value: Any, setting: str, hint: str) -> list[str | bytes]:
    """``value`` (one secret or a list of them) as a list of non-empty secrets."""
    if value is None:
        return []
    items = [value] if isinstance(value, str | bytes) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(
            f"{setting} must be a string or a list of strings, got {type(value).__name__}.",
            hint=hint,
        )
    out: list[str | bytes] = []
    for index, item in enumerate(items):
        if not isinstance(item, str | bytes) or not item:
            raise ConfigError(
                f"{setting}[{index}] must be a non-empty string, got {type(item).__name__}.",
                hint=hint,
            )
        out.append(item)
    return out


class SignedValues:
    """Turns an adapter's values into what its cachehub cache stores, and back.

    Args:
        cache: the cachehub cache the adapter writes to (its namespace is bound into
            every signature, its ``maxValueSize`` bounds the pickles).
        secret: the framework's secret (``SECRET_KEY``); required.
        fallbacks: older secrets whose signatures still verify (never used to sign).
        purpose: part of the derived key, e.g. ``"cachehub.contrib.django cache values"``.
        adapter: the adapter's name, for error messages.
        setting: how the user gives the secret (the start of the error's hint).
        value_format: ``"signed-pickle"`` (default) or ``"cache-codec"``.

    Raises:
        ConfigError: no secret, a secret that is not a string, or an unknown format.
    """

    __slots__ = ("_adapter", "_bind", "_codec", "cache", "value_format")

    def __init__(
        self,
        cache: BaseCache,
        secret: Any,
        fallbacks: Any = None,
        *,
        purpose: str,
        adapter: str,
        setting: str,
        value_format: Any = "signed-pickle",
    ) -> None:
        self.cache = cache
        if value_format not in VALUE_FORMATS:
            raise ConfigError(
                f"{adapter}: unknown value format {value_format!r}.",
                hint="use 'signed-pickle' (the default: any picklable value, HMAC-signed) "
                "or 'cache-codec' (the cache's own codec).",
            )
        self.value_format: str = value_format
        self._adapter = adapter
        self._bind = f"{purpose}\x00{cache.namespace}\x00"
        self._codec: PickleCodec | None = None
        if value_format == "cache-codec":
            return
        hint = (
            f"{setting} (a long random secret; cached pickles are signed with a key derived "
            "from it), or choose the 'cache-codec' value format to store only what the "
            "cache's codec can encode, without pickle."
        )
        keys = _secrets(secret, f"{adapter}'s secret", hint)
        if len(keys) != 1:
            raise ConfigError(
                f"{adapter} needs a secret to sign cached values, and none is set.",
                hint=hint,
            )
        old = _secrets(fallbacks, f"{adapter}'s secret fallbacks", hint)
        self._codec = PickleCodec(
            derive_key(keys[0], purpose),
            fallbacks=[derive_key(s, purpose) for s in old],
            max_value_size=cache.codec.max_value_size,
        )

    def __repr__(self) -> str:
        return f"SignedValues(format={self.value_format!r}, cache={self.cache.name!r})"

    def dumps(self, key: str, value: Any) -> Any:
        """What to store under the cachehub key ``key`` for ``value``.

        Raises:
            AdapterPickleError: the value cannot be pickled, or is too large.
        """
        codec = self._codec
        if codec is None or type(value) is int:
            return value
        try:
            return codec.dumps(value, self._bind + key)
        except SerializationError as exc:
            raise AdapterPickleError(exc.message, hint=exc.hint) from exc.__cause__

    @contextmanager
    def storing(self) -> Iterator[None]:
        """Around a cache write of :meth:`dumps` results: with the ``cache-codec`` format,
        a value the cache's codec cannot encode raises :class:`AdapterPickleError`, whose
        hint also names the adapter's default format (the codec's own hint only knows the
        cache's settings, and a framework's cached responses need pickle)."""
        try:
            yield
        except SerializationError as exc:
            if self._codec is not None or isinstance(exc, AdapterPickleError):
                raise
            raise AdapterPickleError(
                exc.message,
                hint=f"{exc.hint or 'store a value the codec supports.'} Or drop the "
                f"'cache-codec' value format (VALUE_FORMAT, value_format) of {self._adapter}: "
                "the default, signed pickle, stores any picklable value (responses, "
                "template fragments...) as the framework's own backends do.",
            ) from exc

    def dumps_many(self, items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        """:meth:`dumps` of every ``(key, value)``."""
        return {key: self.dumps(key, value) for key, value in items}

    def loads(self, key: str, stored: Any) -> Any:
        """The value stored under ``key``, or :data:`~cachehub.api.MISSING` when the
        stored data is not a value this adapter signed (logged, never unpickled)."""
        codec = self._codec
        if codec is None or stored is MISSING or type(stored) is int:
            return stored
        if not isinstance(stored, bytes) or stored[:1] not in _SIGNED_FORMATS:
            # Only signed formats: the pickle codec would also decode its safe formats,
            # which carry no signature, so anyone could forge a value with them.
            _log.warning(
                "cache '%s': an entry under an adapter key is a %s that is not a signed value; "
                "another writer put it there. Treated as a miss.",
                self.cache.name,
                type(stored).__name__,
            )
            return MISSING
        try:
            return codec.loads(stored, self._bind + key)
        except UnknownSigningKeyError:
            return MISSING  # signed with a rotated-away secret: recomputed
        except CorruptEntryError as exc:
            _log.warning("cache '%s': %s Treated as a miss.", self.cache.name, exc.message)
            return MISSING


@dataclass(frozen=True, slots=True)
class Add:
    """``cache.add(key, stored)``, with an entry the adapter cannot read taken as absent.

    ``readable(raw)`` says whether the adapter's ``get`` would return the raw entry
    (False for :data:`~cachehub.api.MISSING`). An entry it reads as a miss (signed with a
    retired secret, another writer's bytes) would otherwise refuse every ``add`` until it
    expires, if ever, so Django's ``get_or_set`` recomputed on every call and never cached
    again. Replacing it (delete, then add) runs under a lock on the key, so two adders
    that both find it cannot both win.
    """

    cache: BaseCache
    key: str
    stored: Any
    seconds: float | None
    readable: Callable[[Any], bool]

    def run(self) -> bool:
        """True when ``stored`` was added."""
        if self.cache.add(self.key, self.stored, time_span=self.seconds):
            return True
        if self.readable(self.cache.get(self.key, MISSING)):
            return False
        return self._replace()

    async def run_async(self) -> bool:
        """:meth:`run` on the cache's async shell; the rare replacement of an unreadable
        entry (which may wait for the lock) runs in a worker thread."""
        shell = self.cache.aio()
        if await shell.add(self.key, self.stored, time_span=self.seconds):
            return True
        if self.readable(await shell.get(self.key, MISSING)):
            return False
        return await asyncio.to_thread(self._replace)

    def _replace(self) -> bool:
        """Delete the unreadable entry and add, under a lock on the key; False when a
        readable entry is there by then (another adder won)."""
        cache, key = self.cache, self.key
        name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        with cache.lock("cachehub.contrib add:" + name):
            if self.readable(cache.get(key, MISSING)):
                return False
            cache.delete(key)
            return cache.add(key, self.stored, time_span=self.seconds)


def incr(cache: BaseCache, key: str, delta: int) -> int:
    """``cache.incr(key, delta)``, with a non-integer value as :class:`AdapterTypeError`
    (a ``TypeError``, as Django raises it, and still a ``ValueError``)."""
    try:
        return cache.incr(key, delta)
    except CacheValueError as exc:
        raise as_type_error(exc) from None


def as_type_error(exc: CacheValueError) -> CacheValueError:
    """``exc`` of a failed ``incr`` as :class:`AdapterTypeError` (unless it is one)."""
    if isinstance(exc, TypeError):
        return exc
    return AdapterTypeError(exc.message, hint=exc.hint)
