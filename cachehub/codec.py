"""Value codecs: how cache values become bytes, and back.

Two codecs exist (see ``docs/codec.md`` for the byte format and the type table):

* :class:`SafeCodec` (``codec: safe``, the default) stores values as msgpack, with
  extension types for the Python types msgpack lacks. Values come back exactly, type
  included. It never unpickles and never runs code found in stored bytes. ormsgpack
  (Rust) packs and unpacks; msgpack (C) reads what ormsgpack cannot: maps with
  non-str keys, and the Timestamps of entries written before ormsgpack.
* :class:`PickleCodec` (``codec: pickle``) stores any picklable value, signed with
  HMAC-SHA256 under the cache's ``signingKey``; the signature is checked before anything
  is unpickled. It also reads safe-codec entries, so enabling it keeps old entries.

Every payload starts with one format byte (``FORMAT_*``), so bytes that cachehub did not
write (a planted pickle, another tool's data, truncated or random bytes) are rejected
with :class:`~cachehub.errors.CorruptEntryError`, never decoded blindly.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import gc
import hmac
import itertools
import pickle
import reprlib
import secrets
import struct
import threading
import uuid
import zlib
import zoneinfo
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

import msgpack
import ormsgpack

from .errors import ConfigError, CorruptEntryError, SerializationError
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
    "MAX_DECOMPRESSED_SIZE",
    "MIN_SIGNING_KEY_LENGTH",
]

FORMAT_SAFE: Final = 0x01
"""Format byte: msgpack body."""
FORMAT_SAFE_ZLIB: Final = 0x02
"""Format byte: zlib-compressed msgpack body."""
FORMAT_PICKLE: Final = 0x03
"""Format byte: 32-byte HMAC-SHA256 tag, then a pickle (protocol 5)."""
FORMAT_PICKLE_ZLIB: Final = 0x04
"""Format byte: 32-byte HMAC-SHA256 tag, then a zlib-compressed pickle."""

MAX_DECOMPRESSED_SIZE: Final = 64 * 1024 * 1024
"""Largest body a compressed payload may inflate to; more is treated as a zip bomb."""
MIN_SIGNING_KEY_LENGTH: Final = 16
"""Shortest ``signingKey`` the pickle codec accepts."""

_TAG_SIZE: Final = 32  # HMAC-SHA256 digest
_ZLIB_LEVEL: Final = 1  # cache values are read far more often than written; favour speed
_MIN_SAVING_SHIFT: Final = 3  # compress only when it saves at least 1/8 (see _worth_it)
_SCALARS: Final = frozenset({str, bytes, int, float, bool, type(None)})
_TZ_CACHE_SIZE: Final = 256

# --------------------------------------------------------------------------- the protocol


class Codec(Protocol):
    """Turns cache values into bytes and back. Built by :func:`make_codec`."""

    name: str
    """The codec's setting value: ``"safe"`` or ``"pickle"``."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raises :class:`SerializationError` if it cannot be stored."""

    def loads(self, data: bytes) -> Any:
        """Decode stored bytes; raises :class:`CorruptEntryError` if they are not valid."""


def make_codec(name: str, *, signing_key: str | None = None, compress_threshold: int = 0) -> Codec:
    """Build the codec a cache's settings ask for.

    Args:
        name: ``"safe"`` (default; never unpickles) or ``"pickle"`` (opt-in, signed).
        signing_key: the HMAC key of the pickle codec; at least 16 characters. Ignored by
            the safe codec.
        compress_threshold: payloads larger than this many bytes are zlib-compressed;
            0 disables compression.

    Raises:
        ConfigError: unknown codec name, negative threshold, or a missing or short
            signing key for the pickle codec.
    """
    if isinstance(compress_threshold, bool) or not isinstance(compress_threshold, int):
        raise ConfigError(
            f"compressThreshold must be an integer, got {type(compress_threshold).__name__}.",
            hint="set compressThreshold to a byte count, e.g. 4096, or 0 to disable.",
        )
    if compress_threshold < 0:
        raise ConfigError(
            f"compressThreshold must be 0 or more, got {compress_threshold}.",
            hint="set compressThreshold to a byte count, e.g. 4096, or 0 to disable.",
        )
    if name == "safe":
        return SafeCodec(compress_threshold=compress_threshold)
    if name == "pickle":
        return PickleCodec(signing_key, compress_threshold=compress_threshold)
    raise ConfigError(
        f"unknown codec {name!r}.",
        hint="set codec to 'safe' (the default) or 'pickle' (which also needs signingKey).",
    )


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
        max_decompressed_size: reject compressed payloads that inflate beyond this.
    """

    __slots__ = ("compress_threshold", "max_decompressed_size")
    name: str = "safe"

    def __init__(
        self, *, compress_threshold: int = 0, max_decompressed_size: int = MAX_DECOMPRESSED_SIZE
    ) -> None:
        self.compress_threshold = compress_threshold
        self.max_decompressed_size = max_decompressed_size

    def __repr__(self) -> str:
        return f"SafeCodec(compress_threshold={self.compress_threshold})"

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as a safe payload.

        Raises:
            SerializationError: the value holds a type the safe codec cannot store; the
                message names the type and where it sits inside the value.
        """
        try:  # one call, then a look at the bytes: this is the hot path of every write
            body = _packb(value, _default, _PACK_OPTIONS)
        except TypeError as refusal:
            body = _encode(value, None, refusal)
        else:
            # no bin 8/16/32 header byte: no bytearray or memoryview inside (see _survey)
            if type(value) not in _SCALARS and (0xC4 in body or 0xC5 in body or 0xC6 in body):
                body = _encode(value, body)
        if 0 < self.compress_threshold < len(body) <= self.max_decompressed_size:
            packed = zlib.compress(body, _ZLIB_LEVEL)
            if _worth_it(packed, body):
                return _SAFE_ZLIB + packed
        return _SAFE + body

    def loads(self, data: bytes) -> Any:
        """Decode a safe payload.

        Raises:
            CorruptEntryError: the bytes are not a safe payload (wrong or missing format
                byte, truncated, garbage, a pickle, too large when inflated).
        """
        if type(data) is bytes and data[:1] == _SAFE:  # the common case, checked cheaply
            try:  # _decode inlined: this is the hot path of every read
                framed = _unpackb(b"".join((_OPEN, data, _END)), ext_hook=_ext_hook)
            except Exception:
                return _undecided(data, _OPEN)
            if framed[2] == _END_MARK:
                return framed[1]
            return _undecided(data, _OPEN)
        view = _view(data, "safe")
        marker = view[0]
        if marker == FORMAT_SAFE:
            return _decode(view[1:])
        if marker == FORMAT_SAFE_ZLIB:
            return _decode(_inflate(view[1:], self.max_decompressed_size))
        if marker in (FORMAT_PICKLE, FORMAT_PICKLE_ZLIB):
            raise _corrupt(
                "it was written by the pickle codec, and the safe codec never unpickles.",
                hint="if you trust the writer, set codec: pickle with the same signingKey "
                "on this cache; otherwise delete the entry.",
            )
        raise _foreign(marker)


class PickleCodec:
    """Opt-in codec for arbitrary picklable values, signed with HMAC-SHA256.

    Each payload carries an HMAC-SHA256 tag over its format byte and body, computed with
    ``signing_key``; :meth:`loads` checks it with :func:`hmac.compare_digest` before
    unpickling, so only bytes written by a holder of the key are ever unpickled. It also
    reads :class:`SafeCodec` payloads. The key never appears in messages or ``repr()``.

    Args:
        signing_key: the secret HMAC key, at least :data:`MIN_SIGNING_KEY_LENGTH` chars.
        compress_threshold: compress payloads larger than this many bytes (0: never).
        max_decompressed_size: reject compressed payloads that inflate beyond this.

    Raises:
        ConfigError: the key is missing, not a string, or too short.
    """

    __slots__ = ("_key", "_safe", "compress_threshold", "max_decompressed_size")
    name: str = "pickle"

    def __init__(
        self,
        signing_key: str | None,
        *,
        compress_threshold: int = 0,
        max_decompressed_size: int = MAX_DECOMPRESSED_SIZE,
    ) -> None:
        hint = (
            "set `signingKey` in the cache's custom settings to a random secret of at least "
            f"{MIN_SIGNING_KEY_LENGTH} characters (e.g. signingKey: ${{CACHE_SIGNING_KEY}}), "
            "or use codec: safe."
        )
        if signing_key is None or signing_key == "":
            raise ConfigError("codec 'pickle' needs a signingKey, and none is set.", hint=hint)
        if not isinstance(signing_key, str):
            raise ConfigError(
                f"signingKey must be a string, got {type(signing_key).__name__}.", hint=hint
            )
        if len(signing_key) < MIN_SIGNING_KEY_LENGTH:
            raise ConfigError(
                f"signingKey is shorter than {MIN_SIGNING_KEY_LENGTH} characters.", hint=hint
            )
        self._key = signing_key.encode("utf-8", "surrogatepass")
        self._safe = SafeCodec(max_decompressed_size=max_decompressed_size)
        self.compress_threshold = compress_threshold
        self.max_decompressed_size = max_decompressed_size

    def __repr__(self) -> str:
        return f"PickleCodec(signing_key=<hidden>, compress_threshold={self.compress_threshold})"

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value`` (protocol 5) and sign it.

        Raises:
            SerializationError: pickle cannot store the value (a lambda, a lock...).
        """
        try:
            body = pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickle raises many types (PicklingError, TypeError...)
            raise SerializationError(
                f"the pickle codec cannot store this {_type_name(value)} ({_describe(exc)}).",
                hint="store a picklable value: module-level classes and functions, "
                "no lambdas, open files, locks or sockets.",
            ) from exc
        marker = _PICKLE
        if 0 < self.compress_threshold < len(body) <= self.max_decompressed_size:
            packed = zlib.compress(body, _ZLIB_LEVEL)
            if _worth_it(packed, body):
                marker, body = _PICKLE_ZLIB, packed
        return marker + self._sign(marker, body) + body

    def loads(self, data: bytes) -> Any:
        """Verify and unpickle a payload; safe payloads are decoded by the safe codec.

        Raises:
            CorruptEntryError: a bad or missing signature (tampered, or signed with
                another key; nothing is unpickled then), or bytes cachehub did not write.
        """
        view = _view(data, "pickle")
        marker = view[0]
        if marker in (FORMAT_SAFE, FORMAT_SAFE_ZLIB):
            return self._safe.loads(data)
        if marker not in (FORMAT_PICKLE, FORMAT_PICKLE_ZLIB):
            raise _foreign(marker)
        if len(view) < 1 + _TAG_SIZE:
            raise _corrupt(
                f"the signed pickle is truncated ({len(view)} bytes, no full signature)."
            )
        tag, body = view[1 : 1 + _TAG_SIZE], view[1 + _TAG_SIZE :]
        if not hmac.compare_digest(tag, self._sign(view[:1], body)):
            raise _corrupt(
                "its HMAC signature does not match: the bytes were altered, or signed with "
                "a different signingKey. Nothing was unpickled.",
                hint="use the signingKey that wrote the entry, or delete the entry.",
            )
        if marker == FORMAT_PICKLE_ZLIB:
            body = memoryview(_inflate(body, self.max_decompressed_size))
        try:
            return pickle.loads(body)  # noqa: S301 - HMAC-verified above
        except Exception as exc:  # signed, so ours: most likely a class moved or changed
            raise _corrupt(
                f"the signed pickle could not be loaded ({_describe(exc)}).",
                hint="a class it references may have been renamed or removed; "
                "delete the entry so it is recomputed.",
            ) from exc

    def _sign(self, marker: bytes | memoryview, body: bytes | memoryview) -> bytes:
        mac = hmac.new(self._key, marker, "sha256")
        mac.update(body)
        return mac.digest()


_SAFE: Final = bytes([FORMAT_SAFE])
_SAFE_ZLIB: Final = bytes([FORMAT_SAFE_ZLIB])
_PICKLE: Final = bytes([FORMAT_PICKLE])
_PICKLE_ZLIB: Final = bytes([FORMAT_PICKLE_ZLIB])

# --------------------------------------------------------------------------- framing helpers


def _worth_it(packed: bytes, body: bytes) -> bool:
    """Whether storing ``packed`` instead of ``body`` saves at least 1/8 of the bytes.

    Below that, the inflate on every read costs more than the few bytes are worth, and
    incompressible data (already compressed images, random tokens) stays as it is.
    """
    return len(packed) <= len(body) - (len(body) >> _MIN_SAVING_SHIFT)


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
            f"0x{FORMAT_SAFE:02x}-0x{FORMAT_PICKLE_ZLIB:02x}): it was written by another "
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
_EXT_TIMESTAMP: Final = -1  # msgpack's own; read, no longer written (see _timestamp)
_DateTime: Final = _dt.datetime

_DATETIME_STATE: Final = 10  # bytes of pickle's datetime state, see docs/codec.md
_NO_TIME: Final = _dt.timedelta(0)
_Reduced = tuple[Any, tuple[bytes, ...]]
# datetime(state, tzinfo): the constructor pickle uses, typeshed does not know this form
_from_state: Final = cast(Callable[[bytes, _dt.tzinfo | None], _dt.datetime], _dt.datetime)
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


class _State(threading.local):
    """Per-thread state of the hooks that ormsgpack calls back (see _default, _ext_hook)."""

    failure: BaseException | None = None  # what the last hook raised: ormsgpack drops it
    depth = 0  # extension types being decoded, one inside the other
    packing = 0  # extension types being encoded, one inside the other
    slow = False  # decoding with msgpack: nested extension types use it too


_state: Final = _State()


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
        buffers = _survey(value)
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
    try:
        return _pack_once(obj)
    except TypeError as exc:
        # Retried only for a dict with a non-str key: any other failure (from this level
        # or raised again from a nested extension) would fail again, and retrying it at
        # every extension level would double the work per level.
        if type(exc) is not TypeError or str(exc) != _NON_STR_KEY:
            raise
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


def _default(obj: Any) -> ormsgpack.Ext:
    """ormsgpack's hook for everything it does not pack itself (see _PACK_OPTIONS)."""
    try:
        if type(obj) is _DateTime:  # the most common extension type: inlined
            # pickle's 10-byte datetime state (docs/codec.md): the cheapest way to the fields
            state: bytes = cast(_Reduced, obj.__reduce_ex__(4))[1][0]
            tz = obj.tzinfo
            return _Ext(_EXT_DATETIME, state if tz is None else state + _zone_bytes(tz, obj))
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

    Each such call restarts ormsgpack's nesting count, so the extension levels are
    counted here, with the decoder's bound: nothing is stored that cannot be read.
    """
    state = _state
    depth = state.packing
    if depth >= _MAX_EXT_DEPTH:
        raise SerializationError(
            f"the value has tuples, sets or queries nested more than {_MAX_EXT_DEPTH} "
            "levels deep, or contains itself.",
            hint="store a flatter, acyclic structure.",
        )
    state.packing = depth + 1
    try:
        return _Ext(code, _pack(items))
    finally:
        state.packing = depth


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

_MAX_EXT_DEPTH: Final = 64  # tuples, sets, queries nested; the decoder has the same bound
_MAX_NESTING: Final = 255  # lists and dicts nested inside one of those (ormsgpack's bound)
_SURVEY_LEVELS: Final = _MAX_NESTING + _MAX_EXT_DEPTH + 1  # then see _walk_deep


def _survey(value: Any) -> set[type]:
    """The buffer types ``value`` holds; raises if it contains itself."""
    level: Any = (value,)
    found_buffers: set[type] = set()
    for _ in range(_SURVEY_LEVELS):
        found = set(map(type, level))
        if found <= _WALKABLE:  # the usual level: builtin containers and scalars
            if found <= _LEAVES:  # the usual last level: only scalars
                return found_buffers
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


class _Slow(Exception):
    """ormsgpack could not decode the body: msgpack decodes it."""


def _decode(body: bytes | memoryview, opening: bytes = _OPEN_BARE) -> Any:
    """Decode a safe body (``opening`` is _OPEN if ``body`` starts with its format byte)."""
    try:
        framed = _unpackb(b"".join((opening, body, _END)), ext_hook=_ext_hook)
    except Exception:
        return _undecided(body, opening)
    if framed[2] != _END_MARK:  # bytes after the body, which took the end mark's place
        return _undecided(body, opening)
    return framed[1]


def _undecided(body: bytes | memoryview, opening: bytes) -> Any:
    """Decode ``body`` after ormsgpack failed: a hook's verdict stands, msgpack decides the rest."""
    failure = _hook_failure()
    if failure is not None and type(failure) is not _Slow:
        if isinstance(failure, CorruptEntryError) or not isinstance(failure, Exception):
            raise failure from None
        raise _corrupt(f"its msgpack body is invalid ({_describe(failure)}).") from failure
    if opening is _OPEN:
        body = memoryview(body)[1:]
    _state.slow = True
    try:
        return _slow_unpack(body)
    except CorruptEntryError:
        raise
    except Exception as exc:  # any failure means the bytes are not what cachehub wrote
        raise _corrupt(f"its msgpack body is invalid ({_describe(exc)}).") from exc
    finally:
        _state.slow = False
        _state.failure = None  # msgpack raised the hooks' exceptions itself


def _unpack(data: bytes | memoryview, opening: bytes = _OPEN_BARE) -> Any:
    """One msgpack object read by ormsgpack; raises _Slow when it cannot decide."""
    try:
        framed = _unpackb(b"".join((opening, data, _END)), ext_hook=_ext_hook)
    except Exception:
        failure = _hook_failure()
        if failure is not None:  # the hook's verdict stands, whichever library reads
            raise failure from None
        raise _Slow from None  # a non-str map key, invalid bytes...: msgpack decides
    if framed[2] != _END_MARK:  # bytes after the body, which took the end mark's place
        raise _Slow
    return framed[1]


def _slow_unpack(data: bytes | memoryview) -> Any:
    # timestamp=3: msgpack's Timestamp extension (-1) decodes to a datetime in timezone.utc
    return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, timestamp=3)


def _ext_hook(code: int, data: bytes) -> Any:
    try:
        decode = _DECODERS.get(code)
        if decode is None:
            raise _corrupt(f"it holds an unknown extension type {code}.")
        return decode(data)
    except BaseException as exc:
        _state.failure = exc  # ormsgpack drops it: see _hook_failure
        raise


def _timestamp(data: bytes) -> Any:
    # msgpack's Timestamp (-1), written for UTC datetimes before cachehub used ormsgpack:
    # msgpack decodes it (with timestamp=3 it never reaches this hook)
    raise _Slow


def _unpack_list(data: bytes) -> list[Any]:
    # Each nested unpack costs C stack: poisoned bytes nesting tuples thousands deep would
    # overflow it, so the depth is bounded like the encoder's.
    state = _state
    depth = state.depth
    if depth >= _MAX_EXT_DEPTH:
        raise ValueError(f"extension types are nested more than {_MAX_EXT_DEPTH} levels deep")
    state.depth = depth + 1
    try:
        items = _slow_unpack(data) if state.slow else _unpack(data)
    finally:
        state.depth = depth
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
    return _dt.timedelta(*_TIMEDELTA.unpack(data))


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
    _EXT_BIGINT: lambda data: int.from_bytes(data, "little", signed=True),
    _EXT_TUPLE: lambda data: tuple(_unpack_list(data)),
    _EXT_SET: lambda data: set(_unpack_list(data)),
    _EXT_FROZENSET: lambda data: frozenset(_unpack_list(data)),
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
