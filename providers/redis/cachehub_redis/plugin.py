"""Registers the Redis provider with cachehub through the ``cachehub`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from cachehub.hookspecs import LocalBackend, hookimpl
from cachehub.plugins import lucee_classes


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``redis`` plus the class names of Lucee's Redis extension found in .CFConfig.json."""
    target = "cachehub_redis:RedisCache"
    return {"redis": target, **dict.fromkeys(lucee_classes("redis"), target)}


@hookimpl
def cachehub_tour_backends() -> Mapping[str, Callable[[], AbstractContextManager[LocalBackend]]]:
    """A throw-away redis-server (or the one on localhost:6379) for the tour."""
    from .cli import tour_backend

    return {"redis": tour_backend}
