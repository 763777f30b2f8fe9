"""Registers the memory provider with cachehub through the ``cachehub`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from cachehub.hookspecs import LocalBackend, hookimpl
from cachehub.plugins import lucee_classes


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``memory`` plus the Lucee class names an existing .CFConfig.json may carry."""
    target = "cachehub_memory:MemoryCache"
    return {"memory": target, **dict.fromkeys(lucee_classes("memory"), target)}


@contextmanager
def _tour_backend() -> Iterator[LocalBackend]:
    yield LocalBackend({"class": "memory"}, "in-memory cache (this process)")


@hookimpl
def cachehub_tour_backends() -> Mapping[str, Callable[[], AbstractContextManager[LocalBackend]]]:
    """The in-process cache, for the tour."""
    return {"memory": _tour_backend}
