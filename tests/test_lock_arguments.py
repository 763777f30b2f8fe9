"""Lock names and arguments a caller can get wrong, on the memory provider (the rules are
the core's, :mod:`cachehub.lock`; every provider's conformance suite runs the locks)."""

from __future__ import annotations

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
