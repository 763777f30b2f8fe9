"""Memory-provider locks: kept outside the entries, so never evicted, walked or cleared."""

from __future__ import annotations

import uuid

import pytest
from cachehub_memory import MemoryCache

from cachehub.lock import LockTable
from cachehub.testing import FakeClock


@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "rr", "ttl"])
def test_held_locks_are_never_evicted(policy: str) -> None:
    cache = MemoryCache(maxsize=2, policy=policy)
    locks = [cache.lock(f"job{i}", ttl=3600) for i in range(5)]
    for lock in locks:
        assert lock.acquire(blocking=False)
    for i in range(200):  # far beyond maxsize: entries are evicted, locks are not
        cache.put(f"k{i}", i)
    assert cache.count() == 2
    assert all(lock.held for lock in locks)
    assert not any(cache.lock(f"job{i}").acquire(blocking=False) for i in range(5))
    for lock in locks:
        assert lock.release() is True


def test_clear_of_the_whole_store_keeps_locks() -> None:
    cache = MemoryCache()  # namespace "": clear() empties the store in place
    cache.put("a", 1)
    with cache.lock("job", timeout=0) as lock:
        assert cache.clear() == 1
        assert lock.held
    assert cache.lock("job").acquire(blocking=False)


def test_named_store_shares_locks_private_stores_do_not() -> None:
    store = uuid.uuid4().hex
    one, two = MemoryCache(store=store), MemoryCache(store=store)
    alone = MemoryCache()
    with one.lock("job", timeout=0):
        assert two.lock("job").acquire(blocking=False) is False
        alone_lock = alone.lock("job")
        assert alone_lock.acquire(blocking=False)  # a private store: its own locks
        alone_lock.release()


def test_namespaces_holding_nul_never_share_a_lock() -> None:
    # "a" + "lock:x" and "alock:" ... must not meet: locks are keyed (namespace, id).
    store = uuid.uuid4().hex
    short = MemoryCache(store=store, namespace="a")
    long = MemoryCache(store=store, namespace="a\x00lock:")
    with short.lock("\x00lock:x", timeout=0), long.lock("x", timeout=0):
        pass
    with short.lock("x", timeout=0):
        long.clear(include_internal=True)
        assert short.lock("x").acquire(blocking=False) is False


def test_lock_table_stays_bounded() -> None:
    clock = FakeClock(1_000.0)
    cache = MemoryCache(clock=clock)
    table = cache._lock_table()
    for i in range(5000):  # abandoned locks: acquired, never released, then expired
        assert cache.lock(f"job{i}", ttl=1).acquire(blocking=False)
        clock.advance(0.01)
    clock.advance(10)
    for i in range(5000):
        lock = cache.lock(f"other{i}", ttl=1)
        assert lock.acquire(blocking=False)
        lock.release()
    # Swept as the table grows: at most twice the most ever live at once (about 100
    # here: ttl 1 s, one lock per 0.01 s), plus a floor of 64 - not the 5,000 abandoned.
    assert len(table._held) <= 2 * 101 + 64
    assert len(table._released) <= LockTable.RELEASED_MEMORY
