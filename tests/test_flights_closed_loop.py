"""A flight whose leading task's loop is closed by hand wakes the owners already waiting.

Without a new caller: the thread and the task waiting for the abandoned flight find out by
themselves (:data:`cachehub.flights.WAIT_SLICE`), and one of them leads a new flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.flights import Flights

pytestmark = pytest.mark.timeout(60)

BOUND = 20.0
"""Seconds any single wait of these tests may take: far above the waiters' 0.5 s slices."""


def _until(condition: Any, what: str) -> None:
    """Poll ``condition()`` until true, failing after :data:`BOUND` seconds."""
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"not within {BOUND} s: {what}"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "waiters",
    [("thread",), ("task",), ("thread", "task")],
    ids=["a-thread", "a-task-on-another-loop", "both"],
)
def test_waiters_of_a_flight_whose_leader_loop_was_closed_get_one_new_value(
    waiters: tuple[str, ...],
) -> None:
    cache = MemoryCache({})
    calls: list[str] = []
    calls_lock = threading.Lock()
    started = threading.Event()

    async def never() -> str:
        with calls_lock:
            calls.append("abandoned")
        started.set()
        await asyncio.Event().wait()
        return "never"

    def fresh() -> str:
        with calls_lock:
            calls.append("fresh")
        return "fresh"

    loop = asyncio.new_event_loop()
    leader = loop.create_task(cache.aio().get_or_set("K", never))

    async def until_started() -> None:
        while not started.is_set():
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(until_started(), BOUND))  # the leader runs

    results: dict[str, object] = {}

    def thread_waiter() -> None:
        try:
            results["thread"] = cache.get_or_set("K", fresh)
        except BaseException as exc:  # reported by the assertions below
            results["thread"] = exc

    async def task_waiter() -> str:
        return await asyncio.wait_for(cache.aio().get_or_set("K", fresh), BOUND)

    def other_loop() -> None:
        try:
            results["task"] = asyncio.run(task_waiter())
        except BaseException as exc:  # reported by the assertions below
            results["task"] = exc

    flights: Flights = cache._flights
    targets = {"thread": thread_waiter, "task": other_loop}
    threads = [threading.Thread(target=targets[name], daemon=True) for name in waiters]
    for thread in threads:
        thread.start()
    # Both wait for the leader's flight before its loop is closed (a caller starting after
    # that would take the flight over on its own).
    _until(lambda: len(flights._waiting) == len(waiters), "the waiters joined the flight")

    loop.close()  # the leader stays pending for ever: it never ends its flight
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads), f"still waiting: {results}"
    assert results == dict.fromkeys(waiters, "fresh")
    # The abandoned leader's call, then exactly one new leader's (one of the waiters): the
    # other waiter, if any, reads the value it stored.
    assert sorted(calls) == ["abandoned", "fresh"]
    assert cache.get("K") == "fresh"
    assert not flights._running
    assert not flights._waiting
    assert not leader.done()
    leader._log_destroy_pending = False  # type: ignore[attr-defined]  # closed on purpose


def test_a_waiter_checks_its_flight_between_slices_and_only_ends_an_abandoned_one() -> None:
    flights = Flights()
    led, _ = flights.start("k", "A", thread=1)
    assert led is not None
    assert not flights.abandoned("k", led)  # a thread leader is never abandoned
    assert not led.done.is_set()
    flights.finish("k", led)

    loop = asyncio.new_event_loop()
    woken: list[str] = []

    async def lead() -> None:
        task = asyncio.current_task()
        assert task is not None
        flight, _ = flights.start("k", task)
        assert flight is not None
        _, awaited = flights.start("k", "B", lambda: woken.append("B"), thread=2)
        assert awaited is flight
        assert not flights.abandoned("k", flight)  # its loop runs: alive
        await asyncio.Event().wait()

    task = loop.create_task(lead())
    loop.run_until_complete(asyncio.sleep(0))
    awaited = flights._running["k"]
    assert not flights.abandoned("k", awaited)  # stopped, not closed: it may resume
    loop.close()
    assert flights.abandoned("k", awaited)
    assert awaited.done.is_set()
    assert woken == ["B"]  # the waiters are woken to try again
    assert "k" not in flights._running
    assert flights.abandoned("k", awaited)  # again: nothing more to end
    assert woken == ["B"]
    flights.stop_waiting("B")
    again, _ = flights.start("k", "B", thread=2)
    assert again is not None
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # closed on purpose
