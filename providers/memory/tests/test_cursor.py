"""The store's key log and the walk over it: what survives writes between steps.

The model: a store written only between steps (as the store's lock guarantees), with tiny
steps and a tiny compaction slack, so that every write lands next to the walk's position
and compactions happen mid-walk. Both kinds of log are modelled: one over an OrderedDict
(compacted by copying the table, as for lru and fifo) and one over a mapping it cannot
copy (compacted by filtering, as for the cachetools policies). After each walk the test
checks the guarantees cursor.py states against a log of what happened to every key.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import pytest
from cachehub_memory import cursor as walk
from cachehub_memory.cursor import Cursor, Log
from hypothesis import given, settings
from hypothesis import strategies as st

_SLOT = 1  # records are [value, seq]


@dataclass
class Store:
    """A store as cache.py keeps one: records numbered by a Log, plus a log of removals."""

    copyable: bool = True
    data: OrderedDict[str, list[Any]] = field(default_factory=OrderedDict)
    removed: set[str] = field(default_factory=set)
    fresh: int = 0
    log: Log = field(init=False)

    def __post_init__(self) -> None:
        ordered = self.data if self.copyable else None
        self.log = Log(_SLOT, self.data.get, self.data.__len__, ordered)

    def put(self, key: str) -> None:
        record: list[Any] = [0, -1]  # a new record, as every write makes
        old = self.data.get(key)
        if old is None:
            self.log.add(key, record)
        else:
            record[_SLOT] = old[_SLOT]
        self.data[key] = record

    def new(self) -> None:
        self.fresh += 1
        self.put(f"new{self.fresh}")

    def burst(self, n: int) -> None:
        for _ in range(n):
            self.new()

    def delete(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            self.removed.add(key)

    def delete_all(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)


Between = Callable[[Store, list[str]], object]
"""What the test does to the store between two steps, given the keys visited in the last."""


def _slack(n: int) -> AbstractContextManager[Any]:
    """A small compaction slack, so that logs of a few dozen keys compact mid-walk."""
    return patch.object(walk, "SLACK", n)  # read by Log at every compaction and tidy


def _walk(store: Store, cursor: Cursor, between: Between) -> list[str]:
    visited: list[str] = []
    for _ in range(100_000):  # far above any walk here: an endless walk fails, not hangs
        if cursor.done:
            assert cursor.step() == []
            return visited
        step = cursor.step()
        for key, record in step:
            assert store.data[key] is record
            visited.append(key)
        between(store, [key for key, _ in step])
    raise AssertionError("the walk did not end")


def _check(initial: list[str], store: Store, cursor: Cursor, visited: list[str]) -> None:
    counts = Counter(visited)
    throughout = [key for key in initial if key not in store.removed]
    assert all(counts[key] == 1 for key in throughout), "a key stored throughout not seen once"
    assert max(counts.values(), default=1) == 1, "a key came twice"
    assert set(visited) <= set(initial), "a key stored after the walk started came"
    assert cursor.passed <= 2 * len(initial) + walk.SLACK, "the walk did unbounded work"


def _filled(n: int, copyable: bool = True) -> tuple[Store, list[str]]:
    store = Store(copyable)
    for i in range(n):
        store.put(f"k{i}")
    return store, list(store.data)


def _sorted_and_numbered(store: Store) -> None:
    """The log's invariants: numbers ascend, and every stored key has exactly one live entry."""
    log = store.log
    assert log.seqs == sorted(set(log.seqs))
    live = [key for key, seq in zip(log.keys, log.seqs, strict=True) if log.is_live(key, seq)]
    assert sorted(live) == sorted(store.data)


@pytest.mark.parametrize("copyable", [True, False])
def test_an_unchanged_store_is_walked_once_in_insertion_order_a_step_at_a_time(
    copyable: bool,
) -> None:
    store, initial = _filled(1000, copyable)
    cursor = Cursor(store.log, step=64)
    sizes: list[int] = []
    visited = _walk(store, cursor, lambda s, keys: sizes.append(len(keys)))
    assert visited == initial
    assert max(sizes) == 64
    assert cursor.passed == 1000


def test_an_empty_store_ends_at_once() -> None:
    cursor = Cursor(Store().log, step=4)
    assert cursor.done
    assert cursor.step() == []


@pytest.mark.parametrize("copyable", [True, False])
def test_promotions_and_overwrites_keep_every_place(copyable: bool) -> None:
    store, initial = _filled(100, copyable)

    def between(s: Store, keys: list[str]) -> None:
        for key in keys:
            s.data.move_to_end(key, last=False)
            s.put(key)

    assert _walk(store, Cursor(store.log, step=7), between) == initial


def test_deleting_every_visited_key_empties_the_store() -> None:
    store, initial = _filled(500)
    visited = _walk(store, Cursor(store.log, step=16), lambda s, keys: s.delete_all(keys))
    assert visited == initial
    assert not store.data


def test_storing_every_visited_key_again_still_ends() -> None:
    """Removing and re-storing each key gives it a new number: the walk must not chase it."""
    store, initial = _filled(300)

    def between(s: Store, keys: list[str]) -> None:
        for key in keys:
            s.delete(key)
            s.put(key)

    cursor = Cursor(store.log, step=8)
    assert _walk(store, cursor, between) == initial
    assert cursor.passed == 300


@pytest.mark.parametrize("copyable", [True, False])
def test_inserting_during_the_walk_ends_and_misses_nothing(copyable: bool) -> None:
    store, initial = _filled(300, copyable)
    with _slack(4):  # compactions all along the walk
        cursor = Cursor(store.log, step=10)
        generation = store.log.generation
        visited = _walk(store, cursor, lambda s, keys: s.burst(50))
    assert visited == initial  # the keys stored meanwhile never come
    assert store.log.generation > generation
    assert cursor.passed == 300


@pytest.mark.parametrize("copyable", [True, False])
def test_compacting_under_the_walk_keeps_its_place(copyable: bool) -> None:
    """Insert then delete as many between steps: every compaction moves every entry."""
    store, initial = _filled(200, copyable)

    def between(s: Store, keys: list[str]) -> None:
        for _ in range(400):
            s.new()
        s.delete_all([k for k in s.data if k.startswith("new")])
        s.delete(initial[len(s.removed) % 200])  # and lose keys on both sides of the walk

    with _slack(8):
        cursor = Cursor(store.log, step=10)
        visited = _walk(store, cursor, between)
    _check(initial, store, cursor, visited)
    _sorted_and_numbered(store)


def test_losing_every_key_around_the_position_skips_nothing() -> None:
    """The old walk restarted (and repeated keys) here: positions are numbers now."""
    store, initial = _filled(100)
    lost = False

    def between(s: Store, keys: list[str]) -> None:
        nonlocal lost
        if not lost:
            lost = True
            s.delete_all(initial[:20])
            for key in initial[20:30]:  # the keys ahead go to the end of the log
                s.delete(key)
                s.put(key)
            s.log.compact()

    cursor = Cursor(store.log, step=5)
    visited = _walk(store, cursor, between)
    assert visited == initial[:5] + initial[30:]
    _check(initial, store, cursor, visited)


def test_a_walk_over_a_mostly_stale_log_compacts_it_first() -> None:
    """So its work is bounded by the keys stored, not by how many there once were."""
    store, initial = _filled(5000)
    store.delete_all(initial[10:])
    cursor = Cursor(store.log, step=64)
    assert len(store.log.keys) == 10
    assert _walk(store, cursor, lambda s, keys: None) == initial[:10]
    assert cursor.passed == 10


@pytest.mark.parametrize("copyable", [True, False])
def test_churn_keeps_the_log_within_twice_the_store_plus_the_slack(copyable: bool) -> None:
    store, _ = _filled(100, copyable)
    for i in range(20_000):
        store.delete(f"k{i % 100}")
        store.put(f"k{i % 100}")
        assert len(store.log.keys) <= 2 * len(store.data) + walk.SLACK + 1
    _sorted_and_numbered(store)


@pytest.mark.parametrize("copyable", [True, False])
def test_insertions_compact_the_log_a_logarithmic_number_of_times(copyable: bool) -> None:
    # Amortised O(1) per insertion: the limit grows to twice the live entries plus the
    # slack at each compaction, so 20,000 new keys compact at 1,024, 3,072, 7,168 and
    # 15,360 entries; a limit that grows by the slack only would compact 19 times.
    store, _ = _filled(20_000, copyable)
    assert store.log.generation == 4
    _sorted_and_numbered(store)


@pytest.mark.parametrize("copyable", [True, False])
def test_a_compaction_before_the_first_step_keeps_the_first_key(copyable: bool) -> None:
    # The walk has passed nothing yet: it must find its place before the first number
    # ever given (0), not after it.
    with _slack(4):
        store, initial = _filled(8, copyable)
        cursor = Cursor(store.log, step=3)
        generation = store.log.generation
        store.burst(30)
        assert store.log.generation > generation  # compacted before the walk moved
        assert _walk(store, cursor, lambda s, keys: None) == initial


def test_a_key_removed_and_stored_again_during_the_walk_is_not_visited() -> None:
    # Its new number is past the walk's last one, and its old entry is stale: the record
    # under the key now carries a higher number, which is not the entry's.
    store, initial = _filled(10)
    cursor = Cursor(store.log, step=2)
    visited = [key for key, _ in cursor.step()]
    store.delete("k5")
    store.put("k5")
    visited += _walk(store, cursor, lambda s, keys: None)
    assert visited == [key for key in initial if key != "k5"]


def test_clearing_the_log_ends_every_walk() -> None:
    store, _ = _filled(100)
    cursor = Cursor(store.log, step=10)
    cursor.step()
    store.data.clear()
    store.log.reset()
    for _ in range(50):
        store.new()
    assert cursor.step() == []
    assert cursor.done


def test_a_walk_holds_one_step_whatever_the_size() -> None:
    store, _ = _filled(5000)
    cursor = Cursor(store.log, step=32)
    assert len(cursor.step()) == 32
    assert sorted(vars(cursor)) == [  # positions only: no keys are remembered
        "_generation",
        "_index",
        "_last",
        "_log",
        "_passed",
        "_step",
        "_stop",
        "done",
        "passed",
    ]


_ANYWHERE = ("put", "new", "delete", "move", "promote", "burst", "compact")
_NEXT_TO_THE_WALK = ("delete_seen", "drop_step", "move_next", "delete_next", "move_seen")
_OPS = st.lists(
    st.tuples(
        st.sampled_from((*_ANYWHERE, *_NEXT_TO_THE_WALK)),
        st.integers(0, 10_000),
    ),
    max_size=6,
)


def _apply(s: Store, keys: list[str], op: str, n: int) -> None:
    stored = list(s.data)
    if op == "new":
        s.new()
    elif op == "burst":
        s.burst(n % 50)
    elif op == "compact":
        s.log.compact()
    elif not stored:
        return
    elif op in ("delete_seen", "move_seen"):
        if keys:
            key = keys[n % len(keys)]
            s.delete(key)
            if op == "move_seen":
                s.put(key)
    elif op == "drop_step":
        s.delete_all(keys)
    elif op in ("move_next", "delete_next"):
        # the first stored key after this step's last one: the walk's next entry
        after = stored.index(keys[-1]) + 1 if keys and keys[-1] in s.data else 0
        if after < len(stored):
            s.delete(stored[after])
            if op == "move_next":
                s.put(stored[after])
    else:
        key = stored[n % len(stored)]
        if op == "put":
            s.put(key)
        elif op == "delete":
            s.delete(key)
        elif op == "move":
            s.delete(key)
            s.put(key)
        else:
            s.data.move_to_end(key)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 60),
    step=st.integers(1, 6),
    slack=st.integers(0, 8),
    copyable=st.booleans(),
    plan=st.lists(_OPS, max_size=40),
)
def test_any_writes_between_steps_keep_the_guarantees(
    size: int, step: int, slack: int, copyable: bool, plan: list[list[tuple[str, int]]]
) -> None:
    with _slack(slack):
        store, initial = _filled(size, copyable)
        steps = iter(plan)

        def between(s: Store, keys: list[str]) -> None:
            for op, n in next(steps, []):
                _apply(s, keys, op, n)

        cursor = Cursor(store.log, step)
        _check(initial, store, cursor, _walk(store, cursor, between))
        _sorted_and_numbered(store)


@pytest.mark.parametrize("seed", range(20))
def test_random_churn_on_a_large_store(seed: int) -> None:
    rng = random.Random(seed)
    with _slack(rng.randrange(0, 64)):
        store, initial = _filled(3000, copyable=seed % 2 == 0)

        def between(s: Store, keys: list[str]) -> None:
            stored = list(s.data)
            for _ in range(rng.randrange(30)):
                action = rng.random()
                key = rng.choice(stored)
                if action < 0.3:
                    s.delete(key)
                elif action < 0.5:
                    s.delete(key)
                    s.put(key)
                elif action < 0.8:
                    s.new()
                else:
                    s.put(key)

        cursor = Cursor(store.log, step=rng.randrange(1, 64))
        _check(initial, store, cursor, _walk(store, cursor, between))
        _sorted_and_numbered(store)


@pytest.mark.parametrize("copyable", [True, False])
@pytest.mark.parametrize("live", [0, 1, 300, 512, 700, 1023, 1500, 2600])
def test_a_compaction_leaves_room_for_its_live_entries_plus_the_slack(
    copyable: bool, live: int
) -> None:
    # The documented rule, exactly: after a compaction to L live entries, the insertion
    # that finds the log at 2 * L + SLACK entries compacts it again - not one before. A
    # limit below that (2 * L ^ SLACK is one for L from 512 to 1023) compacts at every
    # insertion for a while: the same results, but O(n) per insertion.
    store, initial = _filled(live + 50, copyable)
    store.delete_all(initial[live:])
    store.log.compact()
    generation = store.log.generation
    assert len(store.log.keys) == live
    store.burst(live + walk.SLACK)  # fills the log to 2 * L + SLACK entries
    assert store.log.generation == generation
    store.new()
    assert store.log.generation == generation + 1
    _sorted_and_numbered(store)


def test_a_walk_whose_remaining_entries_all_go_ends_past_the_small_int_cache() -> None:
    # After a compaction drops every entry ahead of the walk, the next step starts at its
    # (new) stop; positions beyond 256 are distinct int objects, so only `==` sees that.
    store, initial = _filled(400)
    cursor = Cursor(store.log, step=300)
    visited = [key for key, _ in cursor.step()]
    store.delete_all(initial[300:])
    store.log.compact()
    assert cursor.step() == []
    assert cursor.done
    assert visited == initial[:300]
    assert cursor.passed == 300


def test_a_walk_compacts_a_log_just_over_twice_its_keys_plus_the_slack() -> None:
    # 7,000 keys (the log compacted last at 3,072 entries, limit 7,168), 4,500 removed:
    # 7,000 entries for 2,500 keys is over 2 * 2,500 + SLACK = 6,024, so the walk compacts
    # first and passes only the live entries (within the bound cursor.py states).
    store, initial = _filled(7000)
    store.delete_all(initial[2500:])
    assert len(store.log.keys) == 7000
    cursor = Cursor(store.log, step=256)
    assert _walk(store, cursor, lambda s, keys: None) == initial[:2500]
    assert cursor.passed == 2500
    _check(initial, store, cursor, initial[:2500])
