"""pluggy hook specifications: how plugins add providers and observe operations.

A provider distribution registers a module under the ``cachehub`` entry-point group::

    [project.entry-points.cachehub]
    dynamodb = "cachehub_dynamodb.plugin"

and that module implements :func:`cachehub_providers` with :data:`hookimpl`. The other
hooks let a provider observe operations and extend the ``cachehub`` command line (its own
commands, ``doctor`` checks and advice, ``tour`` backends and steps) without the core
importing the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .api import BaseCache
    from .errors import CacheError

PROJECT = "cachehub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "DoctorAdvice",
    "DoctorCheck",
    "LocalBackend",
    "OperationEvent",
    "hookimpl",
    "hookspec",
    "cachehub_cli_commands",
    "cachehub_doctor_advice",
    "cachehub_doctor_checks",
    "cachehub_operation",
    "cachehub_providers",
    "cachehub_tour_backends",
    "cachehub_tour_steps",
]


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


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    """One line of the ``cachehub doctor`` report."""

    name: str
    status: str
    """``ok``, ``info``, ``warn`` or ``fail``; a ``fail`` stops the cache's remaining checks."""
    detail: str
    advice: str | None = None
    missing_permission: str | None = None
    """A backend permission the check found missing (e.g. ``dynamodb:DescribeTimeToLive``)."""

    @classmethod
    def failed(cls, name: str, error: CacheError, advice: DoctorAdvice | None) -> DoctorCheck:
        """The ``fail`` line of step ``name`` that raised ``error``: what to do is
        ``advice`` (a provider's :func:`cachehub_doctor_advice`), else the error's hint."""
        return cls(
            name,
            "fail",
            str(error),
            advice.advice if advice else error.hint,
            advice.missing_permission if advice else None,
        )


@dataclass(frozen=True, slots=True)
class DoctorAdvice:
    """What to do about a failed ``doctor`` step, and the permission it lacked, if any."""

    advice: str
    missing_permission: str | None = None


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """A throw-away backend for ``cachehub tour``: a cache entry, or None when unavailable."""

    entry: Mapping[str, Any] | None
    """The cache entry (``{"class": ..., "custom": {...}}``) using the backend."""
    note: str
    """One line for the user: where the backend runs, or why it was skipped."""
    default: bool = False
    """Whether the tour's default cache should use it."""


@hookspec
def cachehub_cli_commands() -> Sequence[Any]:  # type: ignore[empty-body]
    """Return ``click`` commands to add to the ``cachehub`` command line."""


@hookspec
def cachehub_doctor_checks(cache: BaseCache) -> Sequence[DoctorCheck] | None:
    """Run provider-specific ``doctor`` checks on ``cache``; None when it is not yours.

    They run before the generic round trip and replace the generic connection check.
    Implementations record failures as checks and never raise.
    """


@hookspec(firstresult=True)
def cachehub_doctor_advice(cache: BaseCache, step: str, error: CacheError) -> DoctorAdvice | None:
    """Advice for ``error`` raised by ``doctor`` step ``step`` on ``cache``, or None.

    Choose it by the error's type (and the backend's error code in its ``__context__``
    chain: providers raise typed errors ``from None``, so that the client library's text
    stays out of tracebacks), never by matching message text. The first non-None answer
    wins.
    """


@hookspec
def cachehub_tour_backends() -> Mapping[str, Callable[[], AbstractContextManager[LocalBackend]]]:  # type: ignore[empty-body]
    """``{cache name: factory}``: each factory is a context manager that starts a
    throw-away backend for ``cachehub tour`` (and stops it on exit)."""


@hookspec
def cachehub_tour_steps(cache: BaseCache, name: str, namespace: str) -> Any:
    """Extra ``tour`` results for ``cache`` (a ``cachehub.cli.results.ScenarioResult``),
    e.g. provider-specific commands; None when ``cache`` is not yours. Keys must stay
    under ``namespace`` and be removed afterwards."""
