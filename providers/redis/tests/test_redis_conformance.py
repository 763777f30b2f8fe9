"""The shared conformance suite against a real redis-server and a real 3-node cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisClusterServers, RedisServer

from cachehub.testing import CacheConformance, closed_port


class TestRedisConformance(CacheConformance):
    @pytest.fixture
    def cache_factory(self, redis_server: RedisServer) -> Callable[..., RedisCache]:
        return lambda **kw: RedisCache(url=redis_server.url, **kw)

    @pytest.fixture
    def unreachable_factory(self) -> Callable[..., RedisCache]:
        # Nothing listens there: every command is refused at once (no retry backoff).
        port = closed_port()
        return lambda **kw: RedisCache(host="127.0.0.1", port=port, retries=0, **kw)


class TestRedisClusterConformance(CacheConformance):
    @pytest.fixture
    def cache_factory(self, redis_cluster: RedisClusterServers) -> Callable[..., RedisCache]:
        def make(**kw: Any) -> RedisCache:
            return RedisCache(host=redis_cluster.host, port=redis_cluster.port, cluster=True, **kw)

        return make

    @pytest.fixture
    def unreachable_factory(self) -> Callable[..., RedisCache]:
        port = closed_port()
        return lambda **kw: RedisCache(host="127.0.0.1", port=port, cluster=True, retries=0, **kw)
