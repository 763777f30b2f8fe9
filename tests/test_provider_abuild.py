"""RemoteCache's one async client build per loop (``_aconnection``), attacked from the
edges: a close while a build is in flight, a loop closed with a build pending."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from test_provider import Client, FakeRemote

from cachehub.aio import AsyncCache


class AsyncClient(Client):
    """A fake async client: counts its (awaited) closes."""

    async def aclose(self) -> None:
        self.closed += 1


class GatedRemote(FakeRemote):
    """A provider whose async client build waits for ``gate`` (per loop), so that a test
    can act while the build is in flight."""

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.made: list[AsyncClient] = []
        self.gate: asyncio.Event | None = None
        self.started: asyncio.Event | None = None

    async def _aconnect(self) -> AsyncClient:
        assert self.gate is not None
        assert self.started is not None
        self.started.set()
        await self.gate.wait()
        client = AsyncClient()
        self.made.append(client)
        return client


def _open(cache: GatedRemote) -> tuple[asyncio.Event, asyncio.Event]:
    cache.gate, cache.started = asyncio.Event(), asyncio.Event()
    return cache.gate, cache.started


def test_a_close_during_a_build_leaves_no_client_open() -> None:
    """``aio().close()`` while another task's client build is in flight: once both are
    done, no client of the cache is left open (nor kept for the loop). On main the build
    ended after the close and kept its client: open, after the cache was closed."""
    cache = GatedRemote()

    async def main() -> tuple[list[AsyncClient], int]:
        gate, started = _open(cache)
        first = asyncio.ensure_future(cache._aconnection())
        await asyncio.wait_for(started.wait(), 10)
        closing = asyncio.ensure_future(AsyncCache(cache).close())
        await asyncio.sleep(0)  # the close is under way while the build waits
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, closing, return_exceptions=True), 10)
        return cache.made, len(cache._aconns)

    made, kept = asyncio.run(main())
    assert len(made) == 1
    assert kept == 0
    assert made[0].closed == 1


def test_the_cache_reconnects_after_a_close_that_met_a_build() -> None:
    """The close above does not break the cache: the next operation builds a new client."""
    cache = GatedRemote()

    async def main() -> tuple[Any, Any, list[AsyncClient], int]:
        gate, started = _open(cache)
        first = asyncio.ensure_future(cache._aconnection())
        await asyncio.wait_for(started.wait(), 10)
        closing = asyncio.ensure_future(AsyncCache(cache).close())
        await asyncio.sleep(0)
        gate.set()
        got = await asyncio.wait_for(asyncio.gather(first, closing, return_exceptions=True), 10)
        again = await asyncio.wait_for(cache._aconnection(), 10)
        return got[0], again, cache.made, again.closed  # open while the loop runs

    first, again, made, closed = asyncio.run(main())
    assert first is made[0]  # the waiter still got the client it waited for
    assert again is made[-1]
    assert closed == 0
    assert again.closed == 1  # by the loop's shutdown
    assert len(made) == 2


def test_a_failed_build_does_not_fail_the_close() -> None:
    cache = GatedRemote()

    async def failing() -> AsyncClient:
        assert cache.started is not None
        assert cache.gate is not None
        cache.started.set()
        await cache.gate.wait()
        raise ConnectionError("no route (injected)")

    cache._aconnect = failing  # type: ignore[method-assign]

    async def main() -> tuple[BaseException | None, int]:
        gate, started = _open(cache)
        first = asyncio.ensure_future(cache._aconnection())
        await asyncio.wait_for(started.wait(), 10)
        closing = asyncio.ensure_future(AsyncCache(cache).close())
        await asyncio.sleep(0)
        gate.set()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(first, 10)
        await asyncio.wait_for(closing, 10)
        return closing.exception(), len(cache._aconns)

    error, kept = asyncio.run(main())
    assert error is None
    assert kept == 0


def test_a_loop_closed_with_a_build_pending_is_not_kept_alive() -> None:
    """A loop stopped while a client build waits (``run_until_complete`` of a timed-out
    call, then ``close()``) and dropped by its owner is freed: the cache does not hold
    it (nor its pending build) for the rest of the process. On main the in-flight map
    kept the loop, its build and every object they refer to, for good."""
    cache = GatedRemote()
    pending: list[asyncio.Future[Any]] = []  # the waiter, left pending as the loop closes
    loop = asyncio.new_event_loop()
    try:

        async def start() -> None:
            _open(cache)
            assert cache.started is not None
            pending.append(asyncio.ensure_future(cache._aconnection()))
            await asyncio.wait_for(cache.started.wait(), 10)

        loop.run_until_complete(start())
    finally:
        loop.close()
    gone = weakref.ref(loop)
    del loop, pending[:]
    cache.gate = cache.started = None

    async def next_loop() -> None:
        with contextlib.suppress(AssertionError):  # the gate is gone: the build fails
            await asyncio.wait_for(cache._aconnection(), 10)

    asyncio.run(next_loop())  # any later build, on any loop, forgets closed loops' builds
    for _ in range(3):
        gc.collect()
    assert gone() is None
    assert all(not loop.is_closed() for loop in cache._aconnecting)


@pytest.mark.parametrize("waiters", [1, 5])
def test_every_waiter_cancelled_the_build_still_ends_and_is_kept(waiters: int) -> None:
    """All tasks waiting on a build cancelled: the build goes on, its client is kept for
    the loop (the next operation does not build again), no error is left unread."""
    cache = GatedRemote()

    async def main() -> tuple[int, int, Any]:
        gate, started = _open(cache)
        tasks = [asyncio.ensure_future(cache._aconnection()) for _ in range(waiters)]
        await asyncio.wait_for(started.wait(), 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        gate.set()
        client = await asyncio.wait_for(cache._aconnection(), 10)
        return len(cache.made), len(cache._aconnecting), client.closed

    builds, in_flight, closed = asyncio.run(main())
    assert builds == 1
    assert in_flight == 0
    assert closed == 0  # kept while the loop runs (its shutdown closes it)


class InstantRemote(FakeRemote):
    """A provider whose async client build yields to the loop (as a worker-thread build
    does) and counts builds per loop."""

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.builds: list[asyncio.AbstractEventLoop] = []

    async def _aconnect(self) -> AsyncClient:
        self.builds.append(asyncio.get_running_loop())
        for _ in range(3):
            await asyncio.sleep(0)
        return AsyncClient()


def test_loops_in_threads_building_at_once_get_one_client_each() -> None:
    """Eight loops in eight threads, 20 tasks each starting together (twice, with the
    loops closed in between): one build per loop, each loop its own client, nothing
    left in flight, no closed loop kept."""
    cache = InstantRemote()
    threads = 8
    start = threading.Barrier(threads)

    async def tasks() -> list[Any]:
        return await asyncio.gather(*(cache._aconnection() for _ in range(20)))

    def worker() -> tuple[int, int]:
        start.wait(timeout=30)
        clients = asyncio.run(tasks())
        return len({id(c) for c in clients}), len(clients)

    for _ in range(2):
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda _: worker(), range(threads)))
        assert results == [(1, 20)] * threads
    assert len(cache.builds) == 2 * threads
    assert len(set(map(id, cache.builds))) >= threads  # each loop built its own
    assert cache._aconnecting == {}


class LoopBoundClient(AsyncClient):
    """A client that refers to its loop, as redis-py's streams and aiobotocore's HTTP
    session do: the weak map alone never lets such a loop go."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()


class LoopBoundRemote(FakeRemote):
    async def _aconnect(self) -> LoopBoundClient:
        return LoopBoundClient()


def test_closed_loops_do_not_keep_their_clients() -> None:
    """``asyncio.run`` once per call (as ``async_to_sync`` does), never closing the
    cache: each loop's shutdown closes its client, so the cache holds none and the
    loops are freed. Before, each client was left unclosed to the next loop's first
    operation (the last one for good); on an older main every loop and its client
    (for Redis: its open connection) stayed for good."""
    cache = LoopBoundRemote()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    clients: list[Any] = []

    async def first_use() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        clients.append(await cache._aconnection())

    for _ in range(20):
        asyncio.run(first_use())
    gc.collect()
    assert len(cache._aconns) == 0
    assert len(cache._aguards) == 0
    assert [client.closed for client in clients] == [1] * 20
    clients.clear()  # each holds its loop
    gc.collect()
    assert sum(ref() is not None for ref in loops) == 0


def test_loops_closed_without_their_shutdown_drop_their_clients() -> None:
    """A loop closed by hand, without ``shutdown_asyncgens()``, cannot close its client
    at its end: the next loop's first operation drops it (and ends its guard without
    touching the closed loop), so the cache holds one client at most."""
    cache = LoopBoundRemote()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    for _ in range(5):
        loop = asyncio.new_event_loop()
        loops.append(weakref.ref(loop))
        loop.run_until_complete(cache._aconnection())
        loop.close()
        del loop
    gc.collect()
    assert len(cache._aconns) == 1  # the last loop's, until the next loop's first use
    assert len(cache._aguards) == 1
    assert sum(ref() is not None for ref in loops) <= 1
