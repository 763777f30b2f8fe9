"""Fixtures: real redis-server processes (single node and a 3-node cluster) for the session."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisClusterServers, RedisServer, redis_server_available
from redis import Redis

from cachehub.testing import unavailable


@pytest.fixture(scope="session")
def require_redis() -> None:
    """Skip without redis-server, except under CI (env var CI set), where that fails."""
    if redis_server_available():
        return
    unavailable("redis-server / redis-cli are not installed (apt-get install redis-server).")


@pytest.fixture(scope="session")
def redis_server(require_redis: None) -> Iterator[RedisServer]:
    """One real redis-server shared by the session; tests separate by namespace."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(require_redis: None) -> Iterator[RedisClusterServers]:
    """A real three-primary Redis Cluster shared by the session."""
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def plain(redis_server: RedisServer) -> Iterator[Redis]:
    """A plain redis-py client on the shared server, for setup and assertions."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def make_cache(redis_server: RedisServer) -> Iterator[Callable[..., RedisCache]]:
    """Build caches on the shared server, each in a fresh namespace unless given one."""
    made: list[RedisCache] = []

    def make(**kwargs: Any) -> RedisCache:
        kwargs.setdefault("namespace", f"t{uuid.uuid4().hex[:10]}:")
        kwargs.setdefault("url", redis_server.url)
        cache = RedisCache(**kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()
