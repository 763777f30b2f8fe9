"""The resumable walk behind the memory provider's keys(): what survives writes between steps.

The model: a dict written only between steps (as the store's lock guarantees), with tiny
steps so that every write lands next to the walk's position. After each walk the test
checks the guarantees cursor.py states, against a log of what happened to every key.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from cachehub_memory.cursor import Cursor
from hypothesis import given, settings
from hypothesis import strategies as st


@dataclass
class Store:
    """A dict plus the insert counter a Cursor needs, and a log of removed keys."""

    data: OrderedDict[str, list[int]] = field(default_factory=OrderedDict)
    inserts: int = 0
    removed: set[str] = field(default_factory=set)
    fresh: int = 0

    def cursor(self, step: int, ahead: int) -> Cursor:
        return Cursor(dict.keys(self.data), self.data.get, lambda: self.inserts, step, ahead)

    def put(self, key: str) -> None:
        if key not in self.data:
            self.inserts += 1
        self.data[key] = [0]  # a new value object, as every write makes

    def new(self) -> None:
        self.fresh += 1
        self.put(f"new{self.fresh}")

    def delete(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            self.removed.add(key)

    def delete_all(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)


Between = Callable[[Store, list[str]], object]
"""What the test does to the store between two steps, given the keys of the last one."""


def _walk(store: Store, cursor: Cursor, between: Between) -> list[str]:
    visited: list[str] = []
    for _ in range(10_000):
        step = cursor.step()
        if not step:
            return visited
        for key, value in step:
            assert value is not None
            visited.append(key)
        between(store, [key for key, _ in step])
    raise AssertionError("the walk did not end")


def _check(initial: list[str], store: Store, cursor: Cursor, visited: list[str]) -> None:
    counts = Counter(visited)
    throughout = [key for key in initial if key not in store.removed]
    assert all(counts[key] >= 1 for key in throughout), "a key stored throughout was skipped"
    if cursor.restarts == 0:
        assert all(counts[key] == 1 for key in throughout), "a key stored throughout came twice"
        assert len(visited) <= len(initial), "the walk visited more than the store held"
        twice = {key for key, n in counts.items() if n > 1}
        assert twice <= store.removed, "only keys removed and stored again may come twice"


def _filled(n: int) -> tuple[Store, list[str]]:
    store = Store()
    for i in range(n):
        store.put(f"k{i}")
    return store, list(store.data)


def test_an_unchanged_dict_is_walked_once_in_insertion_order_a_step_at_a_time() -> None:
    store, initial = _filled(1000)
    cursor = store.cursor(step=64, ahead=8)
    sizes: list[int] = []
    visited = _walk(store, cursor, lambda s, keys: sizes.append(len(keys)))
    assert visited == initial
    assert max(sizes) == 64
    assert cursor.done
    assert cursor.step() == []


def test_an_empty_dict_ends_at_once() -> None:
    store = Store()
    assert store.cursor(step=4, ahead=2).step() == []


def test_promotions_and_overwrites_keep_a_live_iterator() -> None:
    store, initial = _filled(100)

    def between(s: Store, keys: list[str]) -> None:
        for key in keys:
            s.data.move_to_end(key, last=False)
            s.put(key)

    cursor = store.cursor(step=7, ahead=3)
    assert _walk(store, cursor, between) == initial
    assert cursor.restarts == 0


def test_deleting_every_visited_key_empties_the_store() -> None:
    store, initial = _filled(500)
    cursor = store.cursor(step=16, ahead=4)
    visited = _walk(store, cursor, lambda s, keys: s.delete_all(keys))
    assert visited == initial
    assert not store.data
    assert cursor.restarts == 0


def test_deleting_every_other_visited_key() -> None:
    store, initial = _filled(500)
    cursor = store.cursor(step=16, ahead=4)
    visited = _walk(store, cursor, lambda s, keys: s.delete_all(keys[::2]))
    assert visited == initial
    assert cursor.restarts == 0


def test_storing_every_visited_key_again_still_ends() -> None:
    """Removing and re-storing each key moves it to the end: the walk must not chase it."""
    store, initial = _filled(300)

    def between(s: Store, keys: list[str]) -> None:
        for key in keys:
            s.delete(key)
            s.put(key)

    cursor = store.cursor(step=8, ahead=4)
    visited = _walk(store, cursor, between)
    assert sorted(visited) == sorted(initial)
    assert cursor.restarts == 0


def test_inserting_during_the_walk_ends_and_misses_nothing() -> None:
    store, initial = _filled(300)

    def between(s: Store, keys: list[str]) -> None:
        for _ in range(50):
            s.new()

    cursor = store.cursor(step=10, ahead=4)
    visited = _walk(store, cursor, between)
    assert visited == initial  # the budget ends the walk before the endless new keys
    assert cursor.restarts == 0


def test_a_resize_under_the_iterator_is_noticed() -> None:
    """Insert then delete as many: same size, but the table is rebuilt under the iterator."""
    store, initial = _filled(200)

    def between(s: Store, keys: list[str]) -> None:
        for _ in range(400):
            s.new()
        for key in [k for k in s.data if k.startswith("new")]:
            s.delete(key)

    cursor = store.cursor(step=10, ahead=4)
    assert _walk(store, cursor, between) == initial


def test_losing_every_remembered_key_restarts_without_skipping() -> None:
    store, initial = _filled(100)
    lost = False

    def between(s: Store, keys: list[str]) -> None:
        nonlocal lost
        if not lost:  # remove the trail and everything ahead of it that the walk remembers
            lost = True
            s.delete_all(initial[:20])

    cursor = store.cursor(step=5, ahead=3)
    visited = _walk(store, cursor, between)
    assert cursor.restarts == 1
    _check(initial, store, cursor, visited)


def test_keys_stored_again_are_no_proof_of_the_position() -> None:
    """The trail is gone and the keys ahead moved to the end: only a restart is safe."""
    store, _ = _filled(10)
    cursor = store.cursor(step=2, ahead=2)
    assert [key for key, _ in cursor.step()] == ["k0", "k1"]
    for key in ("k0", "k1"):
        store.delete(key)
    for key in ("k2", "k3"):
        store.delete(key)
        store.put(key)
    visited = _walk(store, cursor, lambda s, keys: None)
    assert visited[:6] == ["k4", "k5", "k6", "k7", "k8", "k9"]
    assert cursor.restarts == 1


def test_a_walk_remembers_one_step_and_a_few_keys_ahead_whatever_the_size() -> None:
    store, _ = _filled(5000)
    cursor = store.cursor(step=32, ahead=4)
    cursor.step()
    assert len(cursor._trail) == 32
    assert len(cursor._ahead) == 4


_ANYWHERE = ("put", "new", "delete", "move", "promote", "burst")
_NEXT_TO_THE_WALK = ("delete_seen", "drop_step", "move_next", "delete_next")
_OPS = st.lists(
    st.tuples(
        st.sampled_from((*_ANYWHERE, *_NEXT_TO_THE_WALK)),
        st.integers(0, 10_000),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 60),
    step=st.integers(1, 6),
    ahead=st.integers(1, 4),
    plan=st.lists(_OPS, max_size=40),
)
def test_any_writes_between_steps_keep_the_guarantees(
    size: int, step: int, ahead: int, plan: list[list[tuple[str, int]]]
) -> None:
    store, initial = _filled(size)
    steps = iter(plan)

    def between(s: Store, keys: list[str]) -> None:
        for op, n in next(steps, []):
            stored = list(s.data)
            if op == "new":
                s.new()
            elif op == "burst":
                for _ in range(n % 50):
                    s.new()
            elif not stored:
                continue
            elif op == "delete_seen":
                s.delete(keys[n % len(keys)])
            elif op == "drop_step":
                s.delete_all(keys)
            elif op in ("move_next", "delete_next"):
                # the first stored key after this step's last one: what the walk holds ahead
                after = stored.index(keys[-1]) + 1 if keys[-1] in s.data else 0
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

    cursor = store.cursor(step, ahead)
    _check(initial, store, cursor, _walk(store, cursor, between))


@pytest.mark.parametrize("seed", range(20))
def test_random_churn_on_a_large_dict(seed: int) -> None:
    rng = random.Random(seed)
    store, initial = _filled(3000)

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

    cursor = store.cursor(step=rng.randrange(1, 64), ahead=rng.randrange(1, 16))
    _check(initial, store, cursor, _walk(store, cursor, between))
