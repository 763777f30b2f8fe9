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

Nor does an owner wait where its own thread would have to run the leader first: a
thread (the sync shell blocks it) for a task of the event loop it runs, or a task for a
sync leader on its thread (a creator that runs ``asyncio.run``), directly or through
others; a task may wait for another task of its loop, which runs while it awaits. And a
flight led by a task whose event loop was closed with it pending is over: that task never
finishes it, and the next caller leads instead. Owners already waiting for it find out
too: they wait in slices of :data:`WAIT_SLICE` seconds and call :meth:`Flights.abandoned`
between them, which ends such a flight (waking all its waiters); they then try again, and
one of them leads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Hashable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Final

__all__ = ["WAIT_SLICE", "Flight", "Flights", "Latch"]

WAIT_SLICE: Final = 0.5
"""Seconds a waiter waits before checking whether its flight's leader abandoned it."""


class Latch:
    """A one-shot event that a signal handler's exception cannot wedge.

    ``threading.Event`` takes its Condition's lock in Python code (``Condition.
    __enter__``): an exception landing there left that lock held, and then every
    ``wait`` (and a second ``set``: the leader's own clean-up) blocked on it for good.
    Here ``set`` is a flag and a token in a ``SimpleQueue``, whose ``put`` and ``get``
    are single C calls; a waiter woken by the token puts it back for the next. An
    interrupt between the flag and the token, or between a waiter's ``get`` and ``put``,
    loses only the quick wake-up: waiters wait in slices and see the flag at the end of
    their slice.
    """

    __slots__ = ("_flag", "_token")

    def __init__(self) -> None:
        self._flag = False
        self._token: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._flag = True
        self._token.put(None)

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; whether it is set."""
        if self._flag:
            return True
        try:
            self._token.get(timeout=timeout)
        except queue.Empty:
            return self._flag
        self._token.put(None)  # for the next waiter
        return True


@dataclass(eq=False)
class Flight:
    """One key's computation in progress, led by ``owner``."""

    owner: Hashable
    thread: int = 0
    """The thread the leader runs on (a task's: its event loop's)."""
    done: Latch = field(default_factory=Latch)
    """Set when the leader finished (stored the value, failed or was cancelled)."""
    waiters: dict[Hashable, Callable[[], None] | None] = field(default_factory=dict)
    """The owners waiting for it, each with its waker (called once when the flight ends:
    how async waiters on any loop are woken; None for a thread, which waits on ``done``).
    A waiter that stops waiting (woken, timed out, cancelled) takes itself off."""


class Flights:
    """The flights of one cache, shared by its sync and async shells."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Flight] = {}
        self._waiting: dict[Hashable, Flight] = {}

    def start(
        self,
        key: str,
        owner: Hashable,
        waker: Callable[[], None] | None = None,
        *,
        thread: int | None = None,
        into: list[Flight] | None = None,
    ) -> tuple[Flight | None, Flight | None]:
        """``(led, awaited)`` for ``owner`` missing ``key``.

        ``led``: a new flight ``owner`` now leads; it must :meth:`finish` it.
        ``awaited``: another owner's flight to wait for (``owner`` is registered as
        waiting, and ``waker`` will be called when it ends); call :meth:`stop_waiting`
        after waiting, then try again. Both None: compute without a flight (waiting
        would be waiting for oneself). ``thread``: the thread ``owner`` runs on (default:
        the calling one, as both shells start flights on the owner's own thread).
        ``into``: a list the led flight is appended to before it is registered, which the
        caller finishes in its ``finally``: a signal handler's exception can land as this
        call returns, before the caller has stored ``led``, and the flight was then left
        registered, other threads waiting for it for good.
        """
        thread = threading.get_ident() if thread is None else thread
        stale: list[Callable[[], None]] = []
        try:
            with self._lock:
                running = self._running.get(key)
                if running is not None and _abandoned(running.owner):
                    stale = self._end(key, running)
                    running = None
                if running is None:
                    led = Flight(owner, thread)
                    if into is not None:
                        into.append(led)
                    self._running[key] = led
                    return led, None
                if self._leads_to(running, owner, thread):
                    return None, None
                self._waiting[owner] = running
                running.waiters[owner] = waker
                return None, running
        finally:
            if stale:  # no call otherwise: an interrupt cannot land here after registering
                _wake(stale)  # the abandoned flight's waiters: they try again (and wait for us)

    def abandoned(self, key: str, flight: Flight) -> bool:
        """Whether ``flight`` (``key``'s) was abandoned: its leader is a task whose loop was
        closed with it pending, so it never ends it. Such a flight is ended here, its
        waiters woken, so that they try again; one of them leads. Checked by waiters
        between their :data:`WAIT_SLICE` waits (lock-free while the leader lives)."""
        if not _abandoned(flight.owner):
            return False
        with self._lock:
            wakers = self._end(key, flight) if not flight.done.is_set() else []
        _wake(wakers)
        return True

    def stop_waiting(self, owner: Hashable) -> None:
        """``owner`` no longer waits (woken, timed out or cancelled): it leaves the flight
        too, so that callers who give up on a slow creator (5,000 timed-out tasks) are
        not all kept, with their wakers, until it ends."""
        with self._lock:
            flight = self._waiting.pop(owner, None)
            if flight is not None:
                flight.waiters.pop(owner, None)

    def finish(self, key: str, flight: Flight) -> None:
        """End ``flight`` (its leader is done, whatever the outcome) and wake its waiters."""
        with self._lock:
            wakers = self._end(key, flight)
        _wake(wakers)

    def _end(self, key: str, flight: Flight) -> list[Callable[[], None]]:
        """Take ``flight`` off (lock held); its wakers, to call once the lock is released
        (with :func:`_wake`)."""
        if self._running.get(key) is flight:
            del self._running[key]
        self._waiting.pop(flight.owner, None)
        # Its waiters wait no more (each also says so, with stop_waiting): one whose loop
        # was closed while it waited never will, and its entry would keep its task alive.
        waiting = self._waiting
        for owner in flight.waiters:
            if waiting.get(owner) is flight:
                del waiting[owner]
        wakers = [wake for wake in flight.waiters.values() if wake is not None]
        flight.waiters = {}
        flight.done.set()  # a Latch: ending again (a clean-up run twice) is harmless
        return wakers

    def _leads_to(self, flight: Flight, owner: Hashable, thread: int) -> bool:
        """Whether waiting for ``flight`` could never end for ``owner`` on ``thread``
        (lock held): the chain leader -> the flight it waits for -> its leader... reaches
        ``owner``, or a leader that needs ``thread`` while ``owner`` holds it.

        Each owner waits for at most one flight, so the walk visits every waiting owner
        at most once.
        """
        is_task = _is_task(owner)
        seen: set[Hashable] = set()
        current: Flight | None = flight
        while current is not None and current.owner not in seen:
            if current.owner == owner:
                return True
            if current.thread == thread and not (is_task and _is_task(current.owner)):
                return True  # a blocked thread cannot run its loop's task, nor the reverse
            seen.add(current.owner)
            current = self._waiting.get(current.owner)
        return False


def _wake(wakers: list[Callable[[], None]]) -> None:
    """Call an ended flight's wakers (the lock released)."""
    for wake in wakers:
        with suppress(RuntimeError):  # a waiter's loop that is already closed
            wake()


def _is_task(owner: Hashable) -> bool:
    """An async shell's owner (a task); the sync shell's are thread ids."""
    return isinstance(owner, asyncio.Task)


def _abandoned(owner: Hashable) -> bool:
    """A leader task that will never finish its flight: its loop was closed with it
    pending (it is never resumed, so its ``finally`` never runs)."""
    return isinstance(owner, asyncio.Task) and not owner.done() and owner.get_loop().is_closed()
