"""Redis-specific behaviour: storage layout, server-side expiry, isolation from foreign keys."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.cache import redis_glob
from redis import Redis

from cachehub.errors import CacheValueError
from cachehub.filters import compile_filter
from cachehub.testing.clock import FakeClock


def test_entry_is_one_hash_with_metadata_fields(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock)
    now = clock()
    cache.put("doc", {"a": 1}, time_span=60, idle_time=30)
    stored = plain.hgetall(f"{cache.namespace}doc")
    assert set(stored) == {b"v", b"c", b"m", b"a", b"h", b"x", b"d"}
    assert float(stored[b"c"]) == now
    assert float(stored[b"x"]) == now + 60
    assert float(stored[b"d"]) == 30.0
    assert cache.codec.loads(stored[b"v"]) == {"a": 1}
    # Redis reclaims the entry by itself at the (idle) deadline, rounded up to the ms.
    assert plain.pexpiretime(f"{cache.namespace}doc") == math.ceil((now + 30) * 1000)


def test_integers_are_native_hash_fields(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    cache.put("n", 41)
    key = f"{cache.namespace}n"
    assert plain.hget(key, "i") == b"41"
    assert plain.hget(key, "v") is None
    assert cache.incr("n") == 42
    assert plain.hget(key, "i") == b"42"
    # Beyond 64 bits the codec stores it, and incr refuses instead of overflowing.
    cache.put("big", 2**70)
    assert cache.get("big") == 2**70
    with pytest.raises(CacheValueError, match="64-bit"):
        cache.incr("big")
    cache.put("edge", 2**63 - 1)
    with pytest.raises(CacheValueError, match="64-bit"):
        cache.incr("edge")
    assert cache.get("edge") == 2**63 - 1
    assert cache.get("n") == 42


def test_get_slides_idle_expiry_on_the_server(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock)
    cache.put("s", "v", idle_time=100)
    clock.advance(40)
    assert cache.get("s") == "v"
    assert plain.pexpiretime(f"{cache.namespace}s") == math.ceil((clock() + 100) * 1000)
    assert cache.touch("s")  # no expiry any more
    assert plain.pexpiretime(f"{cache.namespace}s") == -1


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
    try:
        assert mine.count() == 3
        assert sorted(mine.keys()) == ["a1", "a2", "b1"]
        assert mine.get("a9") is None
        assert mine.clear("a*") == 2
        assert mine.clear() == 1
        assert mine.count() == 0
        assert other.count() == 2
        assert plain.get("foreign:a1") == b"x"
        assert plain.get(f"{ns}a9") == b"a plain string"
        assert plain.hget(f"{ns}a8", "field") is not None
        assert plain.lrange(f"{ns}a7", 0, -1) == [b"a list"]
    finally:
        plain.delete("foreign:a1", f"{ns}a9", f"{ns}a8", f"{ns}a7")


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
    assert redis_glob(compile_filter("a?[b]*", "n*:")) == "n\\*:a?\\[b\\]*"
    assert redis_glob(compile_filter(None, "")) == "*"


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
