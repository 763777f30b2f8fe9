"""Server states another client of a shared Redis causes: typed errors and onError: miss.

A long script of another app (``BUSY``), a primary short of replicas (``NOREPLICAS``), a
replica that lost its primary (``MASTERDOWN``) pass by themselves: the cache is
unavailable meanwhile, so ``onError: miss`` degrades reads instead of raising. Redis 6.2
wraps a script's refused write (``READONLY``, ``OOM``) in a generic script error: it gets
the same error and advice as the command's own refusal.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.cache import eviction_risk
from cachehub_redis.errors import translate
from cachehub_redis.server import RedisServer
from redis import Redis
from redis import exceptions as rx

from cachehub.errors import CacheBackendError, CacheUnavailableError, ConfigError


@pytest.fixture
def own_server(require_redis: None) -> Iterator[RedisServer]:
    """A private server: these tests block it or change its configuration."""
    with RedisServer() as server:
        yield server


def _busy(server: RedisServer) -> tuple[threading.Thread, Redis]:
    """Another client running a script that never ends, until SCRIPT KILL; returns once
    the server answers BUSY (bounded: at most 200 probes)."""
    admin = server.client()
    admin.config_set("lua-time-limit", 50)  # BUSY after 50 ms (busy-reply-threshold in 7)
    runner = Redis(host=server.host, port=server.port, socket_timeout=30)

    def run() -> None:
        with suppress(rx.RedisError):  # killed: the end this test waits for
            runner.eval("while true do end", 0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    probe = Redis(host=server.host, port=server.port, socket_timeout=5)
    for _ in range(200):
        try:
            probe.ping()
        except rx.ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return thread, probe
            raise
        threading.Event().wait(0.05)
    raise AssertionError("the other client's script never made the server BUSY")


def test_another_clients_long_script_makes_the_cache_unavailable_not_broken(
    own_server: RedisServer,
) -> None:
    # Before: BUSY was a CacheBackendError ("returned an error", no advice), so even
    # onError: miss raised on every get while another app's script ran.
    strict = RedisCache(url=own_server.url, namespace="s:", retries=0)
    lenient = RedisCache(url=own_server.url, namespace="s:", retries=0, onError="miss")
    strict.put("k", 1)
    strict.incr("n")
    thread, probe = _busy(own_server)
    try:
        for operation in (lambda: strict.get("k"), lambda: strict.put("k", 2), strict.count):
            with pytest.raises(CacheUnavailableError, match="SCRIPT KILL"):
                operation()
        assert lenient.get("k", "fallback") == "fallback"
        assert lenient.get_many(["k"]) == {}
    finally:
        probe.script_kill()
        thread.join(10)
        probe.close()
    assert strict.get("k") == 1
    strict.close()
    lenient.close()


def test_a_primary_short_of_replicas_refuses_writes_as_unavailable(
    own_server: RedisServer,
) -> None:
    # Before: NOREPLICAS was a CacheBackendError without advice, for put and incr alike.
    cache = RedisCache(url=own_server.url, namespace="r:", retries=0)
    cache.put("k", 1)
    cache.incr("n")
    admin = own_server.client()
    admin.config_set("min-replicas-to-write", 1)
    try:
        for operation in (lambda: cache.put("k", 2), lambda: cache.incr("n")):
            with pytest.raises(CacheUnavailableError, match="min-replicas-to-write"):
                operation()
        assert cache.get("k") == 1  # reads still work
    finally:
        admin.config_set("min-replicas-to-write", 0)
    assert cache.incr("n") == 2
    cache.close()
    admin.close()


SCRIPT_62 = "Error running script (call to f_{sha}): @user_script:195: @user_script: 195: -{reply}"


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        ("READONLY You can't write against a read only replica.", CacheBackendError, "primary"),
        ("OOM command not allowed when used memory > 'maxmemory'.", CacheBackendError, "maxmemory"),
        ("NOREPLICAS Not enough good replicas to write.", CacheUnavailableError, "replicas"),
        ("MASTERDOWN Link with MASTER is down", CacheUnavailableError, "primary"),
    ],
)
def test_redis_62_script_errors_get_the_advice_of_the_command_they_wrap(
    reply: str, error: type[Exception], words: str
) -> None:
    # Before: Redis 6.2's "Error running script ... -READONLY ..." was a CacheBackendError
    # "returned an error" without advice (Redis 7 gives the wrapped code, so it had one).
    text = SCRIPT_62.format(sha="e" * 40, reply=reply)
    translated = translate(rx.ResponseError(text), "127.0.0.1:6379", ())
    assert type(translated) is error
    assert translated.hint is not None
    assert words in translated.hint


class _RenamedServer(RedisServer):
    """A server whose configuration file disables commands (``rename-command X ""``)."""

    def __init__(self, *disabled: str) -> None:
        super().__init__()
        self.disabled = disabled

    def _config(self, directory: Path) -> Path:
        path = super()._config(directory)
        lines = [f'rename-command {name} ""' for name in self.disabled]
        path.write_text(path.read_text() + "\n".join(lines) + "\n")
        return path


@pytest.mark.parametrize(
    ("disabled", "operation"),
    [
        pytest.param("EVALSHA", lambda c: c.incr("n"), id="evalsha"),
        pytest.param("SCAN", lambda c: list(c.keys()), id="scan"),
        # count runs SCAN inside a script: the reply names the script's line, not SCAN.
        pytest.param("SCAN", lambda c: c.count(), id="scan-in-a-script"),
        pytest.param("MSET", lambda c: c.put_many({"a": 1, "b": 2}), id="mset"),
    ],
)
def test_a_command_the_server_disables_is_named_with_the_fix(
    require_redis: None, disabled: str, operation: Callable[[RedisCache], object]
) -> None:
    # Before: "returned an error (ResponseError: unknown command 'scan' ...)", no advice.
    with _RenamedServer(disabled) as server:
        cache = RedisCache(url=server.url, namespace="d:", retries=0)
        with pytest.raises(CacheBackendError, match="rename-command") as caught:
            operation(cache)
        assert disabled.lower() in str(caught.value).lower()
        cache.close()


def test_a_server_that_is_not_redis_is_named_so(require_redis: None) -> None:
    # Before: "returned an error (InvalidResponse: Protocol Error: b'HTTP/1.1 400 ...')",
    # a CacheBackendError without advice. A one-connection loopback server answering HTTP.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    cache = RedisCache(url=f"redis://127.0.0.1:{port}/0", retries=0, socketTimeout=5)
    try:
        with pytest.raises(CacheUnavailableError, match="rediss://"):
            cache.get("k")
    finally:
        cache.close()
        listener.close()
        thread.join(10)


def test_locks_work_on_a_server_that_disables_info(
    require_redis: None, caplog: pytest.LogCaptureFixture
) -> None:
    # A cache's first lock checks the eviction policy (INFO memory), a diagnostic: a server
    # or proxy without INFO (rename-command INFO "") keeps its locks, sync and async, and
    # no warning is made up. Before, "unknown command" failed each cache's first acquire.
    async def first_async_lock(cache: RedisCache) -> int | None:
        async with cache.aio().lock("job", ttl=10, timeout=1) as lock:
            return lock.fence

    with _RenamedServer("INFO") as server:
        sync_cache, async_cache = (
            RedisCache(url=server.url, namespace=f"i{n}:", retries=0) for n in range(2)
        )
        with sync_cache.lock("job", ttl=10, timeout=1) as held:
            assert held.fence is not None
        assert asyncio.run(asyncio.wait_for(first_async_lock(async_cache), 30)) is not None
        sync_cache.close()
        async_cache.close()
    assert not [r for r in caplog.records if "maxmemory" in r.getMessage()]


@pytest.mark.parametrize(
    ("memory", "warns"),
    [
        ({"maxmemory": "abc", "maxmemory_policy": "allkeys-lru"}, True),
        ({"maxmemory": None, "maxmemory_policy": "allkeys-lru"}, False),
        ({"maxmemory": [1], "maxmemory_policy": "volatile-ttl"}, True),
        ({"maxmemory": "0", "maxmemory_policy": "allkeys-lru"}, False),
        ({"maxmemory": 1 << 30, "maxmemory_policy": "noeviction"}, False),
        ({"maxmemory": 1 << 30}, False),
        ({}, False),
    ],
)
def test_eviction_risk_reads_any_info_shape_without_raising(
    memory: dict[str, object], warns: bool
) -> None:
    # A Redis-like server's INFO may not be Redis's: an unreadable maxmemory with an
    # evicting policy still warns (the policy is what evicts); nothing raises.
    assert (eviction_risk(memory) is not None) is warns


@pytest.mark.parametrize("setting", ["db", "databaseIndex"])
def test_a_database_the_server_does_not_have_is_a_config_error_naming_the_fix(
    redis_server: RedisServer, setting: str
) -> None:
    # On main: "CacheBackendError: returned an error (ResponseError: DB index is out of
    # range)", with no fix; a misconfiguration, so onError: miss must not hide it either.
    for on_error in ("raise", "miss"):
        cache = RedisCache(
            host=redis_server.host, port=redis_server.port, onError=on_error, **{setting: 99}
        )
        try:
            with pytest.raises(ConfigError, match="no database") as info:
                cache.get("k")
            assert "databases" in (info.value.hint or "")
        finally:
            cache.close()


def test_an_unreachable_server_fails_the_first_lock_once_not_twice() -> None:
    # On main the once-per-cache eviction check swallowed CacheUnavailableError and marked
    # itself done: the lock's own command then waited through a second round of connects
    # and timeouts (a stalled server: 6.6 s instead of 3.3 s), and the check never ran.
    # Counted: connections accepted by a port that hangs up at once.
    accepted: list[int] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with suppress(OSError):
                conn, _ = listener.accept()
                accepted.append(1)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    cache = RedisCache(host="127.0.0.1", port=port, retries=0, socketTimeout=2)
    try:
        with pytest.raises(CacheUnavailableError):
            cache.lock("job", timeout=0).acquire(blocking=False)
        first = len(accepted)
        assert cache._eviction_checked is False  # asked again once the server answers
        with pytest.raises(CacheUnavailableError):
            cache.get("k")
        per_command = len(accepted) - first
        assert first == per_command  # one command's connections, not two
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        cache.close()
