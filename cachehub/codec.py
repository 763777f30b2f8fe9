"""Value codecs: how cache values become bytes, and back.

Two codecs exist (see ``docs/codec.md`` for the byte format and the type table):

* :class:`SafeCodec` (``codec: safe``, the default) stores values as msgpack, with
  extension types for the Python types msgpack lacks. Values come back exactly, type
  included. It never unpickles and never runs code found in stored bytes. ormsgpack
  (Rust) packs and unpacks, msgpack Timestamps (UTC datetimes) included; msgpack (C)
  reads what ormsgpack cannot: maps with non-str keys and the items of nested
  extension types (iteratively, so nesting costs no C stack).
* :class:`PickleCodec` (``codec: pickle``) stores any picklable value, signed with
  HMAC-SHA256 under the cache's ``signingKey``, over the entry's storage key too; the
  signature is checked before anything is unpickled. It also reads safe-codec entries,
  so enabling it keeps old entries.

Every payload starts with one format byte (``FORMAT_*``), so bytes that cachehub did not
write (a planted pickle, another tool's data, truncated or random bytes) are rejected
with :class:`~cachehub.errors.CorruptEntryError`, never decoded blindly.

Reading is bounded whatever the bytes: a body inflates to at most ``maxValueSize``
bytes, decodes to at most ``maxValueSize // 8`` objects, and nests extension types at
most :data:`MAX_EXTENSION_DEPTH` deep; :meth:`SafeCodec.dumps` refuses every value the
reader would refuse, so whatever is written can be read back, in any thread.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import gc
import hmac
import itertools
import math
import operator
import pickle
import reprlib
import secrets
import struct
import threading
import uuid
import zlib
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, cast

import msgpack
import ormsgpack

from .errors import (
    ConfigError,
    CorruptEntryError,
    SerializationError,
    UnknownSigningKeyError,
    raised_by_signal_handler,
)
from .query import Query

__all__ = [
    "Codec",
    "SafeCodec",
    "PickleCodec",
    "make_codec",
    "FORMAT_SAFE",
    "FORMAT_SAFE_ZLIB",
    "FORMAT_PICKLE",
    "FORMAT_PICKLE_ZLIB",
    "FORMAT_SIGNED",
    "FORMAT_SIGNED_ZLIB",
    "DEFAULT_MAX_VALUE_SIZE",
    "MAX_DECOMPRESSED_SIZE",
    "MAX_DEPTH",
    "MAX_EXTENSION_DEPTH",
    "MIN_MAX_VALUE_SIZE",
    "MAX_MAX_VALUE_SIZE",
    "MIN_SIGNING_KEY_LENGTH",
    "OBJECT_RATIO",
    "PAYLOAD_OVERHEAD",
]

FORMAT_SAFE: Final = 0x01
"""Format byte: msgpack body."""
FORMAT_SAFE_ZLIB: Final = 0x02
"""Format byte: zlib-compressed msgpack body."""
FORMAT_PICKLE: Final = 0x03
"""Format byte of the previous pickle format (tag over the body only): read as a miss."""
FORMAT_PICKLE_ZLIB: Final = 0x04
"""Format byte of the previous compressed pickle format: read as a miss."""
FORMAT_SIGNED: Final = 0x05
"""Format byte: 8-byte key id, 32-byte HMAC-SHA256 tag (over the storage key too), pickle."""
FORMAT_SIGNED_ZLIB: Final = 0x06
"""Format byte: as :data:`FORMAT_SIGNED`, with a zlib-compressed pickle."""

DEFAULT_MAX_VALUE_SIZE: Final = 16 * 1024 * 1024
"""Default ``maxValueSize``: the largest encoded (inflated) value a cache writes or reads."""
MIN_MAX_VALUE_SIZE: Final = 1024
"""Smallest ``maxValueSize`` accepted."""
MAX_MAX_VALUE_SIZE: Final = 1024 * 1024 * 1024
"""Largest ``maxValueSize`` accepted (1 GiB)."""
MAX_DECOMPRESSED_SIZE: Final = DEFAULT_MAX_VALUE_SIZE
"""Kept for compatibility: the default inflation limit, now ``maxValueSize``."""
OBJECT_RATIO: Final = 8
"""A value decodes to at most ``maxValueSize // OBJECT_RATIO`` objects (see docs/codec.md)."""
MAX_DEPTH: Final = 255
"""Deepest nesting of containers (list, dict, tuple, set, frozenset, query) written."""
MAX_EXTENSION_DEPTH: Final = 32
"""Deepest nesting of tuples, sets, frozensets and queries inside each other."""
MIN_SIGNING_KEY_LENGTH: Final = 16
"""Shortest ``signingKey`` the pickle codec accepts."""

_TAG_SIZE: Final = 32  # HMAC-SHA256 digest
_KEY_ID_SIZE: Final = 8  # identifies the signing key, so rotation needs one HMAC, not one per key
PAYLOAD_OVERHEAD: Final = 1 + _KEY_ID_SIZE + _TAG_SIZE
"""The most bytes a payload adds to its body (format byte, signing key id, tag): no codec
writes a payload longer than ``maxValueSize`` plus this (a compressed body is kept only
when smaller), so a provider may refuse to read a longer one without downloading it."""
_ZLIB_LEVEL: Final = 1  # cache values are read far more often than written; favour speed
_MIN_SAVING_SHIFT: Final = 3  # compress only when it saves at least 1/8 (see _worth_it)
_WINDOWS: Final = 4  # windows sampled, spread over the body, before deflating (_looks_random)
_WINDOW: Final = 256  # bytes per window: what the probe reads is _WINDOWS * _WINDOW at most
_SEEN: Final = 32  # a window's first bytes, whose values are then struck from the whole window
_KEPT: Final = 166  # fewer than this many of a window's bytes left: compressible (_looks_random)
_PROBE: Final = 16 * 1024  # bytes deflated first, to see whether the rest is worth it (_deflate)
_CHUNK: Final = 256 * 1024  # then deflated a chunk at a time, checking the ratio after each
_SCALARS: Final = frozenset({str, bytes, int, float, bool, type(None)})
_TZ_CACHE_SIZE: Final = 256

# --------------------------------------------------------------------------- the protocol


class Codec(Protocol):
    """Turns cache values into bytes and back. Built by :func:`make_codec`."""

    name: str
    """The codec's setting value: ``"safe"`` or ``"pickle"``."""
    max_value_size: int
    """The largest encoded (inflated) body written or read, in bytes."""

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode ``value`` stored under storage key ``key``; raises
        :class:`SerializationError` if it cannot be stored (or read back)."""

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode bytes read from storage key ``key``; raises :class:`CorruptEntryError`
        if they are not valid (:class:`UnknownSigningKeyError` if signed with no key
        this codec knows: callers treat that as a miss)."""

    def loads_local(self, data: bytes, key: str = "") -> Any:
        """As :meth:`loads`, for bytes only this process can have written (an in-process
        store): the same values and errors, with fewer checks against foreign writers."""


def make_codec(
    name: str,
    *,
    signing_key: str | None = None,
    compress_threshold: int = 0,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    signing_key_fallbacks: Any = None,
) -> Codec:
    """Build the codec a cache's settings ask for.

    Args:
        name: ``"safe"`` (default; never unpickles) or ``"pickle"`` (opt-in, signed).
        signing_key: the HMAC key of the pickle codec; at least 16 characters. Ignored by
            the safe codec.
        compress_threshold: payloads larger than this many bytes are zlib-compressed;
            0 disables compression.
        max_value_size: the largest encoded (inflated) body written or read, in bytes;
            it also bounds the objects a body decodes to (``max_value_size // 8``).
        signing_key_fallbacks: older signing keys that still verify entries (a list of
            strings, or one string of comma-separated keys), for graceful rotation.

    Raises:
        ConfigError: unknown codec name, a bad threshold or size, or a missing or short
            signing key for the pickle codec.
    """
    _check_size("compressThreshold", compress_threshold, 0, None, "e.g. 4096, or 0 to disable")
    _check_size(
        "maxValueSize",
        max_value_size,
        MIN_MAX_VALUE_SIZE,
        MAX_MAX_VALUE_SIZE,
        f"e.g. {DEFAULT_MAX_VALUE_SIZE} (16 MiB, the default)",
    )
    if name == "safe":
        return SafeCodec(compress_threshold=compress_threshold, max_value_size=max_value_size)
    if name == "pickle":
        return PickleCodec(
            signing_key,
            compress_threshold=compress_threshold,
            max_value_size=max_value_size,
            fallbacks=signing_key_fallbacks,
        )
    raise ConfigError(
        f"unknown codec {name!r}.",
        hint="set codec to 'safe' (the default) or 'pickle' (which also needs signingKey).",
    )


def _check_size(setting: str, value: Any, minimum: int, maximum: int | None, example: str) -> None:
    hint = f"set {setting} to a byte count, {example}."
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{setting} must be an integer, got {type(value).__name__}.", hint=hint)
    if value < minimum:
        raise ConfigError(f"{setting} must be {minimum} or more, got {value}.", hint=hint)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{setting} must be {maximum} or less, got {value}.", hint=hint)


# --------------------------------------------------------------------------- the codecs


class SafeCodec:
    """The default codec: msgpack plus extension types; never unpickles.

    Supported types round-trip exactly (a tuple stays a tuple, an int never becomes a
    float): ``None``, ``bool``, ``int`` (any size), ``float`` (incl. inf, nan, -0.0),
    ``str``, ``bytes``, ``bytearray``, ``decimal.Decimal``, ``datetime.datetime`` /
    ``date`` / ``time`` (naive, ``datetime.timezone`` or ``zoneinfo.ZoneInfo``),
    ``timedelta``, ``uuid.UUID``, ``list``, ``tuple``, ``set``, ``frozenset``, ``dict``
    (any supported hashable key) and :class:`~cachehub.query.Query`, nested freely.
    Subclasses (``OrderedDict``, enums, str subclasses...) are refused, because they
    would come back as their base type. Shared references are stored as copies.

    Args:
        compress_threshold: compress payloads larger than this many bytes (0: never).
        max_value_size: the largest body (inflated) written or read; a body decodes to
            at most ``max_value_size // OBJECT_RATIO`` objects.
        max_decompressed_size: the previous name of ``max_value_size``.
    """

    __slots__ = ("_unchecked", "compress_threshold", "max_objects", "max_value_size")
    name: str = "safe"

    def __init__(
        self,
        *,
        compress_threshold: int = 0,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        max_decompressed_size: int | None = None,
    ) -> None:
        if max_decompressed_size is not None:
            max_value_size = max_decompressed_size
        self.compress_threshold = compress_threshold
        self.max_value_size = max_value_size
        self.max_objects = max(1, max_value_size // OBJECT_RATIO)
        # Up to this size (format byte included) a body is read without a check: it holds
        # at most one object per byte, and its nested payloads, at most 32 copies of
        # parts of it, add up to less than max_value_size.
        self._unchecked = min(self.max_objects, max_value_size // MAX_EXTENSION_DEPTH) + 1

    @property
    def max_decompressed_size(self) -> int:
        """The previous name of :attr:`max_value_size`."""
        return self.max_value_size

    def __repr__(self) -> str:
        return (
            f"SafeCodec(compress_threshold={self.compress_threshold}, "
            f"max_value_size={self.max_value_size})"
        )

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode ``value`` as a safe payload (``key`` is not used: nothing is signed).

        Raises:
            SerializationError: the value holds a type the safe codec cannot store (the
                message names the type and where it sits inside the value), or it could
                not be read back: nested too deeply, larger than ``max_value_size``, or
                more objects than the reader accepts.
        """
        kind = type(value)
        if kind is str and len(value) < 32:  # short strings: a fixstr, without ormsgpack
            try:
                raw: bytes = value.encode()
            except UnicodeEncodeError:
                pass  # unpaired surrogates: refused below, with the message that says so
            else:
                size = len(raw)
                if size < 32 and not 0 < self.compress_threshold <= size:
                    return _FIXSTR[size] + raw
        elif kind is bytes:  # large blobs: no copy but the payload's own
            return self._dumps_bytes(value)
        try:
            try:  # one call, then a look at the bytes: this is the hot path of every write
                body = _packb(value, _default, _PACK_OPTIONS)
            except TypeError as refusal:
                body = _encode(value, None, refusal)
            else:
                # no bin 8/16/32 header byte: no bytearray or memoryview inside (_survey)
                if (
                    kind not in _SCALARS
                    and (0xC4 in body or 0xC5 in body or 0xC6 in body)
                    and not _fixed_width_numbers(body)
                ):
                    body = _encode(value, body)
        except _Recheck:  # it holds a tuple, set or query: see _items
            body = self._dumps_nested(value)
        size = len(body)
        if size > self.max_objects:
            self._check_readable(value, size)
        if 0 < self.compress_threshold < size:
            packed = _deflate(body)
            if packed is not None:
                return _SAFE_ZLIB + packed
        return _SAFE + body

    def _dumps_bytes(self, value: bytes) -> bytes:
        """The payload of a bytes value: format byte, msgpack bin header, the bytes.

        The same bytes ormsgpack writes, built with one copy of ``value`` (ormsgpack's
        body and then the format byte in front would copy it twice); a compression probe
        reads the payload in place.
        """
        size = len(value)
        head = _bin_header(size)
        body_size = len(head) + size
        if body_size > self.max_value_size:
            self._check_readable(value, body_size)
        payload = b"".join((_SAFE, head, value))
        # The probe reads ``value`` itself: slices of bytes are cheaper than of a view.
        if 0 < self.compress_threshold < body_size and not _looks_random(value):
            packed = _deflate(memoryview(payload)[1:], probed=True)
            if packed is not None:
                return _SAFE_ZLIB + packed
        return payload

    def _dumps_nested(self, value: Any) -> bytes:
        """The body of a value holding tuples, sets or queries, checked first for depth.

        Each of those is packed by a call of its own, inside the call packing its
        container, so their nesting adds up across calls: the whole value is checked
        (see _check_depth) before any of them is packed, and the bytes of nested payloads
        are bounded as the reader bounds them (see _items).
        """
        _check_depth(value)
        state = _state
        state.checked = True
        state.keyed_pack = False
        state.limit = self.max_value_size
        try:
            try:
                body = _packb(value, _default, _PACK_OPTIONS)
            except TypeError as refusal:
                return _encode(value, None, refusal)
            if type(value) not in _SCALARS and (0xC4 in body or 0xC5 in body or 0xC6 in body):
                return _encode(value, body)
            return body
        finally:
            state.checked = False
            state.keyed_pack = False
            state.limit = _NO_LIMIT

    def _check_readable(self, value: Any, size: int) -> None:
        """Refuse a large body that :meth:`loads` would refuse (size, then objects)."""
        if size > self.max_value_size:
            raise SerializationError(
                f"the value encodes to {size} bytes, more than maxValueSize "
                f"({self.max_value_size} bytes).",
                hint="store a smaller value (split it over several keys), or raise the "
                "cache's maxValueSize setting.",
            )
        objects = _count_value(value, self.max_objects)
        if objects > self.max_objects:
            raise SerializationError(
                f"the value holds more than {self.max_objects} objects, the most a value "
                f"of maxValueSize {self.max_value_size} may decode to "
                f"(maxValueSize // {OBJECT_RATIO}).",
                hint="store fewer, larger items (e.g. bytes or str instead of many small "
                "numbers), split the value over several keys, or raise maxValueSize.",
            )

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode a safe payload (``key`` is not used: nothing is signed).

        Raises:
            CorruptEntryError: the bytes are not a safe payload (wrong or missing format
                byte, truncated, garbage, a pickle), or they exceed a bound: larger than
                ``max_value_size`` when inflated, more objects than the value may hold,
                extension types nested too deeply.
        """
        if type(data) is bytes and data[:1] == _SAFE:
            size = len(data)
            if 1 < size <= self._unchecked:
                head = data[1]
                if head in _FRAMED_HEADS or not (
                    (0xA0 <= head < 0xC0 and (head & 0x1F) == size - 2)
                    or (size > _BARE_MIN and head in _BIN_HEADS)
                    or (size > 6 and head in _ARRAY_FIRST and data[_ARRAY_FIRST[head]] in _NUMBERS)
                ):
                    # A map or a short array (what caches mostly hold) or any shape without a
                    # faster reader below: ormsgpack (the hot path of every read).
                    try:
                        framed = _unpackb(
                            b"".join((_OPEN, data, _END)), ext_hook=_ext_hook, option=_UNPACK
                        )
                    except Exception as exc:
                        return _undecided(data, _OPEN, exc)
                    if framed[2] == _END_MARK:
                        return framed[1]
                    return _undecided(data, _OPEN)
                if head < 0xC0:
                    try:  # a short str (msgpack fixstr), read as ormsgpack would: strict UTF-8
                        return data[2:].decode()
                    except UnicodeDecodeError:
                        return _undecided(data, _OPEN)  # ormsgpack, then msgpack, refuse it
                if head in _BIN_HEADS:  # a blob: sliced out, one copy
                    blob = _bare_bin(data, 1)
                    if blob is not None and size <= self.max_value_size:
                        return blob
                    return _undecided(data, _OPEN)
                # an array starting with a number: msgpack reads numbers faster
                return _by_msgpack(memoryview(data)[1:])
            if size > _BARE_MIN and data[1] in _BIN_HEADS:  # a large blob: sliced out, one copy
                blob = _bare_bin(data, 1)
                if blob is not None and size <= self.max_value_size:
                    return blob
        view = _view(data, "safe")
        marker = view[0]
        if marker == FORMAT_SAFE:
            return self._decode_checked(view[1:])
        if marker == FORMAT_SAFE_ZLIB:
            return self._decode_checked(_inflate(view[1:], self.max_value_size))
        if marker in _PICKLE_MARKERS:
            raise _corrupt(
                "it was written by the pickle codec, and the safe codec never unpickles.",
                hint="if you trust the writer, set codec: pickle with the same signingKey "
                "on this cache; otherwise delete the entry.",
            )
        raise _foreign(marker)

    def loads_local(self, data: bytes, key: str = "") -> Any:
        """Decode a payload that a codec of this process wrote: an in-process store's.

        The same values as :meth:`loads`, minus two checks that only bytes from a foreign
        writer need. ormsgpack ignores bytes after a body, so :meth:`loads` frames every
        body with an unguessable end mark to catch them, and counts the objects of a long
        body before decoding it; but bytes that no other process can write (the memory
        provider's) are exactly what :meth:`dumps` returned, which refused any value
        :meth:`loads` would refuse. So a map or short array is read unframed: no copy into
        a frame, no end mark to decode and compare (a third of a 200-byte read). Any other
        shape, and any failure, takes :meth:`loads` and its verdict. A long body is read
        through a view, not sliced out: no copy of it (see _VIEW_FROM).
        """
        try:
            if data[0] == FORMAT_SAFE and data[1] in _FRAMED_HEADS:
                body = data[1:] if len(data) < _VIEW_FROM else memoryview(data)[1:]
                return _unpackb(body, ext_hook=_ext_hook, option=_UNPACK)
        except Exception as exc:  # not bytes, too short, a hook's refusal: loads decides
            _unless_signalled(exc)
            _state.failure = None
        return self.loads(data, key)

    def loads_local_many(self, stored: dict[str, bytes]) -> dict[str, Any]:
        """:meth:`loads_local` of every value of ``stored``, under the same keys.

        What the memory provider's ``get_many`` calls: one call for the whole batch, with
        :meth:`loads_local`'s fast path inline (the Python call per value was a quarter
        of reading a 200-byte record). The same values and the same errors, key by key.
        """
        found: dict[str, Any] = {}
        unpackb, hook, heads, option = _unpackb, _ext_hook, _FRAMED_HEADS, _UNPACK
        view_from = _VIEW_FROM
        for key, data in stored.items():
            try:
                if data[0] == FORMAT_SAFE and data[1] in heads:
                    body = data[1:] if len(data) < view_from else memoryview(data)[1:]
                    found[key] = unpackb(body, ext_hook=hook, option=option)
                    continue
            except Exception as exc:  # as in loads_local: loads decides
                _unless_signalled(exc)
                _state.failure = None
            found[key] = self.loads(data, key)
        return found

    def _decode_checked(self, body: bytes | memoryview) -> Any:
        """Decode a body that did not take the fast path: bounded in size and objects."""
        size = len(body)
        if size > self.max_value_size:
            raise _corrupt(
                f"its body is {size} bytes, more than maxValueSize ({self.max_value_size})."
            )
        if size > _BARE_MIN and body[0] in _BIN_HEADS:  # an inflated blob: sliced out
            blob = _bare_bin(body, 0)
            if blob is not None:
                return blob
        if size > self.max_objects:  # below, one object per byte at most
            _count_body(body, self.max_objects)
        state = _state
        state.limit = self.max_value_size  # for the nested payloads (see _unpack_list)
        try:
            return _decode(body)
        finally:
            state.limit = _NO_LIMIT


class PickleCodec:
    """Opt-in codec for arbitrary picklable values, signed with HMAC-SHA256.

    Each payload carries the id of its signing key and an HMAC-SHA256 tag over its
    format byte, that id, the entry's storage key and its body; :meth:`loads` checks it
    with :func:`hmac.compare_digest` before unpickling, so only bytes written by a holder
    of the key, for that very storage key, are ever unpickled (a copy under another key
    or namespace is refused). Entries signed with a key that is neither ``signing_key``
    nor one of ``fallbacks`` raise :class:`UnknownSigningKeyError`, which reads treat as
    a miss. It also reads :class:`SafeCodec` payloads. No key ever appears in messages
    or ``repr()``.

    Args:
        signing_key: the secret HMAC key, at least :data:`MIN_SIGNING_KEY_LENGTH` chars.
        compress_threshold: compress payloads larger than this many bytes (0: never).
        max_value_size: the largest (inflated) pickle or safe body read or written.
        fallbacks: older keys that still verify entries (never sign): a list of strings
            or one string of comma-separated keys.
        max_decompressed_size: the previous name of ``max_value_size``.

    Raises:
        ConfigError: a key is missing, not a string, or too short.
    """

    __slots__ = ("_key_id", "_keys", "_safe", "compress_threshold", "max_value_size")
    name: str = "pickle"

    def __init__(
        self,
        signing_key: str | None,
        *,
        compress_threshold: int = 0,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        fallbacks: Any = None,
        max_decompressed_size: int | None = None,
    ) -> None:
        if max_decompressed_size is not None:
            max_value_size = max_decompressed_size
        key = _signing_key(signing_key, "signingKey")
        keys = {_key_id(key): key}
        for index, fallback in enumerate(_fallback_list(fallbacks)):
            extra = _signing_key(fallback, f"signingKeyFallbacks[{index}]")
            keys.setdefault(_key_id(extra), extra)
        self._key_id = _key_id(key)
        self._keys = keys
        self._safe = SafeCodec(max_value_size=max_value_size)
        self.compress_threshold = compress_threshold
        self.max_value_size = max_value_size

    @property
    def max_decompressed_size(self) -> int:
        """The previous name of :attr:`max_value_size`."""
        return self.max_value_size

    def __repr__(self) -> str:
        return (
            f"PickleCodec(signing_key=<hidden>, fallbacks={len(self._keys) - 1}, "
            f"compress_threshold={self.compress_threshold}, "
            f"max_value_size={self.max_value_size})"
        )

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Pickle ``value`` (protocol 5) and sign it for storage key ``key``.

        Raises:
            SerializationError: pickle cannot store the value (a lambda, a lock...), or
                it pickles to more than ``max_value_size`` bytes.
        """
        try:
            body = pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickle raises many types (PicklingError, TypeError...)
            raise SerializationError(
                f"the pickle codec cannot store this {_type_name(value)} ({_describe(exc)}).",
                hint="store a picklable value: module-level classes and functions, "
                "no lambdas, open files, locks or sockets.",
            ) from exc
        if len(body) > self.max_value_size:
            raise SerializationError(
                f"the value pickles to {len(body)} bytes, more than maxValueSize "
                f"({self.max_value_size} bytes).",
                hint="store a smaller value (split it over several keys), or raise the "
                "cache's maxValueSize setting.",
            )
        marker = _SIGNED
        if 0 < self.compress_threshold < len(body):
            packed = _deflate(body)
            if packed is not None:
                marker, body = _SIGNED_ZLIB, packed
        head = marker + self._key_id
        return head + _sign(self._keys[self._key_id], head, key, body) + body

    def loads_local(self, data: bytes, key: str = "") -> Any:
        """As :meth:`loads` (in-process bytes: see :meth:`SafeCodec.loads_local`)."""
        if type(data) is bytes and data[:1] == _SAFE:
            return self._safe.loads_local(data)
        return self.loads(data, key)

    def loads(self, data: bytes, key: str = "") -> Any:
        """Verify and unpickle a payload read from storage key ``key``; safe payloads are
        decoded by the safe codec.

        Raises:
            UnknownSigningKeyError: signed with a key this codec does not know (rotated
                away), or in the previous, unbound format: treat it as a miss.
            CorruptEntryError: a bad signature from a known key (tampered, or copied
                from another storage key; nothing is unpickled then), or bytes cachehub
                did not write.
        """
        view = _view(data, "pickle")
        marker = view[0]
        if marker in (FORMAT_SAFE, FORMAT_SAFE_ZLIB):
            return self._safe.loads(data)
        if marker in (FORMAT_PICKLE, FORMAT_PICKLE_ZLIB):
            raise UnknownSigningKeyError(
                "cached entry cannot be verified: it was signed by an earlier cachehub, "
                "whose signatures did not cover the storage key. It is treated as a miss.",
                hint="nothing to do: reads recompute it and the next write re-signs it.",
            )
        if marker not in (FORMAT_SIGNED, FORMAT_SIGNED_ZLIB):
            raise _foreign(marker)
        head_size = 1 + _KEY_ID_SIZE
        if len(view) < head_size + _TAG_SIZE:
            raise _corrupt(
                f"the signed pickle is truncated ({len(view)} bytes, no full signature)."
            )
        head = view[:head_size]
        signer = self._keys.get(bytes(head[1:]))
        if signer is None:
            raise UnknownSigningKeyError(
                "cached entry cannot be verified: it was signed with a signingKey this "
                "cache does not know (rotated away?). Nothing was unpickled; it is treated "
                "as a miss.",
                hint="to keep reading such entries, list the old key in "
                "signingKeyFallbacks; otherwise they are recomputed.",
            )
        tag, body = view[head_size : head_size + _TAG_SIZE], view[head_size + _TAG_SIZE :]
        if not hmac.compare_digest(tag, _sign(signer, head, key, body)):
            raise _corrupt(
                "its HMAC signature does not match: the bytes were altered, or copied from "
                "another key or namespace. Nothing was unpickled.",
                hint="delete the entry, and check who else can write to this backend.",
            )
        if marker == FORMAT_SIGNED_ZLIB:
            body = memoryview(_inflate(body, self.max_value_size))
        elif len(body) > self.max_value_size:
            raise _corrupt(
                f"its pickle is {len(body)} bytes, more than maxValueSize ({self.max_value_size})."
            )
        try:
            return pickle.loads(body)  # noqa: S301 - HMAC-verified above
        except Exception as exc:  # signed, so ours: most likely a class moved or changed
            raise _corrupt(
                f"the signed pickle could not be loaded ({_describe(exc)}).",
                hint="a class it references may have been renamed or removed; "
                "delete the entry so it is recomputed.",
            ) from exc


def _signing_key(value: Any, setting: str) -> bytes:
    hint = (
        f"set `{setting}` in the cache's custom settings to a random secret of at least "
        f"{MIN_SIGNING_KEY_LENGTH} characters (e.g. signingKey: ${{CACHE_SIGNING_KEY}}), "
        "or use codec: safe."
    )
    if value is None or value == "":
        raise ConfigError(f"codec 'pickle' needs a {setting}, and none is set.", hint=hint)
    if not isinstance(value, str):
        raise ConfigError(f"{setting} must be a string, got {type(value).__name__}.", hint=hint)
    if len(value) < MIN_SIGNING_KEY_LENGTH:
        raise ConfigError(
            f"{setting} is shorter than {MIN_SIGNING_KEY_LENGTH} characters.", hint=hint
        )
    if len({c for c in value if c.isprintable() and not c.isspace()}) < _MIN_KEY_SYMBOLS:
        # 20 spaces, 16 NULs or "aaaa...": long enough, and guessed at the first try
        # (an unset ${VAR} padded by a template, a placeholder left in a config file).
        raise ConfigError(
            f"{setting} has fewer than {_MIN_KEY_SYMBOLS} different visible characters: "
            "it is not a random secret.",
            hint=hint,
        )
    return value.encode("utf-8", "surrogatepass")


_MIN_KEY_SYMBOLS: Final = 5
"""Different visible characters a signing key needs: a random 16-character hex key has
fewer than 5 about once in 10**6 draws, and so does a decimal one about once in 10**4."""


def _fallback_list(fallbacks: Any) -> list[Any]:
    """``signingKeyFallbacks`` as a list: None, a list/tuple, or comma-separated keys."""
    if fallbacks is None:
        return []
    if isinstance(fallbacks, str):  # e.g. from ${OLD_SIGNING_KEYS}
        return [part.strip() for part in fallbacks.split(",") if part.strip()]
    if isinstance(fallbacks, list | tuple):
        return list(fallbacks)
    raise ConfigError(
        f"signingKeyFallbacks must be a list of strings, got {type(fallbacks).__name__}.",
        hint="set signingKeyFallbacks to a list of old signing keys, or one string of "
        "comma-separated keys (e.g. ${OLD_CACHE_SIGNING_KEYS}).",
    )


def _key_id(key: bytes) -> bytes:
    # A one-way id (an HMAC of a constant): tells which key signed, reveals nothing of it.
    return hmac.new(key, b"cachehub signing key id", "sha256").digest()[:_KEY_ID_SIZE]


def _sign(
    key: bytes, head: bytes | memoryview, storage_key: str, body: bytes | memoryview
) -> bytes:
    """The tag over format byte + key id, the storage key (length-prefixed) and the body."""
    bound = storage_key.encode("utf-8", "surrogatepass")
    mac = hmac.new(key, head, "sha256")
    mac.update(len(bound).to_bytes(4, "big"))
    mac.update(bound)
    mac.update(body)
    return mac.digest()


_SAFE: Final = bytes([FORMAT_SAFE])
_SAFE_ZLIB: Final = bytes([FORMAT_SAFE_ZLIB])
_SIGNED: Final = bytes([FORMAT_SIGNED])
_SIGNED_ZLIB: Final = bytes([FORMAT_SIGNED_ZLIB])
_PICKLE_MARKERS: Final = frozenset(
    {FORMAT_PICKLE, FORMAT_PICKLE_ZLIB, FORMAT_SIGNED, FORMAT_SIGNED_ZLIB}
)

# --------------------------------------------------------------------------- framing helpers


def _worth_it(packed: int, size: int) -> bool:
    """Whether ``packed`` bytes stored instead of ``size`` save at least 1/8 of them.

    Below that, the inflate on every read costs more than the few bytes are worth, and
    incompressible data (already compressed images, random tokens) stays as it is.
    """
    return packed <= size - (size >> _MIN_SAVING_SHIFT)


def _looks_random(body: bytes | memoryview) -> bool:
    """Whether ``body`` looks incompressible: a probe far cheaper than zlib.

    zlib is slowest on random bytes (it never finds a match), and deflate saves 1/8 only
    where byte values are skewed or strings repeat, so this looks for that in _WINDOWS
    windows of _WINDOW bytes spread over the body (its head, its tail and between): a
    value is "random" only if every window is. In each, the byte values of its first
    _SEEN bytes are struck from the whole window (``bytes.translate``, at C speed): in
    random or already compressed data those are about 30 of 256 values, so about 198 of
    the 256 bytes are left (sd 5; none below 171 in 100,000 random windows); where a few
    values dominate (text, JSON and msgpack records, small ints, hex and base64, float
    prices) most of the window goes with them (at most 136 left in some window of each
    such shape the tests and benchmarks use), and _KEPT sits between, 6 sd below random.
    Windows vary: random printable text (deflate saves 1/6) keeps 160 (sd 8), so about 1
    value in 400 has all four windows above _KEPT and is stored plain; base85 1 in 10,000.
    A string repeated with a period under _SEEN bytes leaves nothing, one under ~150
    bytes too little, even where its bytes are random. Random floats keep about as many
    bytes as random data: deflate at level 1 saves less than 1/8 on them too.

    The probe reads at most _WINDOWS * _WINDOW bytes whatever the size of the body
    (2 to 3 us, against ~50 us for pickle to round-trip 1 MB). Only a verdict of "random" is
    trusted: a value that looks compressible is still checked by deflating it (see
    _deflate), so a value that fools the probe costs one zlib probe, never a wrong
    payload. What it misses: a random token repeated with a longer period, stored plain.
    """
    size = len(body)
    if size < _WINDOWS * _WINDOW:
        return False  # small: zlib decides, on at most this many bytes
    step = (size - _WINDOW) // (_WINDOWS - 1)
    for start in range(0, _WINDOWS * step, step):
        window = body[start : start + _WINDOW]
        if isinstance(window, memoryview):
            window = window.tobytes()
        if len(window.translate(None, window[:_SEEN])) < _KEPT:
            return False
    return True


def _deflate(body: bytes | memoryview, probed: bool = False) -> bytes | None:
    """``body`` zlib-compressed, or None if that does not save 1/8 (see _worth_it).

    Every byte is deflated at most once, and incompressible data costs a cheap probe,
    not a pass over the whole body: a body that looks random (_looks_random; ``probed``:
    the caller asked already) is not deflated at all. Otherwise one zlib stream deflates
    the first _PROBE bytes, then _CHUNK bytes at a time, each step ending in a sync flush
    so that the compressed size so far is exact; it stops, and the body is stored plain,
    as soon as the size so far plus the rest at the latest step's ratio would not save
    1/8. So data that slips past the probe is given up after _PROBE bytes, and a
    compressible head followed by incompressible data after one chunk of it. (The price:
    a value with a long incompressible stretch between compressible parts, or starting
    with more than _PROBE bytes of one, may be stored plain.)
    """
    size = len(body)
    if not probed and _looks_random(body):
        return None
    if size <= 2 * _PROBE:  # small: the probe would be most of the work
        packed = zlib.compress(body, _ZLIB_LEVEL)
        return packed if _worth_it(len(packed), size) else None
    view = memoryview(body)
    deflater = zlib.compressobj(_ZLIB_LEVEL)
    parts: list[bytes] = []
    done = packed_size = 0
    step = _PROBE
    while done < size:
        end = min(done + step, size)
        parts.append(deflater.compress(view[done:end]))
        parts.append(deflater.flush(zlib.Z_SYNC_FLUSH if end < size else zlib.Z_FINISH))
        chunk = len(parts[-2]) + len(parts[-1])
        packed_size += chunk
        # what the whole would come to if the rest deflated like this chunk
        if not _worth_it(packed_size + (size - end) * chunk // (end - done), size):
            return None
        done, step = end, _CHUNK
    return b"".join(parts)


def _view(data: Any, codec: str) -> memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _corrupt(f"expected bytes from the backend, got {_type_name(data)}.")
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    if not view:
        raise _corrupt(f"the stored value is empty, which no {codec}-codec payload is.")
    return view


def _foreign(marker: int) -> CorruptEntryError:
    if marker == 0x80:  # pickle protocol 2+ streams start with the PROTO opcode
        reason = (
            "it starts with 0x80 and looks like a raw pickle, which cachehub never writes "
            "and never loads: it was planted or written by another tool."
        )
    elif marker == 0x78:
        reason = "it starts with 0x78 and looks like bare zlib data not written by cachehub."
    else:
        reason = (
            f"its format byte 0x{marker:02x} is unknown (cachehub writes "
            f"0x{FORMAT_SAFE:02x}-0x{FORMAT_SIGNED_ZLIB:02x}): it was written by another "
            "tool or a newer cachehub."
        )
    return _corrupt(
        reason,
        hint="delete the entry; give other writers their own namespace or table.",
    )


def _corrupt(
    reason: str, *, hint: str = "delete the entry so it is recomputed."
) -> CorruptEntryError:
    return CorruptEntryError(f"cached entry cannot be decoded: {reason}", hint=hint)


def _inflate(body: memoryview, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # max_length bounds the output, so a zip bomb never inflates past limit + 1 bytes
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _corrupt(f"its compressed body is invalid ({exc}).") from exc
    if len(out) > limit:
        raise _corrupt(
            f"it inflates to more than {limit} bytes, the decompression limit "
            "(a decompression bomb, or data not written by cachehub)."
        )
    if not inflater.eof:
        raise _corrupt("its compressed body is truncated.")
    if inflater.unused_data:
        raise _corrupt("it has extra bytes after its compressed body.")
    return out


_FIXSTR: Final = [bytes([FORMAT_SAFE, 0xA0 | size]) for size in range(32)]  # + msgpack fixstr
# First body bytes read by ormsgpack at once: fixmap, fixarray, map 16 and map 32 (the
# other shapes have faster readers: fixstr, bin, array 16/32 of numbers; see loads).
_FRAMED_HEADS: Final = frozenset([*range(0x80, 0xA0), 0xDE, 0xDF])
_BIN_HEADS: Final = b"\xc4\xc5\xc6"  # msgpack bin 8, 16, 32
_BARE_MIN: Final = 4096  # bodies from this size that are one bin item skip msgpack
# From this size loads_local reads a body through a memoryview: two small objects instead
# of a copy of the body (a fresh block of its size, filled, read once and freed), which
# was 5% of reading a 10 KB record page; below it the copy is the cheaper of the two.
_VIEW_FROM: Final = 4096


def _bin_header(size: int) -> bytes:
    """The msgpack bin header of ``size`` bytes, as ormsgpack writes it (shortest)."""
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _bare_bin(data: bytes | memoryview, start: int) -> bytes | None:
    """The bytes of the one bin item at ``data[start:]``, or None if it is not exactly that.

    None (truncated, or bytes after the item) leaves the verdict to the msgpack readers.
    Slicing bytes copies them once; decoding through msgpack would copy them twice more
    (the framing, then the item).
    """
    width = _LENGTH[data[start]]
    begin = start + 1 + width
    if begin + int.from_bytes(data[start + 1 : begin], "big") != len(data):
        return None
    blob = data[begin:]
    return blob if type(blob) is bytes else bytes(blob)


# Byte sizes of the fixed-size msgpack items, by first byte (float, uint, int).
_FIXED: Final = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
_LENGTH: Final = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin, str: length size
_EXT_LENGTH: Final = {0xC7: 1, 0xC8: 2, 0xC9: 4}  # ext 8/16/32: length size
_FIXEXT: Final = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_RECURSIVE: Final = frozenset({2, 3, 4, 12})  # extension types whose payload is msgpack


def _count_body(body: bytes | memoryview, limit: int) -> int:
    """The objects a safe body decodes to, without decoding it; corrupt beyond ``limit``.

    Runs only for bodies longer than ``limit`` bytes (shorter ones cannot hold more
    objects than bytes). Counts like :func:`_count_value`: every item of every array
    and map (keys and values), and the items inside tuple, set, frozenset and query
    payloads, which are walked in place. Iterative, so nesting costs no stack; a
    length that the remaining bytes cannot hold is reported at once.
    """
    data = bytes(body)
    end = len(data)
    pos = 0
    count = 0
    remaining = 1  # items still to read at this level
    stop = end  # where the bytes of the current level end: the body's, or a payload's
    exact = True  # whether the current level must end exactly at stop (body, payload)
    stack: list[tuple[int, int, bool]] = []
    while True:
        while remaining == 0:
            if exact and pos != stop:
                raise _corrupt("it has extra bytes after its msgpack body or a payload.")
            if not stack:
                return count
            remaining, stop, exact = stack.pop()
        remaining -= 1
        count += 1
        if count > limit:
            raise _corrupt(
                f"it decodes to more than {limit} objects, the most a value of its "
                f"maxValueSize may hold (maxValueSize // {OBJECT_RATIO}): a decompression "
                "or allocation bomb, or data not written by cachehub."
            )
        if pos >= stop:
            raise _corrupt("its msgpack body is truncated.")
        head = data[pos]
        pos += 1
        items = 0
        if head <= 0x7F or head >= 0xE0 or head in (0xC0, 0xC2, 0xC3):
            continue  # fixint, nil, bool
        if head <= 0x8F:
            items = 2 * (head & 0x0F)
        elif head <= 0x9F:
            items = head & 0x0F
        elif head <= 0xBF:
            pos += head & 0x1F
        elif head in _FIXED:
            pos += _FIXED[head]
        elif head in _LENGTH:
            size = _LENGTH[head]
            pos += size + int.from_bytes(data[pos : pos + size], "big")
        elif head in (0xDC, 0xDD, 0xDE, 0xDF):
            size = 2 if head in (0xDC, 0xDE) else 4
            items = int.from_bytes(data[pos : pos + size], "big") * (2 if head >= 0xDE else 1)
            pos += size
        elif head in _EXT_LENGTH or head in _FIXEXT:
            if head in _EXT_LENGTH:
                size = _EXT_LENGTH[head]
                length = int.from_bytes(data[pos : pos + size], "big")
                pos += size
            else:
                length = _FIXEXT[head]
            if pos + 1 + length > stop:
                raise _corrupt("an extension type claims more bytes than the body holds.")
            code = data[pos]
            pos += 1
            if code in _RECURSIVE:  # its payload is one msgpack array, counted in place
                stack.append((remaining, stop, exact))
                remaining, stop, exact = 1, pos + length, True
                count -= 1  # the payload's array is the container itself
                continue
            pos += length
        else:  # 0xC1, never used
            raise _corrupt(f"its msgpack body holds the invalid byte 0x{head:02x}.")
        if pos > stop:
            raise _corrupt("a string, binary or number claims more bytes than the body holds.")
        if items:
            if items > stop - pos:  # every item takes a byte at least
                raise _corrupt(
                    f"a container claims {items} items with only {stop - pos} bytes left "
                    "(a length lie)."
                )
            stack.append((remaining, stop, exact))
            remaining, exact = items, False


# --------------------------------------------------------------------------- safe encoding

_EXT_BIGINT: Final = 1
_EXT_TUPLE: Final = 2
_EXT_SET: Final = 3
_EXT_FROZENSET: Final = 4
_EXT_BYTEARRAY: Final = 5
_EXT_DECIMAL: Final = 6
_EXT_DATETIME: Final = 7
_EXT_DATE: Final = 8
_EXT_TIME: Final = 9
_EXT_TIMEDELTA: Final = 10
_EXT_UUID: Final = 11
_EXT_QUERY: Final = 12
_EXT_TIMESTAMP: Final = -1  # msgpack's own: datetimes in timezone.utc (see _default)
_DateTime: Final = _dt.datetime
_UTC: Final = _dt.UTC
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
# msgpack's timestamp 96 (ext 8 header: 0xc7, 12 bytes, type -1; then nanoseconds and
# signed seconds since the epoch): covers years 1 to 9999, as datetime does. One format
# for every instant, so one struct call; the 32 and 64-bit forms save 5 to 9 bytes, but
# choosing between them and shifting the nanoseconds into place costs more Python.
_TIMESTAMP: Final = struct.Struct(">BBbIq")
_Fragment: Final = ormsgpack.Fragment

_DATETIME_STATE: Final = 10  # bytes of pickle's datetime state, see docs/codec.md
_NO_TIME: Final = _dt.timedelta(0)
# datetime(state, tzinfo): the constructor pickle uses, typeshed does not know this form
_from_state: Final = cast(Callable[[bytes, _dt.tzinfo | None], _dt.datetime], _dt.datetime)
# datetime.__reduce_ex__(protocol 4) is (datetime, (state,) or (state, tzinfo)), fold kept
_reduce_ex: Final = cast(
    Callable[[_dt.datetime, int], tuple[Any, tuple[bytes, ...]]], _dt.datetime.__reduce_ex__
)
# datetime.__reduce__() is the same for protocol 2: fold is not kept
_reduce: Final = cast(
    Callable[[_dt.datetime], tuple[Any, tuple[bytes, ...]]], _dt.datetime.__reduce__
)
_DATE: Final = struct.Struct(">HBB")  # year month day
_TIME: Final = struct.Struct(">BBBIB")  # hour minute second µs fold
_TIMEDELTA: Final = struct.Struct(">iII")  # days seconds µs (timedelta's normal form)
_OFFSET: Final = struct.Struct(">q")  # UTC offset in µs

_TZ_OFFSET: Final = 1  # datetime.timezone without a name: offset
_TZ_NAMED: Final = 2  # datetime.timezone with a name: offset, UTF-8 name
_TZ_ZONE: Final = 3  # zoneinfo.ZoneInfo: UTF-8 key


class _Unsupported(Exception):
    """Raised inside the packing hook; turned into a SerializationError with a path."""

    def __init__(self, obj: Any, what: str, hint: str) -> None:
        super().__init__(what)
        self.obj, self.what, self.hint = obj, what, hint


_NO_LIMIT: Final = 1 << 62  # no bound: a body read without a check cannot reach one


class _Recheck(Exception):
    """Raised by the hook on meeting a tuple, set or query in an unchecked value."""


class _State(threading.local):
    """Per-thread state of the hooks that ormsgpack calls back (see _default, _ext_hook)."""

    failure: BaseException | None = None  # what the last hook raised: ormsgpack drops it
    depth = 0  # extension types being decoded, one inside the other
    chain = 0  # bytes of the nested extension payloads being decoded (copies, all alive)
    packing = 0  # extension types being encoded, one inside the other
    packed_chain = 0  # the largest such sum below the extension being encoded
    checked = False  # whether the value being encoded was checked for depth (see _items)
    limit = _NO_LIMIT  # bytes nested payloads may add up to (see _items, _unpack_list)
    keyed = False  # the value being decoded has a map key msgpack must hand to _map
    keyed_pack = False  # the value being encoded has a dict with a non-str key (see _pack)


_state: Final = _State()


def _unless_signalled(exc: Exception) -> None:
    """Raise the exception of a signal handler in ``exc``'s chain or a hook's failure, if
    any: one that landed as a C decoder returned (or in a hook it called), inside a
    ``try`` whose fallback decodes again and would drop it (a Celery soft time limit
    during a large read was lost that way, or came out as a corrupt entry)."""
    failure = _state.failure
    for each in (exc,) if failure is None else (exc, failure):
        signalled = raised_by_signal_handler(each)
        if signalled is not None:
            _state.failure = None
            raise signalled


def _hook_failure() -> BaseException | None:
    """The exception a hook raised during the failed ormsgpack call, if any (cleared).

    ormsgpack reports an exception raised by ``default`` or ``ext_hook`` only as a bare
    "Type is not msgpack serializable" / "ext_hook failed" error, without ``__cause__``,
    so the hooks keep the real one here.
    """
    failure = _state.failure
    if failure is not None:
        _state.failure = None
    return failure


def _encode(value: Any, body: bytes | None, refusal: TypeError | None = None) -> bytes:
    """The safe body of ``value``, after SafeCodec.dumps packed it once.

    ``body`` is what ormsgpack packed it to, which may hide a buffer (see _survey), or
    None if ormsgpack refused it with ``refusal`` (see _repack). Failures become
    SerializationErrors that name the culprit and where it sits.
    """
    try:
        if body is None:
            return _repack(value, refusal)
        buffers = _survey(value, packed=True)
        if buffers:  # rare: packed again, each bytearray as its extension
            return _pack(_without_buffers(value, buffers))
        return body
    except _Unsupported as exc:
        obj = exc.obj
        where = _locate(value, lambda candidate: candidate is obj) or "a value inside value"
        raise SerializationError(
            f"{where} is {exc.what}, which the safe codec cannot store.", hint=exc.hint
        ) from None
    except SerializationError:
        raise
    except RecursionError as exc:  # tuples in tuples...: each level is a hook call
        raise SerializationError(
            f"the value is nested too deeply or contains itself ({exc}).",
            hint="store a flatter, acyclic structure, or opt in to codec 'pickle'.",
        ) from exc
    except TypeError as exc:  # ormsgpack's own refusal: too deep, or a str not valid UTF-8
        if str(exc) == _TOO_DEEP:
            raise _too_deep() from None
        bad_str = _locate(value, _unencodable)
        if bad_str is None:
            raise SerializationError(
                f"the value cannot be encoded ({_describe(exc)}).",
                hint="store supported types (see docs/codec.md), or opt in to codec 'pickle'.",
            ) from exc
        raise SerializationError(
            f"{bad_str} is a str with unpaired surrogates, which is not valid UTF-8.",
            hint="encode it with errors='surrogatepass' and store the bytes instead.",
        ) from exc


# What ormsgpack hands to the hook instead of converting it its own way, so that every
# value comes back with its type (and unsupported ones are refused, not converted):
_PACK_OPTIONS: Final = (
    ormsgpack.OPT_PASSTHROUGH_BIG_INT  # ints beyond 64 bits: extension 1, not an error
    | ormsgpack.OPT_PASSTHROUGH_TUPLE  # tuples: extension 2, not an array
    | ormsgpack.OPT_PASSTHROUGH_DATETIME  # datetime, date, time: 7-9, not RFC 3339 strings
    | ormsgpack.OPT_PASSTHROUGH_UUID  # UUID: extension 11, not a string
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS  # Query: extension 12; other dataclasses refused
    | ormsgpack.OPT_PASSTHROUGH_ENUM  # enum members: refused, not packed as their value
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS  # str, int, list, dict subclasses: refused
)
# Not OPT_NON_STR_KEYS: with it ormsgpack writes tuple keys as arrays and datetime, UUID,
# enum or str-subclass keys as their string or value, without asking the hook. Without it,
# a dict with a non-str key fails the call, and _pack packs that dict itself.
_packb: Final = ormsgpack.packb  # (obj, default, option): positional is parsed faster


def _repack(value: Any, refusal: TypeError | None) -> bytes:
    """``value`` packed after ormsgpack refused it with ``refusal``.

    Either a hook raised (see _hook_failure), or ormsgpack refused the value itself: a
    cycle or nesting beyond its limit (refused at once: no survey of a value that may
    hold itself), a dict with a non-str key, or a str with unpaired surrogates (fails
    again, for _encode to report).
    """
    failure = _hook_failure()
    if failure is not None:
        raise failure from None
    if refusal is not None and str(refusal) == _TOO_DEEP:
        raise _too_deep()
    buffers = _survey(value)
    return _pack_once(_keyed_maps(_without_buffers(value, buffers) if buffers else value))


def _pack(obj: Any) -> bytes:
    """``obj`` as msgpack, extension types included (a bare body: no format byte)."""
    state = _state
    if state.keyed_pack:
        return _pack_once(_keyed_maps(obj))
    try:
        return _pack_once(obj)
    except TypeError as exc:
        # Retried only for a dict with a non-str key: any other failure (from this level
        # or raised again from a nested extension) would fail again, and retrying it at
        # every extension level would double the work per level.
        if type(exc) is not TypeError or str(exc) != _NON_STR_KEY:
            raise
        # The failed try packed every extension before the dict again: from now on this
        # value's extensions go straight to _keyed_maps (tuples nested 20 deep, each with
        # an int-keyed dict after its inner tuple, were packed 2**20 times).
        state.keyed_pack = True
        return _pack_once(_keyed_maps(obj))


_NON_STR_KEY: Final = "Dict key must be str"  # ormsgpack's message, without OPT_NON_STR_KEYS
_TOO_DEEP: Final = "Recursion limit reached"  # ormsgpack's message past _MAX_NESTING levels


def _too_deep() -> SerializationError:
    return SerializationError(
        f"the value has lists or dicts nested more than {_MAX_NESTING} levels deep, or it "
        "contains itself.",
        hint="store a flatter, acyclic structure, or opt in to codec 'pickle'.",
    )


def _pack_once(obj: Any) -> bytes:
    try:
        return _packb(obj, _default, _PACK_OPTIONS)
    except TypeError:
        failure = _hook_failure()
        if failure is not None:
            raise failure from None
        raise


def _keyed_maps(obj: Any) -> Any:
    """``obj`` with each dict that has a non-str key replaced by its packed bytes.

    Only lists and dicts are walked: the items of tuples, sets and queries are packed by
    the hook, through :func:`_pack`. A dict with a non-str key becomes an
    ``ormsgpack.Fragment``: the msgpack map header, then its keys and values packed in
    one call as the items of one list (a list's items are packed exactly like map keys
    and values, and keys reach the hook there). Recursion here is bounded by Python's
    limit, which :func:`_encode` reports as nesting.
    """
    kind = type(obj)
    if kind is list:
        return [_keyed_maps(item) if type(item) in _MAPPED else item for item in obj]
    if kind is not dict:
        return obj
    if set(map(type, obj)) <= _STR:
        return {
            key: _keyed_maps(item) if type(item) in _MAPPED else item for key, item in obj.items()
        }
    items = list(itertools.chain.from_iterable(obj.items()))
    packed = _pack(items)
    return ormsgpack.Fragment(_map_header(len(obj)) + packed[_array_header_size(len(items)) :])


_MAPPED: Final = frozenset({list, dict})
_STR: Final = frozenset({str})


def _map_header(size: int) -> bytes:
    if size < 16:
        return bytes([0x80 | size])  # fixmap
    if size < 0x10000:
        return b"\xde" + size.to_bytes(2, "big")  # map 16
    return b"\xdf" + size.to_bytes(4, "big")  # map 32


def _array_header_size(size: int) -> int:
    return 1 if size < 16 else 3 if size < 0x10000 else 5  # fixarray, array 16, array 32


def _default(obj: Any) -> ormsgpack.Ext | ormsgpack.Fragment:
    """ormsgpack's hook for everything it does not pack itself (see _PACK_OPTIONS)."""
    try:
        if type(obj) is _DateTime:  # the most common extension type: inlined, no calls
            tz = obj.tzinfo
            # pickle's 10-byte datetime state (docs/codec.md): the cheapest way to the fields.
            # Protocol 4 adds fold (the month's top bit); without fold protocol 2's state is
            # the same bytes, and __reduce__ takes no arguments to parse (~30 ns a datetime).
            if tz is None:
                return _Ext(_EXT_DATETIME, (_reduce_ex(obj, 4) if obj.fold else _reduce(obj))[1][0])
            if tz is _UTC and not obj.fold:
                # msgpack's Timestamp, which ormsgpack decodes without calling the hook (the
                # hook's ~300 ns per datetime were most of decoding datetime records), and
                # the encoder costs about what the state and zone cost. Same tzinfo as
                # _EPOCH: the subtraction is field arithmetic, no utcoffset() call.
                delta = obj - _EPOCH
                return _Fragment(
                    _TIMESTAMP.pack(
                        0xC7,
                        12,
                        _EXT_TIMESTAMP,
                        delta.microseconds * 1000,
                        delta.days * 86_400 + delta.seconds,
                    )
                )
            state = (_reduce_ex(obj, 4) if obj.fold else _reduce(obj))[1][0]
            hit = _zone_cache.get(id(tz))
            if hit is not None and hit[0] is tz:
                return _Ext(_EXT_DATETIME, state + hit[1])
            return _Ext(_EXT_DATETIME, state + _zone_bytes(tz, obj))
        encode = _ENCODERS.get(type(obj))
        if encode is None:
            raise _Unsupported(obj, f"a {_type_name(obj)}", _hint_for(obj))
        return encode(obj)
    except BaseException as exc:
        _state.failure = exc  # ormsgpack drops it: see _hook_failure
        raise


_Ext: Final = ormsgpack.Ext


def _items(code: int, items: list[Any]) -> ormsgpack.Ext:
    """A container's items packed into one extension (re-entrant: a separate call).

    Each such call restarts ormsgpack's nesting count and stacks on the calls around
    it, so before the first one the whole value's depth is checked (see _check_depth);
    and what the decoder bounds is bounded here alike, so nothing is stored that cannot
    be read: extension levels (MAX_EXTENSION_DEPTH) and the bytes of nested payloads
    alive at once while decoding (maxValueSize, see _unpack_list).
    """
    state = _state
    depth = state.packing
    if depth == 0:  # the common case (a tuple in a list...): its payload is part of the body
        if not state.checked:
            raise _Recheck  # SafeCodec.dumps checks the value's depth first, then packs again
        state.packing = 1
        try:
            return _Ext(code, _pack(items))
        finally:
            state.packing = 0
    if depth >= MAX_EXTENSION_DEPTH:
        raise SerializationError(
            f"the value has tuples, sets or queries nested more than {MAX_EXTENSION_DEPTH} "
            "levels deep, or contains itself.",
            hint="store a flatter, acyclic structure.",
        )
    outer = state.packed_chain
    state.packing = depth + 1
    state.packed_chain = 0
    try:
        payload = _pack(items)
        chain = state.packed_chain + len(payload)
    finally:
        state.packing = depth
    if chain > state.limit:
        raise SerializationError(
            f"the value nests tuples, sets or queries whose contents add up to {chain} "
            f"bytes along one path, more than maxValueSize ({state.limit}): reading it "
            "would hold them all at once.",
            hint="nest less (e.g. lists instead of tuples), or raise maxValueSize.",
        )
    state.packed_chain = chain if chain > outer else outer
    return _Ext(code, payload)


def _check_depth(value: Any) -> None:
    """Refuse ``value`` if containers nest in it more than MAX_DEPTH levels deep.

    Level by level in C (gc.get_referents), as _survey does: only values holding tuples,
    sets, frozensets or queries get here, whose nesting ormsgpack cannot bound alone
    (each extension is packed, and read, by a call of its own).
    """
    level: Any = [value]
    for _ in range(MAX_DEPTH):
        level = gc.get_referents(*level)
        kinds = set(map(type, level))
        if kinds.isdisjoint(_NESTED):  # the usual last level: scalars only
            return
        if not kinds <= _NESTED:  # gc would walk into the other objects' attributes
            level = [item for item in level if type(item) in _NESTED]
    raise SerializationError(
        f"the value has containers nested more than {MAX_DEPTH} levels deep (lists, "
        "dicts, tuples, sets and queries all count), or it contains itself.",
        hint="store a flatter, acyclic structure, or opt in to codec 'pickle'.",
    )


# Containers as gc sees them: a Query's referents are its tuples of columns and rows.
_NESTED: Final = frozenset({list, tuple, set, frozenset, dict, Query})


def _count_value(value: Any, limit: int) -> int:
    """The objects ``value`` decodes to, counting the items of every container (keys and
    values of dicts), like :func:`_count_body`; stops once above ``limit``."""
    count = 1
    level: list[Any] = [value]
    while level and count <= limit:
        nested: list[Any] = []
        for obj in level:
            kind = type(obj)
            if kind is dict:
                count += 2 * len(obj)
                nested.extend(key for key in obj if type(key) in _NESTED)
                nested.extend(item for item in obj.values() if type(item) in _NESTED)
            elif kind is Query:
                # [columns, rows, types]: 3, the columns, each row and its cells, the types
                width = len(obj.columns)
                types = 0 if obj.types is None else len(obj.types)
                count += 3 + width + types + len(obj.rows) * (1 + width)
                nested.extend(cell for row in obj.rows for cell in row if type(cell) in _NESTED)
            elif kind in _NESTED:
                count += len(obj)
                nested.extend(item for item in obj if type(item) in _NESTED)
        level = nested
    return count


def _hint_for(obj: Any) -> str:
    base = next((t for t in type(obj).__mro__[1:] if t in _ENCODERS or t in _NATIVE), None)
    suffix = "or opt in to codec 'pickle' (with a signingKey) to store any picklable value."
    if base is not None:
        return f"convert it to a plain {base.__name__} (e.g. {base.__name__}(x)), {suffix}"
    return f"convert it to supported types (dict, list, str, int...; see docs/codec.md), {suffix}"


_NATIVE: Final = frozenset({type(None), bool, int, float, str, bytes, list, dict})


def _encode_int(value: int) -> ormsgpack.Ext:
    # only ints beyond msgpack's 64-bit range reach the hook
    size = (value.bit_length() + 8) // 8  # + a sign bit
    return _Ext(_EXT_BIGINT, value.to_bytes(size, "little", signed=True))


def _encode_time(value: _dt.time) -> ormsgpack.Ext:
    head = _TIME.pack(value.hour, value.minute, value.second, value.microsecond, value.fold)
    tz = value.tzinfo
    return _Ext(_EXT_TIME, head if tz is None else head + _zone_bytes(tz, value))


def _encode_timedelta(value: _dt.timedelta) -> ormsgpack.Ext:
    return _Ext(_EXT_TIMEDELTA, _TIMEDELTA.pack(value.days, value.seconds, value.microseconds))


def _encode_query(value: Query, rows: list[list[Any]] | None = None) -> ormsgpack.Ext:
    types = None if value.types is None else list(value.types)
    if rows is None:
        rows = [list(row) for row in value.rows]
    return _items(_EXT_QUERY, [list(value.columns), rows, types])


# id(tzinfo) -> (tzinfo, bytes). Keyed by identity: timezone's == ignores the name, and
# holding the tzinfo keeps its id from being reused while cached.
_zone_cache: dict[int, tuple[_dt.tzinfo, bytes]] = {}


def _zone_bytes(tz: _dt.tzinfo, owner: object) -> bytes:
    hit = _zone_cache.get(id(tz))
    if hit is not None and hit[0] is tz:
        return hit[1]
    if type(tz) is _dt.timezone:
        args = tz.__getinitargs__()  # type: ignore[attr-defined]  # (offset,) or (offset, name)
        offset = _OFFSET.pack(_micros(args[0]))
        encoded = (
            bytes([_TZ_OFFSET]) + offset
            if len(args) == 1
            else bytes([_TZ_NAMED]) + offset + _utf8(args[1], owner)
        )
    elif type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        encoded = bytes([_TZ_ZONE]) + _utf8(tz.key, owner)
    else:
        raise _Unsupported(
            owner,
            f"a {type(owner).__name__} with a tzinfo of type {_type_name(tz)}",
            "use datetime.timezone or zoneinfo.ZoneInfo('Area/City') as tzinfo, "
            "or opt in to codec 'pickle' (with a signingKey).",
        )
    if len(_zone_cache) >= _TZ_CACHE_SIZE:
        _zone_cache.clear()
    _zone_cache[id(tz)] = (tz, encoded)
    return encoded


def _micros(delta: _dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _utf8(text: str, owner: object) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Unsupported(
            owner, "a time zone name with unpaired surrogates", "use a plain zone name."
        ) from None


_ENCODERS: Final[dict[type, Callable[[Any], ormsgpack.Ext]]] = {
    int: _encode_int,
    tuple: lambda value: _items(_EXT_TUPLE, list(value)),
    set: lambda value: _items(_EXT_SET, list(value)),
    frozenset: lambda value: _items(_EXT_FROZENSET, list(value)),
    bytearray: lambda value: _Ext(_EXT_BYTEARRAY, bytes(value)),
    decimal.Decimal: lambda value: _Ext(_EXT_DECIMAL, str(value).encode("ascii")),
    _dt.date: lambda value: _Ext(_EXT_DATE, _DATE.pack(value.year, value.month, value.day)),
    _dt.time: _encode_time,
    _dt.timedelta: _encode_timedelta,
    uuid.UUID: lambda value: _Ext(_EXT_UUID, value.bytes),
    Query: _encode_query,
}

# --------------------------------------------------------------------------- the survey

# ormsgpack packs bytearray and memoryview as plain bin, with no option to pass them to
# the hook: they would come back as bytes. So after packing, a survey of the value looks
# for buffers, unless the body rules them out (SafeCodec.dumps): no bin header byte at
# all (0xc4-0xc6, anywhere, so a byte inside a number or a string counts too; memchr).
# Nesting needs no look at the body: ormsgpack refuses lists and dicts nested beyond
# _MAX_NESTING in one call, and the hook counts extension types (see _items).


# The survey stays in C: gc.get_referents runs the containers' C traverse functions, which
# visit every item of list, tuple, set and frozenset, and every value (and non-str key) of
# dict, one nesting level at a time.
_SCANNED: Final = frozenset({list, tuple, set, frozenset, dict, Query})
_BUFFERS: Final = frozenset({bytearray, memoryview})
_HAVE_GC: Final = 1 << 14  # Py_TPFLAGS_HAVE_GC
# Scalars gc does not track (no referents): a level made of these and the builtin
# containers is walked without filtering. Types that gc tracks (UUID, Query...) are
# left out, as gc.get_referents would report their type and attributes as contents.
_LEAVES: Final = frozenset(
    kind
    for kind in (
        type(None),
        bool,
        int,
        float,
        str,
        bytes,
        decimal.Decimal,
        _dt.datetime,
        _dt.date,
        _dt.time,
        _dt.timedelta,
    )
    if not kind.__flags__ & _HAVE_GC
)
_WALKABLE: Final = _LEAVES | {list, tuple, set, frozenset, dict}

_MAX_NESTING: Final = 255  # lists and dicts nested in one ormsgpack call (its bound)
_SURVEY_LEVELS: Final = MAX_DEPTH + 1  # then see _walk_deep


_SUM_MIN: Final = 64  # levels at least this long are tried with sum() first

# msgpack number items by size, header byte included: float 32/64, uint and int 8-64.
_WIDTHS: Final = {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}
_WIDTHS.update({0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9})
_HEADS_OF_WIDTH: Final = {
    width: bytes(head for head, size in _WIDTHS.items() if size == width)
    for width in set(_WIDTHS.values())
}


def _fixed_width_numbers(body: bytes) -> bool:
    """Whether ``body`` is one array whose items are all numbers of one encoded width.

    Such a body holds no bin item, so no buffer, whatever bytes its numbers contain:
    the check that lets arrays of random 32-bit ints (or of floats, or of 64-bit ids) skip
    the survey, a second pass over every item that costs more than packing them (10,000
    ints: ~70 us of sum() when the items are in cache, twice that when packing has just
    evicted them). It reads the body only, in C: an array 16/32 header, then every
    ``width``-th byte must be a number header of that width, and the body must end
    exactly after the last item. So item by item, each starts where the previous one
    ends and is a number: a bin header can sit only inside a number's bytes. A body with
    numbers of several widths (or anything else) is not decided here: the survey runs.
    """
    head = body[0]
    if head == 0xDC:
        start, count = 3, int.from_bytes(body[1:3], "big")
    elif head == 0xDD:
        start, count = 5, int.from_bytes(body[1:5], "big")
    else:
        return False
    if len(body) <= start:
        return False
    width = _WIDTHS.get(body[start])
    if width is None or len(body) != start + width * count:
        return False
    # bytes.translate deletes every header of this width: nothing may be left
    return not body[start::width].translate(None, _HEADS_OF_WIDTH[width])


def _numbers_only(level: Any) -> bool:
    """Whether every item of ``level`` is an int, float or bool: no buffer, no container.

    Only for a value ormsgpack packed whole, so every object in it is of an exact
    supported type (subclasses and unknown types were refused), none with Python-level
    arithmetic. sum() from 0.0 runs in C at a few ns per int or float (type() and a set
    lookup per item cost several times that) and fails at the first item that is not an
    int, float or bool: 0.0 + x raises TypeError for a bytearray, memoryview, list,
    dict, tuple, set, str, bytes, None, Decimal (never added: no big intermediate
    results), date or Query. So numeric arrays, whose msgpack bodies nearly always
    hold a 0xc4-0xc6 byte inside some number, skip the type walk. Any failure
    (TypeError, OverflowError for an int beyond a float's range) only means "walk it".
    """
    try:
        sum(level, 0.0)
    except Exception as exc:
        _unless_signalled(exc)
        return False
    return True


def _survey(value: Any, packed: bool = False) -> set[type]:
    """The buffer types ``value`` holds; raises if it contains itself.

    ``packed``: ormsgpack packed ``value`` whole, so numeric levels may be cleared by
    :func:`_numbers_only` (a value it refused may hold objects with their own ``__radd__``).
    """
    # a list's items are its first level as they are: no copy by gc.get_referents
    level: Any = value if type(value) is list else (value,)
    found_buffers: set[type] = set()
    for _ in range(_SURVEY_LEVELS):
        if (
            packed and len(level) > _SUM_MIN and _numbers_only(level)
        ):  # the usual last level of data
            return found_buffers
        if _LEAVES.issuperset(map(type, level)):  # the usual last level: only scalars
            return found_buffers  # (no set built; a level of containers stops at once)
        found = set(map(type, level))
        if found <= _WALKABLE:  # the usual level: builtin containers and scalars
            level = gc.get_referents(*level)  # scalars have no referents: no filtering
            continue
        found_buffers |= found & _BUFFERS
        if found.isdisjoint(_SCANNED):
            return found_buffers
        scanned = map(_SCANNED.__contains__, map(type, level))
        level = gc.get_referents(*itertools.compress(level, scanned))
    return _walk_deep(value)


def _walk_deep(value: Any) -> set[type]:
    """The buffer types ``value`` holds, for a value deeper than _survey walks.

    Such a value is either very deep or holds itself, and level by level a wide cycle
    costs its width at every level. Depth first, each container is walked once, and
    one met again on its own path is a cycle.
    """
    found: set[type] = set()
    path: set[int] = set()  # ids of the containers being walked, root first
    done: set[int] = set()  # shared references are walked once
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        obj, leaving = stack.pop()
        ident = id(obj)
        if leaving:
            path.discard(ident)
            done.add(ident)
            continue
        kind = type(obj)
        if kind in _BUFFERS:
            found.add(kind)
        if kind not in _SCANNED or ident in done:
            continue
        if ident in path:
            raise SerializationError(
                "the value contains itself, which the safe codec cannot store.",
                hint="store an acyclic structure, or opt in to codec 'pickle'.",
            )
        path.add(ident)
        stack.append((obj, True))
        stack.extend((child, False) for child in gc.get_referents(obj))
    return found


def _without_buffers(value: Any, buffers: set[type]) -> Any:
    """``value`` with each bytearray replaced by its extension; refuses memoryviews."""
    if memoryview in buffers:
        where = _locate(value, lambda candidate: type(candidate) is memoryview)
        raise SerializationError(
            f"{where or 'a value inside value'} is a memoryview, which the safe codec cannot "
            "store.",
            hint="convert it to bytes (bytes(view)), or opt in to codec 'pickle' "
            "(with a signingKey).",
        )
    return _swap_buffers(value)


def _swap_buffers(value: Any) -> Any:
    """A copy of ``value`` with each bytearray replaced by its extension type.

    Only runs when :func:`_survey` found one; sets and dict keys cannot hold a bytearray
    (it is unhashable), so only lists, tuples, dict values and query cells are rebuilt.
    """
    kind = type(value)
    if kind is bytearray:
        return _Ext(_EXT_BYTEARRAY, bytes(value))
    if kind is list:
        return [_swap_buffers(item) for item in value]
    if kind is tuple:
        return tuple(_swap_buffers(item) for item in value)
    if kind is dict:
        return {key: _swap_buffers(item) for key, item in value.items()}
    if kind is Query:
        rows = [[_swap_buffers(cell) for cell in row] for row in value.rows]
        return _encode_query(value, rows)
    return value


# --------------------------------------------------------------------------- safe decoding

# ormsgpack decodes; when it cannot decide, msgpack does, as cachehub did before
# ormsgpack: ormsgpack reads no map key that is not a str (nor, even with
# OPT_NON_STR_KEYS, an extension-typed key such as a tuple, datetime or UUID key), and
# ignores bytes after the body. So ormsgpack reads the body framed as
# [format byte, body, end mark], where the end mark is a string no stored value can
# guess (random per process): if anything follows the body, the third item is not the
# end mark. Any failure of ormsgpack that is not a hook's verdict (see _hook_failure)
# raises _Slow, and msgpack decodes the whole body; its verdict is final.
_END_MARK: Final = secrets.token_hex(8)
_END: Final = ormsgpack.packb(_END_MARK)
_OPEN: Final = b"\x93"  # array of 3; the body still starts with its format byte (a fixint)
_OPEN_BARE: Final = b"\x93" + bytes([FORMAT_SAFE])  # the same for a bare body
_unpackb: Final = ormsgpack.unpackb
# msgpack's Timestamp (-1), which the encoder writes for datetimes in timezone.utc, is
# read by ormsgpack itself (to a datetime in timezone.utc, as msgpack's timestamp=3
# reads it): no hook call. An invalid one (nanoseconds >= 10**9, a year beyond 9999)
# fails the call, and msgpack's verdict decides, as for any other failure.
_UNPACK: Final = ormsgpack.OPT_DATETIME_AS_TIMESTAMP_EXT


class _Slow(Exception):
    """ormsgpack could not decode the body: msgpack decodes it."""


def _decode(body: bytes | memoryview, opening: bytes = _OPEN_BARE) -> Any:
    """Decode a safe body (``opening`` is _OPEN if ``body`` starts with its format byte)."""
    try:
        framed = _unpackb(b"".join((opening, body, _END)), ext_hook=_ext_hook, option=_UNPACK)
    except Exception as exc:
        return _undecided(body, opening, exc)
    if framed[2] != _END_MARK:  # bytes after the body, which took the end mark's place
        return _undecided(body, opening)
    return framed[1]


def _undecided(body: bytes | memoryview, opening: bytes, exc: Exception | None = None) -> Any:
    """Decode ``body`` after ormsgpack failed (with ``exc``, if it raised): a hook's verdict
    stands, msgpack decides the rest."""
    if exc is not None:
        _unless_signalled(exc)
    failure = _hook_failure()
    if failure is not None and type(failure) is not _Slow:
        if isinstance(failure, CorruptEntryError) or not isinstance(failure, Exception):
            raise failure from None
        raise _corrupt(f"its msgpack body is invalid ({_describe(failure)}).") from failure
    return _by_msgpack(memoryview(body)[1:] if opening is _OPEN else body)


def _by_msgpack(body: bytes | memoryview) -> Any:
    """msgpack's verdict on ``body``: the value, or CorruptEntryError (final)."""
    _state.keyed = False  # a new value (see _keyed_read)
    try:
        return _slow_unpack(body)
    except CorruptEntryError:
        raise
    except Exception as exc:  # any failure means the bytes are not what cachehub wrote
        raise _corrupt(f"its msgpack body is invalid ({_describe(exc)}).") from exc
    finally:
        _state.failure = None  # msgpack raised the hooks' exceptions itself


# Arrays of 16+ items (array 16 / 32: where the first item sits in the payload) whose
# first item is a number (fixints, float 32/64, uint and int 8-64) are read by msgpack:
# per number it is ~15% faster than ormsgpack (10,000 ints: 213 against 254 us CPU),
# slower on maps and strings, and its verdicts are the ones every other body gets.
_ARRAY_FIRST: Final = {0xDC: 4, 0xDD: 6}
_NUMBERS: Final = frozenset([*range(0x80), *range(0xCA, 0xD4), *range(0xE0, 0x100)])


def _slow_unpack(data: bytes | memoryview) -> Any:
    # msgpack reads lists and maps iteratively (its own stack, 1024 deep): no C stack per
    # level, unlike ormsgpack; and it caps every length at the bytes there are.
    # timestamp=3: msgpack's Timestamp extension (-1) decodes to a datetime in timezone.utc
    return _keyed_read(
        lambda strict: msgpack.unpackb(
            data,
            ext_hook=_ext_hook,
            strict_map_key=strict,
            object_pairs_hook=None if strict else _map,
            timestamp=3,
        )
    )


def _keyed_read(read: Callable[[bool], Any]) -> Any:
    """``read(True)``: maps with str or bytes keys only, built by msgpack in C (their
    hashes are seeded per process: no flooding); at the first other key, ``read(False)``
    again, every map then built by :func:`_map`, which checks its keys (a Python call per
    map: 2 to 4 times slower). Once a payload needed that, the payloads nested in the
    same value skip the first try (``_state.keyed``), so nesting never multiplies it."""
    state = _state
    if not state.keyed:
        try:
            return read(True)
        except ValueError as exc:
            if _STRICT_KEYS not in str(exc):
                raise
            state.keyed = True
    return read(False)


_STRICT_KEYS: Final = "strict_map_key"
"""In msgpack's error for a key other than str or bytes under ``strict_map_key=True``."""


# A payload this short nests at most this deep, whatever it holds (each level takes a
# byte): ormsgpack reads it, recursion and all, in a few dozen KiB of stack.
_SHORT: Final = 128


def _unpack_short(data: bytes) -> Any:
    """A short payload read by ormsgpack (fast); msgpack decides when it cannot."""
    state = _state
    if state.keyed:  # see below
        return _unpack_nested(data)
    try:
        framed = _unpackb(b"".join((_OPEN_BARE, data, _END)), ext_hook=_ext_hook, option=_UNPACK)
    except Exception as exc:
        _unless_signalled(exc)
        failure = _hook_failure()
        if failure is not None and type(failure) is not _Slow:  # the hook's verdict stands
            raise failure from None
        # A non-str map key, mostly (or invalid bytes). The failed try read every nested
        # extension before it: from now on this value's payloads go to msgpack at once,
        # or tuples nested 20 deep, each with an int-keyed map, were read 2**20 times.
        state.keyed = True
        return _unpack_nested(data)
    if framed[2] != _END_MARK:  # bytes after the body, which took the end mark's place
        raise ValueError("the extension has extra bytes after its items")
    return framed[1]


def _unpack_nested(data: bytes) -> Any:
    """A payload read by a msgpack Unpacker: iterative, and its state (unlike that of
    ``msgpack.unpackb``, whose 1024-entry stack sits on the C stack, ~40 KiB per call)
    lives on the heap, so nested payloads cost little stack each."""

    def read(strict: bool) -> Any:
        unpacker = msgpack.Unpacker(
            None,
            ext_hook=_ext_hook,
            strict_map_key=strict,
            object_pairs_hook=None if strict else _map,
            timestamp=3,
            max_buffer_size=max(1, len(data)),  # also caps every length at the bytes there are
        )
        unpacker.feed(data)
        value = unpacker.unpack()
        if unpacker.tell() != len(data):
            raise ValueError("the extension has extra bytes after its items")
        return value

    return _keyed_read(read)


def _ext_hook(code: int, data: bytes) -> Any:
    try:
        if code == _EXT_DATETIME:  # the most common extension type: _decode_datetime inlined
            if len(data) == _DATETIME_STATE:
                value = _from_state(data, None)
            else:
                zone = data[_DATETIME_STATE:]
                value = _from_state(data[:_DATETIME_STATE], _zones.get(zone) or _zone(zone))
            if value + _NO_TIME == value:  # see _valid
                return value
            raise ValueError("the datetime has out-of-range fields")
        decode = _DECODERS.get(code)
        if decode is None:
            raise _corrupt(f"it holds an unknown extension type {code}.")
        return decode(data)
    except BaseException as exc:
        _state.failure = exc  # ormsgpack drops it: see _hook_failure
        raise


def _timestamp(data: bytes) -> Any:
    # msgpack's Timestamp (-1): ormsgpack (under _UNPACK) and msgpack (timestamp=3) read it
    # themselves, so it never reaches this hook; if it did, msgpack would decide
    raise _Slow


# Hash flooding. Building a set, or a dict from a map, compares each item with every
# earlier one of the same hash: quadratic in their count. str and bytes hashes are
# seeded per process, but ints hash to themselves modulo 2**61 - 1 (every k * (2**61 - 1)
# hashes to 0), and floats, Decimals and tuples of them follow: a planted set of 16,000
# such big ints took 2.2 s to read, and maxValueSize allows ~900,000 (hours). Only
# ormsgpack reads maps without a hook, and it reads str keys only.
_FLOOD_FREE: Final = 8
"""Items that may repeat an earlier item's hash, plus the square root of their count:
the worst case (all of them in one group) then costs about as many comparisons as items."""


def unflooded(items: list[Any]) -> list[Any]:
    """``items`` if a set or dict of them builds in linear time, else CorruptEntryError.

    For providers whose backend hands back sets of numbers (DynamoDB's ``NS``) as well as
    for the codec: their hashes are computed once more, a C-level pass.
    """
    if len(items) > _FLOOD_FREE:
        _check_hashes(len(items), map(hash, items))
    return items


def _check_hashes(count: int, hashes: Iterator[int]) -> None:
    """CorruptEntryError when more of ``count`` hashes repeat than :data:`_FLOOD_FREE`
    allows. (The hashes are ints below 2**61 in size: a set of them cannot be flooded.)"""
    repeated = count - len(set(hashes))
    if repeated > _FLOOD_FREE + math.isqrt(count):
        raise _corrupt(
            f"it holds a set or map of {count} items of which {repeated} repeat another's "
            "hash (hash flooding: building it would take time quadratic in its size)."
        )


_KEY: Final = operator.itemgetter(0)


def _map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A map read by msgpack with a key other than str or bytes in the value (see
    :func:`_keyed_read`), its keys checked as :func:`unflooded` checks (C-level passes)."""
    if len(pairs) > _FLOOD_FREE:
        _check_hashes(len(pairs), map(hash, map(_KEY, pairs)))
    return dict(pairs)


def _unpack_list(data: bytes) -> list[Any]:
    """The items of a tuple, set, frozenset or query: msgpack reads them.

    Each nested extension is a call inside the one reading its container, so the
    levels are counted across calls (MAX_EXTENSION_DEPTH bounds the C stack, whatever
    the lists between them: msgpack reads those without recursing), and so are the
    bytes of the nested payloads, each a copy alive until its container is built
    (maxValueSize bounds them; the outermost payload is part of the body).
    """
    state = _state
    depth = state.depth
    if depth == 0:  # the common case: the payload is part of the body, not a copy to count
        state.depth = 1
        state.keyed = False  # a new value's outermost extension (see _keyed_read)
        try:
            items = _unpack_short(data) if len(data) <= _SHORT else _unpack_nested(data)
        finally:
            state.depth = 0
    else:
        if depth >= MAX_EXTENSION_DEPTH:
            raise _corrupt(f"it nests extension types more than {MAX_EXTENSION_DEPTH} levels deep.")
        outer = state.chain
        chain = outer + len(data)
        if chain > state.limit:
            raise _corrupt(
                f"its nested extension types hold {chain} bytes along one path, more than "
                f"maxValueSize ({state.limit})."
            )
        state.depth = depth + 1
        state.chain = chain
        try:
            items = _unpack_short(data) if len(data) <= _SHORT else _unpack_nested(data)
        finally:
            state.depth = depth
            state.chain = outer
    if type(items) is not list:
        raise TypeError(f"expected a list inside the extension, got {_type_name(items)}")
    return items


def _decode_datetime(data: bytes) -> _dt.datetime:
    state, zone = data[:_DATETIME_STATE], data[_DATETIME_STATE:]
    return _valid(_from_state(state, _zone(zone) if zone else None))


def _valid(value: _dt.datetime) -> _dt.datetime:
    """``value`` if its fields are in range, else ValueError.

    datetime(state, tz) is the fast constructor pickle uses; it only checks the month, so
    a poisoned state could give hour 99 or 30 February. Adding zero re-normalises every
    field (raising OverflowError for a bad year), so any out-of-range field shows up as a
    difference; == with the same tzinfo compares the fields directly.
    """
    if value + _NO_TIME == value:
        return value
    raise ValueError("the datetime has out-of-range fields")


def _decode_time(data: bytes) -> _dt.time:
    hour, minute, second, micro, fold = _TIME.unpack_from(data)
    size = _TIME.size
    tz = _zone(data[size:]) if len(data) > size else None
    return _dt.time(hour, minute, second, micro, tz, fold=fold)


def _decode_date(data: bytes) -> _dt.date:
    return _dt.date(*_DATE.unpack(data))


def _decode_timedelta(data: bytes) -> _dt.timedelta:
    days, seconds, micros = _TIMEDELTA.unpack(data)
    # timedelta's normal form, as written: timedelta() would fold 4e9 seconds into days
    # and read a payload no writer produced
    if seconds >= 86_400 or micros >= 1_000_000:
        raise ValueError("the timedelta has out-of-range fields")
    return _dt.timedelta(days, seconds, micros)


def _decode_bigint(data: bytes) -> int:
    value = int.from_bytes(data, "little", signed=True)
    if len(data) != (value.bit_length() + 8) // 8:  # _encode_int's minimal length
        raise ValueError("the big int is not in its minimal length")
    return value


_zones: dict[bytes, _dt.tzinfo] = {}


def _zone(data: bytes) -> _dt.tzinfo:
    tz = _zones.get(data)
    if tz is not None:
        return tz
    kind, rest = data[0], data[1:]
    if kind == _TZ_ZONE:
        tz = zoneinfo.ZoneInfo(rest.decode("utf-8"))
    elif kind in (_TZ_OFFSET, _TZ_NAMED):
        offset = _dt.timedelta(microseconds=_OFFSET.unpack_from(rest)[0])
        name = rest[_OFFSET.size :]
        if kind == _TZ_OFFSET:
            if name:
                raise ValueError("unexpected bytes after a time zone offset")
            tz = _dt.timezone(offset)
        else:
            tz = _dt.timezone(offset, name.decode("utf-8"))
    else:
        raise ValueError(f"unknown time zone kind {kind}")
    if len(_zones) >= _TZ_CACHE_SIZE:
        _zones.clear()
    _zones[data] = tz
    return tz


def _decode_decimal(data: bytes) -> decimal.Decimal:
    # a context that traps InvalidOperation: garbage raises instead of becoming NaN
    return decimal.Decimal(data.decode("ascii"), _STRICT_DECIMAL)


_STRICT_DECIMAL: Final = decimal.Context(traps=[decimal.InvalidOperation])


def _decode_query(data: bytes) -> Query:
    columns, rows, types = _unpack_list(data)
    if type(rows) is not list or any(type(row) is not list for row in rows):
        raise TypeError("query rows must be lists")
    return Query(tuple(columns), tuple(map(tuple, rows)), None if types is None else tuple(types))


_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    _EXT_BIGINT: _decode_bigint,
    _EXT_TUPLE: lambda data: tuple(_unpack_list(data)),
    _EXT_SET: lambda data: set(unflooded(_unpack_list(data))),
    _EXT_FROZENSET: lambda data: frozenset(unflooded(_unpack_list(data))),
    _EXT_BYTEARRAY: bytearray,
    _EXT_DECIMAL: _decode_decimal,
    _EXT_DATETIME: _decode_datetime,
    _EXT_DATE: _decode_date,
    _EXT_TIME: _decode_time,
    _EXT_TIMEDELTA: _decode_timedelta,
    _EXT_UUID: lambda data: uuid.UUID(bytes=data),
    _EXT_QUERY: _decode_query,
    _EXT_TIMESTAMP: _timestamp,
}

# --------------------------------------------------------------------------- error paths


def _locate(value: Any, found: Callable[[Any], bool]) -> str | None:
    """Where the first object ``found`` accepts sits in ``value``, like ``value['a'][3]``.

    Runs only when encoding failed, so it favours clear paths over speed.
    """
    stack: list[tuple[Any, str]] = [(value, "value")]
    seen: set[int] = set()
    while stack:
        obj, path = stack.pop()
        if found(obj):
            return path
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        children: list[tuple[Any, str]] = []
        if type(obj) is dict:
            for key, item in obj.items():
                children.append((key, f"{path}<key {_short(key)}>"))
                children.append((item, f"{path}[{_short(key)}]"))
        elif type(obj) in (list, tuple):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(obj)]
        elif type(obj) in (set, frozenset):
            children = [(item, f"{path}<set item>") for item in obj]
        elif type(obj) is Query:
            children = [
                (cell, f"{path}.rows[{r}][{c}]")
                for r, row in enumerate(obj.rows)
                for c, cell in enumerate(row)
            ]
        stack.extend(reversed(children))  # depth-first, in iteration order
    return None


_short_repr = reprlib.Repr()
_short_repr.maxstring = 40
_short_repr.maxother = 40


def _short(obj: Any) -> str:
    try:
        return _short_repr.repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{_type_name(obj)}>"


def _unencodable(obj: Any) -> bool:
    if type(obj) is not str:
        return False
    try:
        obj.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _type_name(obj: Any) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
