"""Lock names and arguments a caller can get wrong, on the memory provider (the rules are
the core's, :mod:`cachehub.lock`; every provider's conformance suite runs the locks)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.errors import CacheValueError
from cachehub.lock import MAX_LOCK_ID, lock_id


def test_a_name_spelled_like_a_hashed_id_is_another_lock() -> None:
    # On main "sha256:<hex of a long name>" and that long name were one lock.
    long_name = "L" * 300
    spelled = "sha256:" + hashlib.sha256(long_name.encode()).hexdigest()
    assert lock_id("lock", long_name) != lock_id("lock", spelled)
    cache = MemoryCache({})
    first = cache.lock(long_name, timeout=0)
    assert first.acquire(blocking=False)
    assert cache.lock(spelled, timeout=0).acquire(blocking=False)
    first.release()


@pytest.mark.parametrize("name", ["job", "é" * 10, "x" * (MAX_LOCK_ID - 5), "a:sha256:b"])
def test_other_names_keep_their_ids(name: str) -> None:
    ident = lock_id("lock", name)
    if len(ident) <= MAX_LOCK_ID:
        assert ident == f"lock:{name}"


@pytest.mark.parametrize(
    "every", [float("inf"), 10**9, 30, 31.5, 0, -1, float("nan"), "1", True, None.__class__]
)
def test_a_keep_alive_interval_the_lock_cannot_live_through_is_refused(every: Any) -> None:
    # On main inf and 10**9 killed the heartbeat thread (OverflowError) and the lock was
    # lost silently; "1" raised a raw TypeError; True beat every second.
    cache = MemoryCache({})
    lock = cache.lock("job", ttl=30, timeout=0)
    assert lock.acquire(blocking=False)
    with pytest.raises(CacheValueError, match="keep_alive interval"), lock.keep_alive(every=every):
        pass
    assert lock.held
    lock.release()


def test_a_keep_alive_inside_the_ttl_is_taken() -> None:
    cache = MemoryCache({})
    lock = cache.lock("job", ttl=30, timeout=0)
    assert lock.acquire(blocking=False)
    with lock.keep_alive(every=29.5):
        assert lock.held
    lock.release()


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), "30"])
def test_a_bad_lock_ttl_never_suggests_none_means_no_expiry(ttl: Any) -> None:
    # On main the hint said "or lock ttl=None for no expiry"; None is the 30 s default.
    cache = MemoryCache({})
    with pytest.raises(CacheValueError) as info:
        cache.lock("job", ttl=ttl)
    assert "no expiry" not in str(info.value)
    assert "30 s" in (info.value.hint or "")


def _hint(call: Any) -> str:
    with pytest.raises(CacheValueError) as info:
        call()
    return info.value.hint or ""


@pytest.mark.parametrize(
    "bad", [0, -1, float("inf"), 10**400, "5"], ids=["0", "-1", "inf", "huge", "str"]
)
def test_each_duration_hint_says_what_none_means_for_that_argument(bad: Any) -> None:
    # On main every duration's hint offered "None for no expiry" (or "an entry that never
    # expires"): false for a lock's extend (its own ttl), the lock wait (no limit), idle_time.
    cache = MemoryCache({})
    assert "None for an entry that never expires" in _hint(lambda: cache.put("k", 1, time_span=bad))
    assert "None for no idle expiry" in _hint(lambda: cache.put("k", 1, idle_time=bad))
    assert "None for the default, 30 s" in _hint(lambda: cache.lock("job", ttl=bad))
    lock = cache.lock("job", timeout=0)
    assert lock.acquire(blocking=False)
    assert "None for the lock's own ttl" in _hint(lambda: lock.extend(bad))
    lock.release()


def test_a_huge_poll_interval_is_not_told_about_timeout() -> None:
    # On main a poll of 10**400 was told "or timeout=None to wait as long as it takes".
    cache = MemoryCache({})
    assert "timeout" not in _hint(lambda: cache.lock("job", poll=10**400))
    assert "timeout=None" in _hint(lambda: cache.lock("job", timeout=10**400))


@pytest.mark.parametrize("bad", [None, 0, float("nan"), "30"])
def test_get_or_set_has_no_unset_lock_timeout(bad: Any) -> None:
    # On main lock_timeout=None passed the check and made the fill lock wait without
    # limit, while the hints offered None as "no expiry".
    cache = MemoryCache({})
    hint = _hint(lambda: cache.get_or_set("k", lambda: 1, lock_timeout=bad))
    assert "None" not in hint
    assert cache.get("k") is None


def test_async_get_or_set_has_no_unset_lock_timeout() -> None:
    shell = MemoryCache({}).aio()

    async def fill() -> object:
        return await shell.get_or_set("k", lambda: 1, lock_timeout=None)  # type: ignore[arg-type]

    with pytest.raises(CacheValueError, match="lock_timeout must be"):
        asyncio.run(asyncio.wait_for(fill(), 30))
