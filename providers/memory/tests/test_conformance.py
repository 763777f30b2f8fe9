"""The memory provider passes the shared conformance suite, under every eviction policy."""

from __future__ import annotations

import sys
import threading
import uuid
from datetime import timedelta
from types import FrameType
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.testing import CacheConformance
from cachehub.testing.asyncshell import CPU_PER_CALLBACK, AsyncConformance, flags_cpu

# Every policy changes how entries are kept (ttl also drops expired entries itself and
# must be told when a read slides a deadline), so each runs the whole suite.
POLICIES = ["lru", "lfu", "fifo", "rr", "ttl"]


class TestMemoryConformance(CacheConformance):
    @pytest.fixture(params=POLICIES)
    def policy(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def cache_factory(self, policy: str) -> Any:
        # Instances of one test share a named in-process store, like caches on one server.
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, policy=policy, **kw)


class TestMemoryConformanceObserved(CacheConformance):
    """With an operation observer every call takes BaseCache's general path instead of
    MemoryCache's get/put fast paths, so the suite checks both."""

    @pytest.fixture
    def cache_factory(self) -> Any:
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, observer=lambda _event: None, **kw)


class TestMemoryAsyncConformance(AsyncConformance, CacheConformance):
    """The whole suite again through ``cache.aio()`` (default policy only: CI time)."""

    @pytest.fixture
    def cache_factory(self) -> Any:
        store = uuid.uuid4().hex
        return lambda **kw: MemoryCache(store=store, **kw)


# --- add() under a forced interleaving --------------------------------------------------
#
# A missing lock around add()'s check-then-store is a window of a few bytecodes: even with
# a 1 µs switch interval, two threads almost never land in it at once, so the suite's
# thread rounds catch it only by chance. Here the window is held open deterministically,
# with no seam in the provider: a sys.settrace hook in thread A pauses it when MemoryCache
# ._add calls _store_record (the existence check has said "absent"; nothing is stored
# yet), and only then does thread B run its own add. An atomic add holds the store's lock
# across that window, so B has to wait for it; the lock is watched through a stand-in that
# acquires the same RLock and reports a wait. Either B waits or B finishes: both happen in
# a bounded number of steps, so the test never depends on timing. BOUND only guards
# against a hang if the provider changes shape (then the test fails and says why).

BOUND = 10.0


class _WatchedLock:
    """The store's RLock, re-entered through this object, which reports any wait for it."""

    def __init__(self, lock: Any, waited: threading.Event) -> None:
        self._lock = lock
        self._waited = waited

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self._waited.set()
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> _WatchedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _watch(cache: MemoryCache, waited: threading.Event) -> MemoryCache:
    watched = _WatchedLock(cache._lock, waited)
    cache._lock = watched  # type: ignore[assignment]
    cache._acquire = watched.acquire  # type: ignore[method-assign]
    cache._release = watched.release  # type: ignore[method-assign]
    return cache


class TestMemoryAddRace:
    """Two adds of one key race with the first paused inside its check-then-store window."""

    @pytest.mark.parametrize("policy", ["lru", "ttl"])
    @pytest.mark.parametrize("entry", ["absent", "dead", "other instance"])
    def test_add_is_atomic_under_forced_interleaving(self, policy: str, entry: str) -> None:
        now = [1_000_000.0]
        store = uuid.uuid4().hex
        waited, paused, resume, b_settled = (threading.Event() for _ in range(4))
        one = _watch(MemoryCache(store=store, policy=policy, clock=lambda: now[0]), waited)
        two = one
        if entry == "other instance":
            # A second cache on the same named store: it shares the store's lock.
            two = _watch(MemoryCache(store=store, policy=policy, clock=lambda: now[0]), waited)
        if entry == "dead":
            # Both adds see an expired entry: each must treat the key as free, once.
            one.put("k", "old", time_span=timedelta(seconds=5))
            now[0] += 5
        results: dict[str, bool | BaseException] = {}
        store_code, add_code = MemoryCache._store_record.__code__, MemoryCache._add.__code__

        def pause_before_store(frame: FrameType, event: str, _arg: object) -> None:
            caller = frame.f_back
            if event != "call" or frame.f_code is not store_code or caller is None:
                return
            if caller.f_code is add_code:
                paused.set()
                resume.wait(BOUND)

        def first() -> None:
            sys.settrace(pause_before_store)
            try:
                results["a"] = one.add("k", "a")
            except BaseException as exc:  # reported by the assertions below
                results["a"] = exc
            finally:
                sys.settrace(None)

        def second() -> None:
            try:
                results["b"] = two.add("k", "b")
            except BaseException as exc:
                results["b"] = exc
            finally:
                b_settled.set()

        waited.clear()  # the put above may not have waited, but start from a clean slate
        a, b = threading.Thread(target=first), threading.Thread(target=second)
        # Settles the race once B has to wait for the lock A holds (B's end settles it too).
        watcher = threading.Thread(target=lambda: waited.wait(BOUND) and b_settled.set())
        a.start()
        try:
            assert paused.wait(BOUND), (
                "add() never called _store_record from _add: the pause point of this test "
                "is gone; make it pause between the existence check and the store again"
            )
            b.start()
            watcher.start()
            assert b_settled.wait(BOUND), (
                "the second add neither finished nor waited for the store's lock: it "
                "blocks on something this test does not watch"
            )
            b_finished_while_a_paused = "b" in results
        finally:
            resume.set()
            waited.set()  # ends the watcher whatever happened
            for thread in (a, b, watcher):
                if thread.ident is not None:
                    thread.join(BOUND)
        assert not a.is_alive(), "the first add did not finish after resuming"
        assert not b.is_alive(), "the second add did not finish after resuming"
        assert not b_finished_while_a_paused, (
            f"add is not atomic: a second add ran to the end ({results['b']!r}) while the "
            "first was between its existence check and its store"
        )
        assert results == {"a": True, "b": False}, f"exactly the first add must store: {results}"
        assert one.get("k") == "a"
        assert two.get("k") == "a"


def test_the_async_suite_fails_a_callback_that_computes_past_its_limit() -> None:
    # The default limit (a shared machine's noise stays under it); waits fail at any length.
    limit = TestMemoryAsyncConformance.slow_callback_limit
    assert limit == CPU_PER_CALLBACK
    assert flags_cpu(limit, 1.5 * limit)
    assert not flags_cpu(limit, 0.005)
