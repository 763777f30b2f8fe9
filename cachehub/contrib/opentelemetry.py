"""OpenTelemetry spans and metrics for every cache operation.

Install with ``pip install cachehub[opentelemetry]``, then::

    from cachehub.contrib.opentelemetry import instrument
    instrument()            # the global tracer and meter providers

:func:`instrument` registers an :class:`OpenTelemetryPlugin` implementing the
``cachehub_operation`` hook, so every cache of a :class:`~cachehub.registry.Caches`
registry reports to it (a cache built directly takes ``observer=plugin.observe``).
Nothing is imported or computed before that: with no plugin registered, caches have no
observer and pay nothing.

It follows OpenTelemetry's database client semantic conventions: one ``CLIENT`` span
per operation named ``"{db.operation.name} {db.namespace}"`` (e.g. ``get sessions``),
and the ``db.client.operation.duration`` histogram (seconds), both with
``db.system.name`` (``redis``, ``aws.dynamodb``, or ``cachehub.<provider>``),
``db.operation.name``, ``db.namespace`` (the cache's name) and, when the operation
failed, ``error.type`` (the exception's qualified class name). Lookups (``get``,
``exists``) also carry ``cachehub.cache.hit`` and count into ``cachehub.cache.lookups``
(attribute ``cachehub.cache.result``: ``hit`` / ``miss``). Keys are not recorded: they
may be personal data (session ids, e-mail addresses).
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..hookspecs import OperationEvent, hookimpl
from ..plugins import register, unregister

__all__ = [
    "DURATION_BUCKETS",
    "OpenTelemetryPlugin",
    "db_system",
    "instrument",
    "uninstrument",
]

DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
"""The bucket boundaries the conventions advise for ``db.client.operation.duration``."""

_SYSTEMS: Final = {"redis": "redis", "dynamodb": "aws.dynamodb"}
_LOOKUPS: Final = frozenset({"get", "exists"})
_NAME: Final = "cachehub"
_PLUGIN_NAME: Final = "cachehub.contrib.opentelemetry"
_state_lock = threading.RLock()  # instrument() calls uninstrument() under it
_installed: list[OpenTelemetryPlugin] = []


def db_system(provider: str) -> str:
    """``db.system.name`` for a provider class name: the conventions' well-known value
    where there is one, else ``cachehub.<provider>`` (e.g. ``cachehub.memory``)."""
    lowered = provider.lower()
    for needle, system in _SYSTEMS.items():
        if needle in lowered:
            return system
    short = lowered.removesuffix("cache") or lowered
    return f"cachehub.{short}"


def _version() -> str:
    """The instrumentation scope's version: cachehub's distribution version."""
    try:
        return importlib.metadata.version("cachehub")
    except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
        return "unknown"


def _error_type(error: BaseException) -> str:
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class OpenTelemetryPlugin:
    """A ``cachehub_operation`` plugin recording spans and metrics.

    Args:
        tracer_provider: where spans go; the global provider when None.
        meter_provider: where metrics go; the global provider when None.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        version = _version()
        self._tracer = trace.get_tracer(_NAME, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_NAME, version, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of cache operations.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._lookups = meter.create_counter(
            "cachehub.cache.lookups",
            unit="{lookup}",
            description="Cache lookups, by result (hit or miss).",
        )
        # Attribute dicts per (cache, provider, operation): built once, shared by every
        # event of that triple (OpenTelemetry only reads them).
        self._attrs: dict[tuple[str, str, str], dict[str, Any]] = {}

    def _base(self, event: OperationEvent) -> dict[str, Any]:
        triple = (event.cache, event.provider, event.operation)
        attrs = self._attrs.get(triple)
        if attrs is None:
            attrs = {
                "db.system.name": db_system(event.provider),
                "db.operation.name": event.operation,
                "db.namespace": event.cache,
            }
            if len(self._attrs) < 10_000:  # bounded: names come from configuration
                self._attrs[triple] = attrs
        return attrs

    @hookimpl
    def cachehub_operation(self, event: OperationEvent) -> None:
        """Record one finished operation as a span and into the metrics."""
        self.observe(event)

    def observe(self, event: OperationEvent) -> None:
        """The same, as an ``observer=`` callable for a cache built directly."""
        attrs = self._base(event)
        if event.error is not None or event.hit is not None:
            attrs = dict(attrs)
            if event.error is not None:
                attrs["error.type"] = _error_type(event.error)
            if event.hit is not None:
                attrs["cachehub.cache.hit"] = event.hit
        end = time.time_ns()
        span = self._tracer.start_span(
            f"{event.operation} {event.cache}",
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=end - int(event.duration * 1e9),
        )
        if event.error is not None:
            # The type only: messages may quote keys, and keys may be personal data.
            span.set_status(Status(StatusCode.ERROR, attrs["error.type"]))
        span.end(end_time=end)
        self._duration.record(event.duration, attrs)
        if event.hit is not None and event.error is None:
            self._lookups.add(
                1,
                {**self._base(event), "cachehub.cache.result": "hit" if event.hit else "miss"},
            )


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> OpenTelemetryPlugin:
    """Register an :class:`OpenTelemetryPlugin` for every registry cache of the process.

    Calling it again replaces the previous plugin (so providers can be swapped).
    """
    plugin = OpenTelemetryPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    with _state_lock:
        uninstrument()
        register(plugin, name=_PLUGIN_NAME)
        _installed.append(plugin)
    return plugin


def uninstrument() -> None:
    """Unregister the plugin :func:`instrument` registered, if any: caches stop paying."""
    with _state_lock:
        while _installed:
            unregister(_installed.pop())
