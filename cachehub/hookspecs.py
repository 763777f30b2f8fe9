"""pluggy hook specifications: how plugins add providers and observe operations.

A provider distribution registers a module under the ``cachehub`` entry-point group::

    [project.entry-points.cachehub]
    dynamodb = "cachehub_dynamodb.plugin"

and that module implements :func:`cachehub_providers` with :data:`hookimpl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pluggy

PROJECT = "cachehub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["OperationEvent", "hookimpl", "hookspec", "cachehub_providers", "cachehub_operation"]


@dataclass(frozen=True, slots=True)
class OperationEvent:
    """One cache operation, as reported to :func:`cachehub_operation` listeners."""

    cache: str
    provider: str
    operation: str
    key: str | None
    hit: bool | None
    """For ``get``/``exists``: whether a live entry was found; None for other operations."""
    duration: float
    """Wall time in seconds, including the backend round trip."""
    error: BaseException | None


@hookspec
def cachehub_providers() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return ``{alias: provider}`` where provider is a class or a ``"module:Class"`` path.

    Aliases are what a config's ``class`` key may name instead of a dotted path.
    """


@hookspec
def cachehub_operation(event: OperationEvent) -> None:
    """Observe a finished cache operation (metrics, tracing, logging).

    Only called when at least one plugin implements it, so an unobserved cache pays
    nothing. Implementations must be fast and must not raise.
    """
