"""The shared conformance suite against a real redis-server and a real 3-node cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from cachehub_redis import RedisCache
from cachehub_redis import scripts as lua
from cachehub_redis.server import RedisClusterServers, RedisServer

from cachehub.testing import CacheConformance, closed_port
from cachehub.testing.asyncshell import AsyncConformance
from cachehub.testing.basic import BasicTests
from cachehub.testing.batch import BatchTests
from cachehub.testing.concurrency import GetOrSetTests
from cachehub.testing.expiry import ExpiryTests, MetadataTests
from cachehub.testing.faults import FaultProxy, Matcher
from cachehub.testing.lostreplies import LostReplyTests
from cachehub.testing.skew import SkewTests


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


class TestRedisLostReplies(LostReplyTests):
    """Every non-idempotent script behind a proxy that loses one reply or request."""

    lost_reply_requests: ClassVar[dict[str, Matcher]] = {
        "incr": lua.INCR.sha.encode(),
        "add": lua.ADD.sha.encode(),
        "delete": lua.DELETE.sha.encode(),
        "delete_if_equal": lua.DELETE_IF_EQUAL.sha.encode(),
    }

    @pytest.fixture
    def fault_proxy(self, redis_server: RedisServer) -> Iterator[FaultProxy]:
        with FaultProxy(redis_server.host, redis_server.port) as proxy:
            yield proxy

    @pytest.fixture
    def cache_factory(self, fault_proxy: FaultProxy) -> Callable[..., RedisCache]:
        return lambda **kw: RedisCache(host="127.0.0.1", port=fault_proxy.port, **kw)


class TestRedisServerClockExpiry(ExpiryTests, MetadataTests):
    """Expiry and metadata on caches without a ``clock=``: the server's clock decides.

    The other classes inject a fake clock, which makes the cache judge expiry itself
    (absolute ``PXAT`` deadlines, see docs/redis.md "Time and clocks"); these run the
    same cases with relative TTLs that Redis applies, sleeping for real.
    """

    supports_clock: ClassVar[bool] = False
    real_time_unit: ClassVar[float] = 0.4
    # metadata().expires is the reader's clock plus the server's PTTL: a round trip's
    # latency (ms on a loaded machine) separates it from the requested deadline.
    timestamp_tolerance: ClassVar[float] = 0.05

    @pytest.fixture
    def cache_factory(self, redis_server: RedisServer) -> Callable[..., RedisCache]:
        return lambda **kw: RedisCache(url=redis_server.url, **kw)


class TestRedisSkew(SkewTests):
    """A second process 5 s off changes nothing: the server's clock decides expiry and locks."""

    expiry_clock: ClassVar[str] = "server"

    @pytest.fixture
    def cache_factory(self, redis_server: RedisServer) -> Callable[..., RedisCache]:
        return lambda **kw: RedisCache(url=redis_server.url, **kw)


class TestRedisClusterSkew(SkewTests):
    expiry_clock: ClassVar[str] = "server"

    @pytest.fixture
    def cache_factory(self, redis_cluster: RedisClusterServers) -> Callable[..., RedisCache]:
        def make(**kw: Any) -> RedisCache:
            return RedisCache(host=redis_cluster.host, port=redis_cluster.port, cluster=True, **kw)

        return make


class TestRedisAsyncConformance(AsyncConformance, TestRedisConformance):
    """The whole suite through ``cache.aio()``: redis.asyncio, one client per loop."""


class TestRedisClusterAsyncSmoke(AsyncConformance, BasicTests, BatchTests, GetOrSetTests):
    """A smoke set through ``cache.aio()`` on the cluster (the whole suite runs on the
    single server above): the async cluster client, its per-slot batches and scans."""

    cache_factory = TestRedisClusterConformance.cache_factory
    unreachable_factory = TestRedisClusterConformance.unreachable_factory
