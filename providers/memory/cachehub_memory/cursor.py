"""A resumable walk over a dict's keys, so ``keys()`` streams without a snapshot.

A dict iterator does not survive writes: it raises once the size changes, and an insertion
may rebuild the table under it, after which it skips entries without a word. A snapshot
of the keys costs 8 bytes per key. This walk relies on the one order a dict keeps,
insertion order, which later writes never change:

- overwriting a key, or moving it in an ``OrderedDict``'s recency list, leaves it in place;
- a deleted entry vanishes without moving the others;
- an inserted key lands after every key stored at that moment.

So the keys stored for the whole walk keep their relative order, and every key written
during the walk lands after all of them. The walk takes a bounded step of entries per
lock hold and remembers the keys around its position: those passed in the last step (the
*trail*) and the next few (*ahead*, taken from the iterator but not visited yet). When the
store gained or lost keys between two steps, it finds its place again at the first of
those keys still stored, with one pass in C over the keys before it. Memory stays the same
whatever the size of the store.

Guarantees, as for Redis SCAN: a key stored for the whole walk is visited exactly once; a
key added or removed during the walk may or may not be; and the walk ends after at most as
many visits as the store held when it started, so a loop that removes and re-stores every
key it is given still ends. One exception: when none of the few hundred remembered keys
is provably in place (all removed or rewritten between two steps), the walk starts over
and may visit keys twice; ``restarts`` counts that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, KeysView
from itertools import islice
from typing import Any, Final

__all__ = ["STEP", "Cursor"]

STEP: Final = 256
"""Entries visited per step: the lock is held that long, and the trail is that size."""
_AHEAD: Final = 32


class Cursor:
    """A position in the insertion order of ``keys`` that survives writes between steps.

    ``lookup`` returns the value stored under a key, or ``None``. A value object must be
    stored under one key once: an entry removed and written again gets a new object (so
    an unchanged object proves the entry never left its place). ``inserts`` must return a
    number the store raises on every insertion of a new key: an insertion may resize the
    dict and leave a live iterator at the wrong entry without any error. Call :meth:`step`
    with the store's lock held; nothing else of the store is needed.
    """

    def __init__(
        self,
        keys: KeysView[str],
        lookup: Callable[[str], Any],
        inserts: Callable[[], int],
        step: int = STEP,
        ahead: int = _AHEAD,
    ) -> None:
        self._keys = keys
        self._lookup = lookup
        self._inserts = inserts
        self._step = step
        self._ahead_size = ahead
        self._it: Iterator[str] | None = None
        self._seen = (0, 0)  # (inserts, len) after the last step: any change means re-find
        self._budget = 0  # visits left: the size of the store when the walk (re)started
        self._trail: list[tuple[str, Any]] = []  # (key, value) passed in the last step
        self._ahead: deque[tuple[str, Any]] = deque()  # taken from the iterator, not visited
        self._skip: frozenset[str] = frozenset()  # passed keys met again after a re-find
        self.restarts = 0
        self.done = False

    def step(self) -> list[tuple[str, Any]]:
        """The next ``(key, value)`` pairs, up to one step's worth; ``[]`` only at the end."""
        while not self.done:
            visited = self._visit()
            if visited:
                return visited
        return []

    def _visit(self) -> list[tuple[str, Any]]:
        if self._it is None:
            self._start()
        elif self._seen != (self._inserts(), len(self._keys)):
            self._refind()
        it = self._it
        assert it is not None
        lookup, ahead = self._lookup, self._ahead
        passed: list[tuple[str, Any]] = []
        while ahead and len(passed) < self._step:  # taken last time: some may be gone since
            key = ahead.popleft()[0]
            value = lookup(key)
            if value is not None:
                passed.append((key, value))
        room = self._step - len(passed)
        if room > 0:
            taken = [(key, lookup(key)) for key in islice(it, room)]
            passed += taken
            self.done = len(taken) < room
        skip = self._skip
        # Without keys to skip, every pair passed is a visit: one list serves as both.
        visited = [pair for pair in passed if pair[0] not in skip] if skip else passed
        if len(visited) >= self._budget:
            del visited[self._budget :]
            self.done = True
        self._budget -= len(visited)
        if passed:
            self._trail = passed
        if not self.done:
            want = self._ahead_size - len(ahead)
            ahead.extend((key, lookup(key)) for key in islice(it, want))
        self._seen = (self._inserts(), len(self._keys))
        return visited

    def _start(self) -> None:
        self._it = iter(self._keys)
        self._budget = len(self._keys)
        self._trail, self._ahead, self._skip = [], deque(), frozenset()

    def _refind(self) -> None:
        """Resume at the first remembered key still stored (a scan in C up to it).

        A key removed and stored again lands after every key that stayed. So once one
        remembered entry is provably in place (same value object), the first remembered
        key found is in place too, and the position right after the trail is known.
        """
        lookup = self._lookup
        remembered = [*self._trail, *self._ahead]
        if not any(lookup(key) is value for key, value in remembered):
            self.restarts += 1  # no proof of where the walk was: start over
            self._start()
            return
        trail = frozenset(key for key, _ in self._trail)
        anchors = trail.union(key for key, _ in self._ahead)
        it = iter(self._keys)
        first = next(filter(anchors.__contains__, it))
        self._it = it
        # Trail keys met from here on were passed already (or were removed and stored
        # again, which need not be visited twice); ahead keys are met again in order.
        self._skip = trail
        self._ahead = deque() if first in trail else deque([(first, lookup(first))])
