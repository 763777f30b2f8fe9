"""``close()`` while other threads or tasks use the cache, on a real redis-server.

A close releases the client once the calls holding it have ended (cachehub.provider's
leases). Before, redis-py tore the connections down under the calls in flight: they
failed with ``CacheBackendError`` "... AttributeError: 'NoneType' object has no
attribute 'readline' ... this is a bug" (even under ``onError: miss``) or waited a whole
``socketTimeout`` for a reply on a socket the closer had shut; the async shell's busy
connections stayed open until a garbage collection.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisServer
from redis import Redis
from redis.connection import Connection

from cachehub.testing.faults import FaultProxy


@pytest.fixture
def server(private_redis_server: RedisServer) -> RedisServer:
    return private_redis_server


@pytest.fixture
def admin(server: RedisServer) -> Iterator[Redis]:
    client = server.client()
    yield client
    client.close()


def _others(admin: Redis, at_most: int = 0) -> int:
    """Connections to the module's own server, other than ``admin``'s, once at most
    ``at_most`` (the server notices a closed socket on its next event-loop turn)."""
    for _ in range(200):
        count = len(admin.client_list()) - 1
        if count <= at_most:
            break
        time.sleep(0.01)
    return count


@pytest.mark.parametrize("on_error", ["raise", "miss"])
def test_closes_in_another_thread_never_fail_or_stall_a_call(
    server: RedisServer, admin: Redis, on_error: str
) -> None:
    cache = RedisCache(
        {"url": server.url, "onError": on_error, "socketTimeout": 5}, namespace="close:"
    )
    errors: collections.Counter[str] = collections.Counter()
    slow: list[float] = []
    start = threading.Barrier(5)
    done = threading.Event()

    def closer() -> None:
        start.wait(5)
        for _ in range(2_000):
            if done.is_set():
                return
            cache.close()
            time.sleep(0.001)

    def worker(n: int) -> None:
        start.wait(5)
        for _ in range(150):
            began = time.monotonic()
            try:
                cache.put(f"k{n}", "v" * 1000)
                assert cache.get(f"k{n}") == "v" * 1000
            except Exception as exc:
                errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
            if time.monotonic() - began > 2:  # a stall of the 5 s socket timeout
                slow.append(time.monotonic() - began)

    threads = [threading.Thread(target=closer)]
    threads += [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join(60)
    done.set()
    threads[0].join(10)
    cache.close()
    assert dict(errors) == {}
    assert slow == []
    assert _others(admin) == 0  # every retired client was released, with no collection


@pytest.mark.skipif(
    redis.__version__ == "5.0.0",
    reason="redis-py 5.0.0's asyncio pool leaves one connection of a retired client to the "
    "garbage collector (5.0.1+ and 8.x close it; the CI oldest-pins run uses 5.0.0)",
)
def test_aclose_while_other_tasks_are_mid_command_leaves_no_connection_open(
    server: RedisServer, admin: Redis
) -> None:
    cache = RedisCache({"url": server.url}, namespace="aclose:")
    shell = cache.aio()
    errors: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def user(i: int) -> None:
            while not stop.is_set():
                try:
                    await shell.put(f"k{i}", "v")
                    await shell.get(f"k{i}")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        tasks = [asyncio.create_task(user(i)) for i in range(10)]
        for _ in range(20):
            await asyncio.sleep(0.005)
            await shell.close()
            # A close returns once the calls that held its client ended: what is open
            # now is the new client's, one connection per busy task, and what closes
            # are still reaching the server (redis-py 5.0 lingers one): no pile-up.
            assert _others(admin, at_most=10) <= 20
        stop.set()
        await asyncio.gather(*tasks)
        await shell.close()

    gc.disable()  # a collection would close what a close left: none may run meanwhile
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
        assert _others(admin) == 0
    finally:
        gc.enable()
    assert errors == []


def _before_the_first_reply(monkeypatch: pytest.MonkeyPatch, act: Callable[[], object]) -> None:
    """Run ``act`` (an interrupt) as the next command starts reading its reply."""
    armed = [True]
    read = Connection.read_response

    def interrupted(self: Connection, *args: Any, **kwargs: Any) -> Any:
        if armed[0]:
            armed[0] = False
            act()
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "read_response", interrupted)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_a_call_interrupted_before_its_reply_leaves_no_reply_for_the_next_call(
    server: RedisServer, interrupt: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py gives a connection back to the pool when an interrupt (a signal handler's
    KeyboardInterrupt, a gevent Timeout) lands between sending a command and reading its
    reply; the next command on it read that reply as its own: ``get("b")`` answered
    ``a``'s value."""
    proxy = FaultProxy(server.host, server.port)
    proxy.start()
    cache = RedisCache({"host": "127.0.0.1", "port": proxy.port}, namespace="interrupted:")
    cache.put_many({"a": "value-a", "b": "value-b"})
    # The reply is still on its way when the next command takes the connection (as on
    # any network): redis-py's check for unread data at checkout finds nothing yet.
    proxy.delay_replies(0.2)

    def interrupting() -> None:
        raise interrupt()

    _before_the_first_reply(monkeypatch, interrupting)
    with pytest.raises(interrupt):
        cache.get("a")
    try:
        assert cache.get("b") == "value-b"
        assert cache.get_many(["a", "b"]) == {"a": "value-a", "b": "value-b"}
    finally:
        cache.close()
        proxy.stop()


def test_interrupts_inside_the_pools_bookkeeping_never_exhaust_it(server: RedisServer) -> None:
    """An interrupt inside redis-py's own checkout leaves a connection counted as in use
    for good; after ``maxConnections`` of them every call failed ("too many connections",
    a silent miss under ``onError: miss``) until ``close()``. An interrupted call now
    retires the client, pool and all."""
    cache = RedisCache(
        {"url": server.url, "maxConnections": 2, "socketTimeout": 1}, namespace="leak:"
    )
    cache.put("a", "value-a")
    retired = []
    for _ in range(6):
        pool = cache._connection().connection_pool
        take = pool.get_connection

        def leaky(*args: Any, _take: Any = take, **kwargs: Any) -> Any:
            _take(*args, **kwargs)  # checked out, never handed to the command
            raise KeyboardInterrupt

        pool.get_connection = leaky  # type: ignore[method-assign]
        try:
            with pytest.raises(KeyboardInterrupt):
                cache.get("a")
        finally:
            del pool.get_connection
        retired.append(pool)
    try:
        assert cache.get("a") == "value-a"
        assert cache.get_many(["a", "b"]) == {"a": "value-a"}
        assert len({id(pool) for pool in retired}) == len(retired)  # a new pool each time
    finally:
        cache.close()


class SoftTimeLimitExceeded(Exception):
    """As Celery (billiard) raises it from its SIGUSR1 handler."""


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers run in the main thread only",
)
@pytest.mark.parametrize("on_error", ["raise", "miss"])
def test_a_signal_handlers_exception_before_the_reply_reaches_the_caller_as_raised(
    server: RedisServer, on_error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's soft time limit landing while a get waits for its reply: the task's own
    ``except SoftTimeLimitExceeded`` must run (it was a CacheBackendError "this is a bug"),
    and the reply left unread must never answer the next call."""
    proxy = FaultProxy(server.host, server.port)
    proxy.start()
    cache = RedisCache(
        {"host": "127.0.0.1", "port": proxy.port, "onError": on_error}, namespace="soft:"
    )
    cache.put_many({"a": "value-a", "b": "value-b"})
    proxy.delay_replies(0.2)

    def on_signal(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded("soft time limit")

    # The handler runs in the read, mid-request.
    _before_the_first_reply(monkeypatch, lambda: signal.raise_signal(signal.SIGUSR1))
    before = signal.signal(signal.SIGUSR1, on_signal)
    try:
        with pytest.raises(SoftTimeLimitExceeded, match="soft time limit"):
            cache.get("a")
        assert cache.get("b") == "value-b"
        assert cache.get_many(["a", "b"]) == {"a": "value-a", "b": "value-b"}
    finally:
        signal.signal(signal.SIGUSR1, before)
        cache.close()
        proxy.stop()
