"""Malformed Java and BSON streams in Lucee ``value`` attributes: every one is a typed
per-entry error (``LuceeValueError`` inside, ``ForeignEntryError`` out of the cache),
never an exception that aborts ``get_all``, ``migrate`` or ``from-lucee`` of the table.

Before the fix, ``ac ed 00 05 73 70`` (a Java object with no class description) raised
``IndexError`` from the Java reader, and every whole-table read died on it.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.errors import ForeignEntryError
from cachehub_dynamodb.lucee import LuceeDynamoDBCache, convert_from_lucee
from cachehub_dynamodb.lucee_values import (
    LuceeValueError,
    decode_attr,
    decode_binary,
    java_date,
    read_bson,
    read_java,
)
from cachehub_memory import MemoryCache
from hypothesis import given, settings
from hypothesis import strategies as st

from cachehub.migration import migrate
from cachehub.testing import FakeClock

T0 = 1_700_000_000.25
NO_CLASS: bytes = b"\xac\xed\x00\x05\x73\x70"
"""A Java stream holding TC_OBJECT then TC_NULL: an object without a class description."""

Make = Callable[..., DynamoDBCache]


def _bson(elements: list[bytes]) -> bytes:
    body = b"".join(elements) + b"\x00"
    return struct.pack("<i", len(body) + 4) + body


def _el(kind: int, name: str, payload: bytes) -> bytes:
    return bytes([kind]) + name.encode() + b"\x00" + payload


def _bstr(text: str) -> bytes:
    raw = text.encode() + b"\x00"
    return struct.pack("<i", len(raw)) + raw


JAVA = gzip.decompress(java_date(1_700_000_000_000))
CART = _bson([_el(0x12, "0", struct.pack("<q", 5)), _el(0x02, "1", _bstr("x"))])
SESSION = _bson(
    [
        _el(0x12, "iksvk", struct.pack("<q", 1)),
        _el(0x04, "cart", CART),
    ]
)
EVERY_TYPE = _bson(
    [
        _el(0x13, "d", bytes(16)),
        _el(0x09, "t", struct.pack("<q", 0)),
        _el(0x05, "b", struct.pack("<i", 3) + b"\x00abc"),
        _el(0x05, "j", struct.pack("<i", len(JAVA)) + b"\x00" + JAVA),
        _el(0x01, "f", struct.pack("<d", 1.5)),
        _el(0x07, "o", bytes(12)),
        _el(0x08, "y", b"\x01"),
        _el(0x0A, "n", b""),
        _el(0x10, "i", struct.pack("<i", 1)),
    ]
)
SEEDS = [JAVA, java_date(12_345), SESSION, EVERY_TYPE]


def test_the_seeds_are_valid() -> None:
    assert isinstance(decode_binary(EVERY_TYPE), dict)
    assert isinstance(decode_binary(EVERY_TYPE)["j"], datetime)
    assert decode_binary(SESSION) == {"cart": "x"}


def _read(data: bytes) -> None:
    """Every reader on ``data``: only LuceeValueError may come out."""
    for reader in (decode_binary, read_java, read_bson):
        with suppress(LuceeValueError):
            reader(data)
    with suppress(LuceeValueError):
        decode_attr({"B": data})


# ---------------------------------------------------------------------- the readers


def test_a_java_object_without_a_class_description_is_a_lucee_value_error() -> None:
    with pytest.raises(LuceeValueError, match="without a class description"):
        read_java(NO_CLASS)
    with pytest.raises(LuceeValueError, match="without a class description"):
        decode_attr({"B": gzip.compress(NO_CLASS)})


def test_every_stream_with_a_slice_cut_out_is_read_or_refused() -> None:
    """Cutting any run of bytes out of a valid Java stream removes whole class
    descriptions (the 6-byte stream above is one such cut), fields or block data; each
    result is a date or a LuceeValueError. Exhaustive for the Java stream (~1,800 cuts)."""
    for start in range(len(JAVA)):
        for end in range(start + 1, len(JAVA) + 1):
            _read(JAVA[:start] + JAVA[end:])
    for seed in (SESSION, EVERY_TYPE):
        for start in range(len(seed)):
            _read(seed[:start])  # every truncation
            _read(seed[:start] + seed[start + 1 :])  # every single byte dropped


_MUTATION = st.tuples(
    st.sampled_from(["set", "delete", "insert"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
)


@settings(max_examples=400, deadline=None)
@given(seed=st.sampled_from(SEEDS), mutations=st.lists(_MUTATION, min_size=1, max_size=6))
def test_mutated_streams_give_only_lucee_value_errors(
    seed: bytes, mutations: list[tuple[str, int, int]]
) -> None:
    data = bytearray(seed)
    for op, where, byte in mutations:
        at = where % (len(data) + 1)
        if op == "insert" or not data:
            data.insert(at, byte)
        elif op == "set":
            data[at % len(data)] = byte
        else:
            del data[at % len(data)]
    _read(bytes(data))


# ---------------------------------------------------------------------- whole-table reads


@pytest.fixture
def lucee(make: Make) -> LuceeDynamoDBCache:
    cache = make(settings={"itemFormat": "lucee"}, clock=FakeClock(T0))
    assert isinstance(cache, LuceeDynamoDBCache)
    cache.connect()
    for pk, value in (("A_OK", {"S": "ok"}), ("EVIL", {"B": NO_CLASS}), ("Z_OK", {"S": "ok"})):
        item: dict[str, Any] = {"cacheKey": {"S": pk}, "value": value}
        cache.client.put_item(TableName=cache.table_name, Item=item)
    return cache


def test_the_entry_is_skipped_by_every_whole_table_read(lucee: LuceeDynamoDBCache) -> None:
    with pytest.raises(ForeignEntryError, match="without a class description") as caught:
        lucee.get("evil")
    assert caught.value.key == "evil"
    skipped: list[ForeignEntryError] = []
    lucee.on_foreign_entry = skipped.append
    assert lucee.get_all() == {"A_OK": "ok", "Z_OK": "ok"}
    assert [e.key for e in skipped] == ["EVIL"]

    target = MemoryCache(clock=FakeClock(T0))
    report = convert_from_lucee(lucee, target)
    assert (report.copied, report.skipped_count) == (2, 1)
    assert report.skipped[0].key == "EVIL"

    other = MemoryCache(clock=FakeClock(T0))
    moved = migrate(lucee, other)
    assert (moved.copied, moved.unreadable) == (2, 1)
    assert other.get_all() == {"A_OK": "ok", "Z_OK": "ok"}
