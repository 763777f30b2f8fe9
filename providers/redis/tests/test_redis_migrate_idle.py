"""An idle entry restored (migrated) into Redis dies when its original would.

``restore`` stamps the copy with the original's last access; the server counts ``PX``
from when it receives it. Measured from that old stamp, the copy got its whole idle time
again from the moment it was written and outlived its original by the time it had been
idle (on main). These run on the server's clock (no ``clock=``), where the bug was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from cachehub_memory import MemoryCache
from cachehub_redis import RedisCache
from redis import Redis

import cachehub
from cachehub.api import Entry
from cachehub.testing import FakeClock

Make = Callable[..., RedisCache]
IDLE = 8.0


def _idle_entry(idle_for: float, expires_in: float | None = None) -> Entry:
    """An entry idle for ``idle_for`` seconds now, with ``IDLE`` seconds of idle time."""
    now = time.time()
    expires_at = None if expires_in is None else now + expires_in
    return Entry("v", now - 60, now - 60, now - idle_for, 0, expires_at, IDLE)


def _pttl(plain: Redis, cache: RedisCache, key: str) -> float:
    return int(plain.pttl(cache.namespace + key)) / 1000


@pytest.mark.parametrize("cap", [None, 600.0], ids=["idle", "idle-and-cap"])
def test_a_restored_idle_entry_keeps_only_its_remaining_idle_time(
    make_cache: Make, plain: Redis, cap: float | None
) -> None:
    cache = make_cache()
    assert cache.restore("k", _idle_entry(5, cap))
    assert 2.5 < _pttl(plain, cache, "k") <= 3.0  # 8 s idle, 5 s of it gone: 3 s left
    copy = cache.peek("k")
    assert copy is not None
    assert copy.deadline() == pytest.approx(time.time() + 3, abs=0.5)
    # Redis's own idle semantics stay: a read slides it by the whole idle time.
    assert cache.get("k") == "v"
    assert IDLE - 0.5 < _pttl(plain, cache, "k") <= IDLE


def test_a_restored_cap_is_placed_where_the_originals_was(make_cache: Make, plain: Redis) -> None:
    """The absolute cap (the script's ``server_cap``) was measured from the old stamp too:
    1 s idle, 4 s to the cap, and the copy's cap landed 5 s away. A read's slide is cut
    to what is left of the cap."""
    cache = make_cache()
    assert cache.restore("k", _idle_entry(1, expires_in=4))
    assert 3.5 < _pttl(plain, cache, "k") <= 4.0
    assert cache.get("k") == "v"
    assert 3.5 < _pttl(plain, cache, "k") <= 4.0  # not IDLE: the cap is 4 s away


def test_the_async_shell_restores_the_remaining_idle_time(make_cache: Make, plain: Redis) -> None:
    cache = make_cache()

    async def restore() -> bool:
        return await cache.aio().restore("k", _idle_entry(5))

    assert asyncio.run(restore())
    assert 2.5 < _pttl(plain, cache, "k") <= 3.0


def test_a_migrated_idle_entry_dies_when_its_original_would(make_cache: Make, plain: Redis) -> None:
    source = MemoryCache(name="src", clock=FakeClock(time.time() - 5))
    source.put("sess", "v", idle_time=IDLE)
    source.put("both", "v", time_span=600, idle_time=IDLE)
    target = make_cache()
    report = cachehub.migrate(source, target, verify=False)
    assert (report.copied, report.idle) == (2, 2)
    for key in ("sess", "both"):
        # 3 s left at the source, rounded down to the second by migrate: 2 to 3 s.
        assert 1.5 < _pttl(plain, target, key) <= 3.0, key
