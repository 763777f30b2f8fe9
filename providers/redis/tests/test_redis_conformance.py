"""The shared conformance suite against a real redis-server and a real 3-node cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisClusterServers, RedisServer

from cachehub.testing import CacheConformance


class TestRedisConformance(CacheConformance):
    @pytest.fixture
    def cache_factory(self, redis_server: RedisServer) -> Callable[..., RedisCache]:
        return lambda **kw: RedisCache(url=redis_server.url, **kw)


class TestRedisClusterConformance(CacheConformance):
    @pytest.fixture
    def cache_factory(self, redis_cluster: RedisClusterServers) -> Callable[..., RedisCache]:
        def make(**kw: Any) -> RedisCache:
            return RedisCache(host=redis_cluster.host, port=redis_cluster.port, cluster=True, **kw)

        return make
