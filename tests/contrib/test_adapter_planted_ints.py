"""Ints under adapter keys: unsigned by default (atomic incr), signed with ``SIGN_INTS``.

By default a plain int is stored as it is so that the backend's ``incr`` stays atomic,
which lets anyone who can write to the backend set an int the application trusts (the
documented exception to the threat model). ``OPTIONS["SIGN_INTS"]`` (Django) and
``sign_ints=True`` (cachelib, Flask-Caching's ``CACHE_OPTIONS``) sign ints too: a planted
int is then a miss, and ``incr`` is a read-modify-write under a lock on the key, which
must still count every increment of concurrent callers. On main neither option existed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from cachehub.api import BaseCache
from cachehub.contrib.cachelib import CacheHubCachelib
from cachehub.contrib.django import CacheHubCache
from cachehub.contrib.signing import SignedValues
from cachehub.errors import CacheValueError, ConfigError

SECRET = "cachehub-tests-not-secret"
PURPOSE = "cachehub.contrib.django cache values"


@pytest.fixture
def cache(memory_or_redis: BaseCache) -> BaseCache:
    return memory_or_redis


def _django(cache: BaseCache, *, sign_ints: bool = True) -> CacheHubCache:
    backend = CacheHubCache("", {"OPTIONS": {"class": "memory", "SIGN_INTS": sign_ints}})
    assert backend.values.sign_ints is sign_ints  # the option reaches the signer
    backend.cachehub = cache
    backend.values = SignedValues(
        cache, SECRET, purpose=PURPOSE, adapter="t", setting="t", sign_ints=sign_ints
    )
    return backend


def _hammer(count: Callable[[], Any], threads: int = 4, each: int = 15) -> None:
    start = threading.Barrier(threads)

    def run() -> None:
        start.wait()
        for _ in range(each):
            count()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)


def test_by_default_a_planted_int_is_trusted(cache: BaseCache) -> None:
    # The documented exception (docs/integrations.md, threat model): kept so that the
    # default incr stays one atomic backend command.
    django = _django(cache, sign_ints=False)
    cache.put(django.make_key("uid"), 1)
    assert django.get("uid") == 1


def test_django_sign_ints_makes_a_planted_int_a_miss(cache: BaseCache) -> None:
    django = _django(cache)
    cache.put(django.make_key("uid"), 1)  # another writer, without the secret
    assert django.get("uid", "miss") == "miss"
    assert not django.has_key("uid")
    assert django.get_many(["uid"]) == {}
    with pytest.raises(CacheValueError, match="not found"):
        django.incr("uid")
    assert django.add("uid", 7) is True  # taken as absent and replaced
    assert django.get("uid") == 7
    assert type(cache.get(django.make_key("uid"))) is bytes  # stored signed


def test_django_sign_ints_incr_keeps_the_expiry_and_refuses_non_ints(cache: BaseCache) -> None:
    django = _django(cache)
    django.set("n", 10, timeout=600)
    assert django.incr("n", 5) == 15
    assert django.decr("n", 20) == -5
    assert django.get("n") == -5
    entry = cache.peek(django.make_key("n"))
    assert entry is not None
    assert entry.expires_at is not None  # the read-modify-write kept the expiry
    with pytest.raises(CacheValueError, match="not found"):
        django.incr("absent")
    django.set("s", "text")
    with pytest.raises(TypeError):
        django.incr("s")
    django.set("big", 2**63 - 1)
    with pytest.raises(CacheValueError, match="64-bit"):
        django.incr("big")
    assert django.get("big") == 2**63 - 1  # nothing written


def test_django_sign_ints_concurrent_incr_loses_no_update(cache: BaseCache) -> None:
    # One backend object per thread, as Django makes them; all over one cache.
    django = _django(cache)
    django.set("n", 0)
    local = threading.local()

    def count() -> None:
        if not hasattr(local, "backend"):
            local.backend = _django(cache)
        local.backend.incr("n")

    _hammer(count)
    assert django.get("n") == 60


def test_django_sign_ints_async_incr(cache: BaseCache) -> None:
    django = _django(cache)
    cache.put(django.make_key("n"), 3)  # planted: not a counter of this application
    with pytest.raises(CacheValueError, match="not found"):
        asyncio.run(django.aincr("n"))
    django.set("n", 1)

    async def many() -> list[int]:
        return list(await asyncio.gather(*(django.aincr("n") for _ in range(10))))

    assert sorted(asyncio.run(many())) == list(range(2, 12))
    assert asyncio.run(django.adecr("n", 11)) == 0


def test_cachelib_sign_ints(cache: BaseCache) -> None:
    lib = CacheHubCachelib(cache, secret_key=SECRET, sign_ints=True)
    cache.put("uid", 42)  # another writer, without the secret
    assert lib.get("uid") is None
    assert not lib.has("uid")
    assert lib.inc("uid") == 1  # cachelib: a missing key starts at 0
    assert lib.dec("uid", 3) == -2
    assert lib.get("uid") == -2
    lib.set("n", 5)
    assert lib.get("n") == 5
    _hammer(lambda: lib.inc("n"))
    assert lib.get("n") == 65


def test_sign_ints_is_checked() -> None:
    with pytest.raises(ConfigError, match="SIGN_INTS"):
        CacheHubCache("", {"OPTIONS": {"class": "memory", "SIGN_INTS": "yes"}})
    with pytest.raises(ConfigError, match="signed-pickle"):
        CacheHubCachelib({"class": "memory"}, value_format="cache-codec", sign_ints=True)
