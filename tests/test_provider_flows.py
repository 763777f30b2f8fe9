"""cachehub.provider.FlowCache: every primitive and its async twin drive the provider's flow.

A flow provider writes only ``_x_flow`` generators; the core's drivers must call exactly
that flow with the primitive's arguments, once, through ``_drive``/``_adrive`` (no extra
layer), and return its result. A provider that writes neither the flow nor the primitive
is told which, and the hit write-back runs through the provider's ``_write_hits_flow``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from cachehub import provider
from cachehub.errors import CacheUnavailableError
from cachehub.provider import (
    HIT_OPTIONS,
    CacheError,
    Call,
    Entry,
    Expiry,
    Flow,
    FlowCache,
    KeyFilter,
    Option,
    PendingHits,
    achunks,
    chunks,
    fanout,
    pause,
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
}


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
    assert flows == set(PRIMITIVES)
    for name in flows:
        assert "_" + name in vars(FlowCache)
        assert asyncio.iscoroutinefunction(vars(FlowCache)["_a" + name])


@pytest.mark.parametrize("name", sorted(set(PRIMITIVES) - {"get", "get_entry", "exists"}))
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
