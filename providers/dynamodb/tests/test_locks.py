"""DynamoDB locks: marked internal items, writer-clock deadlines and fencing under skew."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.cache import LOCK_GRACE
from cachehub_dynamodb.items import internal_key

from cachehub.errors import CorruptEntryError, InvalidKeyError, LockLostError
from cachehub.testing import FakeClock

from .conftest import RequestCounter

Make = Callable[..., DynamoDBCache]
T0 = 1_800_000_000.0
TTL = 8.0


def _pair(make: Make, skew: float) -> tuple[DynamoDBCache, DynamoDBCache, FakeClock, FakeClock]:
    """Two "processes" on one table whose clocks differ by ``skew`` seconds."""
    mine, theirs = FakeClock(T0), FakeClock(T0 + skew)
    return make(namespace="p:", clock=mine), make(namespace="p:", clock=theirs), mine, theirs


def _advance(seconds: float, *clocks: FakeClock) -> None:
    for clock in clocks:
        clock.advance(seconds)


@pytest.mark.parametrize(
    ("skew", "early", "on_time"),
    [
        # The documented bound: with clocks S seconds apart, a lock of ttl T may be
        # taken over after T - S seconds of real time, never earlier; a lagging rival
        # waits T + S.
        (5.0, 2.9, 3.0),
        (-5.0, 12.9, 13.0),
        (0.0, 7.9, 8.0),
        (9.0, None, 0.0),  # skew beyond the ttl: the lock protects nothing
    ],
)
def test_takeover_under_skew_obeys_the_documented_bound(
    make: Make, skew: float, early: float | None, on_time: float
) -> None:
    holder, rival, mine, theirs = _pair(make, skew)
    first = holder.lock("job", ttl=TTL)
    assert first.acquire(blocking=False)
    if early is not None:
        _advance(early, mine, theirs)
        assert rival.lock("job", ttl=TTL).acquire(blocking=False) is False
        _advance(on_time - early, mine, theirs)
    else:
        _advance(on_time, mine, theirs)
    taker = rival.lock("job", ttl=TTL)
    assert taker.acquire(blocking=False)
    # The stale holder finds out, and its fence is older than the taker's.
    assert taker.fence is not None
    assert first.fence is not None
    assert taker.fence > first.fence
    # By its own clock the stale holder's ttl has not run out, yet held asks the
    # table, which names the taker: the loss is visible before any release.
    assert first.locked
    assert not first.held
    with pytest.raises(LockLostError):
        first.release()
    assert taker.release() is True


def test_a_fenced_resource_refuses_the_stale_holder(make: Make) -> None:
    holder, rival, mine, theirs = _pair(make, 5.0)
    highest = {"fence": 0}
    writes: list[str] = []

    def write(fence: int | None, what: str) -> bool:  # the resource the lock guards
        assert fence is not None
        if fence < highest["fence"]:
            return False
        highest["fence"] = fence
        writes.append(what)
        return True

    stale = holder.lock("job", ttl=TTL)
    assert stale.acquire(blocking=False)
    _advance(3.0, mine, theirs)  # the rival's clock says the lock expired
    fresh = rival.lock("job", ttl=TTL)
    assert fresh.acquire(blocking=False)
    assert write(fresh.fence, "fresh") is True
    assert write(stale.fence, "stale") is False
    assert writes == ["fresh"]


def test_item_layout(make: Make) -> None:
    clock = FakeClock(T0)
    cache = make(namespace="lay:", clock=clock)
    with cache.lock("job", ttl=30, timeout=0) as lock:
        pk, original = internal_key("lay:", "lay:lock:job")
        item = cache.client.get_item(TableName=cache.table_name, Key={"cacheKey": {"S": pk}})[
            "Item"
        ]
        assert pk.startswith("lay:sha256:")
        assert original == "lay:\x00lock:job"
        assert item["cachehubInternal"] == {"S": "lock"}
        assert item["originalKey"] == {"S": original}
        assert item["lockHolder"] == {"S": lock.token}
        assert float(item["lockUntil"]["N"]) == T0 + 30
        assert int(item["lockFence"]["N"]) == lock.fence
        assert int(item["timeToLive"]["N"]) == math.ceil(T0 + 30 + LOCK_GRACE)
        assert "value" not in item


def test_request_budget(make: Make) -> None:
    cache = make(namespace="budget:")
    cache.connect()
    counter = RequestCounter(cache.client)
    lock = cache.lock("job")
    assert lock.acquire(blocking=False)
    assert lock.held
    lock.extend()
    assert lock.release()
    assert counter.calls == ["UpdateItem", "GetItem", "UpdateItem", "UpdateItem"]


def test_retried_acquire_costs_one_more_request_and_keeps_the_fence(make: Make) -> None:
    cache = make(namespace="retry:")
    name = cache._lock_name("lock:job")
    fence = cache._lock_acquire(name, "tok", 30.0, cache._clock())
    counter = RequestCounter(cache.client)
    assert cache._lock_acquire(name, "tok", 30.0, cache._clock()) == fence
    assert counter.total <= 2  # the conditional write, and at most a read of the item


def test_user_keys_cannot_reach_a_lock_item(make: Make) -> None:
    cache = make(namespace="u:")
    pk, original = internal_key("u:", "u:lock:job")
    with cache.lock("job", timeout=0) as lock:
        as_user = pk[len("u:") :]  # the user key whose storage key is the lock's pk
        assert cache.get(as_user, "miss") == "miss"
        assert cache.exists(as_user) is False
        with pytest.raises(InvalidKeyError, match="another key"):
            cache.put(as_user, "overwrite")
        with pytest.raises(InvalidKeyError, match="another key"):
            cache.add(as_user, "x")
        assert cache.delete(as_user) is False
        assert cache.delete_many([as_user]) == 0
        cache.put(original[len("u:") :], "a plain entry")  # the originalKey: its own item
        assert lock.held
        assert sorted(cache.keys()) == [original[len("u:") :]]


def test_a_foreign_item_at_the_lock_key_is_a_typed_error(make: Make) -> None:
    cache = make(namespace="f:")
    cache.connect()
    pk, _ = internal_key("f:", "f:lock:job")
    cache.client.put_item(
        TableName=cache.table_name, Item={"cacheKey": {"S": pk}, "lockHolder": {"S": "x"}}
    )
    with pytest.raises(CorruptEntryError, match="not a cachehub lock"):
        cache.lock("job").acquire(blocking=False)
    with pytest.raises(CorruptEntryError):
        _ = cache.lock("job").busy


def test_clear_include_internal_keeps_other_namespaces_locks(make: Make) -> None:
    # "n" and "n\0lock:" share the originalKey prefix "n\0"; each clears only its own.
    short, tricky = make(namespace="n"), make(namespace="n\x00lock:")
    with short.lock("x", timeout=0) as mine, tricky.lock("y", timeout=0) as theirs:
        short.clear(include_internal=True)
        assert not mine.held
        assert theirs.held
        mine.token = None  # cleared: nothing left to release
    assert tricky.lock("y").acquire(blocking=False)


def test_count_and_keys_skip_lock_items_server_side(make: Make) -> None:
    cache = make(namespace="c:")
    cache.put("a", 1)
    with cache.lock("job", timeout=0), cache.lock("a", timeout=0):
        counter = RequestCounter(cache.client)
        assert cache.count() == 1
        assert cache.count("a*") == 1
        assert counter.calls == ["Scan", "Scan"]  # Select=COUNT: filtered in the table
        assert list(cache.keys()) == ["a"]
        assert cache.clear() == 1
        assert cache.lock("job").busy


def test_hostile_lock_names_are_stored_safely(make: Make) -> None:
    cache = make(namespace="h:")
    names: list[Any] = ["x" * 16_384, "\x00", "sha256:" + "0" * 64, "ключ" * 600]
    for name in names:
        with cache.lock(name, timeout=0) as lock:
            assert lock.held
    assert list(cache.keys()) == []


@pytest.mark.parametrize("fence", ["1.5", "-0.5", "12345678901234567890.25"])
def test_a_planted_fence_that_is_no_whole_number_is_a_typed_error(make: Make, fence: str) -> None:
    cache = make(namespace="pf:")
    cache.connect()
    pk, original = internal_key("pf:", "pf:lock:job")
    cache.client.put_item(
        TableName=cache.table_name,
        Item={
            "cacheKey": {"S": pk},
            "originalKey": {"S": original},
            "cachehubInternal": {"S": "lock"},
            "lockFence": {"N": fence},
        },
    )
    lock = cache.lock("job")
    with pytest.raises(CorruptEntryError, match="fence"):
        lock.acquire(blocking=False)
