"""The store's key log and the walk over it behind ``keys()``, ``count()`` and ``clear(filter)``.

A dict iterator does not survive writes: it raises once the size changes, and an insertion
may rebuild the table under it, after which it skips or repeats entries without a word.
A snapshot of the keys costs 8 bytes per key per walk. So the store keeps its own index,
a :class:`Log`: every key it stores is appended once, when it is first stored, together
with a sequence number that is also kept in the key's record. Positions in the log never
move between compactions, and a compaction keeps the order, so a walk can always find its
place again from the last sequence number it passed.

- A new key gets the next sequence number and is appended to the log.
- Overwriting a key keeps its number (the new record takes it over), so the key keeps its
  place; reads, promotions and policy bookkeeping never touch the log.
- Removing a key leaves its log entry behind, now stale: an entry is *live* while the
  record stored under its key carries its number. A key removed and stored again gets a
  new number, at the end of the log.
- The insertion that finds the log twice as long as its live entries were at the last
  compaction, plus :data:`SLACK`, first compacts it to its live entries (in order, numbers
  kept): one pass per at least as many insertions, so amortised O(1) per insertion.

A :class:`Cursor` passes the entries that were in the log when it started, a step at a
time with the store's lock held, and visits the live ones. Guarantees, as for Redis SCAN:

- a key stored for the whole walk is visited exactly once (its entry stays live, keeps
  its place, and the walk passes every place once);
- a key removed during the walk may or may not be visited; a key stored after the walk
  started (or removed and stored again) has a newer number and is never visited;
- so only keys stored when the walk started are visited, each at most once, and the walk
  ends after passing at most as many entries as the log held when it started: never more
  than twice the keys stored then, plus :data:`SLACK` (a walk compacts a sparser log first).

There are no restarts: however writers interleave, a walk does O(size + insertions during
the walk) work, and holds O(:data:`STEP`) memory.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, MutableSequence
from operator import itemgetter
from typing import Any, Final

__all__ = ["SLACK", "STEP", "Cursor", "Log"]

STEP: Final = 256
"""Log entries a walk passes per step: the lock is held that long."""
SLACK: Final = 1024
"""A log is compacted once it holds twice its live entries plus this many."""

Record = MutableSequence[Any]
"""A stored record: a list whose item at the log's ``slot`` is the key's sequence number."""


class Log:
    """Every key of a store in the order it was first stored, at positions that stay put.

    ``peek`` returns the record stored under a key, or ``None``, without counting as a use
    (it is called with the lock held). ``ordered`` is the store's own dict when the store
    is one, so that a compaction can copy its keys in C: its table order is the log's order
    because new keys are appended to both and nothing else reorders the table. Every method
    must be called with the store's lock held.
    """

    __slots__ = (
        "_next",
        "_size",
        "cut",
        "generation",
        "keys",
        "limit",
        "ordered",
        "peek",
        "seqs",
        "slot",
    )

    def __init__(
        self,
        slot: int,
        peek: Callable[[str], Record | None],
        size: Callable[[], int],
        ordered: dict[str, Any] | None = None,
    ) -> None:
        self.slot = slot
        self.peek = peek
        self._size = size
        self.ordered = ordered
        self.keys: list[str] = []
        self.seqs: list[int] = []  # ascending
        self._next = 0
        self.generation = 0
        """Raised by every compaction: positions in ``keys`` from before it are void."""
        self.limit = SLACK
        """The length at which the next insertion compacts the log first."""
        self.cut = False
        """Set while a change of several steps is under way: still set at the next call,
        that change was cut short (a signal handler's exception between two of its steps,
        the lock then released on the way out) and the log is rebuilt (:meth:`repair`)."""

    def add(self, key: str, record: Record) -> None:
        """Number ``record`` and append ``key``: call it when ``key`` is not stored yet."""
        keys = self.keys
        if self.cut:
            self.repair()
        if len(keys) >= self.limit:
            self.compact()  # before appending: the store does not hold the new key yet
        seq = self._next
        self._next = seq + 1
        record[self.slot] = seq
        self.cut = True
        keys.append(key)
        self.seqs.append(seq)
        self.cut = False

    def is_live(self, key: str, seq: int) -> bool:
        """Whether the entry ``(key, seq)`` is the current one for ``key``."""
        record = self.peek(key)
        return record is not None and record[self.slot] == seq

    def compact(self) -> None:
        """Drop the stale entries, keeping the order and the numbers of the live ones."""
        keys, seqs = self.keys, self.seqs
        self.cut = True
        if self.ordered is not None:
            keys.clear()  # freed before the copy is made: the log never takes twice its size
            seqs.clear()
            keys.extend(dict.keys(self.ordered))
            seqs.extend(map(itemgetter(self.slot), dict.values(self.ordered)))
        else:  # filtered in place: no copy, however large the log
            kept, is_live = 0, self.is_live
            for key, seq in zip(keys, seqs, strict=True):  # writes land behind the reads
                if is_live(key, seq):
                    keys[kept], seqs[kept] = key, seq
                    kept += 1
            del keys[kept:], seqs[kept:]
        self.generation += 1
        self.limit = 2 * len(keys) + SLACK
        self.cut = False

    def repair(self) -> None:
        """Rebuild the log after a change to it was cut short.

        Cut between its steps, the two lists may differ in length (a key appended without
        its number) or, in a compaction, hold an entry twice. Every key the store holds is
        still in the log (a new key is logged before it is stored, and a compaction only
        drops stale entries), so the live entries, once each, in the order of their
        numbers, are the log: a walk finds its place again by number, as after any
        compaction. A store that is the log's ordered dict is simply compacted from it.
        """
        if self.ordered is not None:
            self.compact()
            return
        peek, slot = self.peek, self.slot
        live: dict[str, int] = {}
        for key in self.keys:
            record = peek(key)
            if record is not None:
                live[key] = record[slot]
        entries = sorted(live.items(), key=itemgetter(1))
        self.keys[:] = [key for key, _ in entries]
        self.seqs[:] = [seq for _, seq in entries]
        self.generation += 1
        self.limit = 2 * len(self.keys) + SLACK
        self.cut = False

    def tidy(self) -> None:
        """Compact if more than half the log (beyond the slack) is stale (repair if cut)."""
        if self.cut:
            self.repair()
        elif len(self.keys) > 2 * self._size() + SLACK:
            self.compact()

    def reset(self) -> None:
        """Forget every entry: the store was emptied. Numbers keep rising."""
        self.cut = True
        self.keys.clear()
        self.seqs.clear()
        self.generation += 1
        self.limit = SLACK
        self.cut = False


class Cursor:
    """A walk over the keys a :class:`Log` held when the walk started.

    Call :meth:`step` with the store's lock held until :attr:`done`; between steps the
    store may change in any way. The walk remembers numbers and indexes, never keys.
    """

    def __init__(self, log: Log, step: int = STEP) -> None:
        log.tidy()  # so the walk passes at most twice as many entries as there are keys
        self._log = log
        self._step = step
        self._generation = log.generation
        self._index = 0  # the next entry to pass, in this generation of the log
        self._stop = len(log.keys)  # where the entries of the walk end, in this generation
        self._passed = -1  # the number of the last entry passed
        self._last = log.seqs[-1] if log.seqs else -1  # the newest entry the walk may visit
        self.done = not log.keys
        self.passed = 0
        """Log entries passed so far: the work done, which tests bound."""

    def step(self) -> list[tuple[str, Any]]:
        """The live ``(key, record)`` pairs among the next step's entries (maybe none)."""
        if self.done:
            return []
        log = self._log
        if log.cut:  # a change to the log was cut short since the last step
            log.repair()
        seqs = log.seqs
        if self._generation != log.generation:  # compacted: find the place by number
            self._generation = log.generation
            self._index = bisect_right(seqs, self._passed)
            self._stop = bisect_right(seqs, self._last)
        start = self._index
        end = min(start + self._step, self._stop)
        self._index = end
        self.done = end >= self._stop
        if end == start:
            return []
        keys, numbers = log.keys[start:end], seqs[start:end]
        self._passed = numbers[-1]
        self.passed += end - start
        peek, slot = log.peek, log.slot
        visited: list[tuple[str, Any]] = []
        for key, seq in zip(keys, numbers, strict=True):
            record = peek(key)
            if record is not None and record[slot] == seq:
                visited.append((key, record))
        return visited
