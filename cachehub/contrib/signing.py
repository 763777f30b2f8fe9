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
works on them; anyone who can write to the backend can therefore set an int under an
adapter key. ``sign_ints`` signs them too (a planted int is then a miss), and ``incr``
becomes a read-modify-write under a lock on the key. An entry the cache itself cannot
decode (damaged bytes: :class:`~cachehub.errors.CorruptEntryError` from the core) is a
miss for the adapters' reads, as their frameworks expect of any cache read; the helpers
below (:func:`read`, :func:`peek`...) make it one. Threat model and settings:
docs/integrations.md.
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

from ..api import MISSING, BaseCache, Entry, counter_overflow
from ..codec import FORMAT_SIGNED, FORMAT_SIGNED_ZLIB, PickleCodec
from ..errors import (
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    SerializationError,
    UnknownSigningKeyError,
)
from ..lock import Lock

__all__ = [
    "VALUE_FORMATS",
    "AdapterKeyError",
    "AdapterPickleError",
    "AdapterTypeError",
    "SignedValues",
    "Add",
    "aread",
    "aread_many",
    "apeek",
    "as_type_error",
    "derive_key",
    "incr",
    "key_lock",
    "peek",
    "read",
    "read_many",
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


class AdapterKeyError(InvalidKeyError, TypeError):
    """A key that is not a string; also a :class:`TypeError`, which is what cachelib's
    own backends raise for one."""


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
        sign_ints: sign plain ``int`` values too (signed pickle only). Without it they are
            stored as they are, for the backend's atomic ``incr``, so anyone who can write
            to the backend can set one; with it a planted int is a miss, and :meth:`count`
            (a read-modify-write under a lock on the key) replaces the backend's ``incr``.
        setting_sign_ints: how the user gives ``sign_ints`` (for error messages).

    Raises:
        ConfigError: no secret, a secret that is not a string, an unknown format, or
            ``sign_ints`` that is not a bool or is given with the ``cache-codec`` format.
    """

    __slots__ = ("_adapter", "_bind", "_codec", "cache", "sign_ints", "value_format")

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
        sign_ints: Any = False,
        setting_sign_ints: str = "sign_ints",
    ) -> None:
        self.cache = cache
        if value_format not in VALUE_FORMATS:
            raise ConfigError(
                f"{adapter}: unknown value format {value_format!r}.",
                hint="use 'signed-pickle' (the default: any picklable value, HMAC-signed) "
                "or 'cache-codec' (the cache's own codec).",
            )
        if not isinstance(sign_ints, bool):
            raise ConfigError(
                f"{adapter}: {setting_sign_ints} must be True or False, "
                f"got {type(sign_ints).__name__}.",
                hint=f"set {setting_sign_ints}=True to sign int values too.",
            )
        if sign_ints and value_format == "cache-codec":
            raise ConfigError(
                f"{adapter}: {setting_sign_ints} needs the 'signed-pickle' value format.",
                hint="the 'cache-codec' format signs no value at all; drop one of the two.",
            )
        self.value_format: str = value_format
        self.sign_ints: bool = sign_ints
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
        if codec is None or (type(value) is int and not self.sign_ints):
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
        if codec is None or stored is MISSING or (type(stored) is int and not self.sign_ints):
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

    def count(self, key: str, delta: int, *, create: bool) -> int | None:
        """``incr`` of the signed int under ``key`` (with ``sign_ints``); the new value.

        A signed value cannot be incremented by the backend, so this reads, verifies, adds
        and writes back (keeping the entry's expiry) under :func:`key_lock`: concurrent
        counts through any adapter never lose an update. A plain ``set`` or ``delete`` of
        the key that lands between the read and the write is undone (the backend's own
        ``incr`` would have added to it, or started again from 0). A key :meth:`loads`
        reads as a miss (absent, damaged, a planted int) starts at 0 with no expiry when
        ``create`` (cachelib), else the answer is None (Django: "not found").

        Raises:
            AdapterTypeError: a non-integer value or delta, or a result beyond 64 bits.
        """
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise AdapterTypeError(
                f"incr delta must be an int, got {type(delta).__name__}.",
                hint="pass an integer delta such as 1 or -5.",
            )
        cache = self.cache
        with key_lock(cache, key):
            entry = peek(cache, key)
            value = MISSING if entry is None else self.loads(key, entry.value)
            if value is not MISSING:
                if type(value) is not int:
                    raise AdapterTypeError(
                        f"cannot incr key {key!r:.200}: it holds a {type(value).__name__}, "
                        "not an int.",
                        hint="incr()/decr() need an integer value: set(key, 0) first.",
                    )
                overflow = counter_overflow(key, value, delta)
                if overflow is not None:
                    raise as_type_error(overflow)
                assert entry is not None  # a value was read from it
                entry.value = self.dumps(key, value + delta)
                if cache.restore(key, entry):
                    return value + delta
                # It expired since the read: absent, like a missing key.
            if not create:
                return None
            overflow = counter_overflow(key, 0, delta)
            if overflow is not None:
                raise as_type_error(overflow)
            cache.put(key, self.dumps(key, delta))  # as the backend's incr: no expiry
            return delta


def _damaged(cache: BaseCache, exc: CorruptEntryError) -> None:
    """Log a damaged entry read as a miss. Not the message: a provider's names the key
    (the adapters log no key, which may carry a session id or an e-mail address)."""
    if not isinstance(exc, UnknownSigningKeyError):  # a rotated key: recomputed quietly
        _log.warning(
            "cache '%s': an entry under an adapter key cannot be decoded (%s); treated "
            "as a miss, and replaced when the value is stored again.",
            cache.name,
            type(exc).__name__,
        )


# A damaged entry (bytes that start like a cachehub entry but do not decode) makes the
# core raise CorruptEntryError from every read of it, by design. The frameworks' contract
# is that a cache read never fails a request because of what is stored, so the adapters
# read through these: such an entry is a miss, recomputed and overwritten.


def read(cache: BaseCache, key: str) -> Any:
    """``cache.get(key, MISSING)``, MISSING for a damaged entry."""
    try:
        return cache.get(key, MISSING)
    except CorruptEntryError as exc:
        _damaged(cache, exc)
        return MISSING


async def aread(cache: BaseCache, key: str) -> Any:
    """:func:`read` on the cache's async shell."""
    try:
        return await cache.aio().get(key, MISSING)
    except CorruptEntryError as exc:
        _damaged(cache, exc)
        return MISSING


def read_many(cache: BaseCache, keys: Iterable[str]) -> dict[str, Any]:
    """``cache.get_many(keys)`` without the damaged entries. One damaged entry fails the
    whole batch in the core, so the batch is then read key by key (rare: until the
    entry is overwritten)."""
    keys = list(keys)
    try:
        return cache.get_many(keys)
    except CorruptEntryError:
        found = {key: read(cache, key) for key in dict.fromkeys(keys)}
        return {key: value for key, value in found.items() if value is not MISSING}


async def aread_many(cache: BaseCache, keys: Iterable[str]) -> dict[str, Any]:
    """:func:`read_many` on the cache's async shell."""
    keys = list(keys)
    try:
        return await cache.aio().get_many(keys)
    except CorruptEntryError:
        found = {key: await aread(cache, key) for key in dict.fromkeys(keys)}
        return {key: value for key, value in found.items() if value is not MISSING}


def peek(cache: BaseCache, key: str) -> Entry | None:
    """``cache.peek(key)``, None for a damaged entry (or one signed with a key the
    cache's own codec no longer knows, which its ``get`` reads as a miss)."""
    try:
        return cache.peek(key)
    except CorruptEntryError as exc:
        _damaged(cache, exc)
        return None


async def apeek(cache: BaseCache, key: str) -> Entry | None:
    """:func:`peek` on the cache's async shell."""
    try:
        return await cache.aio().peek(key)
    except CorruptEntryError as exc:
        _damaged(cache, exc)
        return None


def _is_damaged(cache: BaseCache, key: str) -> bool:
    try:
        cache.peek(key)
    except CorruptEntryError:
        return True
    return False


def key_lock(cache: BaseCache, key: str) -> Lock:
    """The lock under which an adapter replaces the entry of ``key`` (an unreadable one
    in ``add``, a damaged counter) or counts a signed int: one per key, so these never
    interleave. Named by the key's hash, so that no lock name carries the key."""
    name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return cache.lock("cachehub.contrib add:" + name)


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
        if self.readable(read(self.cache, self.key)):
            return False
        return self._replace()

    async def run_async(self) -> bool:
        """:meth:`run` on the cache's async shell; the rare replacement of an unreadable
        entry (which may wait for the lock) runs in a worker thread."""
        shell = self.cache.aio()
        if await shell.add(self.key, self.stored, time_span=self.seconds):
            return True
        if self.readable(await aread(self.cache, self.key)):
            return False
        return await asyncio.to_thread(self._replace)

    def _replace(self) -> bool:
        """Delete the unreadable entry and add, under a lock on the key; False when a
        readable entry is there by then (another adder won)."""
        cache, key = self.cache, self.key
        with key_lock(cache, key):
            if self.readable(read(cache, key)):  # a damaged entry is unreadable too
                return False
            cache.delete(key)
            return cache.add(key, self.stored, time_span=self.seconds)


def incr(cache: BaseCache, key: str, delta: int) -> int:
    """``cache.incr(key, delta)``, with a non-integer value as :class:`AdapterTypeError`
    (a ``TypeError``, as Django raises it, and still a ``ValueError``).

    A damaged entry (the core raises :class:`CorruptEntryError`, and leaves it as it is)
    is a missing key: it is deleted and the count starts at 0, as cachelib's ``inc``
    does for a missing key. Under :func:`key_lock`, re-checked there, so that two
    counters that both find it cannot delete each other's fresh count.
    """
    try:
        return cache.incr(key, delta)
    except CorruptEntryError as exc:
        _damaged(cache, exc)
    except CacheValueError as exc:
        raise as_type_error(exc) from None
    with key_lock(cache, key):
        if _is_damaged(cache, key):
            cache.delete(key)
        try:
            return cache.incr(key, delta)
        except CacheValueError as exc:
            raise as_type_error(exc) from None


def as_type_error(exc: CacheValueError) -> CacheValueError:
    """``exc`` of a failed ``incr`` as :class:`AdapterTypeError` (unless it is one)."""
    if isinstance(exc, TypeError):
        return exc
    return AdapterTypeError(exc.message, hint=exc.hint)
