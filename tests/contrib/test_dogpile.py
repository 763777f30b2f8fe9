"""CacheHubBackend against dogpile.cache's shipped generic backend and mutex suites."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE, CachedValue
from dogpile.testing.fixtures import _GenericBackendTestSuite, _GenericMutexTestSuite

from cachehub.contrib.dogpile import CacheHubBackend, CacheHubMutex
from cachehub.errors import CacheValueError, ConfigError

# No register_backend() here: "cachehub" resolves through the package's
# dogpile.cache entry point, as it does for users (test_entry_point_names_the_backend).

_SHARED = MemoryCache(name="dogpile-suite", namespace="dogpile-suite:")


class TestGenericBackend(_GenericBackendTestSuite):
    backend = "cachehub"
    config_args = {"arguments": {"cache": _SHARED}}  # noqa: RUF012 (dogpile reads it)


class TestGenericMutex(_GenericMutexTestSuite):
    backend = "cachehub"
    config_args = {"arguments": {"cache": _SHARED}}  # noqa: RUF012 (dogpile reads it)


def test_entry_point_names_the_backend() -> None:
    from dogpile.cache.region import _backend_loader
    from dogpile.util.langhelpers import PluginLoader

    assert "cachehub" not in _backend_loader._unloaded  # nobody registered it by hand
    # A fresh loader knows only the entry points (stevedore), like a new process.
    assert PluginLoader("dogpile.cache").load("cachehub") is CacheHubBackend


def test_cached_value_roundtrip_through_codec() -> None:
    backend = CacheHubBackend({"cache": MemoryCache(namespace="cv:")})
    backend.set("k", CachedValue({"a": [1, 2]}, {"ct": 1.5, "v": 2}))
    value = backend.get("k")
    assert isinstance(value, CachedValue)
    assert value.payload == {"a": [1, 2]}
    assert value.metadata == {"ct": 1.5, "v": 2}
    backend.cache.put("foreign", "not from dogpile")
    assert backend.get("foreign") is NO_VALUE


def test_region_with_inline_entry_and_json_serializer() -> None:
    import json

    region = make_region(
        serializer=lambda v: json.dumps(v).encode(), deserializer=json.loads
    ).configure("cachehub", arguments={"cache": {"class": "memory"}, "name": "dogpile-json"})
    assert region.get_or_create("k", lambda: {"x": 1}) == {"x": 1}
    assert isinstance(region.backend.get_serialized("k"), bytes)


def test_mutex_is_per_thread_and_distributed() -> None:
    cache = MemoryCache(namespace="mutex:")
    first = CacheHubBackend({"cache": cache}).get_mutex("key")
    second = CacheHubBackend({"cache": cache}).get_mutex("key")  # e.g. another process
    assert isinstance(first, CacheHubMutex)
    assert first.acquire()
    assert second.locked()
    assert not second.acquire(False)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(first.acquire(False)))
    thread.start()
    thread.join()
    assert results == [False]  # the shared object does not let another thread in
    with pytest.raises(CacheValueError, match="does not hold it"):
        second.release()
    first.release()
    assert not first.locked()
    assert second.acquire(False)
    second.release()


def test_backend_argument_errors() -> None:
    with pytest.raises(ConfigError, match="needs a 'cache' argument"):
        CacheHubBackend({})
    with pytest.raises(ConfigError, match="lock_timeout=-1"):
        CacheHubBackend({"cache": MemoryCache(), "lock_timeout": -1})


def test_backend_time_span(clock: Any) -> None:
    cache = MemoryCache(namespace="ts:", clock=clock)
    backend = CacheHubBackend({"cache": cache, "time_span": 10})
    backend.set("k", b"v")
    clock.advance(11)
    assert backend.get("k") is NO_VALUE


_PLANTED = [
    pytest.param(b"raw bytes", id="bytes"),
    pytest.param([1, {}], id="no-metadata"),
    pytest.param([1, {"v": 2}], id="no-ct"),
    pytest.param([1, {"v": 2, "ct": "yesterday"}], id="ct-str"),
    pytest.param([1, {"v": 2, "ct": None}], id="ct-none"),
    pytest.param([1, {"v": 2, "ct": float("nan")}], id="ct-nan"),
    pytest.param([1, {"v": 2, "ct": 10**400}], id="ct-int-beyond-float"),
    pytest.param([1, {"v": True, "ct": 1.0}], id="v-bool"),
    pytest.param([1, {"v": 2.0, "ct": 1.0}], id="v-float"),
    pytest.param(("x", {"ct": 1.0}), id="tuple-no-v"),
    pytest.param("a string", id="str"),
]


@pytest.mark.parametrize("planted", _PLANTED)
def test_foreign_value_without_serializer_is_regenerated(planted: Any) -> None:
    """A value no region wrote (another client, an older format) is a miss that dogpile
    regenerates; on main the region failed on it (AttributeError on bytes, KeyError 'v'
    or 'ct', TypeError comparing a str 'ct')."""
    cache = MemoryCache(namespace="planted:")
    region = make_region().configure("cachehub", expiration_time=60, arguments={"cache": cache})
    cache.put("k", planted)
    cache.put("m", planted)
    assert region.get_or_create("k", lambda: "fresh") == "fresh"
    assert region.get("k") == "fresh"  # replaced by the regenerated value
    assert region.get("m") is NO_VALUE
    assert region.get_multi(["m", "k"]) == [NO_VALUE, "fresh"]


def test_cached_value_under_a_serializer_region_is_regenerated() -> None:
    """A region with a serializer reads only bytes: a ``[payload, metadata]`` entry (written
    by a region without one, on the same cache) is a miss, not an AttributeError
    ('CachedValue' object has no attribute 'partition') as on main."""
    import json

    cache = MemoryCache(namespace="mixed:")
    plain = make_region().configure("cachehub", arguments={"cache": cache})
    serialized = make_region(
        serializer=lambda v: json.dumps(v).encode(), deserializer=json.loads
    ).configure("cachehub", arguments={"cache": cache})
    plain.set("k", {"x": 1})
    plain.set("m", {"x": 1})
    assert serialized.get_or_create("k", lambda: {"x": 2}) == {"x": 2}
    assert serialized.get_multi(["k", "m"]) == [{"x": 2}, NO_VALUE]
    cache.put("s", "a string")
    assert serialized.backend.get_serialized("s") is NO_VALUE


def test_async_creation_runner_releases_the_mutex_in_its_thread() -> None:
    """dogpile's ``async_creation_runner`` (its documented recipe) releases the mutex in
    the thread it starts. Side by side with dogpile's memory backend: the stale value is
    served, the runner stores the new one, and the lock is free afterwards. On main the
    release raised CacheValueError in the runner's thread and the lock stayed held until
    ``lock_timeout``, so no process could regenerate the key meanwhile."""
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def runner(cache: Any, key: str, creator: Any, mutex: Any) -> None:
        def run() -> None:
            try:
                cache.set(key, creator())
            finally:
                try:
                    mutex.release()
                except BaseException as exc:  # recorded: a thread's error is otherwise lost
                    failures.append(exc)

        thread = threading.Thread(target=run)
        threads.append(thread)
        thread.start()

    cache = MemoryCache(namespace="async-runner:")
    for backend, arguments in (("dogpile.cache.memory", {}), ("cachehub", {"cache": cache})):
        region = make_region(async_creation_runner=runner).configure(
            backend, expiration_time=3600, arguments=arguments
        )
        create = iter(range(1, 10)).__next__
        assert region.get_or_create("k", create) == 1
        region.invalidate(hard=False)  # stale: served while the runner regenerates
        assert region.get_or_create("k", create) == 1
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()
        threads.clear()
        assert failures == []
        assert region.get("k") == 2
    assert not CacheHubBackend({"cache": cache}).get_mutex("k").locked()
