"""Servers and builders for the reliability suite (load, faults, bad input, isolation, models).

The servers come from the providers' own launchers (``cachehub_redis.server.RedisServer``
and ``cachehub_dynamodb.LocalDynamoDB``), started once per session. Every cache built here
carries distinctive secrets (all containing :data:`SECRET_MARK`) so that any test can
check that none of them ever reaches a message, a ``repr`` or a log record.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB
from cachehub_memory import MemoryCache
from cachehub_redis import RedisCache
from cachehub_redis.server import INSTALL_HINT, RedisServer, redis_server_available

from cachehub.api import BaseCache
from cachehub.testing import unavailable

SECRET_MARK: Final = "SuperSecret-123"
"""Every configured secret contains this; it must never show up anywhere."""
REDIS_PASSWORD: Final = f"{SECRET_MARK}-redis-password"
AWS_ACCESS_KEY_ID: Final = "AKIARELIABILITYTEST1"
AWS_SECRET_KEY: Final = f"{SECRET_MARK}-aws-secret-key"
SIGNING_KEY: Final = f"{SECRET_MARK}-signing-key"
SHARED_TABLE: Final = "cachehub_reliability"

PROVIDERS: Final = ("memory", "redis", "dynamodb")

Factory = Callable[..., BaseCache]

_figures: list[str] = []


def report(line: str) -> None:
    """Print a figure now (visible with ``-s``) and again in the terminal summary."""
    print(line)
    _figures.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the figures the suite measured (throughput, outages, retries) at the end."""
    if _figures:
        terminalreporter.section("cachehub reliability figures")
        for line in _figures:
            terminalreporter.write_line(line)


def fresh_namespace(prefix: str = "rel") -> str:
    """A namespace no other test or example uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}:"


@pytest.fixture(scope="session")
def require_redis() -> None:
    """Skip without redis-server, except under CI (env var CI set), where that fails."""
    if redis_server_available():
        return
    unavailable(f"no redis-server / redis-cli found: {INSTALL_HINT}.")


@pytest.fixture(scope="session")
def redis_server(require_redis: None) -> Iterator[RedisServer]:
    """One password-protected redis-server for the session; tests separate by namespace."""
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


class SerializedApp:
    """A WSGI wrapper answering one request at a time.

    moto's server handles requests concurrently without any locking, so two conditional
    writes racing on one item can both succeed - something DynamoDB itself never allows
    (each item write is atomic). Serializing requests restores that guarantee, so the
    load and lock tests check cachehub's logic rather than moto's races.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.guard = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        with self.guard:
            return list(self.app(environ, start_response))


def serialize_requests(local: LocalDynamoDB) -> LocalDynamoDB:
    """Make a started :class:`LocalDynamoDB` apply requests one at a time."""
    wsgi_server = local._server._server  # ThreadedMotoServer -> werkzeug server
    if not isinstance(wsgi_server.app, SerializedApp):
        wsgi_server.app = SerializedApp(wsgi_server.app)
    return local


@pytest.fixture(scope="session")
def local_dynamodb() -> Iterator[LocalDynamoDB]:
    """moto's DynamoDB server on a free loopback port, for the session."""
    with LocalDynamoDB() as local:
        yield serialize_requests(local)


def redis_settings(server: RedisServer, **overrides: Any) -> dict[str, Any]:
    """Settings of a cache on ``server`` (password and signing key included)."""
    return {
        "host": server.host,
        "port": server.port,
        "password": REDIS_PASSWORD,
        "signingKey": SIGNING_KEY,
        "socketTimeout": 2.0,
        "socketConnectTimeout": 2.0,
        **overrides,
    }


def dynamodb_settings(endpoint: str, **overrides: Any) -> dict[str, Any]:
    """Settings of a cache on the moto endpoint (credentials and signing key included)."""
    return {
        "tableName": SHARED_TABLE,
        "host": endpoint,
        "accessKeyId": AWS_ACCESS_KEY_ID,
        "secretkey": AWS_SECRET_KEY,
        "signingKey": SIGNING_KEY,
        **overrides,
    }


@pytest.fixture(scope="session")
def shared_table(local_dynamodb: LocalDynamoDB) -> str:
    """The table most DynamoDB tests share (each with its own namespace), created once."""
    cache = DynamoDBCache(dynamodb_settings(local_dynamodb.endpoint))
    cache.connect()
    cache.close()
    return SHARED_TABLE


@pytest.fixture
def made() -> Iterator[list[BaseCache]]:
    """Caches built by this test, closed at its end."""
    caches: list[BaseCache] = []
    yield caches
    for cache in caches:
        cache.close()


@pytest.fixture
def memory_factory(made: list[BaseCache]) -> Factory:
    """Build memory caches (fresh namespace unless given)."""

    def build(**kwargs: Any) -> BaseCache:
        kwargs.setdefault("namespace", fresh_namespace())
        kwargs.setdefault("signingKey", SIGNING_KEY)
        cache = MemoryCache(**kwargs)
        made.append(cache)
        return cache

    return build


@pytest.fixture
def redis_factory(redis_server: RedisServer, made: list[BaseCache]) -> Factory:
    """Build caches on the session's redis-server (fresh namespace unless given)."""

    def build(**kwargs: Any) -> BaseCache:
        kwargs.setdefault("namespace", fresh_namespace())
        cache = RedisCache(redis_settings(redis_server), **kwargs)
        made.append(cache)
        return cache

    return build


@pytest.fixture
def dynamodb_factory(
    local_dynamodb: LocalDynamoDB, shared_table: str, made: list[BaseCache]
) -> Factory:
    """Build caches on the shared moto table (fresh namespace unless given)."""

    def build(**kwargs: Any) -> BaseCache:
        kwargs.setdefault("namespace", fresh_namespace())
        settings = dynamodb_settings(local_dynamodb.endpoint)
        settings.update(kwargs.pop("settings", {}))
        cache = DynamoDBCache(settings, **kwargs)
        made.append(cache)
        return cache

    return build


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """Each provider in turn."""
    return str(request.param)


@pytest.fixture
def factory(provider: str, request: pytest.FixtureRequest) -> Factory:
    """The cache builder of the current ``provider`` (servers start only when needed)."""
    built: Factory = request.getfixturevalue(f"{provider}_factory")
    return built
