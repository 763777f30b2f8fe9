"""What one incr costs on the server (issue #17 item 4, docs/redis.md "Counters"): the
commands inside its single EVALSHA, with and without the request record, counted exactly
from INFO commandstats, and the lean script's edge cases (the size check without STRLEN)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.entry import HEADER_SIZE, KIND_INT, pack
from redis import Redis

from cachehub.errors import CacheValueError, CorruptEntryError


def _calls(client: Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        # The record: GETRANGE of its first 10 bytes (a re-send's replay check, bounded)
        # and SET PX (this call's outcome).
        (2, {"evalsha": 1, "getrange": 2, "bitfield": 1, "set": 1, "info": 1}),
        (0, {"evalsha": 1, "getrange": 1, "bitfield": 1, "info": 1}),  # nothing re-sends
    ],
)
def test_incr_of_a_live_counter_is_these_commands_and_no_more(
    make_cache: Callable[..., RedisCache], plain: Redis, retries: int, expected: dict[str, int]
) -> None:
    cache = make_cache(retries=retries)
    cache.incr("n")  # loads the script, creates the counter
    before = _calls(plain)
    assert cache.incr("n", 41) == 42
    assert _delta(before, _calls(plain)) == expected


@pytest.mark.parametrize("size", [0, 1, 7, 9, 16, 1000])
def test_the_size_check_without_strlen_refuses_every_wrong_size(
    make_cache: Callable[..., RedisCache], plain: Redis, size: int
) -> None:
    # One GETRANGE of HEAD + 9 bytes tells "exactly 8 value bytes": a value of 9 or 1000
    # bytes reads as 9, a short one as itself. Each must be refused with its real size.
    cache = make_cache()
    key = f"{cache.namespace}n"
    planted = pack(KIND_INT, b"\x01" * size, 1.0e9, 1.0e9, None, None)
    plain.set(key, planted)
    with pytest.raises(CorruptEntryError, match=f"holds {size} bytes, not 8"):
        cache.incr("n")
    assert plain.get(key) == planted


def test_a_stub_shorter_than_a_header_is_replaced_by_a_fresh_counter(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    # The magic byte and the int kind but fewer than HEADER_SIZE bytes: not an entry (as
    # get says), so incr starts a counter over it, as it does over any foreign string.
    cache = make_cache()
    key = f"{cache.namespace}n"
    plain.set(key, pack(KIND_INT, b"", 1.0, 1.0, None, None)[: HEADER_SIZE - 1])
    assert cache.get("n") is None
    assert cache.incr("n", 5) == 5
    assert cache.get("n") == 5


def test_overflow_leaves_the_counter_and_its_stamp_as_they_were(
    make_cache: Callable[..., RedisCache], plain: Redis
) -> None:
    cache = make_cache()
    cache.put("n", 2**63 - 2)
    key = f"{cache.namespace}n"
    stored = plain.get(key)
    with pytest.raises(CacheValueError, match="would not fit"):
        cache.incr("n", 5)
    assert plain.get(key) == stored
    assert cache.incr("n", 1) == 2**63 - 1
