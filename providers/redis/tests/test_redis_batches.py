"""get_many's batch decoding (issue #17 item 4): the fast path for a batch of common entries
must answer exactly what ``get`` answers key by key, on every stored shape other programs
or older writes can leave under the namespace."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import HEADER_SIZE, KIND_CODEC, MAGIC, pack
from redis import Redis

from cachehub.errors import CorruptEntryError
from cachehub.testing.clock import FakeClock

_COMMON = [f"c{i}" for i in range(20)]


def _fill_common(cache: RedisCache) -> None:
    cache.put_many({key: {"n": i, "s": "x" * i} for i, key in enumerate(_COMMON)})


def _store_hostile_shapes(cache: RedisCache, plain: Redis) -> list[str]:
    """Keys holding what a shared server may hold besides common entries."""
    ns = cache.namespace
    cache.put("int", 7)
    cache.put("ttl", "t", time_span=600)
    cache.put("idle", "i", idle_time=600)
    cache.put("bytes", b"\x00\xca\x76" * 40)
    plain.set(f"{ns}foreign", b"hello, not an entry")
    plain.set(f"{ns}empty", b"")
    plain.set(f"{ns}short", bytes((MAGIC, KIND_CODEC)) + b"\x00" * 10)  # magic, no header
    plain.hset(f"{ns}hash", "f", "v")  # another Redis type: MGET answers nil
    plain.rpush(f"{ns}list", "a")
    return ["int", "ttl", "idle", "bytes", "foreign", "empty", "short", "hash", "list"]


@pytest.mark.parametrize("order", ["common first", "hostile first", "interleaved"])
def test_get_many_answers_what_get_answers_on_every_shape(
    make_cache: Callable[..., RedisCache], plain: Redis, order: str
) -> None:
    cache = make_cache()
    _fill_common(cache)
    hostile = _store_hostile_shapes(cache, plain)
    misses = ["absent1", "absent2"]
    if order == "common first":
        keys = [*_COMMON, *hostile, *misses]
    elif order == "hostile first":
        keys = [*misses, *hostile, *_COMMON]
    else:
        keys = [k for pair in zip(_COMMON, [*hostile, *misses] * 2, strict=False) for k in pair]
    expected = {k: v for k in keys if (v := cache.get(k, default=cache)) is not cache}
    assert cache.get_many(keys) == expected
    # Spot checks, so that an agreeing pair of wrong answers cannot pass.
    assert expected["c3"] == {"n": 3, "s": "xxx"}
    assert expected["int"] == 7
    assert expected["idle"] == "i"
    assert not {"foreign", "empty", "short", "hash", "list", "absent1"} & set(expected)


@pytest.mark.parametrize("size", [1, 2, 100, 501])
def test_get_many_of_only_common_entries_and_misses(
    make_cache: Callable[..., RedisCache], size: int
) -> None:
    cache = make_cache()
    stored = {f"k{i}": [i, str(i)] for i in range(0, size, 2)}  # every other key a miss
    cache.put_many(stored)
    assert cache.get_many([f"k{i}" for i in range(size)]) == stored


def test_get_many_of_only_misses_is_empty(make_cache: Callable[..., RedisCache]) -> None:
    assert make_cache().get_many([f"none{i}" for i in range(50)]) == {}


@pytest.mark.parametrize("where", [0, 10, 19])
def test_a_corrupt_header_among_common_entries_fails_the_batch_typed(
    make_cache: Callable[..., RedisCache], plain: Redis, where: int
) -> None:
    cache = make_cache()
    _fill_common(cache)
    # Looks like an entry (magic, codec kind) but its expiry is before 1970: never written
    # by cachehub, so it must be refused, not read as a value or silently skipped.
    bad = pack(KIND_CODEC, cache.codec.dumps("v"), 1.0, 1.0, -5.0, None)
    plain.set(f"{cache.namespace}{_COMMON[where]}", bad)
    with pytest.raises(CorruptEntryError, match="not a valid cachehub entry"):
        cache.get_many(_COMMON)
    with pytest.raises(CorruptEntryError):
        cache.get(_COMMON[where])


def test_garbage_after_a_common_header_is_a_typed_error(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    _fill_common(cache)
    stored = plain.get(f"{cache.namespace}c5")
    assert stored is not None
    plain.set(f"{cache.namespace}c5", stored[:HEADER_SIZE] + b"\xc1garbage")
    with pytest.raises(CorruptEntryError):
        cache.get_many(_COMMON)


def test_get_many_counts_hits_exactly_as_get(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    clock = FakeClock()
    one = make_cache(clock=clock, hitCounts=True)
    other = make_cache(clock=clock, hitCounts=True)
    for cache in (one, other):
        _fill_common(cache)
        cache.put("foreign-neighbour", "v", idle_time=600)
    plain.set(f"{one.namespace}foreign", b"not an entry")
    plain.set(f"{other.namespace}foreign", b"not an entry")
    keys = [*_COMMON, "foreign", "absent"]
    for _ in range(3):
        one.get_many(keys)
        for key in keys:
            other.get(key)
    for cache in (one, other):
        cache.flush_hits()
    for key in _COMMON:
        assert one.metadata(key).hit_count == other.metadata(key).hit_count == 3, key


def test_a_batch_without_expiry_mixing_ints_and_codec_values(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    # Ints are stored natively (kind 'i'), never through the codec: a batch of entries
    # that all never expire must still tell the two kinds apart.
    stored = {f"k{i}": (i if i % 3 else {"i": i}) for i in range(30)}
    stored["big"] = -(2**63)
    stored["blob"] = b"\x00" * 8  # 8 bytes, the size of an int payload
    cache.put_many(stored)
    assert cache.get_many(list(stored)) == stored


def test_an_idle_entry_among_common_entries_is_slid_by_the_batch_read(
    make_cache: Callable[..., RedisCache],
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock)
    _fill_common(cache)
    cache.put("idle", "i", idle_time=10)  # no absolute expiry: only the idle bytes differ
    clock.advance(8)
    assert cache.get_many([*_COMMON, "idle"])["idle"] == "i"
    clock.advance(8)  # 16 s after the write, 8 s after the batch read
    assert cache.get("idle") == "i"
    clock.advance(11)
    assert cache.get("idle") is None


def test_a_common_batch_writes_due_hits_back_in_the_same_call(
    make_cache: Callable[..., RedisCache],
) -> None:
    """The fast path returns early: it must still end with the flush-when-due step."""
    cache = make_cache(hitCounts=True, hitFlushInterval=60)
    reader = make_cache(namespace=cache.namespace)
    _fill_common(cache)
    cache.get_many(_COMMON)  # counted in the buffer, not yet due
    assert reader.metadata("c1").hit_count == 0
    cache._hits._last_flush -= 61  # the interval has passed (monotonic clock: no sleep)
    cache.get_many(_COMMON)
    assert reader.metadata("c1").hit_count == 2
