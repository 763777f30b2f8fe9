"""One rule for an entry whose header holds a field cachehub never writes, on every read.

Planted through a raw client on the real server, each of ``test_redis_entry.BAD``'s
headers: every operation that reads the entry (``get`` sync and async, ``get_many``,
``get_all``, ``exists``, ``metadata``, ``touch``, ``incr``) raises ``CorruptEntryError``
naming the key, and changes nothing; ``keys``, ``count`` and ``clear`` list, count and
remove its key without reading it, so it can be found and deleted. On main ``get`` (whose
fast path skipped the header) read the value of an entry with a corrupt created, modified,
accessed or hit-count field that ``exists`` refused, ``touch`` answered True on any of
them, and ``incr`` added to an int entry with corrupt stamps.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import (
    FOREVER,
    HEADER,
    HEADER_SIZE,
    INT,
    KIND_CODEC,
    KIND_INT,
    MAGIC,
    common_head,
    sound_stamps,
    unpack,
)
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis
from test_redis_entry import BAD, GOOD

from cachehub.errors import CorruptEntryError

READS: dict[str, Callable[[RedisCache], Any]] = {
    "get": lambda c: c.get("k"),
    "aget": lambda c: asyncio.run(asyncio.wait_for(c.aio().get("k"), 10)),
    "get_many": lambda c: c.get_many(["k", "absent"]),
    "get_all": lambda c: dict(c.get_all()),
    "exists": lambda c: c.exists("k"),
    "metadata": lambda c: c.metadata("k"),
    "touch": lambda c: c.touch("k", time_span=60),
    "atouch": lambda c: asyncio.run(asyncio.wait_for(c.aio().touch("k", time_span=60), 10)),
    "incr": lambda c: c.incr("k"),
}


def _planted(cache: RedisCache, plain: Redis, fields: tuple[float, ...]) -> bytes:
    """Stores the header ``fields`` at key ``k`` with a value fitting its kind."""
    kind = int(fields[0])
    value = INT.pack(5) if kind == KIND_INT else cache.codec.dumps("v")
    raw = HEADER.pack(MAGIC, kind, *fields[1:]) + value
    plain.set(f"{cache.namespace}k", raw)
    return raw


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("fields", BAD.values(), ids=list(BAD))
def test_every_read_of_a_corrupt_header_raises_naming_the_key(
    make_cache: Callable[..., RedisCache], plain: Redis, fields: tuple[float, ...], read: str
) -> None:
    cache = make_cache()
    raw = _planted(cache, plain, fields)
    with pytest.raises(CorruptEntryError) as info:
        READS[read](cache)
    assert f"Redis key '{cache.namespace}k' is not a valid cachehub entry" in str(info.value)
    assert "delete it" in str(info.value)  # the fix
    assert plain.get(f"{cache.namespace}k") == raw  # never changed, never dropped


@pytest.mark.parametrize("fields", BAD.values(), ids=list(BAD))
def test_an_int_entry_with_a_corrupt_header_is_never_incremented(
    make_cache: Callable[..., RedisCache], plain: Redis, fields: tuple[float, ...]
) -> None:
    cache = make_cache()
    raw = _planted(cache, plain, (KIND_INT, *fields[1:]) if fields[0] == KIND_CODEC else fields)
    with pytest.raises(CorruptEntryError):
        cache.incr("k", 3)
    assert plain.get(f"{cache.namespace}k") == raw


@pytest.mark.parametrize("fields", BAD.values(), ids=list(BAD))
def test_enumeration_lists_counts_and_clears_a_corrupt_entry(
    make_cache: Callable[..., RedisCache], plain: Redis, fields: tuple[float, ...]
) -> None:
    cache = make_cache()
    cache.put("good", 1)
    _planted(cache, plain, fields)
    assert sorted(cache.keys()) == ["good", "k"]
    assert cache.count() == 2
    assert cache.count("k*") == 1
    assert cache.clear() == 2
    assert plain.get(f"{cache.namespace}k") is None


def test_a_batch_with_one_corrupt_stamp_among_common_entries_raises(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """The batch fast path (C-level checks over every hit) refuses it as ``get`` does."""
    cache = make_cache()
    cache.put_many({f"c{i}": i for i in range(30)})
    _planted(cache, plain, BAD["nan-accessed"])
    with pytest.raises(CorruptEntryError, match="last-accessed stamp"):
        cache.get_many([*(f"c{i}" for i in range(30)), "k"])


@pytest.mark.parametrize("fields", GOOD)
def test_sound_stamps_takes_only_headers_unpack_accepts(fields: tuple[float, ...]) -> None:
    raw = HEADER.pack(MAGIC, int(fields[0]), *fields[1:])
    assert unpack(raw, "k") is not None
    assert sound_stamps((raw,))


STAMP_BAD = [
    name for name in BAD if any(f in name for f in ("created", "modified", "accessed", "hits"))
]


@pytest.mark.parametrize("name", STAMP_BAD)
def test_sound_stamps_refuses_every_corrupt_stamp(name: str) -> None:
    raw = HEADER.pack(MAGIC, *BAD[name])
    good = HEADER.pack(MAGIC, *GOOD[0])
    assert not sound_stamps((raw,))
    assert not sound_stamps((good, raw, good))  # one among many: the batch form
    assert sound_stamps((good, good))


_PLAIN = bytes((MAGIC, KIND_CODEC))


def _old_common_head(raw: bytes) -> bool:
    """The fast read's header test as get ran it before common_head: byte compares."""
    return raw.startswith(_PLAIN) and raw.startswith(FOREVER, 34) and sound_stamps((raw,))


@pytest.mark.parametrize("fields", [*GOOD, *BAD.values()])
def test_common_head_agrees_with_sound_stamps_on_every_header(fields: tuple[float, ...]) -> None:
    """get's one-entry test (ints from one unpack) takes exactly the never-expiring codec
    entries the byte compares take, for every good and corrupt stamp."""
    for kind, policy in ((KIND_CODEC, FOREVER), (int(fields[0]), None)):
        head = HEADER.pack(MAGIC, kind, *fields[1:])
        raw = (head[:34] + policy if policy else head) + b"\xa1v"
        assert common_head(raw) == _old_common_head(raw)
        if common_head(raw):
            assert unpack(raw, "k") is not None  # never a header unpack would refuse


def test_common_head_refuses_short_foreign_and_expiring_strings() -> None:
    good = HEADER.pack(MAGIC, KIND_CODEC, 1e9, 1e9, 1e9, 0.0, math.nan, math.nan)
    assert common_head(good)
    assert common_head(good + b"v")
    assert not common_head(b"")
    assert not common_head(good[: HEADER_SIZE - 1])  # cut in the policy: False, not struct.error
    assert not common_head(bytes((MAGIC, KIND_INT)) + good[2:])
    assert not common_head(bytes((MAGIC + 1,)) + good[1:])
    other_nan = b"\x7f\xf8\x00\x00\x00\x00\x00\x01" * 2  # a NaN, but not the one written
    assert not common_head(good[:34] + other_nan)
    assert not common_head(good[:34] + b"\x00" * 16)  # expires at 0.0: not never


_STAMP_BYTES = st.one_of(
    st.binary(min_size=8, max_size=8),
    st.floats(allow_nan=True).map(lambda f: HEADER.pack(MAGIC, KIND_CODEC, f, 0, 0, 0, 0, 0)[2:10]),
    st.sampled_from([b"\x00" * 8, b"\x80" + b"\x00" * 7, b"\x42\x4d\x7f" + b"\xff" * 5]),
)


@given(
    st.tuples(_STAMP_BYTES, _STAMP_BYTES, _STAMP_BYTES, _STAMP_BYTES),
    st.sampled_from([_PLAIN, bytes((MAGIC, KIND_INT)), b"\x00\x00"]),
    st.sampled_from([FOREVER, FOREVER[:8] + b"\x00" * 8, FOREVER[:15]]),
    st.binary(max_size=4),
)
def test_common_head_is_the_byte_compares_on_any_string(
    stamps: tuple[bytes, ...], tag: bytes, policy: bytes, tail: bytes
) -> None:
    """Hostile headers: any stamp bytes (NaNs of every payload, -0.0, the bounds and
    one past them), other kinds, shifted or cut policies: the int compares of one unpack
    decide as the byte compares of sound_stamps did."""
    raw = tag + b"".join(stamps) + policy + tail
    assert common_head(raw) == _old_common_head(raw)


def test_negative_zero_stamps_take_the_slow_path_and_still_read(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """-0.0 passes unpack but not the byte test: the entry is read by the flow, not lost."""
    cache = make_cache()
    now = time.time()
    raw = _planted(cache, plain, (KIND_CODEC, -0.0, now, now, 0.0, math.nan, math.nan))
    assert not sound_stamps((raw,))
    assert cache.get("k") == "v"
    assert cache.get_many(["k"]) == {"k": "v"}
    assert cache.exists("k")


@pytest.mark.parametrize("hits", [1.5, 0.25, 2.0**51 + 0.5], ids=repr)
def test_a_fractional_hit_count_is_named_by_metadata(
    make_cache: Callable[..., RedisCache], plain: Redis, hits: float
) -> None:
    """A hit count within 0..2^53 but not whole: the entry reads (its value is sound),
    and ``metadata`` (and the console's entry page, through ``peek``) names the count
    instead of showing it cut to an int (1.5 was 1)."""
    cache = make_cache()
    now = time.time()
    _planted(cache, plain, (KIND_CODEC, now, now, now, hits, math.nan, math.nan))
    assert cache.get("k") == "v"
    with pytest.raises(
        CorruptEntryError, match=rf"'{cache.namespace}k'.*hit count of {hits!r}, not"
    ):
        cache.metadata("k")


_KEEPS_CREATED = {name: f for name, f in BAD.items() if "created" not in name}


@pytest.mark.parametrize("fields", _KEEPS_CREATED.values(), ids=list(_KEEPS_CREATED))
def test_the_hit_write_back_leaves_a_corrupt_header_as_it_is(
    make_cache: Callable[..., RedisCache], plain: Redis, fields: tuple[float, ...]
) -> None:
    """Hits counted on a sound entry, whose header another program then corrupts keeping
    its created stamp (which the write-back matches on): the write-back changes nothing,
    as every read leaves such an entry. On main it wrote the hits and access time into it
    (and slid an idle entry's TTL)."""
    cache = make_cache(hitCounts=True, hitFlushInterval=3600)
    cache.put("k", "v")
    assert cache.get("k") == "v"  # one hit, pending
    key = f"{cache.namespace}k"
    header = unpack(plain.get(key) or b"")
    assert header is not None
    created = header.created
    _planted(cache, plain, (fields[0], created, *fields[2:]))
    before = plain.get(key)
    cache.flush_hits()
    assert plain.get(key) == before
    assert plain.pttl(key) == -1
