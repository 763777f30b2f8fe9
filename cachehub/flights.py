"""``get_or_set``'s in-process single flight: one computation per key at a time.

A caller that misses a key *leads* its flight (computes the value) or *waits* for the
flight another caller leads, then reads the cache again. Flights are per key, so a
creator may itself call ``get_or_set`` (a ``@cached`` function calling another, or
itself: ``fib``) without waiting for anything but the keys it needs. The previous design,
64 lock stripes chosen by ``hash(key)``, deadlocked forever whenever a nested key fell on
the stripe its caller held.

Waiting never closes a cycle: an *owner* (a thread for the sync shell, a task for the
async one) never waits for a flight it leads itself (a function needing its own result
computes it, as it would without a cache), nor for one whose leader waits, directly or
through others, for this owner (thread A computes ``a`` and needs ``b`` while thread B
computes ``b`` and needs ``a``). Such a caller computes the value without a flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from contextlib import suppress
from dataclasses import dataclass, field

__all__ = ["Flight", "Flights"]


@dataclass(eq=False)
class Flight:
    """One key's computation in progress, led by ``owner``."""

    owner: Hashable
    done: threading.Event = field(default_factory=threading.Event)
    """Set when the leader finished (stored the value, failed or was cancelled)."""
    wakers: list[Callable[[], None]] = field(default_factory=list)
    """Called once when the flight ends: how async waiters on any loop are woken."""


class Flights:
    """The flights of one cache, shared by its sync and async shells."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Flight] = {}
        self._waiting: dict[Hashable, Flight] = {}

    def start(
        self, key: str, owner: Hashable, waker: Callable[[], None] | None = None
    ) -> tuple[Flight | None, Flight | None]:
        """``(led, awaited)`` for ``owner`` missing ``key``.

        ``led``: a new flight ``owner`` now leads; it must :meth:`finish` it.
        ``awaited``: another owner's flight to wait for (``owner`` is registered as
        waiting, and ``waker`` will be called when it ends); call :meth:`stop_waiting`
        after waiting, then try again. Both None: compute without a flight (waiting
        would be waiting for oneself).
        """
        with self._lock:
            running = self._running.get(key)
            if running is None:
                led = self._running[key] = Flight(owner)
                return led, None
            if self._leads_to(running, owner):
                return None, None
            self._waiting[owner] = running
            if waker is not None:
                running.wakers.append(waker)
            return None, running

    def stop_waiting(self, owner: Hashable) -> None:
        """``owner`` no longer waits (woken, timed out or cancelled)."""
        with self._lock:
            self._waiting.pop(owner, None)

    def finish(self, key: str, flight: Flight) -> None:
        """End ``flight`` (its leader is done, whatever the outcome) and wake its waiters."""
        with self._lock:
            if self._running.get(key) is flight:
                del self._running[key]
            wakers, flight.wakers = flight.wakers, []
            flight.done.set()
        for wake in wakers:
            with suppress(RuntimeError):  # a waiter's loop that is already closed
                wake()

    def _leads_to(self, flight: Flight, owner: Hashable) -> bool:
        """Whether waiting for ``flight`` would make ``owner`` wait for itself (lock held).

        Follows leader -> the flight it waits for -> its leader...; each owner waits for
        at most one flight, so the walk visits every waiting owner at most once.
        """
        seen: set[Hashable] = set()
        current = flight.owner
        while current not in seen:
            if current == owner:
                return True
            seen.add(current)
            awaited = self._waiting.get(current)
            if awaited is None:
                return False
            current = awaited.owner
        return False
