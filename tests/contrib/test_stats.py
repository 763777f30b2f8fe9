"""StatsCollector: counters, histograms, thread safety, plugin registration."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from cachehub_memory import MemoryCache

from cachehub import registry
from cachehub import stats as stats_module
from cachehub.errors import CacheKeyError, CacheValueError
from cachehub.hookspecs import OperationEvent
from cachehub.plugins import register, unregister
from cachehub.stats import StatsCollector, cache_stats


def event(
    op: str, *, hit: bool | None = None, duration: float = 0.001, error: bool = False
) -> OperationEvent:
    return OperationEvent(
        cache="c",
        provider="P",
        operation=op,
        key="k",
        hit=hit,
        duration=duration,
        error=RuntimeError("x") if error else None,
    )


def test_counts_hits_misses_errors_and_latency() -> None:
    stats = StatsCollector(buckets=(0.01, 0.1))
    stats.observe(event("get", hit=True, duration=0.005))
    stats.observe(event("get", hit=False, duration=0.05))
    stats.observe(event("get", hit=True, duration=0.5))
    stats.observe(event("put", duration=0.02, error=True))
    get = stats.snapshot()["c"]["get"]
    assert (get.calls, get.hits, get.misses, get.errors) == (3, 2, 1, 0)
    assert get.latency_sum == pytest.approx(0.555)
    assert get.latency_max == 0.5
    assert get.buckets == ((0.01, 1), (0.1, 2), (float("inf"), 3))
    assert get.hit_ratio == pytest.approx(2 / 3)
    assert get.latency_mean == pytest.approx(0.185)
    put = stats.snapshot("c")["c"]["put"]
    assert (put.calls, put.errors, put.hit_ratio) == (1, 1, None)
    assert stats.snapshot("other") == {}
    stats.reset()
    assert stats.snapshot() == {}


def test_bucket_validation() -> None:
    with pytest.raises(CacheValueError, match="strictly increasing"):
        StatsCollector(buckets=(0.1, 0.01))
    with pytest.raises(CacheValueError, match="strictly increasing"):
        StatsCollector(buckets=())


def test_observer_on_a_directly_built_cache(make_cache: Callable[..., MemoryCache]) -> None:
    stats = StatsCollector()
    cache = make_cache(name="direct", observer=stats.observe)
    cache.put("a", 1)
    cache.get("a")
    cache.get("missing")
    with pytest.raises(CacheKeyError):
        cache.get("missing", throw_when_not_exist=True)
    summary = cache_stats(cache, stats)
    assert summary["hits"] == 1
    assert summary["misses"] == 2
    assert summary["operations"]["put"].calls == 1
    assert summary["hit_ratio"] == pytest.approx(1 / 3)


def test_thread_safe_counting() -> None:
    stats = StatsCollector()
    workers, rounds = 8, 500

    def work() -> None:
        for i in range(rounds):
            stats.observe(event("get", hit=i % 2 == 0))

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    get = stats.snapshot()["c"]["get"]
    assert get.calls == workers * rounds
    assert get.hits == get.misses == workers * rounds // 2
    assert get.buckets[-1][1] == workers * rounds


def test_registered_as_plugin_sees_registry_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_current", None)
    caches = registry.configure({"main": {"class": "memory"}})
    stats = StatsCollector()
    register(stats)
    try:
        cache = caches.get("main")
        cache.put("k", "v")
        assert cache.get("k") == "v"
        assert cache_stats("main", stats)["hits"] == 1
    finally:
        unregister(stats)
    cache.get("k")
    assert cache_stats("main", stats)["hits"] == 1  # unregistered: no longer counting


def test_cache_stats_method_starts_collecting_on_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats_module, "_default", None)  # a fresh process-wide collector
    cache = MemoryCache(name="stats-method")
    try:
        assert cache.stats()["calls"] == 0
        cache.put("a", 1)
        cache.get("a")
        cache.get("missing")
        summary = cache.stats()
    finally:
        unregister(stats_module.default_collector())  # later tests expect no listener
    assert (summary["calls"], summary["hits"], summary["misses"]) == (3, 1, 1)
    assert summary["hit_ratio"] == 0.5
