"""keys() against real writer threads: a hypothesis model on every eviction policy.

Writers overwrite, read, touch and incr the keys the model keeps, and store, delete,
re-store and clear the others, while the main thread walks ``keys()``. The switch
interval is tiny and the walk's step and compaction slack are small, so thread switches
land inside steps, between them and inside compactions. Each writer runs a bounded
program (at most ``_MAX_OPS`` writes), so every example is bounded in work; nothing is
timed. What the walk must show, whatever the interleaving:

- every kept key (stored throughout) comes exactly once;
- no key comes twice, and only keys stored when the walk started come;
- the walk passes at most as many log entries as the log held at its start, which is at
  most twice the keys then stored plus the slack.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import pytest
from cachehub_memory import MemoryCache
from cachehub_memory import cursor as walk
from cachehub_memory.cursor import Cursor
from hypothesis import given, settings
from hypothesis import strategies as st

from cachehub.testing import FakeClock

# The child-process harness lives in the core's tests/reliability, importable as
# ``reliability`` once the core's tests folder is on the path (as pytest puts it there
# when it collects those tests; another provider's package already owns the name "tests").
_CORE_TESTS = str(Path(__file__).resolve().parents[3] / "tests")
if _CORE_TESTS not in sys.path:
    sys.path.append(_CORE_TESTS)
from reliability.sandbox import run_bounded  # noqa: E402

_POLICIES = ["lru", "fifo", "lfu", "rr", "ttl"]
_MAX_OPS = 400
"""Writes per writer thread and example, at most."""
_ON_KEPT = ("overwrite", "get", "touch", "incr", "exists")
_ON_CHURN = ("new", "delete", "move", "rewrite", "clear_some", "put_many", "delete_many")
_PROGRAM = st.lists(
    st.tuples(st.sampled_from(_ON_KEPT + _ON_CHURN), st.integers(0, 1 << 20)),
    min_size=1,
    max_size=24,
)


def _write(cache: MemoryCache, op: str, n: int, kept: int, churn: int, writer: int, i: int) -> None:
    """One write of a writer's program; the kept keys are never removed."""
    keep = f"keep:{n % kept}" if kept else None
    old = f"churn:{n % churn}" if churn else f"churn:{n}"
    if op in _ON_KEPT:
        if keep is None:
            return
        if op == "overwrite":
            cache.put(keep, i)
        elif op == "get":
            cache.get(keep)
        elif op == "touch":
            cache.touch(keep, time_span=3600)
        elif op == "incr":
            cache.incr(keep)
        else:
            cache.exists(keep)
    elif op == "new":
        cache.put(f"new:{writer}:{i}", i)
    elif op == "delete":
        cache.delete(old)
    elif op == "move":
        if cache.delete(old):
            cache.put(old, i)  # removed and stored again: a new number, at the end
    elif op == "rewrite":
        cache.put(old, i)  # stores it again if a delete took it
    elif op == "clear_some":
        cache.clear(f"churn:{n % 10}*")  # holds the lock for a whole walk of its own
    elif op == "put_many":
        cache.put_many({f"new:{writer}:{i}:{j}": j for j in range(n % 8)} | {old: i})
    else:
        cache.delete_many([old, f"churn:{(n + 1) % max(churn, 1)}"])


@contextmanager
def _tiny_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _walk_with_writers(
    cache: MemoryCache, programs: list[list[tuple[str, int]]], kept: int, churn: int
) -> tuple[list[str], list[Cursor]]:
    """Walk keys() while one thread per program writes; the cursors the walk used."""
    store = cache._store
    cursors: list[Cursor] = []
    make = store.cursor
    reader = threading.get_ident()
    walking = threading.Event()  # the writers start once the walk has taken its start
    stop = threading.Event()

    def recording() -> Cursor:
        cursor = make()
        if threading.get_ident() == reader:  # not the walks of the writers' clear()
            cursors.append(cursor)
            walking.set()
        return cursor

    errors: list[BaseException] = []

    def writer(number: int, program: list[tuple[str, int]]) -> None:
        try:
            walking.wait()
            for i in range(_MAX_OPS):
                if stop.is_set():
                    return
                op, n = program[i % len(program)]
                _write(cache, op, n + i, kept, churn, number, i)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(number, program))
        for number, program in enumerate(programs)
    ]
    seen: list[str] = []
    with patch.object(store, "cursor", recording), _tiny_switch_interval():
        for thread in threads:
            thread.start()
        try:
            seen.extend(cache.keys(None))
        finally:
            stop.set()
            walking.set()  # never leave a writer waiting
            for thread in threads:
                thread.join()
    assert not errors, errors
    return seen, cursors


@pytest.mark.parametrize("policy", _POLICIES)
@settings(max_examples=100, deadline=None)
@given(
    kept=st.integers(0, 150),
    churn=st.integers(0, 150),
    step=st.integers(1, 8),
    slack=st.integers(0, 16),
    tight=st.booleans(),
    programs=st.lists(_PROGRAM, min_size=1, max_size=3),
)
def test_a_walk_under_writer_threads_keeps_its_guarantees(
    policy: str,
    kept: int,
    churn: int,
    step: int,
    slack: int,
    tight: bool,
    programs: list[list[tuple[str, int]]],
) -> None:
    # tight: the store is full, so writes evict (kept keys too): only the bounds hold.
    maxsize = kept + churn + 1 if tight else 100_000
    cache = MemoryCache(maxsize=maxsize, policy=policy, clock=FakeClock())
    with patch.object(walk, "STEP", step), patch.object(walk, "SLACK", slack):
        cache.put_many({f"churn:{i}": i for i in range(churn)})
        for i in range(kept):  # interleaved, so writes land between kept keys
            cache.put(f"keep:{i}", i)
            cache.put(f"churn:{i + churn}", i)
        cache.delete_many([f"churn:{i + churn}" for i in range(0, kept, 2)])  # stale entries
        initial = set(cache.keys(None))
        seen, cursors = _walk_with_writers(cache, programs, kept, churn)

    counts = Counter(seen)
    assert max(counts.values(), default=1) == 1, "a key came twice"
    assert set(seen) <= initial, "a key stored after the walk started came"
    (cursor,) = cursors
    assert cursor.passed <= 2 * len(initial) + slack, "the walk did unbounded work"
    if not tight:
        missed = {f"keep:{i}" for i in range(kept)} - set(seen)
        assert not missed, f"kept keys missed: {sorted(missed)[:5]}"


@pytest.mark.parametrize("policy", _POLICIES)
def test_a_long_walk_under_heavy_churn_passes_each_entry_once(policy: str) -> None:
    """Writers insert, move and delete all along: the walk still passes each entry once."""
    cache = MemoryCache(maxsize=100_000, policy=policy)
    kept = [f"keep:{i}" for i in range(300)]
    cache.put_many(dict.fromkeys(kept, 0))
    programs = [[("new", 0), ("move", 1), ("delete", 2), ("overwrite", 3)]] * 2
    with patch.object(walk, "STEP", 4), patch.object(walk, "SLACK", 0):
        cache._store.log.compact()  # so the writers' insertions compact it again, mid-walk
        seen, (cursor,) = _walk_with_writers(cache, programs, len(kept), 300)
    assert sorted(seen) == sorted(kept)
    assert cursor.passed == len(kept)


def walk_under_endless_churn(policy: str, size: int) -> tuple[int, int, int]:
    """Child process: walk ``size`` keys while a writer churns until the walk has ended.

    The writer never stops by itself: only the end of the walk stops it. Returns the keys
    the walk gave, how many were distinct, and how many writes ran meanwhile.
    """
    sys.setswitchinterval(1e-5)
    cache = MemoryCache(maxsize=4 * size, policy=policy, serialize=False)
    cache.put_many({f"keep:{i}": i for i in range(size)})
    stop = threading.Event()
    writes = [0]

    def churn() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            cache.put(f"new:{i}", i)  # stored after the walk started: never given
            cache.delete(f"new:{i - 50}")  # so the log compacts again and again
            if cache.delete(f"new:{i - 10}"):
                cache.put(f"new:{i - 10}", i)  # removed and stored again
            cache.put(f"keep:{i % size}", i)  # overwritten: still stored throughout
            writes[0] = i

    writer = threading.Thread(target=churn)
    walk = iter(cache.keys(None))
    # The first key is taken before the writer starts: the walk's start is then fixed with
    # only the kept keys stored, so no key the writer stores may come (keys stored before
    # the start and removed during the walk "may or may not" come, which would blur the count).
    seen = [next(walk)]
    writer.start()
    try:
        seen.extend(walk)
    finally:
        stop.set()
        writer.join()
    return len(seen), len(set(seen)), writes[0]


@pytest.mark.parametrize("policy", _POLICIES)
def test_a_walk_ends_under_a_writer_that_only_stops_when_it_does(policy: str) -> None:
    """In a child capped in memory and time: a walk that chased the writer would never end."""
    outcome = run_bounded(walk_under_endless_churn, policy, 20_000, memory_mb=256, seconds=120)
    assert outcome.kind == "value", outcome
    given, distinct, writes = outcome.value
    assert given == distinct == 20_000
    assert writes > 0
