"""The conformance suite in async form: every sync case, run against the async shell.

:class:`AsyncConformance` is a one-line opt-in per provider test module::

    class TestMyCacheAsync(AsyncConformance, TestMyCache):
        pass

Every case of the provider's sync suite (``TestMyCache``, a :class:`CacheConformance`)
then runs again with each cache replaced by a *shell view*: the same cache, whose
public operations go through ``cache.aio()`` on a dedicated event-loop thread
(:class:`LoopThread`). Concurrency, locks and cross-process single flight run unchanged,
as do the ``onError`` cases. The loop runs in asyncio debug mode: a callback that keeps
it busy longer than :attr:`AsyncConformance.slow_callback_limit` (blocking I/O, a sync
sleep) fails the test. Cases only async has (single flight across tasks, lock contention
between tasks, cancellation, ``async for`` under an outage) are added by
:class:`AsyncOnlyTests`. See docs/conformance.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import resource
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, Final, TypeVar, cast

import pytest

from cachehub.aio import AsyncCache
from cachehub.api import BaseCache, CacheMetadata, Entry, TimeSpan
from cachehub.errors import CacheUnavailableError, LockTimeoutError
from cachehub.hookspecs import OperationEvent
from cachehub.lock import AsyncLock

from .clock import FakeClock
from .support import CacheFactory, ConformanceBase

__all__ = ["AsyncConformance", "AsyncOnlyTests", "LoopThread", "shell_view"]

T = TypeVar("T")

CALL_TIMEOUT = 60.0
"""Longest one awaited operation may take before the test fails (a hang, not a result)."""


_SCHEDSTAT = "/proc/thread-self/schedstat"


def _runnable() -> float | None:
    """Seconds this thread has spent on the CPU or waiting in the run queue, or None.

    CPU time from ``CLOCK_THREAD_CPUTIME_ID`` (exact), run-queue wait from Linux's
    schedstat (only grows while the thread is not running, so it is current when read).
    What a callback's wall time adds on top is time the thread *slept*: blocking I/O, a
    sync sleep, a lock wait. Preemption on a loaded machine is not counted.
    """
    try:
        with open(_SCHEDSTAT, "rb") as f:
            waited = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return time.thread_time() + waited / 1e9


def _page_ins() -> int:
    """Major page faults of this thread so far (pages read back from disk)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_majflt


_watched: dict[int, LoopThread] = {}
_original_run = asyncio.events.Handle._run


def _timed_run(handle: asyncio.events.Handle) -> None:
    loop = _watched.get(threading.get_ident())
    if loop is None:
        _original_run(handle)
        return
    busy = _runnable()
    faults = _page_ins()
    start = time.perf_counter()
    try:
        _original_run(handle)
    finally:
        wall = time.perf_counter() - start
        after = _runnable()
        slept = wall if busy is None or after is None else wall - (after - busy)
        # A page read back from disk (a loaded machine's memory pressure) sleeps too,
        # whatever code touched it: only sleeps without one count.
        if loop.limit is not None and slept > loop.limit and _page_ins() == faults:
            loop.blocked.append(f"{handle!r:.300} slept {slept * 1000:.1f} ms")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Flag blocking calls made on a watched loop's thread, however short they are (a sync
    client's round trip on localhost takes far less than any time limit). Unlike the
    timing in :func:`_timed_run`, this cannot be fooled by a loaded machine."""
    if event not in _BLOCKING_EVENTS:
        return
    loop = _watched.get(threading.get_ident())
    if loop is None:
        return
    if event == "time.sleep":
        loop.blocked.append(f"time.sleep({args[0] if args else '?'}) on the event loop's thread")
    elif args and isinstance(args[0], socket.socket) and args[0].gettimeout() != 0.0:
        # asyncio's own sockets are non-blocking (timeout 0.0): this one is a sync client's.
        loop.blocked.append(f"{event} of a blocking socket on the event loop's thread")


_BLOCKING_EVENTS: Final = frozenset({"socket.connect", "socket.sendto", "time.sleep"})
_audit_installed: list[bool] = []


class LoopThread:
    """An asyncio event loop running in its own thread, for calling coroutines from sync code.

    The loop runs in asyncio debug mode (which also refuses calls from other threads). With
    ``limit`` (seconds), every callback it runs is timed: one that keeps the loop waiting
    longer than that - blocking I/O, a sync sleep, a lock - is listed in :attr:`blocked`.
    On Linux the time the thread was preempted (a loaded machine) is not counted
    (``/proc/thread-self/schedstat``); elsewhere it is wall time.
    """

    def __init__(self, limit: float | None = None) -> None:
        self.limit = limit
        self.blocked: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(True)
        self.loop.slow_callback_duration = 3600.0  # timed by _timed_run instead
        self._switch = sys.getswitchinterval()
        if limit is not None:
            # Waiting for the GIL is sleeping too: short slices keep that wait (other
            # threads running) well under the limit.
            sys.setswitchinterval(min(self._switch, limit / 20))
        asyncio.events.Handle._run = _timed_run  # type: ignore[assignment]
        if not _audit_installed:  # audit hooks cannot be removed: one for the process
            sys.addaudithook(_audit)
            _audit_installed.append(True)
        self._thread = threading.Thread(target=self._main, name="cachehub-test-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        _watched[threading.get_ident()] = self
        try:
            self.loop.run_forever()
        finally:
            _watched.pop(threading.get_ident(), None)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the loop and wait for its result (bounded by ``timeout``)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        # Not future.result(timeout): the operation's own errors may be TimeoutErrors
        # (LockTimeoutError is one), which must reach the test as they are.
        done, _ = concurrent.futures.wait([future], timeout)
        if not done:
            future.cancel()
            pytest.fail(f"an awaited cache operation did not finish within {timeout}s")
        return future.result()

    def close(self) -> None:
        """Cancel what is left, stop the loop and close it."""

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(CALL_TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT)
        sys.setswitchinterval(self._switch)
        if not self._thread.is_alive():
            self.loop.close()


class _ShellLock:
    """A sync :class:`~cachehub.lock.Lock` look-alike driving an :class:`AsyncLock`."""

    def __init__(self, lock: AsyncLock, loop: LoopThread) -> None:
        self._lock = lock
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lock, name)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return self._loop.run(self._lock.acquire(blocking, timeout))

    def release(self) -> bool:
        return self._loop.run(self._lock.release())

    def release_quietly(self) -> bool:
        return self._loop.run(self._lock.release_quietly())

    def extend(self, ttl: TimeSpan | None = None) -> None:
        self._loop.run(self._lock.extend(ttl))

    @property
    def held(self) -> bool:
        return self._loop.run(self._lock.held())

    @property
    def busy(self) -> bool:
        return self._loop.run(self._lock.busy())

    @property
    def locked(self) -> bool:
        return self._lock.locked

    @contextlib.contextmanager
    def keep_alive(self, every: float | None = None) -> Iterator[_ShellLock]:
        manager = self._lock.keep_alive(every)
        self._loop.run(manager.__aenter__())
        try:
            yield self
        finally:
            self._loop.run(manager.__aexit__(None, None, None))

    def __enter__(self) -> _ShellLock:
        self._loop.run(self._lock.__aenter__())
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._loop.run(self._lock.__aexit__(exc_type, None, None))


class _ShellView:
    """Public operations of a cache, sent through its async shell on a loop thread.

    Mixed in front of the provider's own class by :func:`shell_view`: everything else
    (attributes, primitives, class checks) is the provider's own.
    """

    _shell_loop: LoopThread
    _shell_of: BaseCache

    def _lock_table(self) -> Any:
        # The in-process lock table is kept per provider class: the cache's, not the view's.
        return self._shell_of._lock_table()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._shell_loop.run(coro)

    @property
    def _shell(self) -> AsyncCache:
        return self._shell_of.aio()

    def get(self, key: str, default: Any = None, *, throw_when_not_exist: bool = False) -> Any:
        return self._call(self._shell.get(key, default, throw_when_not_exist=throw_when_not_exist))

    def exists(self, key: str) -> bool:
        return self._call(self._shell.exists(key))

    def put(
        self,
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        self._call(self._shell.put(key, value, time_span, idle_time, until))

    def add(
        self,
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> bool:
        return self._call(self._shell.add(key, value, time_span, idle_time, until))

    def delete(self, key: str) -> bool:
        return self._call(self._shell.delete(key))

    def incr(self, key: str, delta: int = 1) -> int:
        return self._call(self._shell.incr(key, delta))

    def decr(self, key: str, delta: int = 1) -> int:
        return self._call(self._shell.decr(key, delta))

    def touch(
        self,
        key: str,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> bool:
        return self._call(self._shell.touch(key, time_span, idle_time, until))

    def metadata(self, key: str) -> CacheMetadata:
        return self._call(self._shell.metadata(key))

    def peek(self, key: str) -> Entry | None:
        return self._call(self._shell.peek(key))

    def restore(self, key: str, entry: Entry) -> bool:
        return self._call(self._shell.restore(key, entry))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._call(self._shell.get_many(keys))

    def put_many(
        self,
        items: Mapping[str, Any],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        self._call(self._shell.put_many(items, time_span, idle_time, until))

    def delete_many(self, keys: Iterable[str]) -> int:
        return self._call(self._shell.delete_many(keys))

    def keys(self, filter: str | None = None) -> Iterator[str]:
        # Checked at the call, as the sync keys() does; read as consumed.
        return self._pull(self._shell.keys(filter))

    def _pull(self, keys: AsyncIterator[str]) -> Iterator[str]:
        async def step() -> tuple[bool, str]:
            try:
                return True, await keys.__anext__()
            except StopAsyncIteration:
                return False, ""

        try:
            while True:
                more, key = self._call(step())
                if not more:
                    return
                yield key
        finally:
            self._call(cast(Any, keys).aclose())

    def get_all(self, filter: str | None = None) -> dict[str, Any]:
        return self._call(self._shell.get_all(filter))

    def count(self, filter: str | None = None) -> int:
        return self._call(self._shell.count(filter))

    def clear(self, filter: str | None = None, *, include_internal: bool = False) -> int:
        return self._call(self._shell.clear(filter, include_internal=include_internal))

    def get_or_set(
        self,
        key: str,
        creator: Callable[[], T],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
        *,
        lock_timeout: float = 30.0,
    ) -> T:
        async def create() -> T:
            # A sync creator (it may sleep or wait on a barrier) runs off the loop.
            return await asyncio.to_thread(creator)

        return self._call(
            self._shell.get_or_set(
                key, create, time_span, idle_time, until, lock_timeout=lock_timeout
            )
        )

    def lock(
        self,
        name: str,
        ttl: TimeSpan = 30.0,
        *,
        timeout: float | None = None,
        poll: float = 0.05,
    ) -> Any:
        return _ShellLock(self._shell.lock(name, ttl, timeout=timeout, poll=poll), self._shell_loop)

    def info(self) -> dict[str, Any]:
        return self._call(self._shell.info())

    def close(self) -> None:
        try:
            self._call(self._shell.close())
        finally:
            self._shell_of.close()


_VIEW_CLASSES: dict[type, type] = {}


def shell_view(cache: BaseCache, loop: LoopThread) -> BaseCache:
    """``cache`` seen through its async shell: same state, public calls awaited on ``loop``.

    The view is an instance of a subclass of the cache's own class sharing the cache's
    attribute dict, so primitives, settings and ``isinstance`` checks are the cache's.
    """
    cls = type(cache)
    view_cls = _VIEW_CLASSES.get(cls)
    if view_cls is None:
        view_cls = _VIEW_CLASSES[cls] = type(f"{cls.__name__}ViaAsync", (_ShellView, cls), {})
    view: Any = object.__new__(view_cls)
    view.__dict__ = cache.__dict__  # one state: the view is the same cache
    view._shell_loop = loop
    view._shell_of = cache
    return cast(BaseCache, view)


class AsyncOnlyTests(ConformanceBase):
    """Cases only the async shell has: tasks, cancellation, ``async for``."""

    task_count: ClassVar[int] = 50
    """How many tasks race in the single-flight and lock cases."""

    def _aio(self, make_cache: CacheFactory) -> AsyncCache:
        view = make_cache()
        return cast(_ShellView, view)._shell

    def test_get_or_set_single_flight_across_tasks(
        self, make_cache: CacheFactory, shell_loop: LoopThread
    ) -> None:
        shell = self._aio(make_cache)
        calls: list[int] = []

        async def creator() -> str:
            calls.append(1)
            await asyncio.sleep(0.01)  # every other task arrives while this one computes
            return "value"

        async def race() -> list[str]:
            return await asyncio.gather(
                *(shell.get_or_set("k", creator, time_span=600) for _ in range(self.task_count))
            )

        assert shell_loop.run(race()) == ["value"] * self.task_count
        assert calls == [1]

    def test_lock_contention_across_tasks(
        self, make_cache: CacheFactory, shell_loop: LoopThread
    ) -> None:
        shell = self._aio(make_cache)
        inside: list[int] = []
        most = [0]

        async def worker() -> None:
            async with shell.lock("job", ttl=30, timeout=30, poll=0.01):
                inside.append(1)
                most[0] = max(most[0], len(inside))
                await asyncio.sleep(0)  # hand the loop over while holding the lock
                inside.pop()

        async def race() -> None:
            await asyncio.gather(*(worker() for _ in range(self.task_count // 5)))

        shell_loop.run(race())
        assert most[0] == 1

    def test_cancelled_lock_waiter_holds_nothing(
        self, make_cache: CacheFactory, shell_loop: LoopThread
    ) -> None:
        shell = self._aio(make_cache)

        async def scenario() -> tuple[bool, bool]:
            holder = shell.lock("job", ttl=30)
            assert await holder.acquire()
            waiter = asyncio.ensure_future(shell.lock("job", ttl=30, poll=0.01).acquire())
            await asyncio.sleep(0.05)  # the waiter is polling now
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            await holder.release()
            await asyncio.sleep(0.05)  # a won-then-cancelled attempt is given back by now
            probe = shell.lock("job", ttl=30)
            free = await probe.acquire(blocking=False)
            if free:
                await probe.release()
            return free, waiter.cancelled()

        assert shell_loop.run(scenario()) == (True, True)

    def test_cancelled_get_or_set_holds_nothing(
        self, make_cache: CacheFactory, shell_loop: LoopThread
    ) -> None:
        shell = self._aio(make_cache)

        async def scenario() -> tuple[Any, Any]:
            started = asyncio.Event()

            async def slow() -> str:
                started.set()
                await asyncio.sleep(60)  # cancelled long before
                return "never"

            first: asyncio.Future[str] = asyncio.ensure_future(
                shell.get_or_set("k", slow, lock_timeout=30)
            )
            await asyncio.wait_for(started.wait(), 10)
            waiting: asyncio.Future[str] = asyncio.ensure_future(
                shell.get_or_set("k", slow, lock_timeout=30)
            )
            await asyncio.sleep(0.02)
            waiting.cancel()
            first.cancel()
            await asyncio.gather(first, waiting, return_exceptions=True)
            # Neither the fill lock nor the in-process flight is still held: a new
            # caller computes at once.
            value = await asyncio.wait_for(shell.get_or_set("k", lambda: "fresh"), 10)
            return value, await shell.get("k")

        assert shell_loop.run(scenario()) == ("fresh", "fresh")

    def test_lock_timeout_across_tasks(
        self, make_cache: CacheFactory, shell_loop: LoopThread
    ) -> None:
        shell = self._aio(make_cache)

        async def scenario() -> None:
            async with shell.lock("job", ttl=30):
                with pytest.raises(LockTimeoutError):
                    async with shell.lock("job", ttl=30, timeout=0.05, poll=0.01):
                        pass

        shell_loop.run(scenario())

    @pytest.mark.parametrize("on_error", ["miss", "raise"])
    def test_async_for_keys_under_outage(
        self,
        request: pytest.FixtureRequest,
        namespace: str,
        shell_loop: LoopThread,
        on_error: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        try:
            unreachable_factory: CacheFactory = request.getfixturevalue("unreachable_factory")
        except pytest.FixtureLookupError:
            pytest.skip(f"{type(self).__name__} defines no unreachable_factory fixture")
        events: list[OperationEvent] = []
        cache = unreachable_factory(namespace=namespace, onError=on_error, observer=events.append)

        async def walk() -> list[str]:
            stream = cache.aio().keys()
            return [key async for key in stream]

        try:
            if on_error == "miss":
                with caplog.at_level(logging.WARNING):
                    assert shell_loop.run(walk()) == []
                assert any("unavailable" in r.getMessage() for r in caplog.records)
            else:
                with pytest.raises(CacheUnavailableError):
                    shell_loop.run(walk())
            assert [e.operation for e in events] == ["keys"]
            assert isinstance(events[0].error, CacheUnavailableError)
        finally:
            with contextlib.suppress(CacheUnavailableError):
                shell_loop.run(cache.aio().close())
            with contextlib.suppress(CacheUnavailableError):
                cache.close()


class AsyncConformance(AsyncOnlyTests):
    """Mix in front of a provider's :class:`CacheConformance` class to run it via ``aio()``."""

    slow_callback_limit: ClassVar[float | None] = 0.005
    """Seconds one loop callback may run in the async-only cases (only the loop's thread
    works there) before the test fails as blocking the loop (None: not checked)."""
    threaded_slow_callback_limit: ClassVar[float | None] = None
    """The same limit for the sync cases run through the shell (None: not timed). Their
    threads share the GIL with the loop, so a callback's time includes waits for a
    thread holding the GIL, and on a loaded machine (CI, pytest-xdist) that thread may be
    preempted for hundreds of milliseconds: a time limit there fails at random. Those
    cases still fail on any blocking socket connect or send and any ``time.sleep`` on the
    loop's thread (audit hooks, whatever the duration); the async-only cases keep the
    time limit."""

    @pytest.fixture
    def shell_loop(self, request: pytest.FixtureRequest) -> Iterator[LoopThread]:
        """The event loop (in its own thread) every awaited operation of the test runs on."""
        defined_in = getattr(request.function, "__qualname__", "").split(".")[0]
        only_loop = defined_in == AsyncOnlyTests.__name__
        limit = self.slow_callback_limit if only_loop else self.threaded_slow_callback_limit
        loop = LoopThread(limit)
        try:
            yield loop
        finally:
            loop.close()
        if loop.blocked:
            pytest.fail(
                "a callback blocked the event loop: " + "; ".join(loop.blocked[:3]),
                pytrace=False,
            )

    def test_keep_alive_extends_while_the_block_runs(self, cache: BaseCache) -> None:
        # The sync case counts calls of _lock_extend; the async shell calls _alock_extend.
        lock = cache.lock("job", ttl=30)
        assert lock.acquire(blocking=False)
        calls: list[float] = []
        real = cache._alock_extend

        async def counting(name: str, token: str, ttl: float, now: float) -> bool:
            calls.append(ttl)
            return await real(name, token, ttl, now)

        cache._alock_extend = counting  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        with lock.keep_alive(every=0.01):
            while len(calls) < 2:
                assert time.monotonic() < deadline, "keep_alive never extended the lock"
                time.sleep(0.01)
        settled = len(calls)
        time.sleep(0.05)
        assert len(calls) == settled  # the heartbeat stopped with the block
        assert lock.release() is True

    @pytest.fixture
    def make_cache(
        self,
        cache_factory: CacheFactory,
        clock: FakeClock | None,
        namespace: str,
        shell_loop: LoopThread,
    ) -> Iterator[CacheFactory]:
        """As the sync suite's, but each cache is seen through its async shell."""
        created: list[BaseCache] = []

        def make(**kwargs: Any) -> BaseCache:
            kwargs.setdefault("namespace", namespace)
            if clock is not None:
                kwargs.setdefault("clock", clock)
            cache = cache_factory(**kwargs)
            created.append(cache)
            return shell_view(cache, shell_loop)

        yield make
        used = {c.namespace for c in created if c.namespace.startswith(namespace)}
        for ns in sorted(used | {namespace}):
            cleaner = cache_factory(namespace=ns)
            try:
                cleaner.clear(include_internal=True)
            finally:
                cleaner.close()
        for cache in created:
            with contextlib.suppress(Exception):
                shell_loop.run(cache.aio().close())
            cache.close()

    @pytest.fixture
    def down(
        self, unreachable_factory: CacheFactory, namespace: str, shell_loop: LoopThread
    ) -> Iterator[Callable[..., tuple[BaseCache, list[OperationEvent]]]]:
        """The onError cases' unreachable caches, seen through their async shells."""
        created: list[BaseCache] = []

        def make(on_error: str) -> tuple[BaseCache, list[OperationEvent]]:
            events: list[OperationEvent] = []
            cache = unreachable_factory(
                namespace=namespace, onError=on_error, observer=events.append
            )
            created.append(cache)
            return shell_view(cache, shell_loop), events

        yield make
        for cache in created:
            with contextlib.suppress(CacheUnavailableError):
                shell_loop.run(cache.aio().close())
            with contextlib.suppress(CacheUnavailableError):
                cache.close()
