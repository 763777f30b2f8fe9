"""Registers the Redis provider with cachehub through the ``cachehub`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from cachehub.hookspecs import DoctorAdvice, DoctorCheck, LocalBackend, hookimpl
from cachehub.plugins import lucee_classes

if TYPE_CHECKING:
    from cachehub.api import BaseCache
    from cachehub.errors import CacheError


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``redis`` plus the class names of Lucee's Redis extension found in .CFConfig.json."""
    target = "cachehub_redis:RedisCache"
    return {"redis": target, **dict.fromkeys(lucee_classes("redis"), target)}


@hookimpl
def cachehub_doctor_checks(cache: BaseCache) -> Sequence[DoctorCheck] | None:
    """The commands a shared Redis's ACL user may lack (incr, keys, lock, clear)."""
    from .cli import doctor_checks

    return doctor_checks(cache)


@hookimpl
def cachehub_doctor_advice(cache: BaseCache, step: str, error: CacheError) -> DoctorAdvice | None:
    """The ACL rule a Redis cache's user lacks, when Redis refused a command or key."""
    from .cli import doctor_advice

    return doctor_advice(cache, step, error)


@hookimpl
def cachehub_tour_backends() -> Mapping[str, Callable[[], AbstractContextManager[LocalBackend]]]:
    """A throw-away redis-server (or the one on localhost:6379) for the tour."""
    from .cli import tour_backend

    return {"redis": tour_backend}
