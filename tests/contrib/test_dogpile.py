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
