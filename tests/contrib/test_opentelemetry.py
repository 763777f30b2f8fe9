"""cachehub.contrib.opentelemetry: spans and metrics with the SDK's in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cachehub import registry
from cachehub.contrib import opentelemetry as otel
from cachehub.errors import CacheValueError
from cachehub.hookspecs import OperationEvent
from cachehub.plugins import plugin_manager


@pytest.fixture
def exporters() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, Any]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield spans, reader, (tracer_provider, meter_provider)
    otel.uninstrument()


@pytest.fixture
def caches(monkeypatch: pytest.MonkeyPatch) -> registry.Caches:
    monkeypatch.setattr(registry, "_current", None)
    return registry.configure({"pages": {"class": "memory"}})


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_spans_and_metrics_follow_the_database_conventions(
    exporters: tuple[InMemorySpanExporter, InMemoryMetricReader, Any], caches: registry.Caches
) -> None:
    spans, reader, (tracer_provider, meter_provider) = exporters
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    cache = caches.get("pages")
    cache.put("k", "v")
    assert cache.get("k") == "v"
    assert cache.get("absent") is None
    with pytest.raises(CacheValueError):
        cache.incr("k")  # not a number

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["put pages", "get pages", "get pages", "incr pages"]
    put, hit, miss, failed = finished
    assert put.kind is SpanKind.CLIENT
    assert put.attributes is not None
    assert put.attributes["db.system.name"] == "cachehub.memory"
    assert put.attributes["db.operation.name"] == "put"
    assert put.attributes["db.namespace"] == "pages"
    assert "cachehub.cache.hit" not in put.attributes
    assert hit.attributes is not None
    assert hit.attributes["cachehub.cache.hit"] is True
    assert miss.attributes is not None
    assert miss.attributes["cachehub.cache.hit"] is False
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "cachehub.errors.CacheValueError"
    assert all(s.end_time is not None and s.start_time is not None for s in finished)
    assert all(s.end_time >= s.start_time for s in finished)  # type: ignore[operator]
    # Keys are never recorded (they may be personal data).
    assert not any(v == "k" for s in finished for v in (s.attributes or {}).values())

    durations = _points(reader, "db.client.operation.duration")
    gets = [p for p in durations if p.attributes["db.operation.name"] == "get"]
    assert {p.attributes["cachehub.cache.hit"]: p.count for p in gets} == {True: 1, False: 1}
    assert [p.count for p in durations if p.attributes["db.operation.name"] == "put"] == [1]
    assert list(gets[0].explicit_bounds) == list(otel.DURATION_BUCKETS)
    errors = [p for p in durations if "error.type" in p.attributes]
    assert [p.attributes["db.operation.name"] for p in errors] == ["incr"]
    lookups = {
        p.attributes["cachehub.cache.result"]: p.value
        for p in _points(reader, "cachehub.cache.lookups")
    }
    assert lookups == {"hit": 1, "miss": 1}


def test_costs_nothing_when_not_enabled(
    caches: registry.Caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[OperationEvent] = []
    monkeypatch.setattr(otel.OpenTelemetryPlugin, "observe", lambda self, e: calls.append(e))
    assert not plugin_manager().hook.cachehub_operation.get_hookimpls()
    cache = caches.get("pages")
    assert cache._observer is None  # no hook registered: no event is even built
    for i in range(50):
        cache.put(f"k{i}", i)
        cache.get(f"k{i}")
    assert calls == []


def test_instrument_and_uninstrument_switch_live_caches(
    exporters: tuple[InMemorySpanExporter, InMemoryMetricReader, Any], caches: registry.Caches
) -> None:
    spans, _reader, (tracer_provider, meter_provider) = exporters
    cache = caches.get("pages")
    cache.get("before")
    plugin = otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert cache._observer is not None
    cache.get("during")
    again = otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    assert again is not plugin
    assert len(plugin_manager().hook.cachehub_operation.get_hookimpls()) == 1  # replaced
    cache.get("during")
    otel.uninstrument()
    otel.uninstrument()  # idempotent
    assert cache._observer is None
    cache.get("after")
    assert len(spans.get_finished_spans()) == 2


def test_observer_on_a_directly_built_cache_and_system_names(
    exporters: tuple[InMemorySpanExporter, InMemoryMetricReader, Any],
) -> None:
    from cachehub_memory import MemoryCache

    spans, _reader, (tracer_provider, meter_provider) = exporters
    plugin = otel.OpenTelemetryPlugin(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    cache = MemoryCache(name="direct", observer=plugin.observe)
    cache.exists("k")
    (span,) = spans.get_finished_spans()
    assert span.name == "exists direct"
    assert span.attributes is not None
    assert span.attributes["cachehub.cache.hit"] is False
    assert otel.db_system("RedisCache") == "redis"
    assert otel.db_system("RedisSentinelCache") == "redis"
    assert otel.db_system("DynamoDBCache") == "aws.dynamodb"
    assert otel.db_system("MemoryCache") == "cachehub.memory"
    assert otel.db_system("Cache") == "cachehub.cache"


def test_hostile_names_are_bounded(
    exporters: tuple[InMemorySpanExporter, InMemoryMetricReader, Any],
) -> None:
    """Attribute dicts are cached per (cache, provider, operation), but never unboundedly."""
    _spans, _reader, (tracer_provider, meter_provider) = exporters
    plugin = otel.OpenTelemetryPlugin(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    for i in range(10_050):
        plugin.observe(OperationEvent(f"c{i}", "MemoryCache", "get", None, True, 0.0, None))
    assert len(plugin._attrs) == 10_000
