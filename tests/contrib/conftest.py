"""Shared fixtures for the framework adapter tests: Django settings, caches, a clock, and
caches on the real Redis server and the moto DynamoDB server."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from cachehub_memory import MemoryCache
from django.conf import settings

from cachehub.api import BaseCache
from cachehub.testing import unavailable
from cachehub.testing.clock import FakeClock

if not settings.configured:
    # Django needs settings before its cache or session modules can be used. The cache
    # aliases point at the adapter; individual tests swap them with override_settings.
    settings.configure(
        SECRET_KEY="cachehub-tests-not-secret",
        INSTALLED_APPS=["django.contrib.sessions"],
        CACHES={
            "default": {
                "BACKEND": "cachehub.contrib.django.CacheHubCache",
                "OPTIONS": {"name": "django-default", "class": "memory"},
            },
            "sessions": {
                "BACKEND": "cachehub.contrib.django.CacheHubCache",
                "OPTIONS": {"name": "django-sessions", "class": "memory", "storage": True},
            },
        },
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
        SESSION_CACHE_ALIAS="sessions",
        USE_TZ=True,
    )
    django.setup()

_namespaces = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    # dogpile's shipped suites mark their threaded tests with this marker.
    config.addinivalue_line("markers", "time_intensive: dogpile.cache threaded tests")


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when told to."""
    return FakeClock()


@pytest.fixture
def make_cache(clock: FakeClock) -> Callable[..., MemoryCache]:
    """Build memory caches on the fake clock, each in its own namespace."""

    def make(**kwargs: Any) -> MemoryCache:
        kwargs.setdefault("namespace", f"t{next(_namespaces)}:")
        kwargs.setdefault("clock", clock)
        return MemoryCache(**kwargs)

    return make


@pytest.fixture
def storage_cache(make_cache: Callable[..., MemoryCache]) -> MemoryCache:
    """A memory cache enabled for session storage."""
    return make_cache(storage=True, name="sessions")


def _stored_session(cache: Any, sid: str | None, prefix: str = "session:") -> Any:
    import hashlib

    if sid is None:
        return None
    record = cache.get(prefix + hashlib.sha256(sid.encode()).hexdigest())
    return None if record is None else record["d"]


@pytest.fixture
def stored_session() -> Callable[..., Any]:
    """``stored_session(cache, sid)``: the data stored for a session, read straight from
    the cache (its key is the id's SHA-256), or None."""
    return _stored_session


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from cachehub_redis.server import INSTALL_HINT, RedisServer, redis_server_available

    if not redis_server_available():
        unavailable(f"no redis-server found: {INSTALL_HINT}.")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto[server] is not installed.")
    from cachehub_dynamodb import LocalDynamoDB

    with LocalDynamoDB() as local:
        yield local.endpoint


@pytest.fixture
def make_remote(request: pytest.FixtureRequest) -> Iterator[Callable[..., BaseCache]]:
    """``make_remote("redis" | "dynamodb", **settings)``: a cache on the real server (a
    fresh namespace each; one table per test), closed after the test. Same servers as the
    providers' own test fixtures; without them tests skip locally but fail under CI."""
    made: list[BaseCache] = []
    table = f"cachehub_contrib_{uuid.uuid4().hex[:8]}"

    def make(kind: str, **kwargs: Any) -> BaseCache:
        kwargs.setdefault("namespace", f"s{uuid.uuid4().hex[:8]}:")
        cache: BaseCache
        if kind == "redis":
            from cachehub_redis import RedisCache

            cache = RedisCache(url=request.getfixturevalue("redis_url"), **kwargs)
        else:
            from cachehub_dynamodb import DynamoDBCache

            settings = {
                "tableName": table,
                "host": request.getfixturevalue("dynamodb_endpoint"),
                "accessKeyId": "AKIADUMMYTESTKEY0001",
                "secretkey": "dummy-secret-for-tests",
            }
            cache = DynamoDBCache(settings, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture(params=["memory", "redis"])
def memory_or_redis(
    request: pytest.FixtureRequest,
    make_cache: Callable[..., MemoryCache],
    make_remote: Callable[..., BaseCache],
) -> BaseCache:
    """A memory cache, then a cache on the real redis-server: for the adapter behaviours
    that depend on what the backend stores (damaged entries, planted ints)."""
    if request.param == "memory":
        return make_cache(name="adapter")
    return make_remote("redis", name="adapter")
