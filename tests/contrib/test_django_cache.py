"""CacheHubCache against the expectations of Django's own cache backend tests.

Modelled on the behaviours checked by BaseCacheTests in django/tests/cache/tests.py
(add/get/set/delete, many, incr/decr, touch, versioning, key prefix, get_or_set, data
types, expiration), with expiry driven by the injectable clock instead of sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from django.core.cache import caches
from django.core.cache.backends.base import CacheKeyWarning

from cachehub import registry
from cachehub.contrib.django import CacheHubCache
from cachehub.errors import CacheValueError, ConfigError
from cachehub.testing.clock import FakeClock


@pytest.fixture
def backend_factory(make_cache: Callable[..., MemoryCache]) -> Callable[..., CacheHubCache]:
    """Django backends over one fresh memory cache (on the fake clock)."""
    shared = make_cache(name="django")

    def make(**params: Any) -> CacheHubCache:
        params.setdefault("OPTIONS", {"class": "memory"})
        backend = CacheHubCache("", params)
        backend.cachehub = shared  # the fixture's cache: same clock, isolated namespace
        return backend

    return make


@pytest.fixture
def cache(backend_factory: Callable[..., CacheHubCache]) -> CacheHubCache:
    return backend_factory()


def test_simple(cache: CacheHubCache) -> None:
    cache.set("key", "value")
    assert cache.get("key") == "value"
    assert cache.get("missing") is None
    assert cache.get("missing", "dflt") == "dflt"


def test_none_value_is_not_the_default(cache: CacheHubCache) -> None:
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None
    assert cache.has_key("key_default_none")


def test_add(cache: CacheHubCache) -> None:
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefix(backend_factory: Callable[..., CacheHubCache]) -> None:
    plain = backend_factory()
    prefixed = backend_factory(KEY_PREFIX="cacheprefix")
    plain.set("somekey", "value")
    assert not prefixed.has_key("somekey")
    prefixed.set("somekey", "other")
    assert plain.get("somekey") == "value"
    assert prefixed.get("somekey") == "other"


def test_get_many(cache: CacheHubCache) -> None:
    cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    assert cache.get_many([]) == {}


def test_delete(cache: CacheHubCache) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"
    assert cache.delete("nonexistent") is False


def test_has_key_and_in(cache: CacheHubCache) -> None:
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1")
    assert "hello1" in cache
    assert not cache.has_key("goodbye1")
    assert "goodbye1" not in cache


def test_incr_decr(cache: CacheHubCache) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    assert cache.decr("answer") == 41
    assert cache.decr("answer", 10) == 31
    assert cache.decr("answer", -10) == 41
    with pytest.raises(ValueError, match="not found"):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("does_not_exist")
    assert not cache.has_key("does_not_exist")  # the failed incr created nothing
    cache.set("text", "x")
    with pytest.raises(ValueError, match="not an int"):
        cache.incr("text")


def test_data_types(cache: CacheHubCache) -> None:
    stuff = {
        "string": "this is a string",
        "int": 42,
        "float": 3.25,
        "bool": True,
        "none": None,
        "list": [1, 2, 3, 4],
        "dict": {"A": 1, "B": 2},
        "bytes": b"\x00binary\xff",
        "unicode": "Iñtërnâtiônàlizætiøn 日本語",
    }
    cache.set("stuff", stuff)
    assert cache.get("stuff") == stuff
    for key, value in stuff.items():
        cache.set(key, value)
        assert cache.get(key) == value


def test_unicode_keys(cache: CacheHubCache) -> None:
    for key in ("ascii", "ünïcødé", "ascii2", "日本語キー"):
        cache.set(key, key.upper())
        assert cache.get(key) == key.upper()
        assert cache.delete(key)


def test_set_many_and_delete_many(cache: CacheHubCache) -> None:
    assert cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"}) == []
    cache.delete_many(["key1", "key2", "nonexistent"])
    assert cache.get("key1") is None
    assert cache.get("key2") is None
    assert cache.get("key3") == "ham"


def test_clear(cache: CacheHubCache) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    cache.clear()
    assert cache.get_many(["key1", "key2"]) == {}


def test_expiration(cache: CacheHubCache, clock: FakeClock) -> None:
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("expire3", "very quickly", 1)
    clock.advance(2)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert not cache.has_key("expire3")


def test_default_timeout(backend_factory: Callable[..., CacheHubCache], clock: FakeClock) -> None:
    cache = backend_factory(TIMEOUT=10)
    cache.set("k", "v")
    clock.advance(9)
    assert cache.get("k") == "v"
    clock.advance(2)
    assert cache.get("k") is None
    forever = backend_factory(TIMEOUT=None)
    forever.set("f", 1)
    clock.advance(10**8)
    assert forever.get("f") == 1


def test_long_forever_and_float_timeouts(cache: CacheHubCache, clock: FakeClock) -> None:
    cache.set("long", "value", 60 * 60 * 24 * 365 * 10)
    cache.add("long_add", "value", 60 * 60 * 24 * 365 * 10)
    cache.set("forever", "value", None)
    assert cache.add("forever_add", "value", None)
    cache.set("float", "value", 1.5)
    clock.advance(1.4)
    assert cache.get("float") == "value"
    clock.advance(0.2)
    assert cache.get("float") is None
    clock.advance(60 * 60 * 24 * 365)
    assert cache.get_many(["long", "long_add", "forever", "forever_add"]) == dict.fromkeys(
        ["long", "long_add", "forever", "forever_add"], "value"
    )


def test_zero_timeout(cache: CacheHubCache) -> None:
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    cache.add("key2", "ham", 0)
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None
    assert cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None
    cache.set("key6", "replaced", 60)
    cache.set("key6", "gone", -1)  # a non-positive timeout also expires an existing value
    assert cache.get("key6") is None


def test_bad_timeout_type(cache: CacheHubCache) -> None:
    with pytest.raises(ValueError, match="number of seconds or None"):
        cache.set("k", "v", timeout="soon")


def test_touch(cache: CacheHubCache, clock: FakeClock) -> None:
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=4) is True
    clock.advance(2)
    assert cache.has_key("expire1")
    clock.advance(3)
    assert not cache.has_key("expire1")
    cache.set("expire2", "very quickly", timeout=1)
    assert cache.touch("expire2", timeout=None) is True
    clock.advance(2)
    assert cache.has_key("expire2")
    assert cache.touch("nonexistent") is False


def test_versioning_get_set(backend_factory: Callable[..., CacheHubCache]) -> None:
    v1 = backend_factory()
    v2 = backend_factory(VERSION=2)
    v1.set("answer1", 42)
    assert v1.get("answer1") == 42
    assert v1.get("answer1", version=1) == 42
    assert v1.get("answer1", version=2) is None
    assert v2.get("answer1") is None
    assert v2.get("answer1", version=1) == 42
    v2.set("answer2", 42)
    assert v2.get("answer2") == 42
    assert v1.get("answer2") is None
    assert v1.get("answer2", version=2) == 42


def test_versioning_add_has_delete_many(backend_factory: Callable[..., CacheHubCache]) -> None:
    cache = backend_factory()
    assert cache.add("answer", 37, version=2)
    assert not cache.add("answer", 38, version=2)
    assert cache.add("answer", 42, version=1)
    assert cache.has_key("answer", version=2)
    assert cache.has_key("answer", version=1)
    assert not cache.has_key("answer", version=3)
    cache.set_many({"a": 1, "b": 2}, version=3)
    assert cache.get_many(["a", "b"], version=3) == {"a": 1, "b": 2}
    assert cache.get_many(["a", "b"]) == {}
    cache.delete_many(["a", "b"], version=3)
    assert cache.get_many(["a", "b"], version=3) == {}
    assert cache.delete("answer", version=2)
    assert cache.get("answer", version=1) == 42


def test_incr_decr_version(cache: CacheHubCache) -> None:
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    assert cache.decr_version("answer", version=3) == 2
    assert cache.get("answer", version=2) == 42
    with pytest.raises(ValueError):
        cache.incr_version("does_not_exist")


def test_custom_key_func(backend_factory: Callable[..., CacheHubCache]) -> None:
    first = backend_factory(KEY_FUNCTION=lambda key, prefix, version: f"CUSTOM-{key}")
    other = backend_factory()
    first.set("answer1", 42)
    assert first.get("answer1") == 42
    assert other.get("answer1") is None
    assert other.cachehub.get("CUSTOM-answer1") == 42


def test_get_or_set(cache: CacheHubCache) -> None:
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get_or_set("null", "default") is None  # a cached None is a value
    assert cache.get_or_set("mykey", lambda: "callable") == "callable"
    assert cache.get_or_set("mykey", lambda: "ignored") == "callable"
    assert cache.get_or_set("brand_new", 1, version=2) == 1
    assert cache.get_or_set("brand_new", 2, version=2) == 1
    assert cache.get("brand_new", version=2) == 1
    assert cache.get_or_set("zero", "value", timeout=0) == "value"
    assert not cache.has_key("zero")


def test_invalid_key_warns_like_django(cache: CacheHubCache) -> None:
    with pytest.warns(CacheKeyWarning):
        cache.set("key with spaces", "value")
    with pytest.warns(CacheKeyWarning):
        assert cache.get("key with spaces") == "value"


def test_async_api(cache: CacheHubCache) -> None:
    async def run() -> Any:
        await cache.aset("async", "value")
        return await cache.aget("async"), await cache.ahas_key("async")

    assert asyncio.run(run()) == ("value", True)


def test_settings_alias_and_shared_across_threads() -> None:
    import threading

    default = caches["default"]
    assert isinstance(default, CacheHubCache)
    default.set("from-main", 1)
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(caches["default"].get("from-main")))
    thread.start()
    thread.join()
    assert seen == [1]  # Django builds one backend per thread; they share one cache


def test_location_names_registry_cache(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    monkeypatch.setattr(registry, "_current", None)
    caches_ = registry.configure({"main": {"class": "memory"}}, clock=clock)
    backend = CacheHubCache("main", {})
    assert backend.cachehub is caches_.get("main")
    backend.set("k", "v", 5)
    clock.advance(6)
    assert backend.get("k") is None


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="needs a cache"):
        CacheHubCache("", {})
    with pytest.raises(ConfigError, match="not both"):
        CacheHubCache("main", {"OPTIONS": {"class": "memory"}})
    with pytest.raises(ConfigError, match="unknown cache class"):
        CacheHubCache("", {"OPTIONS": {"class": "nosuchprovider"}})


def test_async_methods_take_the_native_path(
    cache: CacheHubCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django's defaults run the sync method in a thread; none may be called here.
    for name in ("add", "get", "set", "touch", "delete", "has_key", "get_many", "set_many"):
        monkeypatch.setattr(cache, name, None)
    for name in ("delete_many", "incr", "decr", "clear"):
        monkeypatch.setattr(cache, name, None)

    async def scenario() -> list[Any]:
        results: list[Any] = []
        await cache.aset("a", {"x": 1}, timeout=60)
        results.append(await cache.aget("a"))
        results.append(await cache.aadd("a", "other"))
        results.append(await cache.aadd("b", 0))
        results.append(await cache.aincr("b", 5))
        results.append(await cache.adecr("b", 2))
        results.append(await cache.atouch("a", timeout=30))
        results.append(await cache.ahas_key("a"))
        results.append(await cache.aget_many(["a", "b", "missing"]))
        await cache.aset_many({"c": 3, "d": 4})
        results.append(await cache.aget_or_set("e", lambda: "made"))
        results.append(await cache.adelete("c"))
        await cache.adelete_many(["d", "e"])
        results.append(await cache.aget_many(["c", "d", "e"]))
        await cache.aclear()
        results.append(await cache.aget("a", "gone"))
        return results

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == [
        {"x": 1},
        False,
        True,
        5,
        3,
        True,
        True,
        {"a": {"x": 1}, "b": 3},
        "made",
        True,
        {},
        "gone",
    ]


def test_async_incr_errors_match_the_sync_ones(cache: CacheHubCache) -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("absent")
        await cache.aset("text", "abc")
        with pytest.raises(TypeError):
            await cache.aincr("text")
        await cache.aset("zero", 1, timeout=0)  # a timeout <= 0 deletes
        assert await cache.ahas_key("zero") is False

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize(
    "timeout",
    [10**12, 2**70, float("inf"), 365_251 * 86_400],
    ids=["1e12", "2**70", "inf", "1000y+1d"],
)
def test_timeout_beyond_1000_years_keeps_the_entry_like_locmem(
    cache: CacheHubCache, clock: FakeClock, timeout: float
) -> None:
    """Django's LocMemCache (and its Redis backend, for finite values) store an entry with a
    timeout of any size; on main the adapter refused one above 1,000 years (cachehub's
    longest time span) with CacheValueError. Such an entry is now kept without expiry."""
    from django.core.cache.backends.locmem import LocMemCache

    reference = LocMemCache("timeout-beyond", {})
    reference.clear()  # LocMemCache instances of one name share their entries
    for backend in (reference, cache):
        backend.set("s", 1, timeout)
        assert backend.add("a", 2, timeout) is True
        backend.set_many({"m": 3}, timeout)
        backend.set("t", 4, 10)
        assert backend.touch("t", timeout) is True
        asyncio.run(backend.aset("as", 5, timeout))
        assert backend.get_many(["s", "a", "m", "t", "as"]) == {
            "s": 1,
            "a": 2,
            "m": 3,
            "t": 4,
            "as": 5,
        }
    clock.advance(10**10)  # 317 years: still there (the reference runs on real time)
    assert cache.get_many(["s", "a", "m", "t", "as"]) == {"s": 1, "a": 2, "m": 3, "t": 4, "as": 5}
    with pytest.raises(CacheValueError, match="finite"):
        cache.set("nan", 1, float("nan"))  # not a duration at all: still refused
