"""The async shell: :class:`AsyncCache`, the same cache operations as coroutines.

Get one from any cache with ``cache.aio()`` (or ``caches.aio(name)``)::

    shell = cache.aio()
    await shell.put("user:42", user, time_span=300)
    user = await shell.get("user:42")
    async for key in shell.keys("user:*"): ...

One set of semantics, two shells: every rule an operation follows (key checks and
mapping, expiry arithmetic, read-only refusal, counter ranges, the error policy, events,
the ``get_or_set`` decisions) lives once in :class:`cachehub.api.BaseCache`, as the
*plan* before and the *finish* after its primitive call. The sync shell (BaseCache's
public methods) calls the sync primitive in between, this one awaits the async primitive
(``_aget``, ``_aset``...). See docs/async.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar, cast, overload

from .api import (
    _ASYNC_SHELL,
    _RAISE,
    MAX_KEY_LENGTH,
    MISSING,
    NO_EXPIRY,
    BaseCache,
    CacheMetadata,
    Entry,
    Expiry,
    TimeSpan,
    _close_iterator,
    make_expiry,
)
from .errors import CacheUnavailableError, UnknownSigningKeyError
from .filters import KeyFilter, compile_filter
from .flights import WAIT_SLICE, Flight
from .lock import AsyncLock

__all__ = ["AsyncCache", "InlineAsync"]

T = TypeVar("T")

_YIELD_EVERY: Final = 100
"""An in-process scan hands the loop back after this many keys (a long walk never
starves other tasks)."""
_INLINE_BATCH: Final = 64
"""Largest batch an in-process provider handles on the loop; a bigger one (each value
encoded or decoded) runs in a worker thread, so a huge batch never stalls the loop."""


async def _created(creator: Callable[[], T | Awaitable[T]]) -> T:
    """Call ``creator``; await its result when it is awaitable (an ``async def``)."""
    value = creator()
    if inspect.isawaitable(value):
        return cast(T, await value)
    return value


_POLL_FIRST: Final = 0.001
_POLL_MOST: Final = 0.05


@contextlib.asynccontextmanager
async def _process_flight(cache: BaseCache, key: str) -> AsyncIterator[tuple[bool, Any]]:
    """Lead ``key``'s in-process flight (the one the sync ``get_or_set`` joins too), or
    wait for the flight another task or thread leads, without blocking the loop.

    Yields ``(leading, found)``: ``found`` is the value a waited-for flight stored (else
    MISSING); ``leading`` False with nothing found means this task may not wait, as it
    leads the flight itself (an ``async def`` needing its own result) or waiting would
    close a cycle (:mod:`cachehub.flights`): compute without a flight. A waiter is woken
    on its own loop when the flight ends; a cancelled one leaves nothing behind.
    """
    loop = asyncio.get_running_loop()
    owner: Hashable = asyncio.current_task() or threading.get_ident()
    flights = cache._flights
    # The flight this task leads, from before it is registered: finished however the
    # task leaves, a signal handler's exception as start() returns included.
    started: list[Flight] = []
    try:
        while True:
            woken: asyncio.Future[None] = loop.create_future()

            def wake(woken: asyncio.Future[None] = woken) -> None:
                loop.call_soon_threadsafe(_resolve, woken)

            led, awaited = flights.start(key, owner, wake, into=started)
            if awaited is None:
                break
            try:
                # In slices: a leader task whose loop was closed by hand never ends its
                # flight; the first waiter to see it ends it, and they all try again.
                while not awaited.done.is_set():
                    await asyncio.wait((woken,), timeout=WAIT_SLICE)
                    if woken.done() or flights.abandoned(key, awaited):
                        break
            finally:
                flights.stop_waiting(owner)
            value = await cache.aio().get(key, MISSING)
            if value is not MISSING:
                yield False, value
                return
        yield led is not None, MISSING
    finally:
        for flight in started:
            flights.finish(key, flight)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncCache:
    """The async shell of one :class:`~cachehub.api.BaseCache` (``cache.aio()``).

    Same operations, arguments, results and errors as the cache's sync methods, awaited.
    It shares everything with its cache: settings, codec, namespace, observer, statistics
    and the error policy; closing it releases only what the async path holds (the
    provider's async client of the running event loop).
    """

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache
        """The cache this shell drives (its sync shell)."""

    # ------------------------------------------------------------------ facts

    @property
    def name(self) -> str:
        """The cache's name."""
        return self.cache.name

    @property
    def namespace(self) -> str:
        """The cache's namespace (prefix of every key)."""
        return self.cache.namespace

    @property
    def read_only(self) -> bool:
        """Whether writes are refused."""
        return self.cache.read_only

    @property
    def settings(self) -> dict[str, Any]:
        """The cache's validated settings."""
        return self.cache.settings

    def __repr__(self) -> str:
        return f"<AsyncCache of {self.cache!r}>"

    # ------------------------------------------------------------------ the driver

    async def _run(
        self, op: str, key: str | None, fallback: Any, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Await an async primitive under the error policy, reporting it (see ``_run``)."""
        cache = self.cache
        observer = cache._observer
        if observer is None:  # the hot path: no event to time
            try:
                return await fn(*args)
            except Exception as exc:
                return cache._failed(op, exc, fallback)  # type: ignore[no-any-return]
        with cache._operation(op, key, fallback) as call:
            call.result = await fn(*args)
        return call.result  # type: ignore[no-any-return]

    async def _run_strict(
        self, op: str, key: str | None, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """:meth:`_run` for an operation that never degrades under ``onError: miss``."""
        return await self._run(op, key, _RAISE, fn, *args)

    def _sk(self, key: str) -> str:
        if type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and key.isascii():
            ns = self.cache.namespace
            return ns + key if ns else key
        return self.cache._sk(key)

    # ------------------------------------------------------------------ single keys

    async def get(
        self, key: str, default: Any = None, *, throw_when_not_exist: bool = False
    ) -> Any:
        """The live value for ``key``; ``default`` (or CacheKeyError) if absent."""
        cache = self.cache
        # The hot path, as the sync shell's get (BaseCache.get): without an observer the
        # error policy around the primitive directly, no _run/_aget_checked coroutine
        # frames in between. (The key goes through self._sk: the sync shell inlines its
        # fast case to save a call, which is noise next to an awaited request.)
        sk = self._sk(key)
        if cache._observer is None:
            try:
                value = await cache._aget(sk, cache._clock())
            except UnknownSigningKeyError as exc:
                value = cache._signed_miss(exc)
            except Exception as exc:
                value = cache._failed("get", exc, MISSING)
        else:
            value = await self._run("get", key, MISSING, cache._aget_checked, sk, cache._clock())
        if value is MISSING:
            return cache._got_miss(key, default, throw_when_not_exist)
        return value

    async def exists(self, key: str) -> bool:
        """Whether a live entry exists for ``key`` (does not count as a hit)."""
        cache = self.cache
        sk = self._sk(key)
        return await self._run("exists", key, False, cache._aexists, sk, cache._clock())

    async def put(
        self,
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        """Store ``value`` under ``key``, replacing any entry."""
        cache = self.cache
        if cache.read_only:
            cache._writable("put")
        sk = self._sk(key)
        now = cache._clock()
        if time_span is None and idle_time is None and until is None:
            expiry = NO_EXPIRY
        else:
            expiry = make_expiry(time_span, idle_time, until, now)
        if cache._observer is None:  # the hot path, as get's
            try:
                await cache._aset(sk, value, expiry, now)
            except Exception as exc:
                cache._failed("put", exc, None)
        else:
            await self._run("put", key, None, cache._aset, sk, value, expiry, now)

    async def add(
        self,
        key: str,
        value: Any,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> bool:
        """Store ``value`` only if ``key`` has no live entry; True when stored. Atomic."""
        cache = self.cache
        sk, expiry, now = cache._write_plan("add", key, time_span, idle_time, until)
        return await self._run("add", key, _RAISE, cache._aadd, sk, value, expiry, now)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when a live entry was removed."""
        cache = self.cache
        cache._writable("delete")
        sk = cache._sk(key)
        return await self._run("delete", key, False, cache._adelete, sk, cache._clock())

    async def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta`` to an integer entry and return the new value."""
        return await self._count_by("incr", key, delta, 1)

    async def decr(self, key: str, delta: int = 1) -> int:
        """Atomically subtract ``delta``; see :meth:`incr`."""
        return await self._count_by("decr", key, delta, -1)

    async def _count_by(self, op: str, key: str, delta: int, sign: int) -> int:
        cache = self.cache
        sk, signed = cache._counter_plan(op, key, delta, sign)
        return await self._run(op, key, _RAISE, cache._aincr, sk, signed, cache._clock())

    async def touch(
        self,
        key: str,
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> bool:
        """Give a live entry a new expiry (none = never expires); True if it exists."""
        cache = self.cache
        sk, expiry, now = cache._write_plan("touch", key, time_span, idle_time, until)
        return await self._run("touch", key, False, cache._atouch, sk, expiry, now)

    async def metadata(self, key: str) -> CacheMetadata:
        """Hit count, remaining TTL and timestamps of a live entry."""
        cache = self.cache
        sk = cache._sk(key)
        now = cache._clock()
        entry = await self._run("metadata", key, None, cache._aget_entry, sk, now)
        return cache._metadata_of(key, entry, now)

    async def peek(self, key: str) -> Entry | None:
        """The live entry under ``key`` with its metadata, read without counting it."""
        cache = self.cache
        sk = cache._sk(key)
        return await self._run("peek", key, None, cache._aget_entry, sk, cache._clock())

    async def restore(self, key: str, entry: Entry) -> bool:
        """Write ``entry`` with its expiry as of its last access; False if dead."""
        cache = self.cache
        plan = cache._restore_plan(key, entry)
        if plan is None:
            return False
        sk, expiry, stamp = plan
        await self._run("restore", key, _RAISE, cache._aset, sk, entry.value, expiry, stamp)
        return True

    # ------------------------------------------------------------------ batches

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the live entries among ``keys``."""
        cache = self.cache
        batch, users = cache._get_many_plan(keys)
        found = await self._run("get_many", None, {}, cache._aget_verified, batch, cache._clock())
        return cache._get_many_finish(found, batch, users)

    async def put_many(
        self,
        items: Mapping[str, Any],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
    ) -> None:
        """Store every ``key: value`` of ``items`` with one expiry."""
        cache = self.cache
        batch, expiry, now = cache._put_many_plan(items, time_span, idle_time, until)
        if batch:
            await self._run("put_many", None, None, cache._aset_many, batch, expiry, now)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; how many live entries were removed."""
        cache = self.cache
        batch = cache._delete_many_plan(keys)
        if not batch:
            return 0
        return await self._run("delete_many", None, 0, cache._adelete_many, batch, cache._clock())

    # ------------------------------------------------------------------ filters

    def keys(self, filter: str | None = None) -> AsyncIterator[str]:
        """Stream the keys of live entries matching ``filter``: ``async for key in ...``.

        The filter is checked at the call; one ``keys`` event spans the whole iteration,
        and under ``onError: miss`` an outage ends it early.
        """
        cache = self.cache
        flt = compile_filter(filter, cache.namespace)
        return self._iterate("keys", filter, flt, cache._clock())

    async def _iterate(
        self, op: str, filter: str | None, flt: KeyFilter, now: float
    ) -> AsyncIterator[str]:
        cache = self.cache
        strip = len(cache.namespace)
        scan = cache._ascan(flt, now)
        with cache._operation(op, filter, None, stream=True):
            try:
                async for sk in scan:
                    yield sk[strip:]
            finally:
                await cast(Any, scan).aclose()

    async def get_all(self, filter: str | None = None) -> dict[str, Any]:
        """``{key: value}`` of live entries matching ``filter``."""
        cache = self.cache
        flt = compile_filter(filter, cache.namespace)
        return await self._run("get_all", filter, {}, cache._aget_all, flt, cache._clock())

    async def count(self, filter: str | None = None) -> int:
        """Number of live entries matching ``filter``."""
        cache = self.cache
        flt = compile_filter(filter, cache.namespace)
        return await self._run("count", filter, 0, cache._acount, flt, cache._clock())

    async def clear(self, filter: str | None = None, *, include_internal: bool = False) -> int:
        """Remove live entries matching ``filter``; see :meth:`BaseCache.clear`."""
        cache = self.cache
        flt = cache._clear_plan(filter, include_internal)
        removed = await self._run("clear", filter, 0, cache._aclear, flt, cache._clock())
        if include_internal:
            await self._run("clear_internal", None, None, cache._aclear_internal, cache._clock())
        return removed

    # ------------------------------------------------------------------ single flight, locks

    @overload
    async def get_or_set(
        self,
        key: str,
        creator: Callable[[], Awaitable[T]],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
        *,
        lock_timeout: float = 30.0,
    ) -> T: ...

    @overload
    async def get_or_set(
        self,
        key: str,
        creator: Callable[[], T],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
        *,
        lock_timeout: float = 30.0,
    ) -> T: ...

    async def get_or_set(
        self,
        key: str,
        creator: Callable[[], Any],
        time_span: TimeSpan | None = None,
        idle_time: TimeSpan | None = None,
        until: datetime | None = None,
        *,
        lock_timeout: float = 30.0,
    ) -> Any:
        """The cached value, or ``creator()`` (awaited if ``async``) computed once and stored.

        Same decisions as :meth:`BaseCache.get_or_set`: one flight per key among the tasks
        of an event loop, and across processes on distributed providers (the fill lock,
        extended while the creator runs). A task cancelled while waiting or computing
        holds no lock afterwards.
        """
        cache = self.cache
        cache._span(lock_timeout, "lock_timeout", None)  # as the sync get_or_set, on every provider
        value = await self.get(key, MISSING)
        if value is not MISSING:
            return value
        # One flight per key among every task, loop and thread of the process (shared
        # with the sync shell), then across processes (the fill lock).
        async with _process_flight(cache, key) as (leading, found):
            if found is not MISSING:
                return found
            if not leading:
                created = await _created(creator)
                if not cache.read_only:
                    await self.put(key, created, time_span, idle_time, until)
                return created
            value = await self.get(key, MISSING)
            if value is not MISSING:
                return value
            return await self._fill(key, creator, time_span, idle_time, until, lock_timeout)

    async def _fill(
        self,
        key: str,
        creator: Callable[[], Any],
        time_span: TimeSpan | None,
        idle_time: TimeSpan | None,
        until: datetime | None,
        lock_timeout: float,
    ) -> Any:
        """get_or_set's miss, in its single flight: the creator's value computed and stored."""
        cache = self.cache
        if cache._fills_across_processes():
            fill = AsyncLock(cache, key, ttl=lock_timeout, timeout=lock_timeout, kind="fill")
            try:
                acquired = await fill.acquire()
            except CacheUnavailableError as exc:
                # Under onError: miss the outage degrades to the in-process flight.
                cache._failed("get_or_set", exc, None)
            else:
                if not acquired:
                    raise cache._fill_timeout(key, lock_timeout)
                try:
                    value = await self.get(key, MISSING)
                    if value is not MISSING:
                        return value
                    async with fill.keep_alive():
                        created = await _created(creator)
                    await self.put(key, created, time_span, idle_time, until)
                    return created
                finally:
                    # A lost fill lock is only logged: the value is stored anyway.
                    await fill.release_quietly()
        created = await _created(creator)
        if not cache.read_only:
            await self.put(key, created, time_span, idle_time, until)
        return created

    def lock(
        self,
        name: str,
        ttl: TimeSpan = 30.0,
        *,
        timeout: float | None = None,
        poll: float = 0.05,
    ) -> AsyncLock:
        """A lock stored in this cache, for ``async with``; see :class:`cachehub.lock.AsyncLock`."""
        return AsyncLock(self.cache, name, ttl=ttl, timeout=timeout, poll=poll)

    # ------------------------------------------------------------------ cache-level

    def stats(self) -> Mapping[str, Any]:
        """The cache's statistics (shared with the sync shell; no I/O)."""
        return self.cache.stats()

    async def info(self) -> dict[str, Any]:
        """Cache-level properties; see :meth:`BaseCache.info`."""
        cache = self.cache
        facts = cache._info_facts()
        facts.update(await self._run("info", None, _RAISE, cache._ainfo, cache._clock()))
        return facts

    async def close(self) -> None:
        """Release what the async path holds (reconnects lazily if used again).

        Requests other tasks have in flight end first on the client they hold; requests
        made meanwhile get a new client.
        """
        await self.cache._aclose()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_ASYNC_SHELL[:] = [AsyncCache]


class InlineAsync(BaseCache):
    """Async primitives that call the sync ones directly, for in-process providers.

    A provider whose primitives never wait on I/O (its data is in this process, guarded
    by short critical sections) gains nothing from a worker thread: the hop would cost
    more than the work. Subclass this instead of :class:`BaseCache`. Work that grows
    with the data does not stay on the loop: batches beyond :data:`_INLINE_BATCH` keys
    and whole-cache walks (count, clear, get_all) run in a worker thread, and a key scan
    hands the loop back every :data:`_YIELD_EVERY` keys.
    """

    async def _aget(self, key: str, now: float) -> Any:
        return self._get(key, now)

    async def _aget_entry(self, key: str, now: float) -> Entry | None:
        return self._get_entry(key, now)

    async def _aset(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        self._set(key, value, expiry, now)

    async def _aadd(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        return self._add(key, value, expiry, now)

    async def _adelete(self, key: str, now: float) -> bool:
        return self._delete(key, now)

    async def _adelete_if_equal(self, key: str, value: Any, now: float) -> bool:
        return self._delete_if_equal(key, value, now)

    async def _aincr(self, key: str, delta: int, now: float) -> int:
        return self._incr(key, delta, now)

    async def _atouch(self, key: str, expiry: Expiry, now: float) -> bool:
        return self._touch(key, expiry, now)

    async def _aexists(self, key: str, now: float) -> bool:
        return self._exists(key, now)

    async def _aget_many(self, keys: list[str], now: float) -> dict[str, Any]:
        if len(keys) > _INLINE_BATCH:
            return await asyncio.to_thread(self._get_many, keys, now)
        return self._get_many(keys, now)

    async def _aset_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        if len(items) > _INLINE_BATCH:
            await asyncio.to_thread(self._set_many, items, expiry, now)
        else:
            self._set_many(items, expiry, now)

    async def _adelete_many(self, keys: list[str], now: float) -> int:
        if len(keys) > _INLINE_BATCH:
            return await asyncio.to_thread(self._delete_many, keys, now)
        return self._delete_many(keys, now)

    async def _acount(self, flt: KeyFilter, now: float) -> int:
        return await asyncio.to_thread(self._count, flt, now)

    async def _aclear(self, flt: KeyFilter, now: float) -> int:
        return await asyncio.to_thread(self._clear, flt, now)

    async def _aget_all(self, flt: KeyFilter, now: float) -> dict[str, Any]:
        return await asyncio.to_thread(self._get_all, flt, now)

    async def _ascan(self, flt: KeyFilter, now: float) -> AsyncIterator[str]:
        keys = self._scan(flt, now)
        try:
            for n, key in enumerate(keys, 1):
                yield key
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            _close_iterator(keys)

    async def _alock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        return self._lock_acquire(name, token, ttl, now)

    async def _alock_release(self, name: str, token: str, now: float) -> bool:
        return self._lock_release(name, token, now)

    async def _alock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        return self._lock_extend(name, token, ttl, now)

    async def _alock_holder(self, name: str, now: float) -> str | None:
        return self._lock_holder(name, now)

    async def _aclear_internal(self, now: float) -> int:
        return self._clear_internal(now)

    async def _ainfo(self, now: float) -> dict[str, Any]:
        return await asyncio.to_thread(self._info, now)

    async def _aclose(self) -> None:
        self._close()
