"""The three cachehub backends every framework suite runs on, and what is left out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Final

PROVIDERS: Final = ("memory", "redis", "dynamodb")
SECRET: Final = "framework-suites-secret-not-for-production"
"""The framework secret the suites configure (Django SECRET_KEY, Flask SECRET_KEY)."""
_REDIS_URL: Final = "CACHEHUB_FW_REDIS_URL"
_DYNAMODB_ENDPOINT: Final = "CACHEHUB_FW_DYNAMODB_ENDPOINT"

CULL = (
    "MAX_ENTRIES / CULL_FREQUENCY are internals of Django's local backends; "
    "size limits are cachehub provider settings"
)
EXCLUDED: Final[dict[str, dict[str, str]]] = {
    "django": {
        "test_cull": CULL,
        "test_zero_cull": CULL,
        "test_cull_delete_when_store_empty": CULL + " (the test sets the backend's _max_entries)",
    },
    "flask-caching": {
        "test_serializer.py::test_values_are_stored_in_the_configured_format": "reads "
        "SimpleCache's private _cache dict",
        "test_init.py::test_init_nullcache[MemcachedCache]": "builds Flask-Caching's own "
        "MemcachedCache (its own app fixture, not the adapter), which needs a memcache "
        "client library",
    },
    "cachelib": {},
}
"""Per suite: test name -> why it does not apply to the adapter (docs/integrations.md)."""


def entry(provider: str, namespace: str) -> dict[str, Any]:
    """The cachehub cache entry for ``provider`` on the servers :func:`servers` started."""
    if provider == "memory":
        return {"class": "memory", "custom": {"namespace": namespace}}
    if provider == "redis":
        return {"class": "redis", "custom": {"url": os.environ[_REDIS_URL], "namespace": namespace}}
    if provider == "dynamodb":
        return {
            "class": "dynamodb",
            "custom": {
                "tableName": "cachehub_framework_suites",
                "host": os.environ[_DYNAMODB_ENDPOINT],
                "region": "us-east-1",
                "accessKeyId": "AKIADUMMYFRAMEWORKS1",
                "secretkey": "dummy-secret-for-the-framework-suites",
                "namespace": namespace,
            },
        }
    raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def configure(namespace: str) -> dict[str, str]:
    """Configure the process registry with one cache per provider; ``{provider: name}``."""
    import cachehub

    names = {provider: f"fw-{provider}" for provider in PROVIDERS}
    cachehub.configure(
        {names[p]: entry(p, f"{namespace}{p}:") for p in PROVIDERS}  # type: ignore[arg-type]
    )
    return names


@contextmanager
def servers() -> Iterator[dict[str, str]]:
    """A real redis-server and moto's DynamoDB on free loopback ports; their env vars."""
    from cachehub_dynamodb import LocalDynamoDB
    from cachehub_redis.server import RedisServer

    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        dynamodb = stack.enter_context(LocalDynamoDB())
        yield {_REDIS_URL: redis.url, _DYNAMODB_ENDPOINT: dynamodb.endpoint}
