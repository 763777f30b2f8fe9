"""The ``value`` attribute as Lucee's DynamoDB extension writes and reads it.

Lucee documentation, "Data Types and Serialization": strings, numbers, booleans, null,
structs and arrays are stored as native DynamoDB attributes (S, N, BOOL, NULL, M, L),
binary data as B, session and client scopes as a BSON document in B, and every other
value (dates, queries, components) as gzip'd Java serialization in B.

Both directions here are plain Python with hard bounds, and nothing here ever loads or
instantiates a class:

* the Java reader understands exactly one object shape, a ``java.util.Date`` (or a
  subclass whose own fields are primitives, such as Lucee's ``DateTimeImpl``); any
  other Java object is a :class:`LuceeValueError` naming its class. Decompression stops
  at :data:`MAX_EXPANDED` bytes (a gzip bomb costs that much and no more);
* the BSON reader (BSON is the format of Lucee's session scopes) checks every length
  against the bytes actually present and stops at :data:`MAX_DEPTH` nested documents;
* writing, Python ``datetime`` values become a gzip'd serialized ``java.util.Date``,
  which Lucee reads back as a date; other non-native values are refused up front.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from cachehub.errors import CacheValueError, CorruptEntryError, SerializationError

from .convert import from_attr, plain_number, utf8_text

__all__ = [
    "LuceeValueError",
    "MAX_DEPTH",
    "MAX_EXPANDED",
    "decode_attr",
    "decode_binary",
    "encode_attr",
    "java_date",
    "read_bson",
]

MAX_DEPTH: Final = 32
"""Deepest nesting read or written (DynamoDB's own limit for M/L nesting is 32)."""
MAX_EXPANDED: Final = 1024 * 1024
"""Most bytes a gzip'd value may expand to (a DynamoDB item holds 400 KB at most)."""
MAX_NUMBER: Final = 10**38
"""DynamoDB Numbers hold 38 significant digits."""
_MAX_DIGITS: Final = 38
_MIN_ADJUSTED: Final = -130
_MAX_ADJUSTED: Final = 125
"""Decimal exponents (``Decimal.adjusted``) of the smallest and largest magnitudes a
DynamoDB Number holds: 1E-130 and 9.9999999999999999999999999999999999999E+125."""

GZIP_MAGIC: Final = b"\x1f\x8b"
JAVA_MAGIC: Final = b"\xac\xed\x00\x05"
SESSION_KEY: Final = "iksvk"
"""First key of the BSON document of a Lucee session/client scope (its last-modified ms)."""

# Java Object Serialization Stream Protocol constants.
_TC_NULL: Final = 0x70
_TC_REFERENCE: Final = 0x71
_TC_CLASSDESC: Final = 0x72
_TC_OBJECT: Final = 0x73
_TC_STRING: Final = 0x74
_TC_BLOCKDATA: Final = 0x77
_TC_ENDBLOCKDATA: Final = 0x78
_TC_BLOCKDATALONG: Final = 0x7A
_SC_WRITE_METHOD: Final = 0x01
_SC_SERIALIZABLE: Final = 0x02
_SC_EXTERNALIZABLE: Final = 0x04
_PRIMITIVE_SIZES: Final = {"B": 1, "C": 2, "D": 8, "F": 4, "I": 4, "J": 8, "S": 2, "Z": 1}
_MAX_CLASS_CHAIN: Final = 16
_MAX_FIELDS: Final = 256
_DATE_CLASS: Final = "java.util.Date"
_DATE_SUID: Final = 0x686A81014B597419
"""``serialVersionUID`` of ``java.util.Date``."""
_MIN_MS: Final = -62_135_596_800_000
"""0001-01-01T00:00:00Z in epoch milliseconds (the range a Python datetime holds)."""
_MAX_MS: Final = 253_402_300_799_999
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime, exactly (``fromtimestamp(ms / 1000)``
    goes through a float, which is microseconds off for dates after about 2242)."""
    return _EPOCH + ms * _MS


def _to_ms(value: datetime) -> int:
    """A datetime as epoch milliseconds, rounded half to even, in integers (a naive one
    is local time, as ``datetime.timestamp`` reads it)."""
    try:
        aware = value if value.tzinfo is not None else value.astimezone()
        micros = (aware - _EPOCH) // timedelta(microseconds=1)
    except (OverflowError, ValueError):  # a naive datetime at the ends of the range
        raise CacheValueError(
            f"the datetime {value.isoformat()[:40]} is out of range once made aware.",
            hint="store an aware datetime (tzinfo=UTC) between the years 1 and 9999.",
        ) from None
    ms, rest = divmod(micros, 1000)
    return ms + (rest > 500 or (rest == 500 and ms % 2 == 1))


class LuceeValueError(Exception):
    """A Lucee-format value that cannot be read or written; ``str()`` says what was seen.

    Internal: the cache turns it into a typed :class:`~cachehub.errors.CacheError`
    naming the key (``ForeignEntryError`` when reading).
    """


# ---------------------------------------------------------------------- writing


def encode_attr(value: Any, depth: int = 0) -> dict[str, Any]:
    """A Python value as the ``value`` attribute Lucee's ``Coder`` would write for it.

    str/int/float/Decimal/bool/None/dict/list/tuple/bytes map to S/N/N/N/BOOL/NULL/M/L/L/B;
    ``datetime`` to a gzip'd serialized ``java.util.Date`` in B. Anything else raises
    :class:`~cachehub.errors.SerializationError`.
    """
    if depth > MAX_DEPTH:
        raise CacheValueError(
            f"the value nests deeper than {MAX_DEPTH} levels, DynamoDB's limit.",
            hint="flatten the value, or store it with the default itemFormat.",
        )
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": utf8_text(value, "a string")}
    if isinstance(value, int):
        if not -MAX_NUMBER < value < MAX_NUMBER:
            raise CacheValueError(
                f"the int has {len(str(abs(value)))} digits; DynamoDB Numbers hold 38.",
                hint="store very large ints as strings in the Lucee item format.",
            )
        return {"N": int.__repr__(value)}  # an int subclass's own __str__ is not a Number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheValueError(
                f"DynamoDB numbers cannot be {value!r}.",
                hint="store NaN/infinity as a string, or leave the attribute out.",
            )
        # Lucee's caster prints a whole double without its ".0" (3.0 -> "3").
        whole = value.is_integer() and abs(value) < 1e16
        return {"N": _in_range(str(int(value)) if whole else float.__repr__(value), "float")}
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CacheValueError(
                f"DynamoDB numbers cannot be {value}.", hint="store it as a string instead."
            )
        return {"N": _in_range(str(value), "Decimal")}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"a dict key of type {type(key).__name__} cannot be a Lucee struct key.",
                    hint="use str keys in values stored with itemFormat 'lucee'.",
                )
            out[utf8_text(key, "a struct key")] = encode_attr(item, depth + 1)
        return {"M": out}
    if isinstance(value, (list, tuple)):
        return {"L": [encode_attr(item, depth + 1) for item in value]}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"B": bytes(value)}
    if isinstance(value, datetime):
        return {"B": java_date(_to_ms(value))}
    if isinstance(value, date):
        raise SerializationError(
            "a date without a time has no Lucee counterpart.",
            hint="store a datetime (e.g. datetime(d.year, d.month, d.day, tzinfo=UTC)) "
            "or an ISO string.",
        )
    raise SerializationError(
        f"a {type(value).__name__} cannot be stored in the Lucee item format "
        "(Lucee reads native DynamoDB types, dates and binary only).",
        hint="convert it to str, number, bool, None, dict, list, bytes or datetime, "
        "or use the default itemFormat.",
    )


def _in_range(number: str, kind: str) -> str:
    """``number`` if a DynamoDB Number holds it, else :class:`CacheValueError`.

    Checked here because nobody else does: moto stores ``1e+200`` and then fails every
    Scan of the table with an HTTP 500, and DynamoDB refuses the whole request. The
    limits are DynamoDB's ("Supported data types", Number): magnitudes 1E-130 to
    9.99...E+125, 38 significant digits (leading and trailing zeros trimmed).
    """
    parsed = Decimal(number)
    digits = "".join(map(str, parsed.as_tuple().digits)).strip("0")
    if not digits:  # zero, in any spelling
        return number
    if len(digits) > _MAX_DIGITS or not _MIN_ADJUSTED <= parsed.adjusted() <= _MAX_ADJUSTED:
        shown = number if len(number) <= 40 else f"{number[:20]}...{number[-12:]}"
        raise CacheValueError(
            f"the {kind} {shown} does not fit a DynamoDB Number (magnitude 1E-130 to "
            "9.99E+125, at most 38 significant digits).",
            hint="store it as a string (str(x)) in the Lucee item format, or round it into range.",
        )
    return number


def _utf(text: str) -> bytes:
    raw = text.encode()  # modified UTF-8 equals UTF-8 for the ASCII names written here
    return struct.pack(">H", len(raw)) + raw


def _gzip_like_java(data: bytes) -> bytes:
    """gzip as ``java.util.zip.GZIPOutputStream`` writes it: fixed 10-byte header
    (mtime 0, OS 0), default-level deflate, CRC-32 and size trailer."""
    deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x00" + body + trailer


def java_date(ms: int) -> bytes:
    """A gzip'd Java serialization of ``new java.util.Date(ms)``, as Lucee's ``Coder``
    compresses values it cannot store natively."""
    if not _MIN_MS <= ms <= _MAX_MS:
        raise CacheValueError(
            f"the datetime is out of range ({ms} ms since the epoch).",
            hint="store datetimes between the years 1 and 9999.",
        )
    stream = (
        JAVA_MAGIC
        + bytes([_TC_OBJECT, _TC_CLASSDESC])
        + _utf(_DATE_CLASS)
        + struct.pack(">QBH", _DATE_SUID, _SC_WRITE_METHOD | _SC_SERIALIZABLE, 0)
        + bytes([_TC_ENDBLOCKDATA, _TC_NULL])
        # Date.writeObject: the time as one long in a block, then the end marker.
        + bytes([_TC_BLOCKDATA, 8])
        + struct.pack(">q", ms)
        + bytes([_TC_ENDBLOCKDATA])
    )
    return _gzip_like_java(stream)


# ---------------------------------------------------------------------- reading


def decode_attr(attr: Mapping[str, Any], depth: int = 0) -> Any:
    """A Lucee ``value`` attribute as a Python value (see :func:`encode_attr`).

    Numbers come back as int, float (when exact) or Decimal; B as :func:`decode_binary`
    reads it. Raises :class:`LuceeValueError` for anything Lucee does not write.
    """
    if depth > MAX_DEPTH:
        raise LuceeValueError(f"attribute nests deeper than {MAX_DEPTH} levels")
    if not isinstance(attr, Mapping) or len(attr) != 1:
        raise LuceeValueError("attribute value is not a single typed DynamoDB value")
    ((kind, raw),) = attr.items()
    if kind == "S" and isinstance(raw, str):
        return raw
    if kind == "NULL":
        return None
    if kind == "BOOL" and isinstance(raw, bool):
        return raw
    if kind == "N":
        try:
            number = Decimal(str(raw))
        except InvalidOperation:
            raise LuceeValueError(f"N attribute {str(raw)[:40]!r} is not a number") from None
        if not number.is_finite():
            raise LuceeValueError(f"N attribute {str(raw)[:40]!r} is not a finite number")
        return plain_number(number)
    if kind == "M" and isinstance(raw, Mapping):
        return {str(k): decode_attr(v, depth + 1) for k, v in raw.items()}
    if kind == "L" and isinstance(raw, list):
        return [decode_attr(v, depth + 1) for v in raw]
    if kind == "B" and isinstance(raw, (bytes, bytearray)):
        return decode_binary(bytes(raw))
    if kind in ("SS", "NS", "BS") and isinstance(raw, list):
        try:  # sets: no Lucee writer makes them, but other tools may
            return from_attr(attr)  # CorruptEntryError: a hash-flooding number set
        except (TypeError, ValueError, ArithmeticError, CorruptEntryError) as exc:
            raise LuceeValueError(f"{kind} attribute cannot be read ({exc})") from None
    raise LuceeValueError(f"attribute of type {kind!r} holding {type(raw).__name__}")


def decode_binary(data: bytes, depth: int = 0) -> Any:
    """A B value, tried in the order Lucee's ``Coder`` tries it.

    gzip -> Java serialization (a date); a Java object stream -> the same; BSON -> a dict
    (a session scope reads as ``{name: value}``); anything else: the bytes themselves.
    """
    if data[:2] == GZIP_MAGIC:
        return read_java(_gunzip(data))
    if data[:4] == JAVA_MAGIC:
        return read_java(data)
    if data[-1:] == b"\x00" and len(data) >= 5:
        try:
            document = read_bson(data, depth)
        except LuceeValueError:
            return data  # not BSON: Lucee's last resort is the bytes (as a string)
        if document and next(iter(document)) == SESSION_KEY:
            return _session(document)
        return document
    return data


def _gunzip(data: bytes) -> bytes:
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(data, MAX_EXPANDED + 1)
    except zlib.error as exc:
        raise LuceeValueError(f"gzip'd value is damaged ({exc})") from None
    if len(out) > MAX_EXPANDED:
        raise LuceeValueError(f"gzip'd value expands beyond {MAX_EXPANDED} bytes")
    if not inflate.eof:
        raise LuceeValueError("gzip'd value is truncated")
    return out


def _session(document: dict[str, Any]) -> dict[str, Any]:
    """A Lucee session/client scope: ``{name: [lastModified ms, value]}`` -> ``{name: value}``."""
    scope: dict[str, Any] = {}
    for name, item in list(document.items())[1:]:
        if not isinstance(item, list) or len(item) != 2:
            raise LuceeValueError(f"session scope item {name[:40]!r} is not [time, value]")
        scope[name] = item[1]
    return scope


class _Reader:
    """Bounds-checked big/little-endian reads over ``data``."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise LuceeValueError(f"{self.what} is truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]


# ------------------------------------------------------------------ Java serialization


def read_java(data: bytes) -> datetime:
    """The date in a Java object stream; :class:`LuceeValueError` for any other object."""
    reader = _Reader(data, "Java serialized value")
    if reader.take(4) != JAVA_MAGIC:
        raise LuceeValueError("gzip'd value is not a Java object stream")
    if reader.byte() != _TC_OBJECT:
        raise LuceeValueError("Java stream does not hold an object")
    chain = _class_chain(reader)  # most derived first
    if not chain:  # TC_OBJECT then TC_NULL: an object of no class, no Java writer's
        raise LuceeValueError("Java stream holds an object without a class description")
    names = [name for name, _, _ in chain]
    if _DATE_CLASS not in names:
        raise LuceeValueError(f"a Java object of class {names[0]} (only dates are read)")
    ms: int | None = None
    for name, flags, fields in reversed(chain):  # class data: superclass first
        for code in fields:
            reader.take(_PRIMITIVE_SIZES[code])
        if flags & _SC_WRITE_METHOD:
            block = _block_data(reader, names[0])
            if name == _DATE_CLASS:
                if len(block) < 8:
                    raise LuceeValueError("java.util.Date holds no time")
                ms = struct.unpack(">q", block[:8])[0]
    if ms is None or not _MIN_MS <= ms <= _MAX_MS:
        raise LuceeValueError(f"{names[0]} holds no time in the datetime range")
    return _from_ms(ms)


def _class_chain(reader: _Reader) -> list[tuple[str, int, list[str]]]:
    """``[(class name, flags, primitive field type codes)]`` from the class to its root."""
    chain: list[tuple[str, int, list[str]]] = []
    while True:
        tag = reader.byte()
        if tag == _TC_NULL:
            return chain
        if tag != _TC_CLASSDESC or len(chain) >= _MAX_CLASS_CHAIN:
            raise LuceeValueError("Java stream has a class description cachehub cannot read")
        name = reader.take(reader.unpack(">H")).decode("utf-8", "replace")
        reader.take(8)  # serialVersionUID
        flags = reader.byte()
        count = reader.unpack(">H")
        if flags & _SC_EXTERNALIZABLE or not flags & _SC_SERIALIZABLE or count > _MAX_FIELDS:
            raise LuceeValueError(f"a Java object of class {name[:200]} (only dates are read)")
        fields: list[str] = []
        for _ in range(count):
            code = chr(reader.byte())
            reader.take(reader.unpack(">H"))  # field name
            if code not in _PRIMITIVE_SIZES:  # an object field: not a plain date
                raise LuceeValueError(f"a Java object of class {name[:200]} (only dates are read)")
            fields.append(code)
        if reader.byte() != _TC_ENDBLOCKDATA:  # class annotations: none for plain classes
            raise LuceeValueError(f"Java class {name[:200]} carries annotations")
        chain.append((name, flags, fields))


def _block_data(reader: _Reader, cls: str) -> bytes:
    """The block data a ``writeObject`` method wrote, up to its end marker."""
    out = b""
    while True:
        tag = reader.byte()
        if tag == _TC_ENDBLOCKDATA:
            return out
        if tag == _TC_BLOCKDATA:
            out += reader.take(reader.byte())
        elif tag == _TC_BLOCKDATALONG:
            out += reader.take(reader.unpack(">i"))
        else:  # objects written by writeObject: not a plain date
            raise LuceeValueError(f"a Java object of class {cls[:200]} (only dates are read)")


# ---------------------------------------------------------------------- BSON


def read_bson(data: bytes, depth: int = 0) -> dict[str, Any]:
    """One BSON document (the whole of ``data``) as a dict; strict and bounded."""
    reader = _Reader(data, "BSON document")
    document: dict[str, Any] = _bson_document(reader, depth)
    if reader.pos != len(data):
        raise LuceeValueError("BSON document has trailing bytes")
    return document


def _bson_document(reader: _Reader, depth: int, array: bool = False) -> Any:
    if depth > MAX_DEPTH:
        raise LuceeValueError(f"BSON nests deeper than {MAX_DEPTH} levels")
    start = reader.pos
    size = reader.unpack("<i")
    end = start + size
    if size < 5 or end > len(reader.data) or reader.data[end - 1] != 0:
        raise LuceeValueError("BSON document length is wrong")
    out: dict[str, Any] = {}
    while reader.pos < end - 1:
        kind = reader.byte()
        name_end = reader.data.find(b"\x00", reader.pos, end)
        if name_end < 0:
            raise LuceeValueError("BSON element name is not terminated")
        name = reader.take(name_end - reader.pos).decode("utf-8", "replace")
        reader.take(1)
        out[name] = _bson_value(reader, kind, depth)
    if reader.pos != end - 1:
        raise LuceeValueError("BSON element runs past its document")
    reader.take(1)
    return list(out.values()) if array else out


def _bson_value(reader: _Reader, kind: int, depth: int) -> Any:
    if kind == 0x01:
        return reader.unpack("<d")
    if kind == 0x02:
        size = reader.unpack("<i")
        raw = reader.take(size)
        if size < 1 or raw[-1] != 0:
            raise LuceeValueError("BSON string is malformed")
        return raw[:-1].decode("utf-8", "replace")
    if kind in (0x03, 0x04):
        return _bson_document(reader, depth + 1, array=kind == 0x04)
    if kind == 0x05:
        size = reader.unpack("<i")
        reader.byte()  # subtype
        raw = reader.take(size)
        # Lucee's BSON reader decodes gzip'd and plain Java objects; other bytes stay bytes.
        return decode_binary(raw) if raw[:2] == GZIP_MAGIC or raw[:4] == JAVA_MAGIC else raw
    if kind == 0x07:
        return reader.take(12).hex()
    if kind == 0x08:
        return reader.byte() != 0
    if kind == 0x09:
        ms = reader.unpack("<q")
        if not _MIN_MS <= ms <= _MAX_MS:
            raise LuceeValueError("BSON date is out of range")
        return _from_ms(ms)
    if kind == 0x0A:
        return None
    if kind == 0x10:
        return reader.unpack("<i")
    if kind in (0x11, 0x12):
        return reader.unpack("<q")
    if kind == 0x13:
        return _decimal128(reader.take(16))
    raise LuceeValueError(f"BSON type 0x{kind:02x} is not one Lucee writes")


def _decimal128(raw: bytes) -> Decimal:
    """An IEEE 754-2008 decimal128 (BID encoding, as BSON stores ``BigDecimal``)."""
    bits = int.from_bytes(raw, "little")
    sign = bits >> 127
    if (bits >> 122) & 0x1F in (0x1E, 0x1F):
        raise LuceeValueError("BSON decimal is infinite or NaN")
    if (bits >> 125) & 0x3 == 0x3:  # large-significand form: always non-canonical (> 10**34)
        exponent, significand = (bits >> 111) & 0x3FFF, 0
    else:
        exponent, significand = (bits >> 113) & 0x3FFF, bits & ((1 << 113) - 1)
    if significand >= 10**34:
        significand = 0
    digits = tuple(int(d) for d in str(significand))
    return Decimal((sign, digits, exponent - 6176))
