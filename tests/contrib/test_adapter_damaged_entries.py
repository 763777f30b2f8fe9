"""A damaged cachehub entry under an adapter key is a miss for Django, cachelib and dogpile.

Damaged: bytes that start like a cachehub entry but do not decode (a real entry with its
last bytes cut, an int entry one byte short). The core raises ``CorruptEntryError`` from
every read of such an entry and leaves it in place (docs/redis.md), but a framework
cache read must never fail the request for what is stored. On main every adapter read
of it raised, and Django's ``add``/``get_or_set`` could never replace it, so every
request on that key failed until someone deleted it by hand.

Also here: cachelib's error for a key that is not a string.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE, CachedValue

from cachehub.api import BaseCache
from cachehub.contrib.cachelib import CacheHubCachelib
from cachehub.contrib.django import CacheHubCache
from cachehub.contrib.signing import SignedValues
from cachehub.errors import CacheValueError, CorruptEntryError, InvalidKeyError

SECRET = "cachehub-tests-not-secret"
DAMAGES = ["truncated", "short int"]


@pytest.fixture
def cache(memory_or_redis: BaseCache) -> BaseCache:
    return memory_or_redis


@pytest.fixture
def damage(request: pytest.FixtureRequest) -> Iterator[Callable[[BaseCache, str, str], None]]:
    """``damage(cache, key, how)``: cut the entry stored under ``key`` so that the core
    cannot decode it (on Redis the whole stored string, header included)."""
    clients: list[Any] = []

    def cut(cache: BaseCache, key: str, how: str) -> None:
        if how == "short int":
            cache.put(key, 5)
        elif not cache.exists(key):
            cache.put(key, b"a value of some length" * 4)
        drop = 1 if how == "short int" else 3
        sk = cache.namespace + key
        if isinstance(cache, MemoryCache):
            record = cache._data[sk]
            record[0] = record[0][:-drop]  # the record's codec bytes
        else:
            from redis import Redis

            client: Redis = Redis.from_url(request.getfixturevalue("redis_url"))
            clients.append(client)
            whole = client.get(sk)
            assert isinstance(whole, bytes)
            client.set(sk, whole[:-drop])
        with pytest.raises(CorruptEntryError):  # what the adapters must absorb
            cache.get(key)

    yield cut
    for client in clients:
        client.close()


def _django(cache: BaseCache) -> CacheHubCache:
    backend = CacheHubCache("", {"OPTIONS": {"class": "memory"}})
    backend.cachehub = cache
    backend.values = SignedValues(
        cache, SECRET, purpose="cachehub.contrib.django cache values", adapter="t", setting="t"
    )
    return backend


def _arun(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


@pytest.mark.parametrize("how", DAMAGES)
def test_django_reads_a_damaged_entry_as_a_miss(
    cache: BaseCache, damage: Callable[..., None], how: str
) -> None:
    django = _django(cache)
    django.set("k", "cached html")
    django.set("other", "fine")
    damage(cache, django.make_key("k"), how)
    assert django.get("k", "dflt") == "dflt"
    assert not django.has_key("k")
    assert "k" not in django
    assert django.get_many(["k", "other"]) == {"other": "fine"}  # the batch survives
    assert django.add("k", "v", timeout=0) is True
    assert django.touch("k", 60) is False
    with pytest.raises(CacheValueError, match="not found"):  # Django: a missing key
        django.incr("k")
    with pytest.raises(CacheValueError, match="not found"):
        django.decr("k")
    with pytest.raises(CorruptEntryError):
        cache.get(django.make_key("k"))  # none of it touched the entry


@pytest.mark.parametrize("how", DAMAGES)
def test_django_add_and_get_or_set_replace_a_damaged_entry(
    cache: BaseCache, damage: Callable[..., None], how: str
) -> None:
    django = _django(cache)
    damage(cache, django.make_key("k"), how)
    assert django.add("k", "new") is True
    assert django.get("k") == "new"
    damage(cache, django.make_key("k"), how)
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "recomputed"

    assert django.get_or_set("k", compute) == "recomputed"
    assert django.get_or_set("k", compute) == "recomputed"
    assert len(calls) == 1  # stored over the damaged entry, then served from the cache
    damage(cache, django.make_key("n"), how)
    django.set("n", 1)  # a set overwrites it as well; incr then counts as usual
    assert django.incr("n", 2) == 3


@pytest.mark.parametrize("how", DAMAGES)
def test_django_async_api_reads_a_damaged_entry_as_a_miss(
    cache: BaseCache, damage: Callable[..., None], how: str
) -> None:
    django = _django(cache)
    django.set("other", "fine")
    key = django.make_key("k")
    damage(cache, key, how)
    assert _arun(django.aget("k", "dflt")) == "dflt"
    assert _arun(django.ahas_key("k")) is False
    assert _arun(django.aget_many(["k", "other"])) == {"other": "fine"}
    assert _arun(django.atouch("k", 60)) is False
    with pytest.raises(CacheValueError, match="not found"):
        _arun(django.aincr("k"))
    assert _arun(django.aadd("k", "new")) is True
    assert _arun(django.aget("k")) == "new"
    damage(cache, key, how)
    assert _arun(django.aget_or_set("k", "recomputed")) == "recomputed"
    assert django.get("k") == "recomputed"


def test_a_damaged_entry_is_logged_without_its_key(
    cache: BaseCache, damage: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    # The core's message names the key (on Redis); the adapters promise logs without
    # keys, which may be session ids or e-mail addresses.
    django = _django(cache)
    damage(cache, django.make_key("user@example.com"), "short int")
    with caplog.at_level(logging.WARNING, logger="cachehub.contrib"):
        assert django.get("user@example.com") is None
    assert "cannot be decoded" in caplog.text
    assert "user@example.com" not in caplog.text


@pytest.mark.parametrize("how", DAMAGES)
def test_cachelib_reads_a_damaged_entry_as_a_miss(
    cache: BaseCache, damage: Callable[..., None], how: str
) -> None:
    lib = CacheHubCachelib(cache, secret_key=SECRET, key_prefix="app:")
    lib.set("other", "fine")
    damage(cache, "app:k", how)
    assert lib.get("k") is None
    assert not lib.has("k")
    assert "k" not in lib
    assert lib.get_many("k", "other") == [None, "fine"]
    assert lib.add("k", "new") is True  # replaced, not refused forever
    assert lib.get("k") == "new"
    damage(cache, "app:n", how)
    assert lib.inc("n", 3) == 3  # cachelib: a missing key starts at 0
    assert lib.inc("n") == 4
    damage(cache, "app:d", how)
    assert lib.dec("d", 2) == -2


def test_cachelib_counters_racing_over_a_damaged_entry_lose_no_count(
    cache: BaseCache, damage: Callable[..., None]
) -> None:
    # Every counter finds the damaged entry; it is deleted once (under a lock, checked
    # again there), so no counter deletes another's fresh count.
    import threading

    lib = CacheHubCachelib(cache, secret_key=SECRET)
    damage(cache, "n", "short int")
    start = threading.Barrier(4)

    def count() -> None:
        start.wait()
        for _ in range(10):
            lib.inc("n")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert lib.get("n") == 40


@pytest.mark.parametrize("how", DAMAGES)
def test_dogpile_regenerates_a_damaged_entry(
    cache: BaseCache, damage: Callable[..., None], how: str
) -> None:
    region = make_region().configure("cachehub", expiration_time=300, arguments={"cache": cache})
    region.set("k", "v")
    region.set("other", "fine")
    damage(cache, "k", how)
    assert region.get("k") is NO_VALUE
    found = region.backend.get_multi(["k", "other"])  # the batch survives
    assert found[0] is NO_VALUE
    assert isinstance(found[1], CachedValue)
    assert found[1].payload == "fine"
    assert region.backend.get_serialized("k") is NO_VALUE
    assert region.get_or_create("k", lambda: "regenerated") == "regenerated"
    assert region.get_or_create("k", lambda: "again") == "regenerated"  # stored over it


# ---------------------------------------------------------------------- cachelib keys


@pytest.mark.parametrize("key", [42, b"k", None])
def test_cachelib_refuses_a_key_that_is_not_a_string_with_a_typed_error(key: Any) -> None:
    # On main: a bare TypeError from the key prefix concatenation, no cachehub error.
    lib = CacheHubCachelib({"class": "memory"}, secret_key=SECRET, key_prefix="app:")
    for call in (
        lambda: lib.get(key),
        lambda: lib.set(key, 1),
        lambda: lib.add(key, 1),
        lambda: lib.delete(key),
        lambda: lib.has(key),
        lambda: lib.inc(key),
        lambda: lib.get_many("ok", key),
    ):
        with pytest.raises(InvalidKeyError, match="must be str") as raised:
            call()
        assert isinstance(raised.value, TypeError)  # what cachelib's own backends raise
        assert "str()" in (raised.value.hint or "")
    assert key not in lib
