"""cachehub.flights: per-key single flight that never makes an owner wait for itself."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import warnings
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.errors import CacheValueError
from cachehub.flights import Flights


def test_the_first_owner_leads_and_the_next_waits() -> None:
    flights = Flights()
    led, awaited = flights.start("k", "A", thread=ord("A"))
    assert led is not None
    assert awaited is None
    woken: list[str] = []
    second, theirs = flights.start("k", "B", lambda: woken.append("B"), thread=ord("B"))
    assert second is None
    assert theirs is led
    assert not led.done.is_set()
    flights.finish("k", led)
    assert led.done.is_set()
    assert woken == ["B"]
    flights.stop_waiting("B")
    again, none = flights.start("k", "B", thread=ord("B"))  # the flight ended: B leads a new one
    assert again is not None
    assert again is not led
    assert none is None


def test_other_keys_never_wait() -> None:
    flights = Flights()
    a, _ = flights.start("a", "A", thread=ord("A"))
    b, waited = flights.start(
        "b", "A", thread=ord("A")
    )  # the same owner, nested: another key is free
    assert a is not None
    assert b is not None
    assert waited is None


def test_an_owner_never_waits_for_its_own_flight() -> None:
    flights = Flights()
    flights.start("k", "A", thread=ord("A"))
    assert flights.start("k", "A", thread=ord("A")) == (None, None)


def test_a_cycle_through_three_owners_is_not_waited_for() -> None:
    flights = Flights()
    for owner, key in (("A", "a"), ("B", "b"), ("C", "c")):
        led, _ = flights.start(key, owner, thread=ord(owner))
        assert led is not None
    assert flights.start("b", "A", thread=ord("A"))[1] is not None  # A waits for B
    assert flights.start("c", "B", thread=ord("B"))[1] is not None  # B waits for C
    assert flights.start("a", "C", thread=ord("C")) == (
        None,
        None,
    )  # C would wait for A, who waits for C
    flights.stop_waiting("A")
    assert (
        flights.start("a", "C", thread=ord("C"))[1] is not None
    )  # the chain is broken: C may wait


def test_a_waker_of_a_closed_loop_does_not_stop_the_others() -> None:
    flights = Flights()
    led, _ = flights.start("k", "A", thread=ord("A"))
    assert led is not None
    woken: list[str] = []

    def closed() -> None:
        raise RuntimeError("Event loop is closed")

    flights.start("k", "B", closed, thread=ord("B"))
    flights.start("k", "C", lambda: woken.append("C"), thread=ord("C"))
    flights.finish("k", led)
    assert woken == ["C"]


# -- owners of both shells on one thread (probe findings of this stop) ---------------------
# A thread blocked in the sync get_or_set cannot run its event loop's tasks, and a task
# cannot let a sync leader below it on the same thread finish: each of these hung for ever.


def test_a_sync_call_inside_an_async_creator_of_its_own_key_computes() -> None:
    cache = MemoryCache({})
    calls: list[str] = []

    def inner() -> str:
        calls.append("inner")
        return "inner"

    def creator() -> str:  # a sync creator, run by the async shell on the loop's thread
        return cache.get_or_set("K", inner)

    assert asyncio.run(cache.aio().get_or_set("K", creator)) == "inner"
    assert calls == ["inner"]


def test_an_async_call_inside_a_sync_creator_of_its_own_key_computes() -> None:
    cache = MemoryCache({})

    def creator() -> str:
        return asyncio.run(cache.aio().get_or_set("K", lambda: "inner"))

    assert cache.get_or_set("K", creator) == "inner"


def test_a_sync_call_on_the_loop_thread_does_not_wait_for_a_task_of_that_loop() -> None:
    cache = MemoryCache({})

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "async"

    async def other() -> str:
        await asyncio.sleep(0.01)  # the task above leads "K" by now
        return cache.get_or_set("K", lambda: "sync")  # on the loop's thread: no waiting

    async def main() -> list[str]:
        return list(await asyncio.gather(cache.aio().get_or_set("K", slow), other()))

    assert asyncio.run(main()) == ["async", "sync"]


def test_tasks_of_one_loop_still_wait_for_each_other() -> None:
    cache = MemoryCache({})
    calls: list[int] = []

    async def creator() -> int:
        calls.append(1)
        await asyncio.sleep(0.02)
        return 7

    async def main() -> list[int]:
        shell = cache.aio()
        return list(await asyncio.gather(*(shell.get_or_set("K", creator) for _ in range(5))))

    assert asyncio.run(main()) == [7] * 5
    assert calls == [1]


def test_a_flight_whose_leader_task_was_closed_with_its_loop_is_taken_over() -> None:
    cache = MemoryCache({})
    started = threading.Event()

    async def never() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    loop = asyncio.new_event_loop()
    task = loop.create_task(cache.aio().get_or_set("K", never))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert started.is_set()
    loop.close()  # the leader stays pending for ever: it never ends its flight
    assert cache.get_or_set("K", lambda: "fresh") == "fresh"
    cache.delete("K")
    assert asyncio.run(cache.aio().get_or_set("K", lambda: "again")) == "again"
    assert not task.done()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # closed on purpose


def test_a_waiter_whose_own_loop_was_closed_is_forgotten_when_the_flight_ends() -> None:
    """A task waiting for another owner's flight, its loop closed under it: its
    ``finally`` (``stop_waiting``) never runs. The flight's end forgets it, so the task
    (and its loop and frames) is not kept for the life of the cache."""
    cache = MemoryCache({})
    flights = cache._flights
    led, _ = flights.start("K", "leader-thread", thread=ord("L"))
    assert led is not None
    loop = asyncio.new_event_loop()
    waiter = loop.create_task(cache.aio().get_or_set("K", lambda: "never"))
    loop.run_until_complete(asyncio.sleep(0.05))  # the task is now waiting for the flight
    assert waiter in flights._waiting
    loop.close()  # with the waiter pending: it is never resumed
    flights.finish("K", led)
    assert flights._waiting == {}
    assert flights._running == {}
    assert led.waiters == {}


def test_waiters_that_give_up_leave_the_flight_at_once() -> None:
    """Callers timing out on a slow creator each left their task and waker in the flight
    until the creator finished (5,000 timeouts: 6 MB, and a wake call per dead waker)."""
    cache = MemoryCache({})
    flights = cache._flights
    led, _ = flights.start("K", "leader-thread", thread=ord("L"))
    assert led is not None

    async def main() -> None:
        async def impatient() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cache.aio().get_or_set("K", lambda: "v"), 0.001)

        await asyncio.gather(*(impatient() for _ in range(200)))

    asyncio.run(main())
    assert led.waiters == {}
    assert flights._waiting == {}
    flights.finish("K", led)


@pytest.mark.parametrize("serialize", [True, False])
def test_the_sync_get_or_set_refuses_an_async_creator(serialize: bool) -> None:
    """With serialize false the coroutine object itself was cached: every later get
    answered it, and its second await raised RuntimeError."""
    cache = MemoryCache({"serialize": serialize})

    async def creator() -> str:
        return "v"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CacheValueError, match=r"aio\(\)\.get_or_set"):
            cache.get_or_set("k", creator)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]  # closed unrun
    assert not cache.exists("k")
    assert asyncio.run(cache.aio().get_or_set("k", creator)) == "v"


def test_an_interrupt_as_a_flight_starts_leaves_no_flight_for_others_to_wait_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signal handler's KeyboardInterrupt that lands in the first call made after a
    leader's flight is registered, before get_or_set's try: the flight stayed, and every
    other thread's get_or_set of the key waited for ever. Each call after registration
    is such a landing point: here, any call of the wakers' helper raises."""
    import cachehub.flights as flights

    cache = MemoryCache()

    def interrupted(wakers: list[Any]) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(flights, "_wake", interrupted)
        with contextlib.suppress(KeyboardInterrupt):
            cache.get_or_set("k", lambda: "first")
    assert not cache._flights._running  # nothing left for others to wait for
    other: list[Any] = []
    waiter = threading.Thread(target=lambda: other.append(cache.get_or_set("k", lambda: "v")))
    waiter.start()
    waiter.join(10)
    assert other in (["first"], ["v"])


# ---------------------------------------------------------------- interrupts at any point

_EVENTS = frozenset({"call", "return", "c_return"})
"""Profile events at the points where a signal handler's exception may surface."""


class Interrupted(BaseException):
    """What the hook raises, as a signal handler's KeyboardInterrupt would."""


def _run_interrupted_at(n: int, call: Any, armed: list[bool]) -> list[bool]:
    """Run ``call()`` in a new thread, raising Interrupted at its n-th profile event once
    ``armed[0]`` is true; ``[raised]``, or the test fails if the thread hangs."""
    raised = [False]
    seen = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if armed[0] and event in _EVENTS and not raised[0]:
            seen += 1
            if seen == n:
                raised[0] = True
                raise Interrupted(f"at event {n}: {event} in {frame.f_code.co_qualname}")

    def run() -> None:
        sys.setprofile(hook)  # this thread's only
        try:
            call()
        except Interrupted:
            pass
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"the interrupted call itself hung (event {n})"
    return raised


def _leader_alone(n: int) -> bool:
    cache = MemoryCache()
    raised = _run_interrupted_at(n, lambda: cache.get_or_set("k", lambda: "v"), [True])
    assert cache._flights._running == {}, f"a flight was left behind (event {n})"
    assert cache._flights._waiting == {}
    out: list[Any] = []
    other = threading.Thread(target=lambda: out.append(cache.get_or_set("k", lambda: "w")))
    other.start()
    other.join(10)
    assert not other.is_alive(), f"another thread's get_or_set waited for good (event {n})"
    assert out in (["v"], ["w"])
    return raised[0]


@pytest.mark.timeout(120)
def test_a_get_or_set_interrupted_anywhere_leaves_no_flight_and_nobody_waiting() -> None:
    """An interrupt as ``Flights.start`` returned (before ``led`` was stored) left the
    flight registered: every other thread's get_or_set of the key waited for good. One
    inside ``threading.Event.set`` (its Condition's lock taken in Python) left that lock
    held: the call's own clean-up, ending the flight again, then hung on it, as did every
    waiter. Each point of the call is interrupted in turn, on a fresh cache."""
    points = 0
    while _leader_alone(points + 1):
        points += 1
        assert points < 400, "the call was still being interrupted at its 400th event"
    assert points > 20  # the walk reached the flight's start and end


def _leader_and_waiter(n: int) -> bool:
    cache = MemoryCache()
    armed = [False]
    waiter_in = threading.Event()
    raised: list[bool] = []
    out: list[Any] = []

    def until(condition: Any) -> None:
        for _ in range(5000):
            if condition():
                return
            threading.Event().wait(0.001)

    def creator() -> str:
        assert waiter_in.wait(10)
        until(lambda: cache._flights._waiting)  # the waiter is on the flight
        armed[0] = True  # from here on each event is a point to interrupt
        return "v"

    def lead() -> None:
        raised.extend(_run_interrupted_at(n, lambda: cache.get_or_set("k", creator), armed))

    def wait_for_it() -> None:
        waiter_in.set()
        out.append(cache.get_or_set("k", lambda: "w"))

    leader = threading.Thread(target=lead)
    leader.start()
    until(lambda: cache._flights._running)  # the leader's flight is registered first
    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    leader.join(15)
    waiter.join(10)
    assert not leader.is_alive(), f"the interrupted leader hung (event {n})"
    assert not waiter.is_alive(), f"the waiter was stranded (event {n})"
    assert out in (["v"], ["w"])
    return raised == [True]


@pytest.mark.timeout(180)
def test_a_waiter_is_never_stranded_by_a_leader_interrupted_as_it_finishes() -> None:
    """The waiter is registered before the leader's creator returns; the leader is then
    interrupted at each point of its finish (the store, the flight's end, the wake-up)."""
    points = 0
    while _leader_and_waiter(points + 1):
        points += 1
        assert points < 400, "the leader was still being interrupted at its 400th event"
    assert points > 10
