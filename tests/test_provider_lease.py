"""RemoteCache's client leases: ``close()`` while other threads or tasks are mid-call.

A call holds the client (``with self._use() as client:``); a close retires it, later
calls get a new one, and the retired client is released once no call holds it. On the
code before leases the close released the client under the calls in flight: redis-py
then failed them with ``AttributeError`` ("this is a bug") or stalled a socket timeout,
and aiobotocore with an untyped HTTP client error.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, SupportsIndex

import pytest
from test_provider import Client, FakeRemote

from cachehub import provider
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


class Hooked(list[None]):
    """A lease's user list that runs ``before`` (once) just before a call joins, or just
    after a call's count is dropped: what a thread switch there lets another thread do."""

    def __init__(self, on: str, before: Any) -> None:
        super().__init__()
        self.on, self.before = on, [before]

    def append(self, item: None) -> None:
        if self.on == "append" and self.before:
            self.before.pop()()
        super().append(item)

    def pop(self, index: SupportsIndex = -1) -> None:
        super().pop(index)
        if self.on == "pop" and self.before:  # just after this call's pop
            self.before.pop()()


def test_a_lease_retired_while_idle_is_released_by_the_closer() -> None:
    lease = Lease(Client())
    ended: list[int] = []
    assert lease.retire(lambda _: ended.append(1)) is True
    assert ended == []  # the closer releases it: nothing waits for a last user
    assert lease.join() is False  # nor can a call join it now


def test_a_lease_retired_while_held_is_released_once_by_its_last_user() -> None:
    lease = Lease(Client())
    ended: list[int] = []
    assert lease.join()
    assert lease.join()
    with lease, lease as client:
        assert isinstance(client, Client)
        assert lease.retire(lambda _: ended.append(1)) is False
    assert ended == [1]  # once, by the second (last) of the two holders
    assert lease.join() is False
    assert ended == [1]  # a call that found it retired released nothing more


def test_a_call_joining_as_a_close_lands_takes_the_next_client() -> None:
    """The close retires the lease between the call's read of it and its join: the call
    must not start on the client the close released (a Redis Cluster's shared client
    was released twice that way, and cut under another cache's calls)."""
    cache = TrackedRemote()
    first = cache._connection()
    cache._lease.users = Hooked("append", cache.close)  # type: ignore[union-attr]
    with cache._use() as client:
        assert client is not first
        assert client.call()  # type: ignore[attr-defined]
    assert first.closed == 1  # released once, by the close
    assert cache.made == [first, client]


def test_two_calls_leaving_together_release_the_retired_client_once() -> None:
    cache = TrackedRemote()
    first = cache._use()
    second = cache._use()
    assert first is second
    client = first.client
    cache.close()
    # The other call leaves (drops its count, finds none left, releases) right after
    # this one dropped its count and before it looks: both find no user left.
    first.users = Hooked("pop", first.__exit__)
    first.users.extend([None, None])
    first.__exit__()
    assert first.users == []
    assert client.closed == 1


def test_a_count_left_behind_by_an_interrupted_call_is_released_with_the_lease() -> None:
    """A signal handler's exception between a call's join and its ``with`` leaves the
    count up: the retired client is then released when the lease is collected."""
    cache = TrackedRemote()
    lease = cache._use()  # joined, never left
    (client,) = cache.made
    cache.close()
    assert client.closed == 0  # as far as the count tells, a call still holds it
    del lease
    gc.collect()
    assert client.closed == 1


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


class GatedTracked(TrackedRemote):
    """Its async client build waits for ``gate``: a test acts while it is in flight."""

    gate: asyncio.Event
    started: asyncio.Event

    async def _aconnect(self) -> Tracked:
        self.started.set()
        await self.gate.wait()
        return await super()._aconnect()


def test_a_task_that_joined_the_build_a_close_took_gets_the_next_client() -> None:
    """A task awaiting the loop's client build got the lease a close had taken (and
    closed) meanwhile: a DynamoDB request then failed with an untyped HTTP client error
    and a Redis connection stayed open after the loop ended."""
    cache = GatedTracked()

    async def main() -> None:
        cache.gate, cache.started = asyncio.Event(), asyncio.Event()
        builder = asyncio.create_task(cache._aconnection())  # starts the build
        await cache.started.wait()
        closing = asyncio.create_task(cache.aio().close())  # waits for the build
        joiner = asyncio.create_task(cache._ause())  # awaits the same build
        await asyncio.sleep(0)
        cache.gate.set()
        await builder
        await closing
        lease = await joiner
        with lease as client:
            assert client.call()  # the call runs on an open client
        await cache.aio().close()

    _run(main)
    assert len(cache.made) == 2
    assert [c.closed for c in cache.made] == [1, 1]
    assert [c.cut for c in cache.made] == [0, 0]


def test_aclose_goes_ahead_after_close_wait_under_a_request_that_never_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(provider, "CLOSE_WAIT", 0.05)
    cache = TrackedRemote()

    async def main() -> None:
        inside = asyncio.Event()

        async def stuck() -> None:
            with await cache._ause():
                inside.set()
                await asyncio.Event().wait()  # a reply that never comes

        hanging = asyncio.create_task(stuck())
        await inside.wait()
        with caplog.at_level(logging.WARNING, logger="cachehub"):
            await cache.aio().close()
        assert cache.made[0].closed == 1
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging

    _run(main)
    assert "under 1 request(s) still in flight after 0.05 s" in caplog.text
