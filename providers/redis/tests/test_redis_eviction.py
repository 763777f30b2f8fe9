"""Eviction policies under real memory pressure: what happens to locks and counters, and
that the cache says so (a warning at its first lock, a ``doctor`` line) before it matters.

A private redis-server per module, its ``maxmemory`` set just above what it uses, then
filled by another client until the key under test is evicted (bounded in keys).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.cli import doctor_checks
from cachehub_redis.records import MARK
from cachehub_redis.server import RedisServer
from redis import Redis

from cachehub.errors import LockLostError

FILL_BATCHES = 200
"""At most 200 pipelines of 200 keys of 1 KiB (40 MiB written) to evict one key."""


@pytest.fixture(scope="module")
def server(private_redis_server: RedisServer) -> RedisServer:
    """A private server: these tests change its memory configuration."""
    return private_redis_server


@pytest.fixture
def admin(server: RedisServer) -> Iterator[Redis]:
    client = server.client()
    client.flushall()
    client.config_set("maxmemory", 0)
    client.config_set("maxmemory-policy", "noeviction")
    yield client
    client.config_set("maxmemory", 0)
    client.config_set("maxmemory-policy", "noeviction")
    client.close()


def _pressure(admin: Redis, policy: str) -> None:
    """``policy`` with maxmemory 1 MiB above what the server uses now."""
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", policy)
    admin.config_set("maxmemory", used + (1 << 20))


def _fill_until_gone(admin: Redis, key: bytes) -> int:
    """Write keys with a TTL (evictable by every policy) until ``key`` is evicted, then
    lift the limit: what the test does next must not be evicted in turn (under
    ``volatile-random`` the next lock taken at the limit was, now and then)."""
    for batch in range(FILL_BATCHES):
        pipe = admin.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"fill:{batch}:{i}", b"x" * 1024, ex=10**6)
        pipe.execute()
        if not admin.exists(key):
            admin.config_set("maxmemory", 0)
            return batch
    raise AssertionError(f"{key!r} survived {FILL_BATCHES} batches of filler")


def _cache(server: RedisServer, **kwargs: object) -> RedisCache:
    return RedisCache(url=server.url, namespace=f"e{uuid.uuid4().hex[:8]}:", **kwargs)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]


EVICTING = ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-random", "volatile-random"]


@pytest.mark.parametrize("policy", EVICTING)
def test_an_evicted_lock_is_taken_by_another_and_its_holder_learns_at_release(
    server: RedisServer, admin: Redis, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache, other = _cache(server), None
    try:
        _pressure(admin, policy)
        with caplog.at_level(logging.WARNING):
            lock = cache.lock("job", ttl=3600)
            assert lock.acquire(blocking=False)
            assert cache.lock("job2", ttl=3600).acquire(blocking=False)  # warned once only
        [warning] = _warnings(caplog)
        assert f"maxmemory-policy is {policy}" in warning
        assert "noeviction" in warning
        assert ("entries without expiry" in warning) == policy.startswith("allkeys")
        first_fence = lock.fence
        _fill_until_gone(admin, cache._internal_key(lock.key))
        other = RedisCache(url=server.url, namespace=cache.namespace)
        taker = other.lock("job", ttl=60)
        # What the warning says: the lock is free before its ttl...
        assert taker.acquire(blocking=False)
        # ...fences still only grow, so a fenced resource refuses the old holder...
        assert taker.fence is not None
        assert first_fence is not None
        assert taker.fence > first_fence
        # ...and the old holder is told, not silently "released".
        with pytest.raises(LockLostError):
            lock.extend()
        assert not lock.held
        assert taker.release() is True
    finally:
        cache.close()
        if other is not None:
            other.close()


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl"])
def test_counters_without_expiry_survive_volatile_policies(
    server: RedisServer, admin: Redis, policy: str
) -> None:
    cache = _cache(server)
    try:
        _pressure(admin, policy)
        assert cache.incr("n", 41) == 41
        lock = cache.lock("job", ttl=3600)
        assert lock.acquire(blocking=False)
        _fill_until_gone(admin, cache._internal_key(lock.key))
        assert cache.incr("n", 1) == 42  # the counter has no TTL: never a candidate
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("policy", "maxmemory"), [("noeviction", 1 << 30), ("allkeys-lru", 0), ("volatile-lru", 0)]
)
def test_no_warning_when_nothing_can_be_evicted(
    server: RedisServer,
    admin: Redis,
    policy: str,
    maxmemory: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin.config_set("maxmemory-policy", policy)
    admin.config_set("maxmemory", maxmemory)  # 0: no limit, so no eviction ever
    cache = _cache(server)
    try:
        with caplog.at_level(logging.WARNING):
            assert cache.lock("job").acquire(blocking=False)
        assert _warnings(caplog) == []
        [check] = [c for c in doctor_checks(cache) or [] if c.name == "eviction"]
        assert check.status == "ok"
        assert policy in check.detail
    finally:
        cache.close()


def test_doctor_warns_with_the_fix(server: RedisServer, admin: Redis) -> None:
    _pressure(admin, "volatile-ttl")
    cache = _cache(server)
    try:
        checks = doctor_checks(cache) or []
        [check] = [c for c in checks if c.name == "eviction"]
        assert check.status == "warn"
        assert "volatile-ttl" in check.detail
        assert check.advice == "CONFIG SET maxmemory-policy noeviction"
        assert all(c.status == "ok" for c in checks if c.name != "eviction")
    finally:
        cache.close()


def test_a_user_without_info_gets_no_error_and_no_warning(
    server: RedisServer, admin: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    _pressure(admin, "allkeys-lru")
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.acl_setuser(
        user,
        enabled=True,
        reset=True,
        passwords=[f"+{password}"],
        keys=["*"],
        commands=["+@all", "-info"],
    )
    url = f"redis://{user}:{password}@{server.host}:{server.port}/0"
    cache = RedisCache(url=url, namespace=f"e{uuid.uuid4().hex[:8]}:")
    try:
        with caplog.at_level(logging.WARNING):
            lock = cache.lock("job")
            assert lock.acquire(blocking=False)
            assert lock.release() is True
        assert _warnings(caplog) == []
        [check] = [c for c in doctor_checks(cache) or [] if c.name == "eviction"]
        assert check.status == "info"
        assert "+info" in (check.advice or "")
        assert password not in repr(check)
    finally:
        cache.close()
        admin.acl_deluser(user)


def test_the_async_shell_warns_at_its_first_lock_too(
    server: RedisServer, admin: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    _pressure(admin, "volatile-lru")
    cache = _cache(server)

    async def run() -> None:
        lock = cache.aio().lock("job", ttl=60)
        assert await lock.acquire(blocking=False)
        assert await lock.release() is True

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(run())
        [warning] = _warnings(caplog)
        assert "volatile-lru" in warning
    finally:
        cache.close()


def test_volatile_ttl_evicts_request_records_first(server: RedisServer, admin: Redis) -> None:
    """The hazard the warning names: a record (TTL ~36 s) goes before the filler's (11
    days) is evicted, so a re-send after it would apply again; the counter (no TTL) stays."""
    cache = _cache(server)
    try:
        _pressure(admin, "volatile-ttl")
        assert cache.incr("n", 5) == 5
        [record] = [k for k in admin.scan_iter(match=f"{cache.namespace}*") if MARK in k]
        assert 0 < admin.pttl(record) <= 40_000
        _fill_until_gone(admin, record)
        assert cache.incr("n", 1) == 6
    finally:
        cache.close()
