"""The async shell (cachehub.aio): one set of semantics, loops, threads and hostile cases.

The conformance suite runs through the shell on every provider (AsyncConformance); these
are the shell's own cases: what ties it to its cache, what a misbehaving provider or
caller does to it, and the loop-blocking detector's own proof that it can fail.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from cachehub_memory import MemoryCache

from cachehub import AsyncCache, Caches, cached
from cachehub.errors import (
    CacheBackendError,
    CacheUnavailableError,
    CacheValueError,
    InvalidKeyError,
    ReadOnlyCacheError,
)
from cachehub.hookspecs import OperationEvent
from cachehub.testing.asyncshell import CPU_PER_CALLBACK, LoopThread
from cachehub.testing.reference import ReferenceBackend, ReferenceCache

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` bounded: a hang fails the test instead of stalling the run."""
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def memory() -> Iterator[MemoryCache]:
    cache = MemoryCache(store=uuid.uuid4().hex)
    yield cache
    cache.close()


# ---------------------------------------------------------------- one shell per cache


def test_aio_is_one_shell_sharing_the_cache(memory: MemoryCache) -> None:
    shell = memory.aio()
    assert isinstance(shell, AsyncCache)
    assert memory.aio() is shell
    assert shell.cache is memory
    assert (shell.name, shell.namespace, shell.settings) == (
        memory.name,
        memory.namespace,
        memory.settings,
    )

    async def scenario() -> tuple[Any, Any]:
        await shell.put("k", {"a": 1})
        return await shell.get("k"), memory.get("k")

    assert run(scenario()) == ({"a": 1}, {"a": 1})  # one store, both shells


def test_the_registry_gives_the_shell_of_its_cache(tmp_path: Any) -> None:
    caches = Caches({"main": {"class": "memory", "custom": {"store": uuid.uuid4().hex}}})
    try:
        assert caches.aio("main") is caches.get("main").aio()
        assert caches.aio() is caches.get().aio()  # the default cache
    finally:
        caches.close()


def test_events_and_error_policy_are_shared() -> None:
    events: list[OperationEvent] = []
    backend = ReferenceBackend()
    cache = ReferenceCache(backend=backend, observer=events.append, onError="miss")
    shell = cache.aio()

    async def scenario() -> tuple[Any, ...]:
        await shell.put("a", 1)
        hit = await shell.get("a")
        backend.down = True
        degraded = await shell.get("a", "fallback")
        keys = [k async for k in shell.keys()]  # noqa: SIM118 - an async iterator
        with pytest.raises(CacheUnavailableError):
            await shell.incr("n")  # never degrades
        return hit, degraded, keys

    assert run(scenario()) == (1, "fallback", [])
    ops = [(e.operation, e.hit, type(e.error).__name__) for e in events]
    assert ops == [
        ("put", None, "NoneType"),
        ("get", True, "NoneType"),
        ("get", False, "CacheUnavailableError"),
        ("keys", None, "CacheUnavailableError"),
        ("incr", None, "CacheUnavailableError"),
    ]


def test_keys_is_one_event_over_the_whole_iteration(memory: MemoryCache) -> None:
    events: list[OperationEvent] = []
    cache = MemoryCache(store=uuid.uuid4().hex, observer=events.append)
    shell = cache.aio()

    async def scenario() -> list[str]:
        await shell.put_many({f"k{i}": i for i in range(250)})
        events.clear()
        return [k async for k in shell.keys("k1*")]

    found = run(scenario())
    assert sorted(found) == sorted(k for k in (f"k{i}" for i in range(250)) if k.startswith("k1"))
    assert [e.operation for e in events] == ["keys"]


def test_arguments_are_checked_before_any_await(memory: MemoryCache) -> None:
    shell = memory.aio()
    # keys() checks its filter at the call, as the sync keys() does: no coroutine needed.
    with pytest.raises(CacheValueError):
        shell.keys(b"bytes")  # type: ignore[arg-type]

    async def scenario() -> None:
        with pytest.raises(InvalidKeyError):
            await shell.get("")
        with pytest.raises(CacheValueError):
            await shell.put("k", 1, time_span=-1)
        with pytest.raises(CacheValueError):
            await shell.incr("n", 2**63)
        with pytest.raises(CacheValueError):
            await shell.clear("a*", include_internal=True)

    run(scenario())


# ---------------------------------------------------------------- read-only caches


def test_aio_on_a_read_only_cache_refuses_every_write() -> None:
    store = uuid.uuid4().hex
    writer = MemoryCache(store=store)  # kept: a named store lives while a cache uses it
    writer.put("k", "v")
    shell = MemoryCache(store=store, read_only=True).aio()

    async def scenario() -> list[str]:
        refused = []
        writes = {
            "put": shell.put("k", 1),
            "add": shell.add("k", 1),
            "delete": shell.delete("k"),
            "incr": shell.incr("n"),
            "touch": shell.touch("k", time_span=5),
            "put_many": shell.put_many({"a": 1}),
            "delete_many": shell.delete_many(["a"]),
            "clear": shell.clear(),
        }
        for name, call in writes.items():
            try:
                await call
            except ReadOnlyCacheError:
                refused.append(name)
        with pytest.raises(ReadOnlyCacheError):
            async with shell.lock("job"):
                pass
        # Reads work; get_or_set computes without storing anything.
        assert await shell.get("k") == "v"
        assert await shell.get_or_set("fresh", lambda: 42) == 42
        assert await shell.exists("fresh") is False
        return refused

    assert run(scenario()) == [
        "put",
        "add",
        "delete",
        "incr",
        "touch",
        "put_many",
        "delete_many",
        "clear",
    ]


# ---------------------------------------------------------------- hostile providers


class _RawAsync(ReferenceCache):
    """A provider whose async primitives raise what no provider may let escape."""

    async def _aget(self, key: str, now: float) -> Any:
        raise KeyError("internal detail")

    async def _aset(self, key: str, value: Any, expiry: Any, now: float) -> None:
        raise RuntimeError("x" * 100_000)

    async def _ascan(self, flt: Any, now: float) -> Any:
        yield "a"
        raise OSError("disk gone mid-scan")


def test_raw_exceptions_of_async_primitives_become_typed_errors() -> None:
    shell = _RawAsync(backend=ReferenceBackend(), onError="miss").aio()

    async def scenario() -> list[str]:
        messages = []
        with pytest.raises(CacheBackendError) as got:
            await shell.get("k")
        messages.append(got.value.message)
        with pytest.raises(CacheBackendError) as put:
            await shell.put("k", 1)
        assert len(str(put.value)) < 1000  # a huge text is cut, never echoed whole
        seen = []
        with pytest.raises(CacheBackendError):
            async for key in shell.keys():
                seen.append(key)
        assert seen == ["a"]
        return messages

    (message,) = run(scenario())
    assert "KeyError" in message
    assert "get()" in message


class _Stuck(ReferenceCache):
    """A provider whose async get never answers, and whose put raises a BaseException."""

    async def _aget(self, key: str, now: float) -> Any:
        await asyncio.get_running_loop().create_future()  # never set

    async def _aset(self, key: str, value: Any, expiry: Any, now: float) -> None:
        raise _Abort("not an Exception")


class _Abort(BaseException):
    pass


def test_an_operation_ended_from_outside_is_reported_as_what_ended_it() -> None:
    events: list[OperationEvent] = []
    shell = _Stuck(backend=ReferenceBackend(), observer=events.append, onError="miss").aio()

    async def scenario() -> None:
        # A get whose coroutine is closed mid-flight (a loop shut down under it) ended
        # with GeneratorExit: an error, never a hit, never degraded to the fallback.
        stuck = shell.get("k")
        stuck.send(None)  # runs up to the never-answered await
        stuck.close()
        # Cancelled: reported as cancelled, never translated.
        task = asyncio.ensure_future(shell.get("k"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # A BaseException from a primitive goes through as it is.
        with pytest.raises(_Abort):
            await shell.put("k", 1)

    run(scenario())
    assert [(e.operation, type(e.error).__name__, e.hit) for e in events] == [
        ("get", "GeneratorExit", False),
        ("get", "CancelledError", False),
        ("put", "_Abort", None),
    ]


def test_an_async_key_stream_closed_early_is_not_an_error(memory: MemoryCache) -> None:
    events: list[OperationEvent] = []
    memory._observer = events.append
    memory.put_many({f"k{i}": i for i in range(5)})

    async def scenario() -> str:
        stream = memory.aio().keys()
        first = await stream.__anext__()
        await stream.aclose()  # the consumer stops after one key
        return first

    assert run(scenario()).startswith("k")
    assert [(e.operation, e.error) for e in events if e.operation == "keys"] == [("keys", None)]


def test_sync_only_provider_runs_off_the_loop() -> None:
    seen: list[str] = []

    class Recording(ReferenceCache):
        def _get(self, key: str, now: float) -> Any:
            seen.append(threading.current_thread().name)
            return super()._get(key, now)

    shell = Recording(backend=ReferenceBackend()).aio()

    async def scenario() -> Any:
        await shell.put("k", 1)
        return await shell.get("k"), threading.current_thread().name

    value, loop_thread = run(scenario())
    assert value == 1
    assert seen
    assert loop_thread not in seen


# ---------------------------------------------------------------- loops and threads


def test_a_closed_loop_then_a_new_one(memory: MemoryCache) -> None:
    shell = memory.aio()

    async def first() -> str:
        async with shell.lock("job"):
            return await shell.get_or_set("k", lambda: "one")

    async def second() -> str:
        # The stripes and locks of the closed loop are not carried over.
        async with shell.lock("job", timeout=5):
            return await shell.get_or_set("k", lambda: "two")

    assert run(first()) == "one"
    assert run(second()) == "one"


def test_keep_alive_ends_with_its_block_without_waiting_for_a_beat(memory: MemoryCache) -> None:
    shell = memory.aio()

    async def block() -> bool:
        lock = shell.lock("job", ttl=7200)
        assert await lock.acquire(blocking=False)
        async with lock.keep_alive(every=3600):  # the next beat is an hour away
            pass
        return await lock.release()

    assert run(block()) is True  # bounded by run(): a wait for the beat would fail it


def test_keep_alive_lets_an_extension_in_flight_finish_instead_of_cancelling_it(
    memory: MemoryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 5.0.0 could swallow a cancel that arrived mid-request: the heartbeat then beat
    # on, and leaving the block waited for it forever. The heartbeat is now told to stop,
    # never cancelled; this extension swallows a cancel the same way, so a cancel would show.
    shell = memory.aio()
    real = memory._alock_extend
    started, finished = asyncio.Event(), []

    async def slow_extend(name: str, token: str, ttl: float, now: float) -> bool:
        started.set()
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            finished.append("cancelled")
            return True
        finished.append("done")
        return await real(name, token, ttl, now)

    monkeypatch.setattr(memory, "_alock_extend", slow_extend)

    async def block() -> bool:
        lock = shell.lock("job", ttl=30)
        assert await lock.acquire(blocking=False)
        async with lock.keep_alive(every=0.001):
            await started.wait()  # leave the block while an extension is in flight
        return await lock.release()

    assert run(block()) is True
    assert finished == ["done"]


def test_get_or_set_is_one_flight_per_process_across_loops_and_threads() -> None:
    # Two event loops in two threads and a sync caller race for one key of a memory cache
    # (no fill lock in a backend): the creator runs once. The computing caller keeps the
    # others waiting until each has missed once (or 0.2 s passed), so without a flight
    # spanning loops the other loop's second look would miss too and compute again.
    misses: list[str] = []
    cache = MemoryCache(store=uuid.uuid4().hex, observer=lambda e: _record_miss(e, misses))
    calls: list[str] = []

    def others_have_missed() -> bool:
        return len(set(misses)) >= 3

    async def acreator() -> str:
        calls.append(threading.current_thread().name)
        for _ in range(40):
            if others_have_missed():
                break
            await asyncio.sleep(0.005)
        return "value"

    def creator() -> str:
        calls.append(threading.current_thread().name)
        for _ in range(40):
            if others_have_missed():
                break
            time.sleep(0.005)
        return "value"

    results: dict[str, Any] = {}

    def on_a_loop() -> None:
        async def main() -> list[str]:
            return await asyncio.gather(*(cache.aio().get_or_set("k", acreator) for _ in range(5)))

        results[threading.current_thread().name] = run(main())

    def sync_caller() -> None:
        results[threading.current_thread().name] = cache.get_or_set("k", creator)

    threads = [
        threading.Thread(target=on_a_loop, name="loop-1"),
        threading.Thread(target=on_a_loop, name="loop-2"),
        threading.Thread(target=sync_caller, name="sync"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {"loop-1": ["value"] * 5, "loop-2": ["value"] * 5, "sync": "value"}
    assert len(calls) == 1, calls
    cache.close()


def _record_miss(event: OperationEvent, misses: list[str]) -> None:
    if event.operation == "get" and event.hit is False:
        misses.append(threading.current_thread().name)


def test_get_or_set_waiting_on_another_thread_neither_blocks_the_loop_nor_holds_on_cancel(
    memory: MemoryCache,
) -> None:
    # Another thread holds the key's flight (a sync get_or_set computing): a task waiting
    # for it keeps the loop free, and cancelled, it leaves nothing held.
    computing, release = threading.Event(), threading.Event()

    def slow() -> str:
        computing.set()
        release.wait(30)
        return "sync"

    holder = threading.Thread(target=lambda: memory.get_or_set("k", slow))
    holder.start()
    assert computing.wait(30)
    loop = LoopThread(limit=CPU_PER_CALLBACK)
    try:

        async def scenario() -> tuple[bool, str]:
            waiting = asyncio.ensure_future(memory.aio().get_or_set("k", lambda: "async"))
            await asyncio.sleep(0.05)  # it polls the other thread's stripe meanwhile
            still_waiting = not waiting.done()
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            release.set()
            other = await memory.aio().get_or_set("other", lambda: "free")
            return still_waiting, other

        assert loop.run(scenario()) == (True, "free")
        holder.join(30)
        assert memory.get("k") == "sync"
        loop.check()
    finally:
        release.set()
        loop.close()
        holder.join(30)


def test_two_loops_in_two_threads_share_one_cache(memory: MemoryCache) -> None:
    shell = memory.aio()
    errors: list[BaseException] = []

    def worker() -> None:
        async def count() -> None:
            for _ in range(200):
                await shell.incr("n")

        try:
            run(count())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert memory.get("n") == 800


def test_huge_batch_completes_without_blocking_the_loop() -> None:
    shell = MemoryCache(store=uuid.uuid4().hex, maxsize=100_000).aio()
    items = {f"k{i}": i for i in range(50_000)}
    loop = LoopThread(limit=0.25)
    try:

        async def scenario() -> tuple[int, int, int]:
            await shell.put_many(items)
            found = await shell.get_many(list(items))
            return len(found), await shell.count(), await shell.delete_many(list(items))

        assert loop.run(scenario()) == (50_000, 50_000, 50_000)
        loop.check()
    finally:
        loop.close()


# ---------------------------------------------------------------- @cached on async def


def test_cached_coroutine_function_computes_once_across_tasks(memory: MemoryCache) -> None:
    calls: list[int] = []

    @cached(memory, time_span=60)
    async def double(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.01)
        return 2 * x

    async def scenario() -> tuple[list[int], bool, int]:
        results = await asyncio.gather(*(double(21) for _ in range(20)))
        invalidated = await double.ainvalidate(21)
        return list(results), invalidated, await double(21)

    assert run(scenario()) == ([42] * 20, True, 42)
    assert calls == [21, 21]


def test_cached_async_creator_error_stores_nothing(memory: MemoryCache) -> None:
    @cached(memory)
    async def broken() -> int:
        raise ValueError("no")

    async def scenario() -> bool:
        with pytest.raises(ValueError):
            await broken()
        return await memory.aio().exists(broken.cache_key())

    assert run(scenario()) is False


# ---------------------------------------------------------------- the loop-blocking detector
#
# These cases are about waits, which are counted at any length: the CPU limit is off, so
# no callback stretched by a loaded machine can add to (or empty) what they expect.


def test_the_detector_fails_on_a_sync_sleep_in_the_loop() -> None:
    loop = LoopThread(limit=None)
    try:

        async def blocking() -> None:
            time.sleep(0.02)

        loop.run(blocking())
        assert len(loop.blocked) == 1
        assert "time.sleep(0.02)" in loop.blocked[0]
    finally:
        loop.close()


def test_the_detector_fails_on_a_blocking_socket_in_the_loop() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    loop = LoopThread(limit=None)
    try:

        async def blocking() -> None:
            with socket.create_connection(server.getsockname(), timeout=5):
                pass

        loop.run(blocking())
        assert any("socket.connect" in b for b in loop.blocked)
    finally:
        loop.close()
        server.close()


def test_the_detector_passes_awaited_waits() -> None:
    loop = LoopThread(limit=None)
    try:

        async def cooperative() -> None:
            await asyncio.sleep(0.02)
            await asyncio.to_thread(time.sleep, 0.02)  # a worker thread may block

        loop.run(cooperative())
        assert loop.blocked == []
    finally:
        loop.close()
