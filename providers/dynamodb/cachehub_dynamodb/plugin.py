"""Registers the DynamoDB provider with cachehub through the ``cachehub`` entry-point group.

Besides the provider aliases it contributes to the command line (``local-dynamodb``,
``from-lucee``, the ``doctor`` checks and advice, the ``tour``'s endpoint); :mod:`.cli` is
imported only when one of those runs, so loading this plugin (``cachehub --help``) stays
cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from cachehub.hookspecs import DoctorAdvice, DoctorCheck, LocalBackend, hookimpl
from cachehub.plugins import lucee_classes

if TYPE_CHECKING:
    from cachehub.api import BaseCache
    from cachehub.errors import CacheError


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``dynamodb`` plus the Lucee class name an existing .CFConfig.json carries."""
    target = "cachehub_dynamodb:DynamoDBCache"
    return {"dynamodb": target, **dict.fromkeys(lucee_classes("dynamodb"), target)}


@hookimpl
def cachehub_cli_commands() -> Sequence[Any]:
    """``cachehub local-dynamodb`` and ``cachehub from-lucee``, listed without importing
    :mod:`.cli` (and botocore with it) until one of them runs."""
    from cachehub.cli.app import LazyCommand

    return (
        LazyCommand(
            "local-dynamodb",
            "cachehub_dynamodb.cli:local_dynamodb_command",
            "Run a DynamoDB-compatible endpoint (moto) until Ctrl-C.",
        ),
        LazyCommand(
            "from-lucee",
            "cachehub_dynamodb.cli:from_lucee_command",
            "Convert a Lucee-written DynamoDB table (cache SOURCE) into cache TARGET.",
        ),
    )


@hookimpl
def cachehub_doctor_checks(cache: BaseCache) -> Sequence[DoctorCheck] | None:
    """Partition-key discovery and native TTL, for DynamoDB caches."""
    from .cli import doctor_checks

    return doctor_checks(cache)


@hookimpl
def cachehub_doctor_advice(cache: BaseCache, step: str, error: CacheError) -> DoctorAdvice | None:
    """The spec's Troubleshooting advice, by error type and AWS error code."""
    from .cli import doctor_advice

    return doctor_advice(cache, step, error)


@hookimpl
def cachehub_tour_backends() -> Mapping[str, Callable[[], AbstractContextManager[LocalBackend]]]:
    """A local DynamoDB endpoint (moto) for the tour's default cache."""
    from .cli import tour_backend

    return {"dynamo": tour_backend}


@hookimpl
def cachehub_tour_steps(cache: BaseCache, name: str, namespace: str) -> Any:
    """The spec's ``DynamoDBCommand()`` examples, on DynamoDB caches."""
    from .cli import tour_steps

    return tour_steps(cache, name, namespace)
