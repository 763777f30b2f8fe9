"""cachehub.provider.FlowCache: every primitive and its async twin drive the provider's flow.

A flow provider writes only ``_x_flow`` generators; the core's drivers must call exactly
that flow with the primitive's arguments, once, through ``_drive``/``_adrive`` (no extra
layer), and return its result. A provider that writes neither the flow nor the primitive
is told which, and the hit write-back runs through the provider's ``_write_hits_flow``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any, ClassVar

import pytest

from cachehub import provider
from cachehub.errors import CacheBackendError, CacheUnavailableError
from cachehub.filters import compile_filter
from cachehub.hookspecs import OperationEvent
from cachehub.provider import (
    HIT_OPTIONS,
    CacheError,
    Call,
    Emit,
    Entry,
    Expiry,
    Flow,
    FlowCache,
    KeyFilter,
    Option,
    PendingHits,
    Stream,
    achunks,
    batch_limit,
    chunks,
    fanout,
    pause,
    pull,
    rebatched,
)

NOW = 1000.0
EXPIRY = Expiry(None, None)
ENTRY = Entry("v", 1.0, 1.0, 1.0, 0)

# primitive name -> (its arguments after self, the result the fake flow returns)
PRIMITIVES: dict[str, tuple[tuple[Any, ...], Any]] = {
    "get": (("k", NOW), "value"),
    "get_entry": (("k", NOW), ENTRY),
    "exists": (("k", NOW), True),
    "set": (("k", "v", EXPIRY, NOW), None),
    "add": (("k", "v", EXPIRY, NOW), False),
    "delete": (("k", NOW), True),
    "delete_if_equal": (("k", "v", NOW), False),
    "incr": (("k", 5, NOW), 42),
    "touch": (("k", EXPIRY, NOW), True),
    "get_many": ((["a", "b"], NOW), {"a": 1}),
    "set_many": (({"a": 1}, EXPIRY, NOW), None),
    "delete_many": ((["a", "b"], NOW), 2),
    "lock_acquire": (("lock", "tok", 8.0, NOW), 7),
    "lock_release": (("lock", "tok", NOW), True),
    "lock_extend": (("lock", "tok", 8.0, NOW), False),
    "lock_holder": (("lock", NOW), "tok"),
    "count": ((compile_filter("a*", "n:"), NOW), 3),
    "clear": ((compile_filter(None, "n:"), NOW), 4),
    "clear_internal": ((NOW,), 5),
}
ITERATORS = {"scan"}
"""Primitives driven as iterator flows (``_scan``/``_ascan`` return iterators)."""


class Boom(Exception):
    """What the fake client library raises; its text holds a secret."""


class Recorder(FlowCache[object]):
    """Each flow sends one request (``Call("send", primitive, *args)``) and returns a canned
    result; the I/O pair records what reached the "server"."""

    options: ClassVar[tuple[Option, ...]] = (*HIT_OPTIONS,)
    backend_errors: ClassVar[tuple[type[Exception], ...]] = (Boom,)

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.sent: list[tuple[Any, ...]] = []
        self.drives = 0
        self.fail_hits = False

    def _connect(self) -> object:
        return object()

    def _translate(self, exc: Exception) -> CacheError:
        return CacheUnavailableError("fake server is down.", hint="start it.")

    def _send(self, *args: Any) -> Any:
        self.sent.append(("sync", *args))
        if args[0] == "hits" and self.fail_hits:
            raise self._translate(Boom("password=hunter22"))
        return None

    async def _asend(self, *args: Any) -> Any:
        self.sent.append(("async", *args))
        return None

    def _drive(self, flow: Flow[Any]) -> Any:
        self.drives += 1
        return super()._drive(flow)

    async def _adrive(self, flow: Flow[Any]) -> Any:
        self.drives += 1
        return await super()._adrive(flow)

    def _one(self, name: str, *args: Any) -> Flow[Any]:
        yield Call("send", name, *args)
        return PRIMITIVES[name][1]

    def _get_flow(self, key: str, now: float) -> Flow[Any]:
        return self._one("get", key, now)

    def _get_entry_flow(self, key: str, now: float) -> Flow[Entry | None]:
        return self._one("get_entry", key, now)

    def _exists_flow(self, key: str, now: float) -> Flow[bool]:
        return self._one("exists", key, now)

    def _set_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[None]:
        return self._one("set", key, value, expiry, now)

    def _add_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[bool]:
        return self._one("add", key, value, expiry, now)

    def _delete_flow(self, key: str, now: float) -> Flow[bool]:
        return self._one("delete", key, now)

    def _delete_if_equal_flow(self, key: str, value: Any, now: float) -> Flow[bool]:
        return self._one("delete_if_equal", key, value, now)

    def _incr_flow(self, key: str, delta: int, now: float) -> Flow[int]:
        return self._one("incr", key, delta, now)

    def _touch_flow(self, key: str, expiry: Expiry, now: float) -> Flow[bool]:
        return self._one("touch", key, expiry, now)

    def _get_many_flow(self, keys: list[str], now: float) -> Flow[dict[str, Any]]:
        return self._one("get_many", keys, now)

    def _set_many_flow(self, items: dict[str, Any], expiry: Expiry, now: float) -> Flow[None]:
        return self._one("set_many", items, expiry, now)

    def _delete_many_flow(self, keys: list[str], now: float) -> Flow[int]:
        return self._one("delete_many", keys, now)

    def _lock_acquire_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[int | None]:
        return self._one("lock_acquire", name, token, ttl, now)

    def _lock_release_flow(self, name: str, token: str, now: float) -> Flow[bool]:
        return self._one("lock_release", name, token, now)

    def _lock_extend_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[bool]:
        return self._one("lock_extend", name, token, ttl, now)

    def _lock_holder_flow(self, name: str, now: float) -> Flow[str | None]:
        return self._one("lock_holder", name, now)

    def _count_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        return self._one("count", flt, now)

    def _clear_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        return self._one("clear", flt, now)

    def _clear_internal_flow(self, now: float) -> Flow[int]:
        return self._one("clear_internal", now)

    def _write_hits_flow(self, pending: dict[str, PendingHits]) -> Flow[None]:
        yield Call("send", "hits", {k: p.hits for k, p in pending.items()})

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        return iter(())


class Bare(FlowCache[object]):
    """Writes no flow at all, and one primitive directly."""

    def _connect(self) -> object:
        return object()

    def _translate(self, exc: Exception) -> CacheError:
        return CacheUnavailableError("down.", hint="start it.")

    def _get(self, key: str, now: float) -> Any:
        return "direct"

    def _get_entry_flow(self, key: str, now: float) -> Flow[Entry | None]:
        yield Call("entry", key)
        return None if key == "absent" else ENTRY

    def _entry(self, key: str) -> None:
        """The one I/O step of :meth:`_get_entry_flow` (the reply is decided there)."""

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        return iter(())


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_each_sync_primitive_drives_its_flow_once(name: str) -> None:
    cache = Recorder()
    args, result = PRIMITIVES[name]
    assert getattr(cache, "_" + name)(*args) == result
    assert cache.sent == [("sync", name, *args)]
    assert cache.drives == 1  # one driver call: no extra layer on the hot path


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_each_async_primitive_drives_the_same_flow_once(name: str) -> None:
    cache = Recorder()
    args, result = PRIMITIVES[name]
    assert asyncio.run(getattr(cache, "_a" + name)(*args)) == result
    assert cache.sent == [("async", name, *args)]
    assert cache.drives == 1


def test_the_drivers_cover_every_flow_the_core_declares() -> None:
    """A new flow declared in FlowCache without its drivers (or the reverse) fails here."""
    flows = {n[1:-5] for n in vars(FlowCache) if n.startswith("_") and n.endswith("_flow")}
    flows -= {"write_hits", "flush_due"}  # hit write-back: driven by flush_hits, not a primitive
    assert flows == set(PRIMITIVES) | ITERATORS
    for name in flows:
        assert "_" + name in vars(FlowCache)
        if name not in ITERATORS:
            assert asyncio.iscoroutinefunction(vars(FlowCache)["_a" + name])


DEFAULTED = {"get", "get_entry", "exists", "count", "clear"}
"""Flows FlowCache writes from others by default (the entry flow, the scan flow)."""


@pytest.mark.parametrize("name", sorted(set(PRIMITIVES) - DEFAULTED))
def test_a_primitive_without_its_flow_names_both(name: str) -> None:
    cache = Bare()
    args, _ = PRIMITIVES[name]
    with pytest.raises(NotImplementedError, match=f"neither _{name}\\(\\) nor _{name}_flow"):
        getattr(cache, "_" + name)(*args)
    with pytest.raises(NotImplementedError, match=f"_{name}_flow"):
        asyncio.run(getattr(cache, "_a" + name)(*args))


def test_a_primitive_written_directly_needs_no_flow() -> None:
    assert Bare()._get("k", NOW) == "direct"


def test_exists_defaults_to_the_entry_flow() -> None:
    cache = Bare()
    assert cache._exists("k", NOW) is True
    assert cache._exists("absent", NOW) is False


def test_hit_write_back_runs_the_write_hits_flow_in_both_shells() -> None:
    cache = Recorder(hitCounts=True, hitFlushInterval=0)
    cache._count_read("k", 1.0, NOW)
    cache._count_read("k", 1.0, NOW)
    assert cache.flush_hits() == 1
    cache._count_read("j", 1.0, NOW)
    assert asyncio.run(cache.aflush_hits()) == 1
    assert cache.sent == [("sync", "hits", {"k": 2}), ("async", "hits", {"j": 1})]
    assert cache.flush_hits() == 0  # nothing pending: nothing sent
    assert len(cache.sent) == 2


def test_flush_due_flow_sends_only_when_due() -> None:
    cache = Recorder(hitCounts=True, hitFlushInterval=3600)
    cache._count_read("k", 1.0, NOW)
    cache._drive(cache._flush_due_flow())
    assert cache.sent == []  # not due: no request
    assert cache.pending_hits() == 1
    cache._hits.max_keys = 1  # one pending key is now enough to be due
    cache._drive(cache._flush_due_flow())
    assert cache.sent == [("sync", "hits", {"k": 1})]
    assert cache.pending_hits() == 0


def test_a_failing_flush_in_a_flow_is_logged_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = Recorder(hitCounts=True, hitFlushInterval=0)
    cache.fail_hits = True
    cache._count_read("k", 1.0, NOW)
    cache._hits.max_keys = 1  # due
    with caplog.at_level(logging.WARNING, logger="cachehub"):
        cache._drive(cache._flush_due_flow())  # the write that called it stays a success
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not flush hit counts" in m for m in messages)
    assert not any("hunter22" in m for m in messages)
    assert cache.sent == [("sync", "hits", {"k": 1})]  # tried once, not retried


def test_a_flow_provider_without_hit_write_back_says_so() -> None:
    cache = Bare()
    cache._hits.count("k", 1.0, NOW)
    with pytest.raises(NotImplementedError, match="does not write hit counts back"):
        cache.flush_hits()


async def _agen(n: int, log: list[int]) -> Any:
    for i in range(n):
        log.append(i)
        yield i


@pytest.mark.parametrize(("n", "size"), [(0, 3), (1, 3), (3, 3), (7, 3), (5, 1)])
def test_achunks_matches_chunks(n: int, size: int) -> None:
    async def collect() -> list[list[int]]:
        return [chunk async for chunk in achunks(_agen(n, []), size)]

    assert asyncio.run(collect()) == list(chunks(range(n), size))


def test_achunks_reads_lazily() -> None:
    """A scan streams: a chunk is handed over before the next is read from the source."""
    log: list[int] = []

    async def first() -> list[int]:
        batches = achunks(_agen(10**9, log), 4)  # unbounded source: must not be drained
        try:
            return await anext(batches)
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(first()) == [0, 1, 2, 3]
    assert log == [0, 1, 2, 3]


class Hanging(Recorder):
    """A get whose request never answers, and whose flow records when it is closed."""

    closed: ClassVar[list[str]] = []

    async def _asend(self, *args: Any) -> Any:
        await asyncio.Event().wait()  # the reply never comes: only cancel() ends this

    def _send(self, *args: Any) -> Any:
        raise KeyboardInterrupt  # a sync call interrupted mid-request

    def _get_flow(self, key: str, now: float) -> Flow[Any]:
        try:
            yield Call("send", "get", key, now)
        finally:
            self.closed.append(key)  # a flow's cleanup: a held resource released
        return None


def test_a_cancelled_async_flow_is_closed_by_the_driver_not_the_collector() -> None:
    """Cancelling a task mid-request runs the flow's cleanup at once: the task's kept
    CancelledError (its traceback holds the driver's frame) must not keep it open."""
    cache = Hanging(namespace="n:")
    Hanging.closed.clear()

    async def scenario() -> BaseException:
        task = asyncio.ensure_future(cache._aget("k", NOW))
        await asyncio.sleep(0)  # the flow is now waiting for its reply
        assert Hanging.closed == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        return caught.value  # kept, as a caller logging it would keep it

    error = asyncio.run(scenario())
    assert isinstance(error, asyncio.CancelledError)
    assert Hanging.closed == ["k"]


def test_an_interrupted_sync_flow_is_closed_by_the_driver() -> None:
    cache = Hanging(namespace="n:")
    Hanging.closed.clear()
    with pytest.raises(KeyboardInterrupt) as caught:
        cache._get("k", NOW)
    assert caught.value.__traceback__ is not None  # holds the driver's frame, and the flow
    assert Hanging.closed == ["k"]


# ---------------------------------------------------------------------- iterator flows


class Pager(FlowCache[object]):
    """A flow provider that writes only its scan as an iterator flow (and delete_many):
    ``store`` is the "server", listed two keys per ``page`` request; ``fail_at`` makes
    that page's request fail, ``hang_at`` makes its async request never answer.
    ``endless`` lists fresh keys forever (a consumer must stop it)."""

    backend_errors: ClassVar[tuple[type[Exception], ...]] = (Boom,)

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.store: dict[str, Any] = {}
        self.requests: list[tuple[str, Any]] = []
        self.closed = 0
        self.fail_at: int | None = None
        self.hang_at: int | None = None
        self.endless = False
        self.recovers = False
        self.listing: list[str] = []
        self.live: list[Stream[str]] = []

    def _connect(self) -> object:
        return object()

    def _translate(self, exc: Exception) -> CacheError:
        return CacheUnavailableError("fake server is down.", hint="start it.")

    def _page(self, index: int) -> list[str]:
        self.requests.append(("sync", index))
        if index == self.fail_at:
            raise self._translate(Boom("password=hunter22"))
        if self.endless:
            return [f"{self.namespace}e{index}-{i}" for i in range(2)]
        if index == 0:  # a cursor's view: deletes during the walk do not shift pages
            self.listing = sorted(self.store)
        return self.listing[2 * index : 2 * index + 2]

    async def _apage(self, index: int) -> list[str]:
        if index == self.hang_at:
            self.requests.append(("async", index))
            await asyncio.Event().wait()  # the reply never comes: only cancel() ends this
        self.requests.append(("async", index))
        return self._page(index)[:2] if index != self.fail_at else self._raise(index)

    def _raise(self, index: int) -> list[str]:
        raise self._translate(Boom(f"page {index}"))

    def _drop(self, keys: list[str]) -> int:
        self.requests.append(("sync-drop", len(keys)))
        return sum(self.store.pop(k, None) is not None for k in keys)

    async def _adrop(self, keys: list[str]) -> int:
        self.requests.append(("async-drop", len(keys)))
        return sum(self.store.pop(k, None) is not None for k in keys)

    def _scan_flow(self, flt: KeyFilter, now: float) -> Stream[str]:
        walk = self._walk(flt)
        # Held here, so only the driver's explicit close() can close it (not refcounting).
        self.live.append(walk)
        return walk

    def _walk(self, flt: KeyFilter) -> Stream[str]:
        index = 0
        try:
            while True:
                try:
                    keys = yield Call("page", index)
                except CacheUnavailableError:
                    if not self.recovers:
                        raise
                    keys = ["n:recovered"]  # a flow may handle its call's error
                if not keys:
                    return
                yield Emit([k for k in keys if flt.matches(k)])
                index += 1
        finally:
            self.closed += 1  # a flow's cleanup: a server cursor released

    def _delete_many_flow(self, keys: list[str], now: float) -> Flow[int]:
        return int((yield Call("drop", keys)))


ALL = compile_filter(None, "n:")


def _pager(n: int = 5) -> Pager:
    cache = Pager(namespace="n:")
    cache.store = {f"n:k{i}": i for i in range(n)}
    return cache


async def _alist(it: Any) -> list[Any]:
    return [x async for x in it]


def test_an_iterator_flow_gives_both_shells_the_same_keys_and_requests() -> None:
    cache = _pager(5)
    assert list(cache._scan(ALL, NOW)) == [f"n:k{i}" for i in range(5)]
    sync_requests = [i for _, i in cache.requests]
    cache.requests.clear()
    assert asyncio.run(_alist(cache._ascan(ALL, NOW))) == [f"n:k{i}" for i in range(5)]
    assert sync_requests == [0, 1, 2, 3]  # three pages of keys, one empty: the end
    assert [i for shell, i in cache.requests if shell == "async"] == sync_requests
    assert cache.closed == 2


def test_a_provider_writing_only_the_scan_flow_gets_the_public_walks() -> None:
    """keys(), count() and clear(), sync and async, all from the one iterator flow."""
    cache = _pager(5)
    assert sorted(cache.keys()) == [f"k{i}" for i in range(5)]
    assert sorted(asyncio.run(_alist(cache.aio().keys("k?")))) == [f"k{i}" for i in range(5)]
    assert cache.count() == 5
    assert asyncio.run(cache.aio().count("k1*")) == 1
    assert cache.clear("k1") == 1
    # clear deletes each scanned batch before reading the next page: a batch per request
    assert [r for r in cache.requests if r[0] == "sync-drop"] == [("sync-drop", 1)]
    assert asyncio.run(cache.aio().clear()) == 4
    assert [r for r in cache.requests if r[0] == "async-drop"] == [("async-drop", 2)] * 2
    assert cache.store == {}


def test_the_driver_is_lazy_and_early_stop_closes_the_flow_at_once() -> None:
    cache = Pager(namespace="n:")
    cache.endless = True  # an unbounded scan: only the consumer stops it
    keys = cache._scan(ALL, NOW)
    assert [next(keys) for _ in range(3)] == ["n:e0-0", "n:e0-1", "n:e1-0"]
    assert len(cache.requests) == 2  # one page ahead at most, never drained
    keys.close()  # type: ignore[attr-defined]
    assert cache.closed == 1
    assert len(cache.requests) == 2


def test_the_async_driver_is_lazy_and_aclose_closes_the_flow_at_once() -> None:
    cache = Pager(namespace="n:")
    cache.endless = True

    async def scenario() -> list[str]:
        keys = cache._ascan(ALL, NOW)
        first = [await anext(keys) for _ in range(3)]
        await keys.aclose()  # type: ignore[attr-defined]
        return first

    assert asyncio.run(scenario()) == ["n:e0-0", "n:e0-1", "n:e1-0"]
    assert cache.closed == 1
    assert [i for shell, i in cache.requests if shell == "async"] == [0, 1]


def test_the_public_keys_iterator_stopped_early_closes_the_flow() -> None:
    cache = Pager(namespace="n:")
    cache.endless = True
    for taken, _ in enumerate(cache.keys()):
        if taken == 2:
            break
    assert cache.closed == 1  # the shell's generator let go of the driver at once
    assert len(cache.requests) == 2


def test_an_exception_in_the_consumer_closes_the_flow() -> None:
    cache = Pager(namespace="n:")
    cache.endless = True
    keys = cache._scan(ALL, NOW)
    next(keys)
    with pytest.raises(ValueError, match="consumer"):
        keys.throw(ValueError("consumer failed"))  # type: ignore[attr-defined]
    assert cache.closed == 1
    assert len(cache.requests) == 1


def test_an_exception_in_an_async_consumer_closes_the_flow() -> None:
    cache = Pager(namespace="n:")
    cache.endless = True

    async def scenario() -> None:
        keys = cache._ascan(ALL, NOW)
        await anext(keys)
        await keys.athrow(ValueError("consumer failed"))  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="consumer"):
        asyncio.run(scenario())
    assert cache.closed == 1


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_failing_call_ends_the_iteration_typed_after_the_keys_before_it(shell: str) -> None:
    cache = _pager(5)
    cache.fail_at = 1
    got: list[str] = []

    async def consume() -> None:
        async for key in cache._ascan(ALL, NOW):
            got.append(key)

    with pytest.raises(CacheUnavailableError) as caught:
        if shell == "sync":
            got.extend(cache._scan(ALL, NOW))
        else:
            asyncio.run(consume())
    assert got == ["n:k0", "n:k1"]  # the first page was handed over before the failure
    assert "hunter22" not in str(caught.value)
    assert cache.closed == 1


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_flow_may_handle_its_call_error(shell: str) -> None:
    cache = _pager(0)
    cache.fail_at, cache.recovers = 0, True
    keys = cache._scan(ALL, NOW) if shell == "sync" else None
    got = list(keys) if keys is not None else asyncio.run(_alist(cache._ascan(ALL, NOW)))
    assert got == ["n:recovered"]


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_call_error_reaches_the_error_policy_and_the_whole_iteration_event(shell: str) -> None:
    """The core shell still wraps the driven scan: one ``keys`` event ends with the
    error, and ``onError: miss`` ends the iteration early after the keys already read."""
    for on_error, keys in (("raise", None), ("miss", ["k0", "k1"])):
        events: list[OperationEvent] = []
        cache = Pager(namespace="n:", observer=events.append, onError=on_error)
        cache.store, cache.fail_at = {f"n:k{i}": i for i in range(5)}, 1
        got: list[str] = []

        async def consume(cache: Pager = cache, got: list[str] = got) -> None:
            async for key in cache.aio().keys():
                got.append(key)

        try:
            got.extend(cache.keys()) if shell == "sync" else asyncio.run(consume())
        except CacheUnavailableError:
            assert keys is None
        else:
            assert got == keys
        assert got == ["k0", "k1"]
        assert [(e.operation, type(e.error).__name__) for e in events] == [
            ("keys", "CacheUnavailableError")
        ]
        assert cache.closed == 1


def test_cancelling_the_async_iteration_closes_the_flow_at_once() -> None:
    cache = _pager(5)
    cache.hang_at = 1

    async def scenario() -> BaseException:
        got: list[str] = []

        async def consume() -> None:
            async for key in cache._ascan(ALL, NOW):
                got.append(key)

        task = asyncio.ensure_future(consume())
        while len(cache.requests) < 3:  # page 0 answered, page 1 sent and hanging
            await asyncio.sleep(0)
        assert got == ["n:k0", "n:k1"]
        assert cache.closed == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        return caught.value  # kept, as a caller logging it would keep it

    error = asyncio.run(scenario())
    assert isinstance(error, asyncio.CancelledError)
    assert cache.closed == 1


class Fan(Pager):
    """Fan-out I/O: ``_echo`` answers its argument, records how many run at once."""

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.running = self.peak = 0
        self.gate = threading.Lock()

    def _echo(self, i: int) -> int:
        with self.gate:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if i == 3:
                raise self._translate(Boom("password=hunter22"))
            return i * 10
        finally:
            with self.gate:
                self.running -= 1

    async def _aecho(self, i: int) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            for _ in range(10 - i):  # later calls finish first: order must not follow
                await asyncio.sleep(0)
            if i == 3:
                raise self._translate(Boom("password=hunter22"))
            return i * 10
        finally:
            self.running -= 1

    def _scan_flow(self, flt: KeyFilter, now: float) -> Stream[str]:
        replies = yield Call("fanout", [Call("echo", i) for i in range(6)], 2)
        yield Emit([str(r) if not isinstance(r, CacheError) else "error" for r in replies])


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_fanout_answers_in_call_order_within_its_worker_bound(shell: str) -> None:
    cache = Fan(namespace="n:")
    scan = cache._scan(ALL, NOW) if shell == "sync" else None
    got = list(scan) if scan is not None else asyncio.run(_alist(cache._ascan(ALL, NOW)))
    assert got == ["0", "10", "20", "error", "40", "50"]  # a failure is a value, in place
    assert 1 <= cache.peak <= 2
    if shell == "async":
        assert cache.peak == 2  # tasks: the bound is reached, never passed
    assert cache.running == 0  # every call settled before the flow resumed


def test_pull_reads_a_stream_inside_a_flow_and_rebatched_cuts_exact_batches() -> None:
    cache = _pager(7)
    batches: list[list[str]] = []

    def flow() -> Flow[int]:
        with closing(rebatched(cache._scan_flow(ALL, NOW), 3)) as keys:
            while (batch := (yield from pull(keys))) is not None:
                batches.append(list(batch))
        return len(batches)

    assert cache._drive(flow()) == 3
    assert batches == [["n:k0", "n:k1", "n:k2"], ["n:k3", "n:k4", "n:k5"], ["n:k6"]]
    assert cache.closed == 1
    assert asyncio.run(cache._adrive(flow())) == 6  # and the same on the event loop
    assert batches[3:] == batches[:3]


def test_a_flow_stopping_a_pulled_stream_early_closes_it() -> None:
    cache = Pager(namespace="n:")
    cache.endless = True

    def first_batch() -> Flow[list[str]]:
        with closing(cache._scan_flow(ALL, NOW)) as keys:
            return list((yield from pull(keys)) or [])

    assert cache._drive(first_batch()) == ["n:e0-0", "n:e0-1"]
    assert cache.closed == 1
    assert len(cache.requests) == 1


class Garbled(Pager):
    """A buggy flow: it names an I/O method the provider does not have, or emits junk."""

    step: Any = Call("no_such_io")

    def _walk(self, flt: KeyFilter) -> Stream[str]:
        try:
            yield Emit(["n:k0"])
            yield self.step
        finally:
            self.closed += 1


@pytest.mark.parametrize("step", [Call("no_such_io"), Call("page", "not-an-index", 1, 2)])
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_buggy_iterator_flow_is_a_typed_error_and_closed(shell: str, step: Call) -> None:
    cache = Garbled(namespace="n:")
    cache.step = step
    got: list[str] = []

    async def consume() -> None:
        async for key in cache.aio().keys():
            got.append(key)

    with pytest.raises(CacheBackendError, match="keys\\(\\) failed inside Garbled"):
        got.extend(cache.keys()) if shell == "sync" else asyncio.run(consume())
    assert got == ["k0"]
    assert cache.closed == 1


# ---------------------------------------------------------------------- generic steps


class FanOut(Recorder):
    """Flows that yield the core's generic steps: ``pause`` and ``fanout`` of ``work``
    calls; the I/O pair records how many calls were in flight at once."""

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.in_flight = 0
        self.most = 0
        self.gate = threading.Lock()

    def _enter(self) -> None:
        with self.gate:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)

    def _leave(self, n: int) -> int:
        with self.gate:
            self.in_flight -= 1
        if n % 3 == 2:  # every third call fails, typed
            raise self._translate(Boom(f"call {n}"))
        return n * 10

    def _work(self, n: int) -> int:
        self._enter()
        return self._leave(n)

    async def _awork(self, n: int) -> int:
        self._enter()
        await asyncio.sleep(0)  # let the other tasks start: they overlap here
        return self._leave(n)

    def fan(self, n: int, workers: int) -> Flow[list[Any]]:
        replies = yield fanout([Call("work", i) for i in range(n)], workers)
        return list(replies)

    def paused(self, seconds: float) -> Flow[str]:
        yield pause(seconds)
        return "done"

    def sized(self, size: int) -> Flow[int]:
        return int((yield batch_limit(size)))


@pytest.mark.parametrize("workers", [1, 3, 100])
def test_fanout_answers_every_call_in_order_with_failures_as_values(workers: int) -> None:
    cache = FanOut(namespace="n:")
    for replies in (
        cache._drive(cache.fan(8, workers)),
        asyncio.run(cache._adrive(cache.fan(8, workers))),
    ):
        assert [r for r in replies if not isinstance(r, CacheError)] == [0, 10, 30, 40, 60, 70]
        failed = [i for i, r in enumerate(replies) if isinstance(r, CacheUnavailableError)]
        assert failed == [2, 5]  # one failure neither stops nor hides the others
        assert str(replies[2]) == "fake server is down. Fix: start it."


def test_fanout_keeps_to_its_workers_in_both_shells() -> None:
    cache = FanOut(namespace="n:")
    cache._drive(cache.fan(40, 4))
    assert 1 <= cache.most <= 4
    cache.most = 0
    asyncio.run(cache._adrive(cache.fan(40, 4)))
    assert cache.most == 4  # every task yields once inside: exactly the gate's width
    cache.most = 0
    assert cache._drive(cache.fan(0, 4)) == []  # nothing to send: no pool, no request


def test_fanout_lets_an_untyped_error_out() -> None:
    """Only CacheErrors become values: a bug in an I/O method is not swallowed."""

    class Broken(FanOut):
        def _work(self, n: int) -> int:
            raise RuntimeError("bug")

    broken = Broken(namespace="n:")
    with pytest.raises(RuntimeError, match="bug"):
        broken._drive(broken.fan(3, 2))


def test_pause_sleeps_with_each_shells_own_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[tuple[str, float]] = []
    real_sleep = asyncio.sleep

    async def asleep(seconds: float) -> None:
        slept.append(("async", seconds))
        await real_sleep(0)

    cache = FanOut(namespace="n:")
    monkeypatch.setattr(provider.time, "sleep", lambda s: slept.append(("sync", s)))
    assert cache._drive(cache.paused(0.25)) == "done"
    monkeypatch.setattr(provider.asyncio, "sleep", asleep)
    assert asyncio.run(cache._adrive(cache.paused(0.5))) == "done"
    assert slept == [("sync", 0.25), ("async", 0.5)]


@pytest.mark.parametrize(
    ("limit", "size", "on_the_loop"),
    [(None, 500, 500), (200, 500, 200), (200, 150, 150), (200, 200, 200), (0, 500, 1), (-5, 9, 1)],
)
def test_batch_limit_is_the_flows_own_in_sync_and_at_most_the_loops_in_async(
    limit: int | None, size: int, on_the_loop: int
) -> None:
    class Sized(FanOut):
        loop_batch_limit = limit

    cache = Sized(namespace="n:")
    assert cache._drive(cache.sized(size)) == size  # the sync shell keeps its sizes
    # Never zero or negative, whatever a provider sets: a batch always makes progress.
    assert asyncio.run(cache._adrive(cache.sized(size))) == on_the_loop


# ------------------------------------------------------------------ stretches on the loop


def test_stretches_cover_the_batch_in_order() -> None:
    seen: list[range] = []
    flow = provider.stretched(seen.append, 1000)
    steps = list(flow)
    # Cheap work: the ranges grow (at most doubling); a yield only between two ranges.
    covered = [i for span in seen for i in span]
    assert covered == list(range(1000))
    assert seen[0] == range(provider.FIRST_STRETCH)
    assert all(len(b) <= 2 * len(a) for a, b in itertools.pairwise(seen))
    assert all(step is provider.YIELD_LOOP for step in steps)
    assert len(steps) <= len(seen) - 1


def test_stretches_of_no_time_yield_between_every_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider, "LOOP_STRETCH", 0.0)
    seen: list[range] = []
    steps = list(provider.stretched(seen.append, 40))
    assert [i for span in seen for i in span] == list(range(40))
    assert len(steps) == len(seen) - 1  # between two ranges, never after the last
    assert list(provider.stretched(seen.append, 0)) == []
