"""Module-level cache functions (Lucee's cachePut, cacheGet...) on the global registry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cachehub import functions as fn
from cachehub import registry
from cachehub.errors import CacheKeyError, ConfigError, ReadOnlyCacheError
from cachehub.lock import Lock
from cachehub.registry import UnknownCacheError, configure
from cachehub.testing import FakeClock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    monkeypatch.setattr(registry, "_current", None)
    clock = FakeClock(1_000_000.0)
    configure(
        {
            "main": {"class": "memory", "default": True},
            "other": {"class": "memory"},
            "ro": {"class": "memory", "readOnly": True},
        },
        clock=clock,
    )
    return clock


@pytest.mark.usefixtures("clock")
def test_put_get_exists_delete_default_and_named() -> None:
    fn.put("k", "main-value")
    fn.put("k", "other-value", cache_name="other")
    assert fn.get("k") == "main-value"
    assert fn.get("k", cache_name="main") == "main-value"
    assert fn.get("k", cache_name="OTHER") == "other-value"
    assert fn.exists("k", cache_name="other")
    assert fn.delete("k", cache_name="other") is True
    assert not fn.exists("k", cache_name="other")
    assert fn.exists("k")
    assert fn.cache() is fn.cache("main")


@pytest.mark.usefixtures("clock")
def test_get_default_and_throw() -> None:
    assert fn.get("absent") is None
    assert fn.get("absent", "fallback") == "fallback"
    with pytest.raises(CacheKeyError, match="cache 'other'"):
        fn.get("absent", throw_when_not_exist=True, cache_name="other")


def test_expiry_arguments_are_passed(clock: FakeClock) -> None:
    fn.put("t", 1, time_span=10)
    fn.put("i", 1, idle_time=timedelta(seconds=5))
    clock.advance(6)
    assert fn.get("i") is None
    assert fn.get("t") == 1
    assert fn.touch("t", time_span=100)
    clock.advance(50)
    assert fn.get("t") == 1


@pytest.mark.usefixtures("clock")
def test_keys_get_all_count_clear() -> None:
    fn.put_many({"user:1": "a", "user:2": "b", "order:1": "c"})
    fn.put("user:9", "z", cache_name="other")
    assert sorted(fn.keys()) == ["order:1", "user:1", "user:2"]
    assert sorted(fn.keys("user:*")) == ["user:1", "user:2"]
    assert fn.get_all("user:*") == {"user:1": "a", "user:2": "b"}
    assert fn.count() == 3
    assert fn.count(cache_name="other") == 1
    assert fn.clear("user:*") == 2
    assert fn.count() == 1
    assert fn.count(cache_name="other") == 1


@pytest.mark.usefixtures("clock")
def test_metadata() -> None:
    fn.put("m", 1, time_span=60)
    fn.get("m")
    meta = fn.metadata("m")
    assert meta.hit_count == 1
    assert meta.time_to_live == timedelta(seconds=60)
    with pytest.raises(CacheKeyError):
        fn.metadata("missing", cache_name="other")


@pytest.mark.usefixtures("clock")
def test_add_incr_decr() -> None:
    assert fn.add("a", 1) is True
    assert fn.add("a", 2) is False
    assert fn.get("a") == 1
    assert fn.incr("n") == 1
    assert fn.incr("n", 5) == 6
    assert fn.decr("n", 2) == 4
    assert fn.incr("n", cache_name="other") == 1


@pytest.mark.usefixtures("clock")
def test_batches() -> None:
    fn.put_many({"a": 1, "b": None}, cache_name="other")
    assert fn.get_many(["a", "b", "c"], cache_name="other") == {"a": 1, "b": None}
    assert fn.get_many(["a"]) == {}
    assert fn.delete_many(["a", "b", "c"], cache_name="other") == 2


@pytest.mark.usefixtures("clock")
def test_get_or_set() -> None:
    calls: list[int] = []

    def create() -> int:
        calls.append(1)
        return 42

    assert fn.get_or_set("g", create) == 42
    assert fn.get_or_set("g", create) == 42
    assert fn.get_or_set("g", create, cache_name="other") == 42
    assert len(calls) == 2


@pytest.mark.usefixtures("clock")
def test_lock() -> None:
    lock = fn.lock("job", ttl=10, timeout=0, cache_name="other")
    assert isinstance(lock, Lock)
    with lock:
        assert lock.held
        assert not fn.exists("lock:job", cache_name="other")  # locks are not entries
        assert not fn.lock("job", timeout=0, cache_name="other").acquire(blocking=False)
    assert fn.lock("job", timeout=0, cache_name="other").acquire(blocking=False)


@pytest.mark.usefixtures("clock")
def test_read_only_cache_by_name() -> None:
    with pytest.raises(ReadOnlyCacheError):
        fn.put("k", 1, cache_name="ro")
    assert fn.get("k", "d", cache_name="ro") == "d"


@pytest.mark.usefixtures("clock")
def test_unknown_cache_name() -> None:
    with pytest.raises(UnknownCacheError, match="Did you mean 'other'"):
        fn.get("k", cache_name="othr")


def test_functions_need_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(registry, "_current", None)
    monkeypatch.delenv(registry.CONFIG_ENV, raising=False)
    monkeypatch.chdir(str(tmp_path))
    with pytest.raises(ConfigError, match="not configured"):
        fn.put("k", 1)


@pytest.mark.parametrize(
    ("function", "lucee"),
    [
        (fn.put, "cachePut"),
        (fn.get, "cacheGet"),
        (fn.exists, "cacheIdExists"),
        (fn.delete, "cacheDelete"),
        (fn.clear, "cacheClear"),
        (fn.keys, "cacheGetAllIds"),
        (fn.get_all, "cacheGetAll"),
        (fn.count, "cacheCount"),
        (fn.metadata, "cacheGetMetadata"),
    ],
)
def test_docstrings_name_the_lucee_function(function: object, lucee: str) -> None:
    assert lucee in (function.__doc__ or "")
