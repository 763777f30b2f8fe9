"""Caches built and used in a parent keep working in a forked child (gunicorn --preload,
multiprocessing's fork), on per-process state of the child's own.

Before, nothing was reset at fork: a child read DynamoDB replies meant for its parent on
a shared keep-alive connection, reads counted before the fork were written back by every
process, and a child's ``get_or_set`` waited forever for a flight whose creator was a
parent thread. Each child reports through a pipe and ends with ``os._exit``; the parent
waits a bounded time and kills a child that hangs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from test_provider import FakeRemote

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


def in_child(work: Callable[[], Any], deadline: float = 20.0) -> Any:
    """``work()`` in a forked child; its JSON result, or a failure if it hangs."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 0
        try:
            os.close(read)
            os.write(write, json.dumps({"ok": work()}).encode())
        except BaseException as exc:
            os.write(write, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    ends = time.monotonic() + deadline
    while time.monotonic() < ends:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        pytest.fail(f"the forked child hung for {deadline} s")
    with os.fdopen(read, "rb") as pipe:
        report = json.loads(pipe.read() or b'{"error": "no report"}')
    assert "error" not in report, report["error"]
    return report["ok"]


@contextlib.contextmanager
def held_by_a_parent_thread(lock: Any) -> Iterator[None]:
    """``lock`` held by another thread of this process for the block."""
    held, finish = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            finish.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        finish.set()
        thread.join(10)


def test_a_child_makes_its_own_client_and_never_writes_the_parents_counted_reads() -> None:
    cache = FakeRemote(hitCounts=True, hitFlushInterval=60)
    cache.put("k", 1)
    for _ in range(10):
        cache.get("k")
    parent = cache._conn
    assert cache.pending_hits() == 1

    def child() -> list[Any]:
        state = [cache.pending_hits(), cache._conn is None]
        cache.get("k")
        state.append(cache._conn is not parent)
        cache.close()  # writes back the child's one read, not the parent's ten
        state.append([{k: p.hits for k, p in w.items()} for w in cache.written])
        return state

    assert in_child(child) == [0, True, True, [{"k": 1}]]
    assert cache.pending_hits() == 1  # the parent's reads are the parent's to write
    assert cache._conn is parent
    cache.close()
    assert [{k: p.hits for k, p in w.items()} for w in cache.written] == [{"k": 10}]


def test_a_child_does_not_wait_for_a_flight_whose_creator_is_a_parent_thread() -> None:
    cache = MemoryCache()
    inside, finish = threading.Event(), threading.Event()

    def slow() -> str:
        inside.set()
        assert finish.wait(30)
        return "parent"

    creator = threading.Thread(target=lambda: cache.get_or_set("k", slow))
    creator.start()
    try:
        assert inside.wait(10)
        assert in_child(lambda: cache.get_or_set("k", lambda: "child")) == "child"
    finally:
        finish.set()
        creator.join(10)
    assert cache.get("k") == "parent"


@pytest.mark.skipif(sys.platform != "linux", reason="fork with threads: Linux only here")
def test_every_cache_of_the_process_is_reset_in_the_child() -> None:
    caches = [FakeRemote(namespace=f"n{i}:") for i in range(3)]
    for cache in caches:
        cache.put("k", 1)
    assert in_child(lambda: [c._conn is None for c in caches]) == [True, True, True]
    assert all(c._conn is not None for c in caches)


@pytest.mark.skipif(sys.platform != "linux", reason="fork with threads: Linux only here")
def test_a_memory_store_locked_by_a_parent_thread_at_fork_works_in_the_child() -> None:
    """The child inherited the store's lock held by a thread it does not have: its next
    call hung for good. Two caches share the store: both are rebound."""
    cache = MemoryCache(store="fork-shared")
    other = MemoryCache(store="fork-shared", namespace="o:")
    cache.put("k", 1)

    def child() -> list[Any]:
        cache.put("c", 2)
        other.put("c", 3)
        return [cache.get("k"), cache.get("c"), other.get("c"), cache._lock is other._lock]

    with held_by_a_parent_thread(cache._lock):  # inside a call
        assert in_child(child) == [1, 2, 3, True]
    assert cache.get("c") is None  # the child's writes were its own


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("cachehub_redis.connection", "_shared_lock"),  # held while a cluster client is built
        ("cachehub_dynamodb.client", "_SESSION_LOCK"),  # held while a botocore client is built
    ],
)
def test_a_module_lock_held_by_a_parent_thread_at_fork_is_free_in_the_child(
    module: str, name: str
) -> None:
    """The child inherited the lock held by a thread it does not have: its first client
    build (a cluster's, any DynamoDB client) hung for good."""
    lock = getattr(pytest.importorskip(module), name)

    def child() -> bool:
        taken = lock.acquire(timeout=5)
        if taken:
            lock.release()
        return bool(taken)

    with held_by_a_parent_thread(lock):  # building a client
        assert in_child(child) is True
        assert lock.locked()  # the parent's thread still holds its own


def test_a_fork_safe_lock_is_free_in_the_child_and_works_there() -> None:
    from cachehub.provider import fork_safe_lock

    lock = fork_safe_lock()
    lock.acquire()
    try:

        def child() -> list[bool]:
            first = lock.acquire(timeout=5)
            second = lock.acquire(timeout=0.05)  # still a lock: held now
            lock.release()
            return [first, second]

        assert in_child(child) == [True, False]
    finally:
        lock.release()
