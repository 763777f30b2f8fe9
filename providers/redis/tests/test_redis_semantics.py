"""Redis-specific behaviour: storage layout, server-side expiry, isolation from foreign keys."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.cache import _exact_glob, redis_glob
from cachehub_redis.entry import HEADER, HEADER_SIZE, INT, KIND_CODEC, KIND_INT, MAGIC, pack
from redis import Redis

from cachehub.errors import CacheError, CacheValueError, CorruptEntryError
from cachehub.filters import compile_filter
from cachehub.testing.clock import FakeClock

ExpiryCheck = Callable[[str, int], None]
"""The ``assert_expires_at`` fixture (conftest.py): key, expected Unix ms or -1."""


def test_entry_is_one_string_with_a_fixed_header(
    make_cache: Callable[..., RedisCache], plain: Redis, assert_expires_at: ExpiryCheck
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock)
    now = clock()
    cache.put("doc", {"a": 1}, time_span=60, idle_time=30)
    stored = plain.get(f"{cache.namespace}doc")
    assert stored is not None
    head = HEADER.unpack_from(stored)
    assert head[:2] == (MAGIC, KIND_CODEC)
    assert head[2:6] == (now, now, now, 0.0)  # created, modified, accessed, hits
    assert head[6:] == (now + 60, 30.0)  # absolute expiry, idle seconds
    assert cache.codec.loads(stored[HEADER_SIZE:]) == {"a": 1}
    # Redis reclaims the entry by itself at the (idle) deadline, rounded up to the ms.
    assert_expires_at(f"{cache.namespace}doc", math.ceil((now + 30) * 1000))

    cache.put("plain", "v")
    raw = plain.get(f"{cache.namespace}plain")
    assert raw is not None
    x, d = HEADER.unpack_from(raw)[6:]
    assert math.isnan(x)
    assert math.isnan(d)
    assert_expires_at(f"{cache.namespace}plain", -1)


def test_integers_are_native_64_bit_fields(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    cache.put("n", 41)
    key = f"{cache.namespace}n"
    raw = plain.get(key)
    assert raw is not None
    assert raw[1] == KIND_INT
    assert INT.unpack_from(raw, HEADER_SIZE)[0] == 41
    assert cache.incr("n") == 42  # BITFIELD INCRBY on the stored field
    assert plain.bitfield(key).get("i64", HEADER_SIZE * 8).execute() == [42]
    # Beyond 64 bits the codec stores it, and incr refuses instead of overflowing.
    cache.put("big", 2**70)
    assert cache.get("big") == 2**70
    with pytest.raises(CacheValueError, match="64-bit"):
        cache.incr("big")
    cache.put("edge", 2**63 - 1)
    with pytest.raises(CacheValueError, match="64-bit"):
        cache.incr("edge")
    assert cache.get("edge") == 2**63 - 1
    cache.put("low", -(2**63))
    assert cache.decr("low", -5) == -(2**63) + 5
    assert cache.get("n") == 42


@pytest.mark.parametrize("size", [0, 3, 7, 9, 20])
def test_incr_refuses_an_int_entry_of_the_wrong_size(
    make_cache: Callable[..., RedisCache], plain: Redis, size: int
) -> None:
    # Another program wrote an int entry whose value is not 8 bytes: BITFIELD would pad a
    # short one with zeros (a garbage count) and leave a long one corrupt.
    cache = make_cache()
    key = f"{cache.namespace}n"
    planted = pack(KIND_INT, bytes(range(1, size + 1)), 1.0e9, 1.0e9, None, None)
    plain.set(key, planted)
    for delta in (1, -1):
        with pytest.raises(CorruptEntryError, match=f"holds {size} bytes, not 8"):
            cache.incr("n", delta)
    assert plain.get(key) == planted  # untouched
    with pytest.raises(CorruptEntryError):
        cache.get("n")


def test_incr_on_values_other_programs_planted(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    ns = cache.namespace
    # A cachehub entry holding a string: refused, typed, left as it is.
    cache.put("text", "41")
    with pytest.raises(CacheValueError, match="not"):
        cache.incr("text")
    assert cache.get("text") == "41"
    # A counter at the top of the signed 64-bit range: refused, value and stamp kept.
    plain.set(f"{ns}top", pack(KIND_INT, INT.pack(2**63 - 1), 1.0e9, 1.0e9, None, None))
    before = plain.get(f"{ns}top")
    with pytest.raises(CacheValueError, match="64-bit"):
        cache.incr("top")
    assert plain.get(f"{ns}top") == before
    assert cache.decr("top") == 2**63 - 2
    # An unknown kind byte or junk after a valid-looking header: a typed error, never a
    # crash or a number made of junk.
    plain.set(f"{ns}odd", pack(0x7A, b"\xc1junk", 1.0e9, 1.0e9, None, None))
    with pytest.raises(CacheError):
        cache.incr("odd")
    # Keys that are not cachehub entries count as absent, for incr as for get: a bare
    # Redis integer (another program's INCR) or a key of another type is replaced by a
    # fresh counter, as put() would replace it.
    plain.set(f"{ns}bare", b"41")
    plain.hset(f"{ns}hash", "field", "value")
    assert cache.get("bare") is None
    assert cache.get("hash") is None
    assert cache.incr("bare", 2) == 2
    assert cache.incr("hash", 3) == 3
    assert cache.get_many(["bare", "hash"]) == {"bare": 2, "hash": 3}


def test_plain_reads_are_counted_in_process_and_written_back_in_one_round_trip(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache(hitCounts=True, hitFlushInterval=0)
    cache.put_many({"a": 1, "b": 2})
    for _ in range(3):
        cache.get("a")
    cache.get_many(["a", "b", "absent"])
    assert cache.pending_hits() == 2
    raw = plain.get(f"{cache.namespace}a")
    assert raw is not None
    assert HEADER.unpack_from(raw)[5] == 0.0
    assert cache.metadata("a").hit_count == 4  # the in-process counts are included
    assert cache.flush_hits() == 2
    assert cache.pending_hits() == 0
    for key, hits in (("a", 4.0), ("b", 1.0)):
        raw = plain.get(f"{cache.namespace}{key}")
        assert raw is not None
        assert HEADER.unpack_from(raw)[5] == hits
    other = make_cache(namespace=cache.namespace)
    assert other.metadata("a").hit_count == 4  # visible to every client once written


def test_counted_reads_of_a_replaced_entry_are_dropped(
    make_cache: Callable[..., RedisCache],
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock, hitCounts=True, hitFlushInterval=0)
    other = make_cache(namespace=cache.namespace, clock=clock)
    cache.put("k", 1)
    cache.get("k")
    cache.get("k")
    clock.advance(1)
    other.put("k", 2)  # another client replaces the entry: a new version
    assert cache.flush_hits() == 1
    assert other.metadata("k").hit_count == 0


def test_counted_reads_are_flushed_on_close_and_when_the_interval_passes(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache(hitCounts=True, hitFlushInterval=3600)
    other = make_cache(namespace=cache.namespace)
    cache.put("k", 1)
    cache.get("k")
    assert other.metadata("k").hit_count == 0
    cache.close()
    assert other.metadata("k").hit_count == 1

    eager = make_cache(namespace=cache.namespace, hitCounts=True, hitFlushInterval=0.000001)
    eager.get("k")
    eager.get("k")  # the interval has passed: this read writes both back
    assert eager.pending_hits() == 0
    assert other.metadata("k").hit_count == 3


def test_get_slides_idle_expiry_on_the_server(
    make_cache: Callable[..., RedisCache], assert_expires_at: ExpiryCheck
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock)
    cache.put("s", "v", idle_time=100)
    clock.advance(40)
    assert cache.get("s") == "v"
    assert_expires_at(f"{cache.namespace}s", math.ceil((clock() + 100) * 1000))
    assert cache.touch("s")  # no expiry any more
    assert_expires_at(f"{cache.namespace}s", -1)


def test_expiry_follows_the_client_clock_not_the_server(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock)
    cache.put("k", "v", time_span=5)
    clock.advance(5)
    # Redis still holds the key (its clock has not reached the deadline)...
    assert plain.exists(f"{cache.namespace}k") == 1
    # ...but the cache, whose clock has, no longer sees it anywhere.
    assert cache.get("k") is None
    assert cache.count() == 0
    assert list(cache.keys()) == []
    assert cache.add("k", "again")
    assert cache.get("k") == "again"


def test_clear_never_touches_foreign_keys_or_other_namespaces(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    mine = make_cache()
    other = make_cache()
    ns = mine.namespace
    mine.put_many({"a1": 1, "a2": 2, "b1": 3})
    other.put_many({"a1": 1, "a2": 2})
    # Foreign data written by some other program: outside and inside the namespace.
    plain.set("foreign:a1", "x")
    plain.set(f"{ns}a9", "a plain string")
    plain.hset(f"{ns}a8", mapping={"field": "a hash that is not a cache entry"})
    plain.rpush(f"{ns}a7", "a list")
    plain.set(f"{ns}a6", b"\xca too short to hold a header")
    try:
        assert mine.count() == 3
        assert sorted(mine.keys()) == ["a1", "a2", "b1"]
        for foreign in ("a9", "a8", "a7", "a6"):
            assert mine.get(foreign) is None
            assert not mine.exists(foreign)
            assert mine.get_many([foreign, "a1"]) == {"a1": 1}
            assert not mine.delete(foreign)
        assert mine.clear("a*") == 2
        assert mine.clear() == 1
        assert mine.count() == 0
        assert other.count() == 2
        assert plain.get("foreign:a1") == b"x"
        assert plain.get(f"{ns}a9") == b"a plain string"
        assert plain.hget(f"{ns}a8", "field") is not None
        assert plain.lrange(f"{ns}a7", 0, -1) == [b"a list"]
        assert plain.exists(f"{ns}a6") == 1
    finally:
        plain.delete("foreign:a1", f"{ns}a9", f"{ns}a8", f"{ns}a7", f"{ns}a6")


def test_glob_specials_in_keys_and_namespace_are_literal(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache(namespace="ns[*?]\\:")
    keys = ["a[1]", "a*b", "a?c", "a\\d", "abc", "x[1]"]
    cache.put_many(dict.fromkeys(keys, 1))
    try:
        assert sorted(cache.keys()) == sorted(keys)
        assert sorted(cache.keys("a[*")) == ["a[1]"]
        assert sorted(cache.keys("a?b")) == ["a*b"]
        assert sorted(cache.keys("a\\*")) == ["a\\d"]
        assert cache.count("*[1]") == 2
    finally:
        cache.clear()


def test_redis_glob_escapes_literals_and_keeps_wildcards() -> None:
    assert redis_glob(compile_filter("user_*", "app:")) == "app:user_*"
    # Redis' ? matches one byte; the filter's one character: the glob widens it to *.
    assert redis_glob(compile_filter("a[b]*", "n*:")) == "n\\*:a\\[b\\]*"
    assert redis_glob(compile_filter("a?[b]*", "n*:")) == "n\\*:a*"
    assert redis_glob(compile_filter(None, "")) == "*"


def test_question_mark_matches_one_character_of_any_utf8_length(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    keys = ["a1", "\u00e91", "\u20ac1", "\U0001f6001", "ab1", "1"]
    cache.put_many(dict.fromkeys(keys, 0))
    assert sorted(cache.keys("?1")) == sorted(keys[:4])
    assert cache.count("?1") == 4
    assert cache.count("*1") == 6
    assert cache.count("\u20ac*") == 1
    assert cache.clear("?1") == 4
    assert sorted(cache.keys()) == ["1", "ab1"]


def test_count_streams_many_entries_across_scan_batches(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    cache.put_many({f"k{i}": i for i in range(2500)})
    assert cache.count() == 2500
    assert cache.count("k1*") == 1 + 10 + 100 + 1000
    assert cache.clear() == 2500


def test_instances_share_data_and_locks(make_cache: Callable[..., RedisCache]) -> None:
    first = make_cache()
    second = make_cache(namespace=first.namespace)
    first.put("shared", [1, 2])
    assert second.get("shared") == [1, 2]
    with first.lock("job", timeout=0):
        assert not second.lock("job").acquire(blocking=False)
    assert second.lock("job").acquire(blocking=False)
    assert RedisCache.distributed is True


@pytest.mark.parametrize(
    ("pattern", "glob", "exact"),
    [
        # One inner star is O(n*m) per scanned name on every Redis version, and names
        # are another program's to choose (one 8 MB name: a 4 s stall): prefix only.
        ("*foo*", "n:*", False),
        ("user_*", "n:user_*", True),
        ("user_*x", "n:user_*", False),
        ("exact", "n:exact", True),
        ("*a*b", "n:*", False),  # two inner stars: only the prefix goes to Redis
        ("user_*x*y*", "n:user_*", False),
        ("*a" * 14 + "*b", "n:*", False),
        ("a?b", "n:a*", False),  # ? is a star too (bytes vs characters)
        ("a?b?c", "n:a*", False),
        ("[*]*\\*x", "n:\\[*", False),
    ],
)
def test_backtracking_globs_push_down_only_their_prefix(
    pattern: str, glob: str, exact: bool
) -> None:
    flt = compile_filter(pattern, "n:")
    assert redis_glob(flt) == glob
    assert _exact_glob(flt) is exact


def test_a_filter_with_an_inner_star_costs_the_server_no_match_of_planted_names(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """A name another program plants under the namespace is matched by SCAN MATCH before
    any script can leave it out: ``*<200 a>:profile`` against one 8 MB name held the
    server 4 s. Only the literal prefix goes to Redis now; the answers stay the same."""
    cache = make_cache()
    cache.put_many({"a" * 300 + ":profile": 1, "b:profile": 2, "a:other": 3})
    plain.set(cache.namespace + "a" * 1_000_000, b"planted")
    pattern = "*" + "a" * 200 + ":profile"
    assert redis_glob(compile_filter(pattern, cache.namespace)) == cache.namespace + "*"
    assert list(cache.keys(pattern)) == ["a" * 300 + ":profile"]
    assert cache.count(pattern) == 1
    assert cache.count("*:profile") == 2
    assert cache.clear("*:profile") == 2
    assert list(cache.keys()) == ["a:other"]
    assert plain.exists(cache.namespace + "a" * 1_000_000)  # another program's: kept


def test_an_entry_planted_at_the_namespace_itself_is_not_a_key(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """A string at exactly the namespace (a copy of an entry, say) was listed as the key
    '' - which get() and delete() refuse - and stopped migrate() with InvalidKeyError."""
    cache = make_cache()
    cache.put("x", 1)
    plain.set(cache.namespace, plain.get(cache.namespace + "x"))
    assert list(cache.keys()) == ["x"]
    assert cache.get_all() == {"x": 1}
    assert cache.count() == 1
    assert cache.count("*") == 1
    assert cache.clear() == 1
    assert plain.exists(cache.namespace)  # not ours: kept
    plain.delete(cache.namespace)


def test_an_entry_another_program_persisted_is_live_to_every_read(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """After another program's PERSIST, get() served the entry for good while metadata()
    and peek() kept the header's past deadline: migrate() skipped it as expired."""
    cache = make_cache()
    cache.put("k", "v", time_span=60)
    plain.persist(cache.namespace + "k")
    stamped = cache.peek("k")
    assert stamped is not None
    assert stamped.expires_at is None
    meta = cache.metadata("k")
    assert meta is not None
    assert meta.time_to_live is None
    assert cache.get("k") == "v"


def test_default_clock_sends_relative_ttls_the_server_applies(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    """Without clock= the span is sent as PX: the server counts it down, so the
    writer's clock (however wrong) never shortens it; readers trust what Redis holds."""
    cache = make_cache()
    cache.put("k", "v", time_span=60)
    cache.put_many({"a": 1}, time_span=60)
    assert cache.add("b", 2, time_span=60)
    cache.put("idle", "v", idle_time=30, time_span=60)
    for key, span in (("k", 60_000), ("a", 60_000), ("b", 60_000), ("idle", 30_000)):
        left = plain.pttl(f"{cache.namespace}{key}")
        assert span - 5_000 < left <= span, key
    assert cache.touch("k", time_span=10)
    assert 5_000 < plain.pttl(f"{cache.namespace}k") <= 10_000
    meta = cache.metadata("k")
    assert meta.time_to_live is not None
    assert 5 < meta.time_to_live.total_seconds() <= 10.1
