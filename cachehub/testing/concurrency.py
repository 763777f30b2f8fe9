"""Conformance: locks and single-flight get_or_set."""

from __future__ import annotations

import threading
import time

import pytest

from cachehub.api import MISSING, BaseCache
from cachehub.errors import CacheValueError, LockLostError, LockTimeoutError

from .lockspace import lock_ttl, outlive
from .support import CacheFactory, ConformanceBase, Timeline, run_threads

__all__ = ["GetOrSetTests", "LockTests"]


class LockTests(ConformanceBase):
    """``cache.lock(name)``: mutual exclusion, timeouts and owner-only release."""

    def test_acquire_and_release(self, cache: BaseCache) -> None:
        lock = cache.lock("job")
        assert lock.acquire() is True
        assert lock.locked
        assert lock.release() is True
        assert not lock.locked

    def test_second_lock_cannot_acquire_while_held(self, cache: BaseCache) -> None:
        first, second = cache.lock("job"), cache.lock("job")
        assert first.acquire(blocking=False)
        assert second.acquire(blocking=False) is False
        first.release()
        assert second.acquire(blocking=False) is True
        second.release()

    def test_locks_with_different_names_are_independent(self, cache: BaseCache) -> None:
        with cache.lock("a", timeout=0), cache.lock("b", timeout=0):
            assert cache.lock("c").acquire(blocking=False)

    def test_lock_across_instances(self, make_cache: CacheFactory, namespace: str) -> None:
        one, two = make_cache(), make_cache(namespace=namespace)
        with one.lock("shared", timeout=0):
            assert two.lock("shared").acquire(blocking=False) is False
        lock = two.lock("shared")
        assert lock.acquire(blocking=False) is True
        lock.release()

    def test_timeout_raises_lock_timeout_error(self, cache: BaseCache) -> None:
        holder = cache.lock("job")
        holder.acquire()
        try:
            with pytest.raises(LockTimeoutError, match="job"), cache.lock("job", timeout=0.05):
                pytest.fail("acquired a lock that is held")
            with pytest.raises(TimeoutError):  # LockTimeoutError is a TimeoutError
                cache.lock("job", timeout=0.01).__enter__()
        finally:
            holder.release()

    def test_acquire_with_timeout_returns_false(self, cache: BaseCache) -> None:
        with cache.lock("job"):
            assert cache.lock("job").acquire(timeout=0.05) is False

    def test_blocking_acquire_waits_for_release(self, cache: BaseCache) -> None:
        holder = cache.lock("job")
        holder.acquire()
        acquired = threading.Event()
        waiter = cache.lock("job", poll=0.005)

        def wait_for_it() -> None:
            if waiter.acquire(timeout=10):
                acquired.set()

        thread = threading.Thread(target=wait_for_it)
        thread.start()
        # While the holder keeps it, the waiter must not get in.
        assert acquired.wait(0.1) is False
        holder.release()
        thread.join(10)
        assert acquired.is_set()
        assert waiter.release() is True

    def test_context_manager_releases_on_error(self, cache: BaseCache) -> None:
        with pytest.raises(ValueError, match="inside"), cache.lock("job", timeout=1):
            raise ValueError("inside")
        assert cache.lock("job").acquire(blocking=False) is True

    def test_release_only_by_owner(self, cache: BaseCache) -> None:
        owner, intruder = cache.lock("job"), cache.lock("job")
        owner.acquire()
        assert intruder.release() is False  # never acquired: nothing to release
        assert cache.lock("job").acquire(blocking=False) is False
        assert owner.release() is True

    def test_release_twice(self, cache: BaseCache) -> None:
        lock = cache.lock("job")
        lock.acquire()
        assert lock.release() is True
        assert lock.release() is False

    def test_acquire_twice_on_same_object_rejected(self, cache: BaseCache) -> None:
        lock = cache.lock("job")
        lock.acquire()
        try:
            with pytest.raises(CacheValueError):
                lock.acquire(blocking=False)
        finally:
            lock.release()

    def test_invalid_poll_rejected(self, cache: BaseCache) -> None:
        with pytest.raises(CacheValueError):
            cache.lock("job", poll=0)

    def test_expired_lock_is_taken_over(self, cache: BaseCache, timeline: Timeline) -> None:
        first = cache.lock("job", ttl=lock_ttl(cache, timeline))
        assert first.acquire(blocking=False)
        outlive(cache, timeline, "job")
        second = cache.lock("job", ttl=3600)
        assert second.acquire(blocking=False) is True
        # The first owner's late release must not delete the second owner's lock.
        with pytest.raises(LockLostError):
            first.release()
        assert cache.lock("job").acquire(blocking=False) is False
        assert second.release() is True
        assert cache.lock("job").acquire(blocking=False) is True

    def test_mutual_exclusion_under_threads(self, cache: BaseCache) -> None:
        rounds = 10
        shared = {"value": 0}
        cache.put("counter", 0)

        def work(_: int) -> None:
            for _ in range(rounds):
                with cache.lock("counter", timeout=30, poll=0.005):
                    # Deliberately non-atomic read-modify-write: only the lock saves it.
                    current = shared["value"]
                    stored = cache.get("counter")
                    time.sleep(0)
                    shared["value"] = current + 1
                    cache.put("counter", stored + 1)

        run_threads(self.thread_count, work)
        assert shared["value"] == self.thread_count * rounds
        assert cache.get("counter") == self.thread_count * rounds


class GetOrSetTests(ConformanceBase):
    """``get_or_set``: compute once, cache the result, propagate failures."""

    def test_computes_when_missing(self, cache: BaseCache) -> None:
        assert cache.get_or_set("k", lambda: [1, 2]) == [1, 2]
        assert cache.get("k") == [1, 2]

    def test_returns_cached_without_calling(self, cache: BaseCache) -> None:
        cache.put("k", "cached")

        def creator() -> str:
            pytest.fail("creator called although the key is cached")

        assert cache.get_or_set("k", creator) == "cached"

    def test_none_result_is_cached(self, cache: BaseCache) -> None:
        calls: list[int] = []

        def creator() -> None:
            calls.append(1)

        assert cache.get_or_set("k", creator) is None
        assert cache.get_or_set("k", creator) is None
        assert len(calls) == 1
        assert cache.get("k", MISSING) is None

    def test_falsy_result_is_cached(self, cache: BaseCache) -> None:
        calls: list[int] = []

        def creator() -> int:
            calls.append(1)
            return 0

        assert cache.get_or_set("k", creator) == 0
        assert cache.get_or_set("k", creator) == 0
        assert len(calls) == 1

    def test_exception_propagates_and_stores_nothing(self, cache: BaseCache) -> None:
        def creator() -> int:
            raise LookupError("backend down")

        with pytest.raises(LookupError, match="backend down"):
            cache.get_or_set("k", creator)
        assert cache.exists("k") is False
        assert cache.get_or_set("k", lambda: 7) == 7  # a later call computes again

    def test_creator_called_once_under_threads(self, cache: BaseCache) -> None:
        calls: list[int] = []

        def creator() -> dict[str, int]:
            calls.append(1)
            time.sleep(0.05)  # widen the window in which other threads would also compute
            return {"answer": 42}

        results = run_threads(self.thread_count, lambda _: cache.get_or_set("k", creator))
        assert len(calls) == 1
        assert results == [{"answer": 42}] * self.thread_count

    def test_different_keys_compute_independently(self, cache: BaseCache) -> None:
        results = run_threads(
            self.thread_count, lambda i: cache.get_or_set(f"k{i}", lambda: i * 10)
        )
        assert results == [i * 10 for i in range(self.thread_count)]
        assert cache.count() == self.thread_count

    def test_exception_under_threads_reaches_every_caller(self, cache: BaseCache) -> None:
        calls: list[int] = []

        def creator() -> int:
            calls.append(1)
            raise LookupError("nope")

        def call(_: int) -> str:
            try:
                cache.get_or_set("k", creator)
            except LookupError:
                return "raised"
            return "returned"

        assert run_threads(self.thread_count, call) == ["raised"] * self.thread_count
        assert cache.exists("k") is False
        assert 1 <= len(calls) <= self.thread_count
