"""Entry headers another process wrote: impossible fields are CorruptEntryError, never a crash."""

from __future__ import annotations

import math
import struct

import pytest
from cachehub_redis.entry import HEADER, KIND_CODEC, KIND_INT, MAGIC, Offsets, pack, pxat, unpack

from cachehub.api import MAX_TIME_SPAN, CacheMetadata, Entry
from cachehub.errors import CorruptEntryError

NAN = math.nan
INF = math.inf
NOW = 1.9e9
LAST = 253_402_300_799.0


def _raw(kind: int, *doubles: float) -> bytes:
    return HEADER.pack(MAGIC, kind, *doubles) + b"payload"


GOOD = [
    (KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, NAN),
    (KIND_INT, NOW, NOW, NOW, 2.0**53, NOW + 5, 0.5),
    (KIND_CODEC, 0.0, 0.0, 0.0, 0.0, 0.0, NAN),
    (KIND_CODEC, NOW, NOW, NOW, 3.0, NAN, MAX_TIME_SPAN.total_seconds()),
    # Every stamp at the last second a datetime holds (9999-12-31T23:59:59Z): still a time.
    (KIND_CODEC, LAST, LAST, LAST, 0.0, LAST, NAN),
]

BAD = {
    "unknown-kind": (0x00, NOW, NOW, NOW, 0.0, NAN, NAN),
    "nan-created": (KIND_CODEC, NAN, NOW, NOW, 0.0, NAN, NAN),
    "inf-modified": (KIND_CODEC, NOW, INF, NOW, 0.0, NAN, NAN),
    "negative-created": (KIND_CODEC, -1.0, NOW, NOW, 0.0, NAN, NAN),
    "nan-accessed": (KIND_CODEC, NOW, NOW, NAN, 0.0, NAN, NAN),
    "negative-accessed": (KIND_CODEC, NOW, NOW, -1.0, 0.0, NAN, NAN),
    "negative-modified": (KIND_CODEC, NOW, -1.0, NOW, 0.0, NAN, NAN),
    "past-last-created": (KIND_CODEC, LAST + 1, NOW, NOW, 0.0, NAN, NAN),
    "far-future-accessed": (KIND_CODEC, NOW, NOW, 1e300, 0.0, NAN, NAN),
    "negative-hits": (KIND_CODEC, NOW, NOW, NOW, -1.0, NAN, NAN),
    "nan-hits": (KIND_CODEC, NOW, NOW, NOW, NAN, NAN, NAN),
    "huge-hits": (KIND_CODEC, NOW, NOW, NOW, 2.0**60, NAN, NAN),
    "hits-past-2**53": (KIND_CODEC, NOW, NOW, NOW, 2.0**53 + 2, NAN, NAN),  # the next double
    "inf-expiry": (KIND_CODEC, NOW, NOW, NOW, 0.0, INF, NAN),
    "negative-expiry": (KIND_CODEC, NOW, NOW, NOW, 0.0, -INF, NAN),
    "expiry-just-below-zero": (KIND_CODEC, NOW, NOW, NOW, 0.0, -0.5, NAN),
    "zero-idle": (KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, 0.0),
    "negative-idle": (KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, -5.0),
    "inf-idle": (KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, INF),
    "idle-beyond-max-span": (KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, 1e11),
}


@pytest.mark.parametrize("fields", GOOD)
def test_headers_cachehub_writes_parse_and_show(fields: tuple[float, ...]) -> None:
    head = unpack(_raw(int(fields[0]), *fields[1:]), "k")
    assert head is not None
    entry = Entry(1, head.created, head.modified, head.accessed, int(head.hits))
    entry.expires_at, entry.idle = head.expires_at, head.idle
    CacheMetadata.from_entry(entry, NOW)  # every field a datetime can show


@pytest.mark.parametrize("fields", BAD.values(), ids=list(BAD))
def test_impossible_fields_are_corrupt_entries(fields: tuple[float, ...]) -> None:
    with pytest.raises(CorruptEntryError, match="Redis key 'app:k' is not a valid cachehub entry"):
        unpack(_raw(int(fields[0]), *fields[1:]), "app:k")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xca",
        bytes([MAGIC, KIND_CODEC]) + b"\x00" * 47,
        b"x" * 80,
        # A header that is right in every field but the magic byte, on either side of it.
        HEADER.pack(MAGIC + 1, KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, NAN) + b"v",
        HEADER.pack(0xFF, KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, NAN) + b"v",
        HEADER.pack(MAGIC - 1, KIND_CODEC, NOW, NOW, NOW, 0.0, NAN, NAN) + b"v",
    ],
)
def test_strings_that_are_not_entries_are_none(raw: bytes) -> None:
    assert unpack(raw, "k") is None


def test_the_stored_layout_is_the_documented_one() -> None:
    # docs/redis.md: magic 0xCA, then the kind as an ASCII letter ('v' codec bytes, 'i' a
    # signed 64-bit int); other processes and older versions read these bytes.
    assert pack(KIND_CODEC, b"x", NOW, NOW, None, None)[:2] == b"\xcav"
    assert pack(KIND_INT, struct.pack(">q", 5), NOW, NOW, None, None)[:2] == b"\xcai"
    # The field offsets the Lua scripts write at, as documented, and as HEADER packs them.
    offsets = [Offsets.CREATED, Offsets.MODIFIED, Offsets.ACCESSED, Offsets.HITS]
    offsets += [Offsets.EXPIRES, Offsets.IDLE, Offsets.VALUE]
    assert offsets == [2, 10, 18, 26, 34, 42, 50] == [*range(2, HEADER.size, 8), HEADER.size]


def test_pack_round_trips() -> None:
    head = unpack(pack(KIND_INT, struct.pack(">q", 5), NOW, NOW, NOW + 1, 2.0), "k")
    assert head is not None
    assert (head.expires_at, head.idle, head.hits) == (NOW + 1, 2.0, 0.0)


def test_pack_writes_a_fresh_entry_accessed_when_modified_and_never_read() -> None:
    head = unpack(pack(KIND_CODEC, b"v", NOW - 9, NOW, None, None), "k")
    assert head == (KIND_CODEC, NOW - 9, NOW, NOW, 0.0, None, None)
    assert head is not None
    assert head.expiry.deadline(head.accessed) is None


@pytest.mark.parametrize(
    ("expires_at", "idle", "accessed", "deadline"),
    [
        (NOW + 5, None, NOW, NOW + 5),
        (None, 2.5, NOW + 1, NOW + 3.5),  # idle: from the last access
        (NOW + 5, 10.0, NOW + 1, NOW + 5),  # both: the earlier one
        (NOW + 50, 10.0, NOW + 1, NOW + 11),
    ],
)
def test_a_header_is_alive_strictly_before_its_deadline(
    expires_at: float | None, idle: float | None, accessed: float, deadline: float
) -> None:
    raw = HEADER.pack(
        MAGIC,
        KIND_CODEC,
        NOW,
        NOW,
        accessed,
        0.0,
        NAN if expires_at is None else expires_at,
        NAN if idle is None else idle,
    )
    head = unpack(raw, "k")
    assert head is not None
    assert head.expiry.deadline(head.accessed) == deadline
    assert head.alive(deadline - 0.001)
    assert not head.alive(deadline)
    assert not head.alive(deadline + 0.001)


def test_a_header_without_expiry_is_always_alive() -> None:
    head = unpack(pack(KIND_CODEC, b"", NOW, NOW, None, None), "k")
    assert head is not None
    assert head.alive(LAST)


@pytest.mark.parametrize(
    ("deadline", "ms"),
    [
        (None, None),
        (2.0, 2000),  # a whole millisecond stays that millisecond
        (2.0005, 2001),  # rounded up: the server never drops the entry early
        (NOW + 0.25, int(NOW * 1000) + 250),
        (0.0001, 1),
    ],
)
def test_pxat_is_the_deadline_in_milliseconds_rounded_up(
    deadline: float | None, ms: int | None
) -> None:
    assert pxat(deadline) == ms
