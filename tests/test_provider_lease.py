"""RemoteCache's client leases: ``close()`` while other threads or tasks are mid-call.

A call holds the client (``with self._use() as client:``); a close retires it, later
calls get a new one, and the retired client is released once no call holds it. On the
code before leases the close released the client under the calls in flight: redis-py
then failed them with ``AttributeError`` ("this is a bug") or stalled a socket timeout,
and aiobotocore with an untyped HTTP client error.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from test_provider import Client, FakeRemote

from cachehub.provider import Lease


class Tracked(Client):
    """A client that notes a close while a call is inside it (a call cut short)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.cut = 0
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.cut += self.inside > 0
            super().close()

    def call(self) -> bool:
        """One request: True if the client was open throughout."""
        with self.lock:
            self.inside += 1
        try:
            return not self.closed
        finally:
            with self.lock:
                self.inside -= 1

    async def aclose(self) -> None:
        self.close()


class TrackedRemote(FakeRemote):
    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.made: list[Tracked] = []

    def _connect(self) -> Tracked:  # type: ignore[override]
        client = Tracked()
        self.made.append(client)
        return client

    async def _aconnect(self) -> Tracked:
        client = Tracked()
        self.made.append(client)
        return client


def test_a_lease_retired_while_idle_is_released_by_the_closer() -> None:
    lease = Lease(Client())
    ended: list[int] = []
    assert lease.retire(lambda: ended.append(1)) is True
    assert ended == []  # the closer releases it: nothing waits for a last user


def test_a_lease_retired_while_held_is_released_by_its_last_user() -> None:
    lease = Lease(Client())
    ended: list[int] = []
    with lease, lease as client:
        assert isinstance(client, Client)
        assert lease.retire(lambda: ended.append(1)) is False
    assert ended == [1]  # once, by the second (last) of the two holders
    with lease:
        pass
    assert ended == [1, 1]  # a late holder releases again (releases are idempotent)


def test_close_during_a_call_in_another_thread_releases_the_client_when_the_call_ends() -> None:
    cache = TrackedRemote()
    inside, finish = threading.Event(), threading.Event()

    def call() -> bool:
        with cache._use() as client:
            inside.set()
            assert finish.wait(5)
            return client.call()  # type: ignore[attr-defined, no-any-return]

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call)
        assert inside.wait(5)
        first = cache._conn
        assert isinstance(first, Tracked)
        cache.close()
        assert first.closed == 0  # the call in flight keeps it
        assert cache._conn is None
        assert cache._connection() is not first  # a later call gets a new client
        finish.set()
        assert running.result(5) is True  # the call ran on an open client
    assert first.closed == 1  # released by the call's end, once
    cache.close()
    assert all(client.closed >= 1 for client in cache.made)


def test_closes_racing_calls_in_threads_never_cut_a_call_and_release_every_client() -> None:
    cache = TrackedRemote()
    start = threading.Barrier(5)
    stop = threading.Event()

    def closer() -> int:
        start.wait(5)
        closes = 0
        while not stop.is_set() and closes < 100_000:
            cache.close()
            closes += 1
            time.sleep(0)
        return closes

    def worker(_: int) -> int:
        start.wait(5)
        failed = 0
        for _ in range(2_000):
            with cache._use() as client:
                time.sleep(0)  # the request's I/O: other threads run meanwhile
                failed += not client.call()  # type: ignore[attr-defined]
        return failed

    with ThreadPoolExecutor(5) as pool:
        closing = pool.submit(closer)
        failed = sum(pool.map(worker, range(4)))
        stop.set()
        assert closing.result(10) > 0
    cache.close()
    assert failed == 0
    assert [c for c in cache.made if c.cut] == []
    assert [c for c in cache.made if not c.closed] == []  # none left open
    assert len(cache.made) >= 10  # the closes did retire clients under the calls


def _run(main: Any) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 10))


def test_aclose_waits_for_the_calls_of_other_tasks_and_new_calls_get_a_new_client() -> None:
    cache = TrackedRemote()

    async def main() -> None:
        finish = asyncio.Event()
        inside = asyncio.Event()

        async def call() -> bool:
            with await cache._ause() as client:
                inside.set()
                await finish.wait()
                return client.call()  # type: ignore[no-any-return]

        running = asyncio.create_task(call())
        await inside.wait()
        (first,) = cache.made
        closing = asyncio.create_task(cache.aio().close())
        await asyncio.sleep(0.01)
        assert not closing.done()  # waiting for the call holding the client
        assert first.closed == 0
        assert await cache._aconnection() is not first  # meanwhile: a new client
        finish.set()
        assert await running is True
        await closing
        assert first.closed == 1
        await cache.aio().close()

    _run(main)
    assert [c.closed for c in cache.made] == [1, 1]


def test_an_aclose_cancelled_while_it_waits_closes_the_client_at_once() -> None:
    cache = TrackedRemote()

    async def main() -> None:
        finish = asyncio.Event()
        inside = asyncio.Event()

        async def call() -> None:
            with await cache._ause():
                inside.set()
                await finish.wait()

        running = asyncio.create_task(call())
        await inside.wait()
        closing = asyncio.create_task(cache.aio().close())
        await asyncio.sleep(0.01)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert cache.made[0].closed == 1  # nothing is left to close it later
        finish.set()
        await running

    _run(main)
