"""Operation statistics: hit/miss/error counters and latency histograms per cache.

:class:`StatsCollector` is a pluggy plugin implementing ``cachehub_operation``. Register
it for every cache of the process::

    from cachehub.plugins import register
    collector = StatsCollector()
    register(collector)

or hand its :meth:`StatsCollector.observe` to one cache built directly
(``MemoryCache(observer=collector.observe)``). Exporting to OpenTelemetry or Prometheus
is shown in docs/integrations.md; this module has no dependency beyond the core.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .errors import CacheValueError
from .hookspecs import OperationEvent, hookimpl

if TYPE_CHECKING:
    from .api import BaseCache

__all__ = [
    "DEFAULT_BUCKETS",
    "OperationStats",
    "StatsCollector",
    "cache_stats",
    "default_collector",
]

DEFAULT_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Upper bounds (seconds) of the latency histogram buckets; a final +Inf bucket follows."""


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Counters of one (cache, operation) pair at the time of a snapshot."""

    calls: int
    hits: int
    misses: int
    errors: int
    latency_sum: float
    """Total seconds spent in the operation."""
    latency_max: float
    buckets: tuple[tuple[float, int], ...]
    """Cumulative ``(upper bound, count)`` pairs, Prometheus style; the last bound is inf."""

    @property
    def hit_ratio(self) -> float | None:
        """hits / (hits + misses), or None before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None

    @property
    def latency_mean(self) -> float | None:
        """Mean seconds per call, or None before the first call."""
        return self.latency_sum / self.calls if self.calls else None


@dataclass(slots=True)
class _Counter:
    bucket_counts: list[int]
    calls: int = 0
    hits: int = 0
    misses: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0

    def freeze(self, bounds: tuple[float, ...]) -> OperationStats:
        running = 0
        cumulative = []
        for bound, count in zip((*bounds, float("inf")), self.bucket_counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return OperationStats(
            self.calls,
            self.hits,
            self.misses,
            self.errors,
            self.latency_sum,
            self.latency_max,
            tuple(cumulative),
        )


@dataclass(eq=False)  # identity equality and hashing: pluggy keys plugins by them
class StatsCollector:
    """Thread-safe per-cache, per-operation counters fed by operation events."""

    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    _counters: dict[tuple[str, str], _Counter] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        bounds = tuple(self.buckets)
        if not bounds or any(b <= 0 for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise CacheValueError(
                f"histogram buckets must be positive and strictly increasing, got {bounds!r}.",
                hint="pass e.g. buckets=(0.001, 0.01, 0.1, 1.0).",
            )
        self.buckets = bounds

    @hookimpl
    def cachehub_operation(self, event: OperationEvent) -> None:
        """pluggy hook: record one finished cache operation."""
        self.observe(event)

    def observe(self, event: OperationEvent) -> None:
        """Record ``event``; usable directly as a cache's ``observer=``."""
        slot = bisect.bisect_left(self.buckets, event.duration)
        with self._lock:
            counter = self._counters.get((event.cache, event.operation))
            if counter is None:
                counter = _Counter([0] * (len(self.buckets) + 1))
                self._counters[(event.cache, event.operation)] = counter
            counter.calls += 1
            counter.bucket_counts[slot] += 1
            counter.latency_sum += event.duration
            counter.latency_max = max(counter.latency_max, event.duration)
            if event.error is not None:
                counter.errors += 1
            elif event.hit is True:
                counter.hits += 1
            elif event.hit is False:
                counter.misses += 1

    def snapshot(self, cache: str | None = None) -> dict[str, dict[str, OperationStats]]:
        """``{cache name: {operation: OperationStats}}``, optionally for one cache only."""
        result: dict[str, dict[str, OperationStats]] = {}
        with self._lock:
            for (name, op), counter in self._counters.items():
                if cache is None or name == cache:
                    result.setdefault(name, {})[op] = counter.freeze(self.buckets)
        return result

    def reset(self) -> None:
        """Forget every counter (e.g. after exporting them)."""
        with self._lock:
            self._counters.clear()


_default: StatsCollector | None = None
_default_lock = threading.Lock()


def default_collector() -> StatsCollector:
    """The process-wide collector, registered with :mod:`cachehub.plugins` on first use."""
    global _default
    with _default_lock:
        if _default is None:
            from .plugins import register

            collector = StatsCollector()
            register(collector, name="cachehub.stats")
            _default = collector
        return _default


def cache_stats(
    cache: BaseCache | str, collector: StatsCollector | None = None
) -> Mapping[str, Any]:
    """A quick summary of one cache's activity: totals plus per-operation stats.

    ``cache`` is a cache object or its name; ``collector`` defaults to
    :func:`default_collector` (which only sees caches created after it was registered,
    or caches built with ``observer=collector.observe``).
    """
    name = cache if isinstance(cache, str) else cache.name
    stats = (collector or default_collector()).snapshot(name).get(name, {})
    hits = sum(s.hits for s in stats.values())
    misses = sum(s.misses for s in stats.values())
    return {
        "cache": name,
        "calls": sum(s.calls for s in stats.values()),
        "hits": hits,
        "misses": misses,
        "errors": sum(s.errors for s in stats.values()),
        "hit_ratio": hits / (hits + misses) if hits + misses else None,
        "operations": stats,
    }
