"""Conformance: the reserved internal space (locks are not entries) and lock ownership."""

from __future__ import annotations

import time

import pytest

from cachehub.api import BaseCache
from cachehub.errors import CacheValueError, InvalidKeyError, LockLostError

from .support import CacheFactory, ConformanceBase, Timeline

__all__ = ["LockSpaceTests", "lock_ttl", "outlive"]

_SERVER_TTL = 0.2
"""Seconds a lock lives in expiry tests on providers whose server clock decides (kept
short: these tests must wait for real)."""
_EXPIRY_BOUND = 10.0
"""Most seconds an expiry test waits for a server-clock lock to die (bounded polling)."""


def lock_ttl(cache: BaseCache, timeline: Timeline) -> float:
    """A lock ttl one time unit long, or :data:`_SERVER_TTL` real seconds on server clocks."""
    return _SERVER_TTL if cache.lock_clock == "server" else timeline.span(1)


def outlive(cache: BaseCache, timeline: Timeline, name: str) -> None:
    """Let a lock taken with :func:`lock_ttl` expire: fake time, or bounded real polling."""
    if cache.lock_clock != "server":
        timeline.wait(1.3)
        return
    key = cache._lock_name(f"lock:{name}")
    deadline = time.monotonic() + _EXPIRY_BOUND
    while cache._lock_holder(key, cache._clock()) is not None:
        assert time.monotonic() < deadline, f"lock {name!r} outlived its ttl by {_EXPIRY_BOUND}s"
        time.sleep(0.05)


class LockSpaceTests(ConformanceBase):
    """Locks live in the provider's internal space: never listed, counted or cleared as
    entries, never reachable through a user key; losing one is observable."""

    def test_locks_are_never_listed_or_counted(self, cache: BaseCache) -> None:
        cache.put("user:1", 1)
        with cache.lock("job"), cache.lock("lock:user:2"):
            assert list(cache.keys()) == ["user:1"]
            assert list(cache.keys("*lock*")) == []
            assert cache.count() == 1
            assert cache.get_all() == {"user:1": 1}
            assert cache.exists("lock:job") is False  # the old key shape is no lock

    def test_user_clear_keeps_held_locks(self, cache: BaseCache) -> None:
        cache.put("user:1", 1)
        lock = cache.lock("job")
        assert lock.acquire(blocking=False)
        assert cache.clear() == 1
        assert lock.held
        assert cache.lock("job").acquire(blocking=False) is False
        assert lock.release() is True

    def test_clear_include_internal_removes_locks_observably(self, cache: BaseCache) -> None:
        cache.put("user:1", 1)
        lock = cache.lock("job")
        assert lock.acquire(blocking=False)
        assert cache.clear(include_internal=True) == 1  # entries are what it counts
        assert lock.held is False
        with pytest.raises(LockLostError, match="job"):
            lock.release()
        other = cache.lock("job")
        assert other.acquire(blocking=False)
        other.release()

    def test_clear_include_internal_with_filter_rejected(self, cache: BaseCache) -> None:
        with pytest.raises(CacheValueError, match="include_internal"):
            cache.clear("user:*", include_internal=True)

    def test_clear_include_internal_stays_in_its_namespace(
        self, make_cache: CacheFactory, namespace: str
    ) -> None:
        mine, theirs = make_cache(), make_cache(namespace=namespace + "other:")
        kept = theirs.lock("job")
        assert kept.acquire(blocking=False)
        assert mine.lock("job").acquire(blocking=False)  # another namespace: another lock
        mine.clear(include_internal=True)
        assert kept.held
        kept.release()

    def test_user_keys_shaped_like_lock_keys_do_not_interfere(self, cache: BaseCache) -> None:
        # The old layout kept locks at "lock:<name>" and get_or_set's at "lock:<key>\0fill".
        cache.put("lock:k\x00fill", "planted")
        cache.put("lock:job", "planted")
        cache.put("k\x00fill", "planted")
        assert cache.get_or_set("k", lambda: "computed", lock_timeout=1) == "computed"
        with cache.lock("job", timeout=0):
            assert cache.get("lock:job") == "planted"
        assert cache.get("lock:k\x00fill") == "planted"

    def test_user_lock_does_not_block_get_or_set(self, cache: BaseCache) -> None:
        with cache.lock("k\x00fill", timeout=0), cache.lock("k", timeout=0):
            assert cache.get_or_set("k", lambda: 5, lock_timeout=1) == 5

    def test_lost_lock_is_observable(self, cache: BaseCache, timeline: Timeline) -> None:
        lock = cache.lock("job", ttl=lock_ttl(cache, timeline))
        assert lock.acquire(blocking=False)
        assert cache.lock("job").busy
        outlive(cache, timeline, "job")
        assert lock.held is False
        assert lock.locked  # what it believes, until it asks
        with pytest.raises(LockLostError, match="extend"):
            lock.extend()
        assert lock.release() is False  # extend already found it lost

    def test_release_of_lost_lock_raises(self, cache: BaseCache, timeline: Timeline) -> None:
        lock = cache.lock("job", ttl=lock_ttl(cache, timeline))
        assert lock.acquire(blocking=False)
        outlive(cache, timeline, "job")
        taker = cache.lock("job", ttl=60)
        assert taker.acquire(blocking=False)
        with pytest.raises(LockLostError, match="release"):
            lock.release()
        assert taker.held  # the stale release did not free the new holder's lock
        assert taker.fence is not None
        assert lock.fence is not None
        assert taker.fence > lock.fence
        taker.release()

    def test_context_manager_reports_a_lost_lock(
        self, cache: BaseCache, timeline: Timeline
    ) -> None:
        # The loss surfaces when the block ends: the lock's exit raises inside raises().
        with pytest.raises(LockLostError), cache.lock("job", ttl=lock_ttl(cache, timeline)):
            outlive(cache, timeline, "job")
        with pytest.raises(KeyError), cache.lock("job", ttl=lock_ttl(cache, timeline)):
            outlive(cache, timeline, "job")
            raise KeyError("the block's own error wins over the lost lock")

    def test_extend_keeps_the_lock(self, cache: BaseCache, timeline: Timeline) -> None:
        lock = cache.lock("job", ttl=lock_ttl(cache, timeline))
        assert lock.acquire(blocking=False)
        lock.extend(3600)
        if cache.lock_clock != "server":
            timeline.wait(5)  # long past the first ttl, well within the extension
        assert lock.held
        assert cache.lock("job").acquire(blocking=False) is False
        assert lock.release() is True

    def test_extend_without_acquire_rejected(self, cache: BaseCache) -> None:
        with pytest.raises(CacheValueError, match="not held"):
            cache.lock("job").extend()

    def _count_extends(self, cache: BaseCache, calls: list[float]) -> None:
        """Append the ttl of every lock extension ``cache`` sends to ``calls`` (the async
        suite counts its async primitive instead)."""
        real = cache._lock_extend

        def counting(name: str, token: str, ttl: float, now: float) -> bool:
            calls.append(ttl)
            return real(name, token, ttl, now)

        cache._lock_extend = counting  # type: ignore[method-assign]

    def test_keep_alive_extends_while_the_block_runs(self, cache: BaseCache) -> None:
        lock = cache.lock("job", ttl=30)
        assert lock.acquire(blocking=False)
        calls: list[float] = []
        self._count_extends(cache, calls)
        deadline = time.monotonic() + 10
        with lock.keep_alive(every=0.01):
            while len(calls) < 2:
                assert time.monotonic() < deadline, "keep_alive never extended the lock"
                time.sleep(0.01)
        settled = len(calls)
        time.sleep(0.05)
        assert len(calls) == settled  # the heartbeat stopped with the block
        assert lock.release() is True

    def test_fences_grow_with_every_holder(self, make_cache: CacheFactory, namespace: str) -> None:
        one, two = make_cache(), make_cache(namespace=namespace)
        fences = []
        for cache in (one, two, one, two):
            lock = cache.lock("job")
            assert lock.acquire(blocking=False)
            assert isinstance(lock.fence, int)
            fences.append(lock.fence)
            lock.release()
        assert fences == sorted(set(fences))

    def test_acquire_is_idempotent_for_its_own_token(self, cache: BaseCache) -> None:
        # A retried request (the reply was lost) must succeed, not wait for its own lock.
        key = cache._lock_name("lock:job")
        now = cache._clock()
        fence = cache._lock_acquire(key, "token-a", 30.0, now)
        assert fence is not None
        assert cache._lock_acquire(key, "token-a", 30.0, cache._clock()) == fence
        assert cache._lock_acquire(key, "token-b", 30.0, cache._clock()) is None
        assert cache._lock_holder(key, cache._clock()) == "token-a"

    def test_release_is_idempotent_for_its_own_token(self, cache: BaseCache) -> None:
        key = cache._lock_name("lock:job")
        assert cache._lock_acquire(key, "token-a", 30.0, cache._clock()) is not None
        assert cache._lock_release(key, "token-b", cache._clock()) is False
        assert cache._lock_release(key, "token-a", cache._clock()) is True
        assert cache._lock_release(key, "token-a", cache._clock()) is True  # a retry
        assert cache._lock_holder(key, cache._clock()) is None
        assert cache._lock_extend(key, "token-a", 30.0, cache._clock()) is False

    def test_a_released_token_never_takes_the_lock_again(self, cache: BaseCache) -> None:
        # Its acquire arrived after the release that gave it up (AsyncLock gives back a
        # cancelled, unanswered attempt so): taking the lock then would hold it for nobody.
        key = cache._lock_name("lock:job")
        first = cache._lock_acquire(key, "token-a", 30.0, cache._clock())
        assert first is not None
        assert cache._lock_release(key, "token-a", cache._clock()) is True
        assert cache._lock_acquire(key, "token-a", 30.0, cache._clock()) is None
        assert cache._lock_holder(key, cache._clock()) is None
        second = cache._lock_acquire(key, "token-b", 30.0, cache._clock())
        assert second is not None
        assert second > first  # others take it as before
        assert cache._lock_release(key, "token-b", cache._clock()) is True

    @pytest.mark.parametrize("name", [123, b"job", None, ""])
    def test_bad_lock_names_rejected(self, cache: BaseCache, name: object) -> None:
        with pytest.raises(InvalidKeyError):
            cache.lock(name)  # type: ignore[arg-type]

    def test_lone_surrogate_lock_name_rejected(self, cache: BaseCache) -> None:
        with pytest.raises(InvalidKeyError, match="surrogate"):
            cache.lock("job\ud800")

    @pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "30", 10**400])
    def test_bad_lock_ttl_rejected(self, cache: BaseCache, ttl: object) -> None:
        with pytest.raises(CacheValueError, match="lock ttl"):
            cache.lock("job", ttl=ttl)  # type: ignore[arg-type]

    @pytest.mark.parametrize("timeout", [float("nan"), "5", True])
    def test_bad_lock_timeout_rejected(self, cache: BaseCache, timeout: object) -> None:
        with pytest.raises(CacheValueError, match="timeout"):
            cache.lock("job", timeout=timeout)  # type: ignore[arg-type]

    def test_huge_and_unicode_lock_names_are_distinct_locks(self, cache: BaseCache) -> None:
        huge = "n" * 100_000
        names = [huge, huge[:-1] + "m", "ключ", "键", "a\x00b", "a\x00c", "*", "?[x]"]
        locks = [cache.lock(n) for n in names]
        for lock in locks:
            assert lock.acquire(blocking=False)
        assert list(cache.keys()) == []
        for name in names:
            assert cache.lock(name).acquire(blocking=False) is False
        for lock in locks:
            assert lock.release() is True
